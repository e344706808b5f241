"""The gateway's ledger writer: usage rows are stored by a thread of their own, so no request
waits on the database (a cron `gpuctl cleanup` holding the write lock would otherwise stall
every stream on the event loop, for up to the 30 s busy timeout).

The queue is bounded: when it is full (the database is stuck), a row is written in the
caller's thread as it always was, slower but never lost. `close()` writes what is queued
before it returns: the shutdown's "flush the ledger". Only a process killed outright can lose
the rows of its last moments (milliseconds).

Must not: drop a row, or share the event loop's database connection (it opens its own).
"""

from __future__ import annotations

import contextlib
import logging
import queue
import threading
from collections.abc import Callable

from gpuctl.routing.ledger import Events, write
from gpuctl.state import State, UsageRecord

logger = logging.getLogger("gpuctl.serve")
MAX_QUEUED = 10_000
_STOP = None


class LedgerWriter:
    """`put(row, events)` from any thread; `close()` drains and stops."""

    def __init__(self, open_state: Callable[[], State], fallback: Callable[[], State]) -> None:
        self.open_state = open_state
        self.fallback = fallback  # the caller's state, for a row the full queue cannot take
        self.queue: queue.Queue[tuple[UsageRecord, Events] | None] = queue.Queue(MAX_QUEUED)
        self.thread = threading.Thread(target=self._run, name="gpuctl-ledger", daemon=True)
        self.thread.start()

    def put(self, row: UsageRecord, events: Events) -> None:
        if not self.thread.is_alive():  # it could not open the database: write here
            write(self.fallback(), row, events)
            return
        try:
            self.queue.put_nowait((row, events))
        except queue.Full:
            write(self.fallback(), row, events)

    def flush(self) -> None:
        """Wait until every row put so far is stored (tests, and anyone reading the ledger)."""
        if self.thread.is_alive():
            self.queue.join()

    def close(self, timeout: float = 30.0) -> None:
        if self.thread.is_alive():
            with contextlib.suppress(queue.Full):
                self.queue.put(_STOP, timeout=timeout)
            self.thread.join(timeout)
        if self.thread.is_alive():
            logger.error("the ledger writer did not finish in %.0fs: rows still queued may be lost", timeout)
        while True:  # the thread is gone (or never opened its state): what is left, here
            try:
                item = self.queue.get_nowait()
            except queue.Empty:
                return
            if item is not _STOP:
                write(self.fallback(), *item)

    def _run(self) -> None:
        try:
            state = self.open_state()
        except Exception:
            logger.exception("the ledger writer cannot open the database; rows are written in place")
            return
        try:
            while True:
                item = self.queue.get()
                try:
                    if item is _STOP:
                        return
                    write(state, *item)
                except Exception:  # one bad row must not stop the ledger: say so, keep writing
                    logger.exception("a ledger row could not be written")
                finally:
                    self.queue.task_done()
        finally:
            state.close()
