"""The request path against a shared database: writes batched off it, reads from short caches.

A gateway at hundreds of requests per second must not wait on a network round trip per
request. So, for a PostgreSQL state only (SQLite's writes cost microseconds and stay direct):

- `Writer`: usage rows and counter bumps go to a bounded in-memory queue, written by one
  background thread every `FLUSH_S` (and at close, and before any read of the usage, so a
  process always reads its own writes). Each row carries a unique id, so a batch retried after
  a dropped connection is written once.
- `Spool`: what cannot be written (the database is unreachable, or the queue is full) is
  appended to a bounded local file in GPUCTL_HOME, and written (then the file emptied) by the
  next flush that reaches the database, from this process or any other on this home.
- `TtlCache`: breaker records, counters and "last answered at" read through a cache at most
  `CACHE_S` stale; writes go through and update it; with the database unreachable the cache
  is the local memory routing goes on with.

Must not: know the tables beyond the two statements it runs (given by `State`), or print.
"""

from __future__ import annotations

import atexit
import contextlib
import fcntl
import json
import logging
import os
import signal
import threading
import time
import weakref
from collections import deque
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any

from gpuctl.events import log_event

logger = logging.getLogger("gpuctl.state")

FLUSH_S = 0.2
CACHE_S = 1.0
QUEUE_MAX = 20_000  # ~100 s of a busy gateway's rows; beyond it rows go straight to the spool
SPOOL_MAX_BYTES = 256 * 1024 * 1024  # ~500k rows: days of traffic while the database is down

Row = tuple[Any, ...]
Bump = tuple[str, str, float]  # provider, metric name, how much


class Spool:
    """A JSON-lines file of rows not yet in the database, shared by the processes of one
    GPUCTL_HOME (flock while appending or draining), created 0600, bounded in size."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.dropped = 0

    @contextlib.contextmanager
    def _locked(self) -> Iterator[int]:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield fd
        finally:
            os.close(fd)  # closing drops the flock

    def append(self, rows: Sequence[Row], bumps: Sequence[Bump] = ()) -> None:
        if not rows and not bumps:
            return
        lines = [json.dumps({"row": list(r)}) for r in rows] + [json.dumps({"bump": list(b)}) for b in bumps]
        data = ("\n".join(lines) + "\n").encode()
        with self._locked() as fd:
            if os.fstat(fd).st_size + len(data) > SPOOL_MAX_BYTES:
                self.dropped += len(rows)
                log_event("state_spool_full", path=str(self.path), dropped_rows=len(rows))
                logger.warning("the state spool %s is full: %d usage row(s) dropped", self.path, len(rows))
                return
            os.write(fd, data)

    def pending(self) -> bool:
        try:
            return self.path.stat().st_size > 0
        except FileNotFoundError:
            return False

    def drain(self, write: Callable[[list[Row], list[Bump]], None]) -> int:
        """Give everything spooled to `write` (which raises if it could not), then empty the
        file. A crash between the two leaves the rows to be written again: harmless, since
        every row's unique id makes its insert happen once."""
        if not self.pending():
            return 0
        with self._locked() as fd:
            with open(fd, "rb", closefd=False) as fh:
                fh.seek(0)
                raw = fh.read()
            rows: list[Row] = []
            bumps: list[Bump] = []
            for line in raw.splitlines():
                try:
                    item = json.loads(line)
                except ValueError:
                    continue  # a line cut by a crash mid-append: it never counted
                if "row" in item:
                    rows.append(tuple(item["row"]))
                elif "bump" in item:
                    provider, name, by = item["bump"]
                    bumps.append((provider, name, by))
            if rows or bumps:
                write(rows, bumps)
            os.ftruncate(fd, 0)
        return len(rows)


class Writer:
    """The background writer of one State: `put` never waits on the database."""

    def __init__(self, write: Callable[[list[Row], list[Bump]], None], spool: Spool, *,
                 flush_s: float = FLUSH_S, queue_max: int = QUEUE_MAX,
                 on_stuck: Callable[[], None] | None = None) -> None:
        self._write = write  # writes one batch in one transaction, or raises
        self._on_stuck = on_stuck  # cuts a write that does not return (the writer's connection)
        self.spool = spool
        self.flush_s = flush_s
        self.queue_max = queue_max
        self._rows: deque[Row] = deque()
        self._bumps: dict[tuple[str, str], float] = {}
        self._flushing = threading.Lock()
        self._wake = threading.Event()
        self._stopped = False
        self._inflight: tuple[list[Row], list[Bump]] = ([], [])  # the batch being written now
        self._abandoned = False  # close() gave up on a stuck write and spooled its rows
        self.down = False  # the last flush could not reach the database
        self._thread = threading.Thread(target=self._loop, name="gpuctl-state-writer", daemon=True)
        self._thread.start()
        flush_at_exit(self)

    def put(self, row: Row) -> None:
        if len(self._rows) >= self.queue_max:
            self.spool.append([row])  # the writer is stuck: keep the row on disk, not in memory
            return
        self._rows.append(row)

    def bump(self, provider: str, name: str, by: float) -> None:
        key = (provider, name)
        self._bumps[key] = self._bumps.get(key, 0) + by

    def pending_bumps(self, provider: str) -> dict[str, float]:
        """Bumps queued for `provider`'s counters, not yet written."""
        return {name: by for (p, name), by in list(self._bumps.items()) if p == provider}

    def _loop(self) -> None:
        while not self._stopped:
            self._wake.wait(self.flush_s)
            self._wake.clear()
            try:
                self.flush()
            except Exception:  # never let the writer die: the next flush tries again
                logger.debug("state flush failed", exc_info=True)

    def flush(self) -> bool:
        """Write what is queued (and the spool first); True when all of it reached the
        database, False when it went to the spool."""
        with self._flushing:
            rows = [self._rows.popleft() for _ in range(len(self._rows))]
            bumps = [(p, n, by) for (p, n), by in self._take_bumps().items()]
            self._inflight = (rows, bumps)
            try:
                if self.spool.pending():
                    self.spool.drain(self._write_all)
                if rows or bumps:
                    self._write_all(rows, bumps)
            except Exception as exc:
                from gpuctl.state.errors import StateDamagedError, StateUnavailableError

                if not isinstance(exc, StateUnavailableError | StateDamagedError):
                    logger.debug("state batch failed", exc_info=True)
                if not self._abandoned:  # else close() spooled this batch already
                    self.spool.append(rows, bumps)
                if not self.down:
                    log_event("state_unreachable", error=str(exc)[:300], spooled_rows=len(rows))
                self.down = True
                return False
            finally:
                self._inflight = ([], [])
            if self.down:
                log_event("state_reachable_again")
            self.down = False
            return True

    def _write_all(self, rows: list[Row], bumps: list[Bump]) -> None:
        """One batch in one transaction. When the database refuses the batch itself (a value
        it cannot store), not because it is away, the rows go one by one: one bad row must
        never hold back the others, nor be spooled and retried forever. A row refused on its
        own is logged and dropped; an unreachable database raises (the caller spools)."""
        try:
            self._write(rows, bumps)
            return
        except Exception as exc:
            if not refused_value(exc):
                raise  # away, read-only, locked: transient, so the caller spools it all
        # The batch was refused for a value in it: find the row that holds it. The counters go
        # last: if a transient error stops this half-way, the caller spools the whole batch, and
        # a counter already committed would be counted again (a row is not: its uid).
        for row in rows:
            try:
                self._write([row], [])  # a row written before a failure is not written twice (its uid)
            except Exception as exc:
                if not refused_value(exc):
                    raise
                logger.warning("a usage row the database refuses is dropped: %s", str(exc)[:200])
                log_event("state_row_refused", error=str(exc)[:300])
        if bumps:
            self._write([], bumps)

    def _take_bumps(self) -> dict[tuple[str, str], float]:
        taken, self._bumps = self._bumps, {}
        return taken

    def close(self, timeout_s: float = 3.0) -> None:
        """Stop the thread and write (or spool) everything queued: nothing is lost at exit.
        A write still in flight after `timeout_s` is spooled as well (a hung database must not
        hold a SIGTERM for long; a row written twice is stored once)."""
        _WRITERS.discard(self)  # closed: nothing left for the exit flush to do
        self._stopped = True
        self._wake.set()
        self._thread.join(timeout_s)
        if self._thread.is_alive() and self._flushing.locked() and self._on_stuck is not None:
            # Stuck in a write (a spool drain holds the spool's lock too): cut it under the
            # write, which then fails and spools its own batch; the rest goes straight there.
            self._on_stuck()
            self._thread.join(timeout_s)
            if not self._thread.is_alive():
                self.spool.append([self._rows.popleft() for _ in range(len(self._rows))],
                                  [(p, n, by) for (p, n), by in self._take_bumps().items()])
                return
        if self._flushing.acquire(blocking=False):
            self._flushing.release()
            self.flush()
            return
        # The writer is stuck in a write to a database that does not answer (hung, not down):
        # what it holds and what is queued go to the spool, and the process may exit. A row
        # its write commits after all is not written twice (each row's uid).
        # Not its bumps: a counter has no id, and the write may land after all. A lost bump
        # undercounts a metric by one batch; a doubled one would lie.
        self._abandoned = True
        held_rows, _ = self._inflight
        rows = [*held_rows, *(self._rows.popleft() for _ in range(len(self._rows)))]
        self.spool.append(rows, [(p, n, by) for (p, n), by in self._take_bumps().items()])
        log_event("state_unreachable", error="the database did not answer the last write", spooled_rows=len(rows))


class TtlCache:
    """Values read at most `ttl_s` ago (by `clock`, monotonic), and the local memory of what
    this process wrote, for when the database cannot be asked."""

    def __init__(self, ttl_s: float = CACHE_S, clock: Callable[[], float] = time.monotonic) -> None:
        self.ttl_s = ttl_s
        self.clock = clock
        self._values: dict[Any, tuple[float, Any]] = {}

    def fresh(self, key: Any) -> tuple[bool, Any]:
        hit = self._values.get(key)
        if hit is not None and self.clock() - hit[0] < self.ttl_s:
            return True, hit[1]
        return False, None

    def known(self, key: Any, default: Any = None) -> Any:
        """The last value seen or written, however old (the database is unreachable)."""
        hit = self._values.get(key)
        return default if hit is None else hit[1]

    def put(self, key: Any, value: Any) -> None:
        self._values[key] = (self.clock(), value)

    def drop(self, key: Any) -> None:
        self._values.pop(key, None)

    def forget(self) -> None:
        self._values.clear()


_WRITERS: weakref.WeakSet[Writer] = weakref.WeakSet()
_AT_EXIT: list[bool] = []


def flush_at_exit(writer: Writer) -> None:
    """Whatever is queued is written (or spooled) when the process exits, SIGTERM included:
    a process that left SIGTERM at its default (instant death, no cleanup) gets a handler that
    exits cleanly instead. A server's own handler (uvicorn's graceful shutdown) is left alone:
    its shutdown closes the state, which flushes."""
    _WRITERS.add(writer)
    if _AT_EXIT:
        return
    _AT_EXIT.append(True)
    atexit.register(_flush_all)
    if threading.current_thread() is threading.main_thread() and signal.getsignal(signal.SIGTERM) is signal.SIG_DFL:
        signal.signal(signal.SIGTERM, _exit_on_sigterm)


def _exit_on_sigterm(signum: int, frame: object) -> None:
    raise SystemExit(128 + signum)


def _flush_all() -> None:
    for writer in list(_WRITERS):
        with contextlib.suppress(Exception):
            writer.flush()


def refused_value(exc: BaseException) -> bool:
    """Whether the database refused a value in the batch (a number past BIGINT, a text it
    cannot store), as opposed to being away, read-only or locked: only then is a row at fault,
    and only then may it be dropped. psycopg is only ever loaded for a shared state, as here."""
    if isinstance(exc, ValueError | OverflowError):  # refused while adapting the value, client side
        return True
    import psycopg

    return isinstance(exc, psycopg.DataError | psycopg.IntegrityError)


def take_over_spool(old: Path, new: Path) -> None:
    """Rows spooled under an earlier name become this spool's: read under the old file's lock
    (an older gpuctl on this home may be appending to it, or draining it), appended to the new
    one under its lock, and the old one emptied. A crash between the two leaves rows in both:
    written once all the same (each row's uid)."""
    if not old.exists():
        return
    with Spool(old)._locked() as fd:
        with open(fd, "rb", closefd=False) as fh:
            fh.seek(0)
            data = fh.read()
        if data:
            with Spool(new)._locked() as new_fd:
                os.write(new_fd, data if data.endswith(b"\n") else data + b"\n")
            os.ftruncate(fd, 0)
