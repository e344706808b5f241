"""The shared backend: a PostgreSQL database, through psycopg 3 (imported only here, only when
`state.url` names one).

Owns: connecting (autocommit; explicit transactions), the migrations on open under an advisory
lock (two hosts opening at once: one applies, the other waits, then finds nothing to do), the
re-entrant transaction, reconnecting after the server went away, the locks (advisory locks:
session-level on a connection of their own, so a dead process's lock dies with its
connection; the serialised budget transaction takes a transaction-level one), and turning
psycopg's errors into gpuctl's (`StateUnavailableError` exit 1, `StateDamagedError` exit 3).

A dropped connection inside a transaction is a rolled-back transaction: it is reported
(`StateUnavailableError`), never retried here, because only the caller knows whether its body
can run twice. A read outside a transaction is retried once on a new connection.

Must not: hold any SQL of the tables (gpuctl.state's `State` does), or print.
"""

from __future__ import annotations

import contextlib
import functools
import hashlib
import threading
import time
from collections.abc import Iterator, Sequence
from typing import Any

import psycopg
from psycopg.rows import dict_row, tuple_row

from gpuctl.state.errors import StateDamagedError, StateUnavailableError, newer_schema
from gpuctl.state.schema import MIGRATIONS, for_postgres, statements
from gpuctl.state.url import Location

RETRY_CONNECT_S = 1.0  # after a failed connect, how long callers that must not wait are refused at once
_MIGRATION_LOCK = "migrations"


def lock_key(name: str) -> int:
    """The advisory lock key (a signed 64-bit number) for a gpuctl lock name."""
    digest = hashlib.blake2b(f"gpuctl:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


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
                _migrate(conn, self)
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
                    if self.available:
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
        self.last_error = _first_line(exc)
        what = f"the connection to the shared state {self.where} dropped during {during}; it was rolled back" \
            if during else f"the shared state {self.where} is unreachable ({self.last_error})"
        return StateUnavailableError(what, hint=UNREACHABLE_HINT)

    # -------------------------------------------------------------- statements

    def query(self, sql: str, args: Sequence[Any] = (), *, wait: bool = True) -> list[dict[str, Any]]:
        """Rows as dicts. Outside a transaction a dropped connection is retried once (when
        `wait`); `wait=False` never waits for a connection (the request path)."""
        return self._run(lambda conn: conn.execute(pg_sql(sql), _storable(args)).fetchall(), wait=wait)

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Plain tuples, for the big reads; in binary (a float is 8 bytes, not text to parse)."""

        def run(conn: psycopg.Connection[Any]) -> list[tuple[Any, ...]]:
            with conn.cursor(row_factory=tuple_row, binary=True) as cur:
                return cur.execute(pg_sql(sql), _storable(args)).fetchall()

        return self._run(run)

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        return self._run(lambda conn: conn.execute(pg_sql(sql), _storable(args)).rowcount, retry=False)

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        def run(conn: psycopg.Connection[Any]) -> None:
            with conn.cursor() as cur:
                cur.executemany(pg_sql(sql), [_storable(row) for row in rows])

        self._run(run, retry=False)

    def insert(self, sql: str, args: Sequence[Any] = ()) -> int:
        row = self._run(lambda conn: conn.execute(pg_sql(sql + " RETURNING id"), _storable(args)).fetchone(),
                        retry=False)
        return int(row["id"])

    def _run(self, fn: Any, *, wait: bool = True, retry: bool = True) -> Any:
        with self._mutex:
            for attempt in (1, 2):
                conn = self._ensure(wait=wait)
                try:
                    return fn(conn)
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
        `wait=False`: refused at once while the connection is down (the request path)."""
        with self._mutex:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            conn = self._ensure(wait=wait)
            try:
                with conn.transaction():
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
        return _version(self._ensure()) or 0

    # -------------------------------------------------------------- locks

    @contextlib.contextmanager
    def lock(self, name: str, *, blocking: bool = True, ephemeral: bool = False) -> Iterator[bool]:
        """A session advisory lock on a connection of its own, held until exit: yields True
        once held, or False at once when `blocking=False` and another session holds it. If
        this process dies, its connection closes and the server drops the lock."""
        del ephemeral  # nothing to remove: the lock is gone with its session
        conn = self.connect(migrate=False)
        try:
            key = lock_key(name)
            try:
                if blocking:
                    conn.execute(f"SET lock_timeout = {int(self.lock_timeout_s * 1000)}")
                    conn.execute("SELECT pg_advisory_lock(%s)", (key,))
                    held = True
                else:
                    row = conn.execute("SELECT pg_try_advisory_lock(%s) AS held", (key,)).fetchone()
                    held = bool(row and row["held"])
            except psycopg.Error as exc:
                raise self.translate(exc, lock=name) from None
            yield held
        finally:
            conn.close()  # ends the session: its advisory locks go with it

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
        with self._mutex:
            self._drop()

    def translate(self, exc: psycopg.Error, *, lock: str | None = None) -> Exception:
        from psycopg import errors

        if isinstance(exc, errors.LockNotAvailable | errors.QueryCanceled):
            what = f"the {lock} lock" if lock else "a lock"
            return StateDamagedError(f"{what} in the shared state {self.where} has been held for over "
                                     f"{self.lock_timeout_s:g} s", hint="wait for the other gpuctl command to "
                                     "finish, or raise state.lock_timeout_s")
        if isinstance(exc, errors.UndefinedTable | errors.UndefinedColumn):
            return StateDamagedError(f"the shared state {self.where} lacks gpuctl's tables ({_first_line(exc)})",
                                     hint="point state.url at a database gpuctl created, or at an empty one")
        if isinstance(exc, psycopg.OperationalError):
            return self.unavailable(exc)
        return exc


UNREACHABLE_HINT = ("check that the database is up and state.url (GPUCTL_STATE_URL) is right; chat keeps "
                    "answering meanwhile, but launch and cleanup wait for the shared budget")


def _storable(args: Sequence[Any]) -> Sequence[Any]:
    """`args` with NUL characters in text made U+FFFD: PostgreSQL's text cannot hold them (SQLite
    can), and a model's answer or a server's error may contain one."""
    if not any(isinstance(a, str) and "\x00" in a for a in args):
        return args
    return [a.replace("\x00", "\ufffd") if isinstance(a, str) else a for a in args]


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip().splitlines()
    return text[0] if text else type(exc).__name__


def _version(conn: psycopg.Connection[Any]) -> int | None:
    """The schema version, or None for a database gpuctl never opened."""
    try:
        row = conn.execute("SELECT max(version) AS v FROM gpuctl_schema").fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return int(row["v"]) if row and row["v"] is not None else 0


def _migrate(conn: psycopg.Connection[Any], db: PgDb) -> None:
    """Bring the database to the latest schema. The check is one read; applying takes the
    migration advisory lock, so a second host opening at once waits, then finds it done."""
    known = len(MIGRATIONS)
    try:
        version = _version(conn)
        if version == known:
            return
        if version is not None and version > known:
            raise newer_schema(db.where, version, known)
        conn.execute(f"SET lock_timeout = {int(max(db.lock_timeout_s, 60) * 1000)}")
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(_MIGRATION_LOCK),))
        try:
            version = _version(conn)
            if version is not None and version > known:
                raise newer_schema(db.where, version, known)
            with conn.transaction():
                if version is None:
                    conn.execute("CREATE TABLE gpuctl_schema (version INTEGER NOT NULL)")
                    conn.execute("INSERT INTO gpuctl_schema (version) VALUES (0)")
                    version = 0
                for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                    for statement in statements(script):
                        conn.execute(for_postgres(statement))
                    conn.execute("UPDATE gpuctl_schema SET version = %s", (number,))
        finally:
            if not conn.broken:
                conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(_MIGRATION_LOCK),))
                conn.execute("RESET lock_timeout")
    except psycopg.OperationalError as exc:
        if conn.broken or conn.closed:
            raise db.unavailable(exc, during="the schema check") from None
        raise db.translate(exc) from None
    except psycopg.DatabaseError as exc:
        # A half-migrated database, or one that holds another application's `usage` table: the
        # migration cannot apply (it was rolled back whole). Say so in one line, as for SQLite.
        raise StateDamagedError(
            f"the shared state {db.where} cannot be brought to gpuctl's schema ({_first_line(exc)})",
            hint="its tables were changed by hand or belong to another application: point state.url at "
                 "a database gpuctl created, or at an empty one") from None
