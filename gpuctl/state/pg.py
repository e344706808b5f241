"""The shared backend: a PostgreSQL database, through psycopg 3 (imported only here, only when
`state.url` names one).

Owns: connecting (autocommit; explicit transactions; `pg_migrate` brings each new connection's
database to the schema), the re-entrant transaction, deadlines for callers that must not wait
(`pg_faults`: a hung server never holds the request path past REQUEST_DEADLINE_S),
reconnecting after the server went away, the locks (advisory locks: session-level on a
connection of their own, so a dead process's lock dies with its connection; the serialised budget transaction takes a transaction-level one), and turning
psycopg's errors into gpuctl's (`StateUnavailableError` exit 1, `StateDamagedError` exit 3).

A dropped connection inside a transaction is a rolled-back transaction: it is reported
(`StateUnavailableError`), never retried here, because only the caller knows whether its body
can run twice. A read outside a transaction is retried once on a new connection.

Must not: hold any SQL of the tables (gpuctl.state's `State` does), or print.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from gpuctl.state.errors import StateUnavailableError
from gpuctl.state.pg_faults import (
    REQUEST_DEADLINE_S,
    UNREACHABLE_HINT,
    deadline,
    first_line,
    locked,
    sever,
    storable,
    timed,
    translate,
)
from gpuctl.state.pg_migrate import apply_migrations, lock_key, version_of
from gpuctl.state.url import Location

RETRY_CONNECT_S = 1.0  # after a failed connect, how long callers that must not wait are refused at once
KEEP_S = 2.0  # how often a held advisory lock's connection is checked (and, dropped, the lock retaken)
KEEP_CHECK_S = 10.0  # how long that check may take before the connection counts as dead
logger = logging.getLogger("gpuctl.state")


@functools.lru_cache(maxsize=256)
def pg_sql(sql: str) -> str:
    """Our `?` placeholders as psycopg's `%s` (a literal % doubled)."""
    return sql.replace("%", "%%").replace("?", "%s")


class PgDb:
    """One connection to the shared database, reconnected when it drops."""

    kind = "postgresql"

    def __init__(self, location: Location, *, connect_timeout_s: float = 5.0, lock_timeout_s: float = 30.0,
                 wait: bool = True, lazy: bool = False) -> None:
        self.location = location
        self.where = location.shown
        self.connect_timeout_s = connect_timeout_s
        self.lock_timeout_s = lock_timeout_s
        self._mutex = threading.RLock()
        self._conn: psycopg.Connection[dict[str, Any]] | None = None
        self._depth = 0
        self._retry_at = 0.0
        self._reconnecting = False
        self.closed = False
        self.last_error: str | None = None
        if lazy:  # connects on first use (the background writer's: no second connect per command)
            return
        if wait:
            self._ensure()
        else:
            with contextlib.suppress(StateUnavailableError):
                self._ensure()

    # -------------------------------------------------------------- connection

    def connect(self, *, migrate: bool = True) -> psycopg.Connection[dict[str, Any]]:
        """A new connection (the caller owns it), migrated to the latest schema."""
        try:
            conn = psycopg.connect(self.location.url, autocommit=True, row_factory=dict_row,
                                   connect_timeout=max(1, round(self.connect_timeout_s)),
                                   application_name="gpuctl", keepalives=1, keepalives_idle=15,
                                   keepalives_interval=5, keepalives_count=3)
        except psycopg.Error as exc:
            raise self.unavailable(exc) from None
        if migrate:
            try:
                apply_migrations(conn, self)
            except BaseException:
                conn.close()
                raise
        return conn

    @property
    def available(self) -> bool:
        conn = self._conn
        return conn is not None and not conn.broken and not conn.closed

    def _ensure(self, *, wait: bool = True) -> psycopg.Connection[dict[str, Any]]:
        conn = self._conn
        if conn is not None and not conn.broken and not conn.closed:
            return conn
        self._drop()
        if not wait:
            self.reconnect_soon()
            raise StateUnavailableError(f"the shared state {self.where} is unreachable ({self.last_error or 'down'})",
                                        hint=UNREACHABLE_HINT)
        try:
            self._conn = self.connect()
        except StateUnavailableError:
            self._retry_at = time.monotonic() + RETRY_CONNECT_S
            raise
        self.last_error = None
        return self._conn

    def reconnect_soon(self) -> None:
        """Try to connect again in the background (at most one try per RETRY_CONNECT_S), so a
        request that must not wait finds the connection back once the server is."""
        if self._reconnecting or time.monotonic() < self._retry_at:
            return
        self._reconnecting = True

        def attempt() -> None:
            try:
                conn = self.connect()
            except Exception:
                self._retry_at = time.monotonic() + RETRY_CONNECT_S
            else:
                with self._mutex:
                    if self.available or self.closed:
                        conn.close()
                    else:
                        self._drop()
                        self._conn, self.last_error = conn, None
            finally:
                self._reconnecting = False

        threading.Thread(target=attempt, name="gpuctl-state-reconnect", daemon=True).start()

    def _drop(self) -> None:
        if self._conn is not None:
            with contextlib.suppress(Exception):
                self._conn.close()
            self._conn = None

    def unavailable(self, exc: BaseException, *, during: str | None = None) -> StateUnavailableError:
        self.last_error = first_line(exc)
        what = f"the connection to the shared state {self.where} dropped during {during}; it was rolled back" \
            if during else f"the shared state {self.where} is unreachable ({self.last_error})"
        return StateUnavailableError(what, hint=UNREACHABLE_HINT)

    # -------------------------------------------------------------- statements

    def query(self, sql: str, args: Sequence[Any] = (), *, wait: bool = True) -> list[dict[str, Any]]:
        """Rows as dicts. Outside a transaction a dropped connection is retried once (when
        `wait`); `wait=False` never waits for a connection (the request path)."""
        return self._run(lambda conn: conn.execute(pg_sql(sql), storable(args)).fetchall(), wait=wait)

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Plain tuples, for the big reads; in binary (a float is 8 bytes, not text to parse)."""

        def run(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            with conn.cursor(row_factory=tuple_row, binary=True) as cur:
                return cur.execute(pg_sql(sql), storable(args)).fetchall()

        return self._run(run)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self._run(lambda conn: conn.execute(pg_sql(sql), storable(args)).rowcount, retry=False)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur:
                cur.executemany(pg_sql(sql), [storable(row) for row in rows])

        self._run(run, retry=False)

    def insert(self, sql: str, args: Sequence[Any] = ()) -> int:
        row = self._run(lambda conn: conn.execute(pg_sql(sql + " RETURNING id"), storable(args)).fetchone(),
                        retry=False)
        return int(row["id"])

    def _run(self, fn: Any, *, wait: bool = True, retry: bool = True) -> Any:
        with locked(self._mutex, wait=wait, where=self.where):
            bounded = not wait
            for attempt in (1, 2):
                conn = self._ensure(wait=wait)
                try:
                    return timed(fn, conn) if bounded else fn(conn)
                except psycopg.OperationalError as exc:
                    if not (conn.broken or conn.closed):
                        raise self.translate(exc) from None
                    if self._depth:
                        raise self.unavailable(exc, during="a transaction") from None
                    self._drop()
                    if attempt == 2 or not retry or not wait:
                        raise self.unavailable(exc) from None
                except psycopg.Error as exc:
                    raise self.translate(exc) from None
        raise AssertionError("unreachable")

    @contextlib.contextmanager
    def transaction(self, *, wait: bool = True) -> Iterator[PgDb]:
        """One transaction on this connection; a nested one joins the outer. A dropped
        connection rolls it back (the server's doing) and raises StateUnavailableError.
        `wait=False`: refused at once while the connection is down (the request path), and
        the whole of it (BEGIN and COMMIT too) has REQUEST_DEADLINE_S."""
        with locked(self._mutex, wait=wait, where=self.where):
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            conn = self._ensure(wait=wait)
            try:
                with contextlib.nullcontext() if wait else deadline(conn), conn.transaction():
                    self._depth = 1
                    try:
                        yield self
                    finally:
                        self._depth = 0
            except psycopg.OperationalError as exc:
                if conn.broken or conn.closed:
                    self._drop()
                    raise self.unavailable(exc, during="a transaction") from None
                raise self.translate(exc) from None

    @property
    def schema_version(self) -> int:
        return version_of(self._ensure()) or 0

    # -------------------------------------------------------------- locks

    @contextlib.contextmanager
    def lock(self, name: str, *, blocking: bool = True, ephemeral: bool = False) -> Iterator[bool]:
        """A session advisory lock on a connection of its own, held until exit: yields True
        once held, or False at once when `blocking=False` and another session holds it. If
        this process dies, its connection closes and the server drops the lock."""
        del ephemeral  # nothing to remove: the lock is gone with its session
        session = LockSession(self, name, self.connect(migrate=False))
        try:
            try:
                if blocking:
                    session.conn.execute(f"SET lock_timeout = {int(self.lock_timeout_s * 1000)}")
                    session.conn.execute("SELECT pg_advisory_lock(%s)", (session.key,))
                    held = True
                else:
                    row = session.conn.execute("SELECT pg_try_advisory_lock(%s) AS held", (session.key,)).fetchone()
                    held = bool(row and row["held"])
            except psycopg.Error as exc:
                raise self.translate(exc, lock=name) from None
            if held:
                session.keep()
            yield held
        finally:
            session.close()  # ends the session: its advisory locks go with it

    def lock_held(self, name: str) -> bool:
        key = lock_key(name)
        got = self.query("SELECT pg_try_advisory_lock(?) AS got", (key,))[0]["got"]
        if got:
            self.query("SELECT pg_advisory_unlock(?)", (key,))
        return not got

    @contextlib.contextmanager
    def serialised(self, name: str) -> Iterator[None]:
        """One transaction at a time across every host: the transaction takes an advisory
        transaction lock first, released by its commit or rollback."""
        with self.transaction():
            self.execute(f"SET LOCAL lock_timeout = {int(self.lock_timeout_s * 1000)}")
            self.execute("SELECT pg_advisory_xact_lock(?)", (lock_key(name),))
            yield

    # -------------------------------------------------------------- plumbing

    def close(self) -> None:
        self.closed = True  # a reconnect still under way closes what it gets
        if self._mutex.acquire(timeout=REQUEST_DEADLINE_S):
            try:
                self._drop()
            finally:
                self._mutex.release()
            return
        # Another thread's statement is stuck on a server that does not answer: cut it, so
        # that thread's write fails (and spools) and this process can exit.
        conn = self._conn
        if conn is not None:
            sever(conn)

    def translate(self, exc: psycopg.Error, *, lock: str | None = None) -> Exception:
        """psycopg's error as gpuctl's (`pg_faults.translate`)."""
        return translate(exc, where=self.where, lock_timeout_s=self.lock_timeout_s, lock=lock,
                         unavailable=self.unavailable)


class LockSession:
    """A held advisory lock's own connection, kept: a connection that drops (a server restart,
    a network blip) loses its lock, and another host's cleanup would then take a live launch for
    a dead one. Checked every KEEP_S; after a drop the lock is taken again on a new connection."""

    def __init__(self, db: PgDb, name: str, conn: psycopg.Connection[Any]) -> None:
        self.db, self.name, self.conn = db, name, conn
        self.key = lock_key(name)
        self._stop = threading.Event()
        self._guard = threading.Lock()

    def keep(self) -> None:
        threading.Thread(target=self._keep, name=f"gpuctl-lock-{self.name}", daemon=True).start()

    def _keep(self) -> None:
        while not self._stop.wait(KEEP_S):
            try:
                # A hung server: cut, not waited on for ever; a slow one has long enough.
                timed(lambda c: c.execute("SELECT 1"), self.conn, KEEP_CHECK_S)
                continue
            except psycopg.Error:
                if self._stop.is_set():
                    return  # closed while checking: released, not lost
            try:
                new = self.db.connect(migrate=False)
                row = new.execute("SELECT pg_try_advisory_lock(%s) AS held", (self.key,)).fetchone()
            except (psycopg.Error, StateUnavailableError):
                continue  # still away: try again
            with self._guard:
                if self._stop.is_set() or not (row and row["held"]):
                    new.close()
                    if not self._stop.is_set():
                        logger.warning("the %s lock was lost with its connection and is held elsewhere now", self.name)
                    continue
                old, self.conn = self.conn, new
            with contextlib.suppress(Exception):
                old.close()
            logger.info("the %s lock was taken again after its connection dropped", self.name)

    def close(self) -> None:
        with self._guard:
            self._stop.set()
            conn = self.conn
        conn.close()
