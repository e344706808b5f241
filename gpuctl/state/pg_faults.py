"""What a shared database that hangs or refuses a value needs from its client: deadlines for
callers that must not wait, cutting a connection whose server does not answer, and text
PostgreSQL can store.

A server that hangs (frozen, a network partition without a reset) ends no wait by itself, and
closing a connection from another thread does not wake the thread inside libpq: shutting the
socket down does.

Must not: know a table, or retry anything (`pg.PgDb` decides).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from typing import Any, TypeVar

import psycopg

from gpuctl.state.errors import StateDamagedError, StateUnavailableError

T = TypeVar("T")

# The longest a caller that must not wait (the request path) waits for a statement or for the
# connection another thread is using; past it, the connection is cut under the statement.
REQUEST_DEADLINE_S = 1.0
UNREACHABLE_HINT = ("check that the database is up and state.url (GPUCTL_STATE_URL) is right; chat keeps "
                    "answering meanwhile, but launch and cleanup wait for the shared budget")


@contextlib.contextmanager
def locked(mutex: threading.RLock, *, wait: bool, where: str) -> Iterator[None]:
    """`mutex`; a caller that must not wait gets it within the deadline or is refused (another
    thread's statement is stuck on a hung server)."""
    if not mutex.acquire(timeout=-1 if wait else REQUEST_DEADLINE_S):
        raise StateUnavailableError(f"the shared state {where} is not answering (busy for over "
                                    f"{REQUEST_DEADLINE_S:g} s)", hint=UNREACHABLE_HINT)
    try:
        yield
    finally:
        mutex.release()


@contextlib.contextmanager
def deadline(conn: psycopg.Connection[Any], seconds: float = REQUEST_DEADLINE_S) -> Iterator[None]:
    """What runs inside must be done within `seconds`, else the connection is cut under it
    (it then fails as a dropped connection does, and the caller uses what it knows). Around a
    whole transaction it bounds its BEGIN and COMMIT too."""
    timer = threading.Timer(seconds, sever, (conn,))
    timer.daemon = True
    timer.start()
    try:
        yield
    finally:
        timer.cancel()


def timed(fn: Callable[[psycopg.Connection[Any]], T], conn: psycopg.Connection[Any],
          seconds: float = REQUEST_DEADLINE_S) -> T:
    """`fn(conn)` within `seconds` (`deadline`)."""
    with deadline(conn, seconds):
        return fn(conn)


def sever(conn: psycopg.Connection[Any]) -> None:
    """Cut a connection whose statement is past its deadline: shutting the socket down ends
    the wait inside libpq at once (closing the connection from another thread would not)."""
    with contextlib.suppress(Exception):
        sock = socket.socket(fileno=os.dup(conn.pgconn.socket))
        try:
            sock.shutdown(socket.SHUT_RDWR)
        finally:
            sock.close()


def storable(args: Sequence[Any]) -> Sequence[Any]:
    """`args` with NUL characters in text made U+FFFD: PostgreSQL's text cannot hold them (SQLite
    can), and a model's answer or a server's error may contain one."""
    if not any(isinstance(a, str) and "\x00" in a for a in args):
        return args
    return [a.replace("\x00", "\ufffd") if isinstance(a, str) else a for a in args]


def first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def translate(exc: psycopg.Error, *, where: str, lock_timeout_s: float, lock: str | None,
              unavailable: Callable[[BaseException], StateUnavailableError]) -> Exception:
    """psycopg's error as gpuctl's: a lock held too long or a database without gpuctl's tables
    is `StateDamagedError` (exit 3), a server gone is `unavailable(exc)`; others are kept."""
    from psycopg import errors

    if isinstance(exc, errors.LockNotAvailable | errors.QueryCanceled):
        what = f"the {lock} lock" if lock else "a lock"
        return StateDamagedError(f"{what} in the shared state {where} has been held for over {lock_timeout_s:g} s",
                                 hint="wait for the other gpuctl command to finish, or raise state.lock_timeout_s")
    if isinstance(exc, errors.UndefinedTable | errors.UndefinedColumn):
        return StateDamagedError(f"the shared state {where} lacks gpuctl's tables ({first_line(exc)})",
                                 hint="point state.url at a database gpuctl created, or at an empty one")
    if isinstance(exc, psycopg.OperationalError):
        return unavailable(exc)
    return exc
