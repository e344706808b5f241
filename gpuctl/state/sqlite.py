"""The embedded backend: one SQLite file (`GPUCTL_HOME/state.db` by default), in WAL mode.

Owns: opening the file (created 0600; migrated on open, the check a single read when it is
current), the re-entrant write transaction (`BEGIN IMMEDIATE`, so a read-modify-write inside
it is safe across processes), the local locks (flock files in `locks/` beside the database:
the kernel drops them when their process dies, even on SIGKILL), and turning SQLite's errors
into one line that names the file and says what to do (`StateDamagedError`, exit 3).

Must not: hold any SQL of the tables (gpuctl.state's `State` does) or print.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import os
import re
import sqlite3
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

from gpuctl.state.errors import StateDamagedError, newer_schema
from gpuctl.state.schema import MIGRATIONS, statements

_LOCK_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]{0,80}$")


class SqliteDb:
    """One connection to the SQLite file; `query`/`transaction` as `PgDb` has them."""

    kind = "sqlite"
    available = True  # a local file is there or it is an error: never "unreachable"

    def __init__(self, path: Path, *, lock_timeout_s: float = 30.0) -> None:
        self.path = path
        self.where = str(path)
        self.lock_timeout_s = lock_timeout_s
        self._mutex = threading.RLock()
        self._depth = 0
        with self.translated():
            self._db = _connect(path, lock_timeout_s)
        try:
            with self.translated():
                _migrate(self)
        except BaseException:
            self._db.close()
            raise

    # -------------------------------------------------------------- statements

    def query(self, sql: str, args: Sequence[Any] = (), *, wait: bool = True) -> list[dict[str, Any]]:
        with self._mutex, self.translated():
            return [dict(row) for row in self._db.execute(sql, args)]

    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]:
        """Plain tuples, for the big reads (`cost report` over a million rows)."""
        with self._mutex, self.translated():
            cur = self._db.execute(sql, args)
            cur.row_factory = None  # type: ignore[assignment]
            return cur.fetchall()

    def execute(self, sql: str, args: Sequence[Any] = ()) -> int:
        """One statement (inside the current transaction, if any); returns the rows changed."""
        with self._mutex, self.translated():
            return self._db.execute(sql, args).rowcount

    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        with self._mutex, self.translated():
            self._db.executemany(sql, rows)

    def insert(self, sql: str, args: Sequence[Any] = ()) -> int:
        """An INSERT into a table with an `id` column; the new row's id."""
        with self._mutex, self.translated():
            return int(self._db.execute(sql, args).lastrowid or 0)

    @contextlib.contextmanager
    def transaction(self, *, wait: bool = True) -> Iterator[SqliteDb]:
        """A write transaction taken up front (BEGIN IMMEDIATE); a nested one joins the outer.
        Rolled back on any exception."""
        with self._mutex:
            if self._depth:
                self._depth += 1
                try:
                    yield self
                finally:
                    self._depth -= 1
                return
            with self.translated():
                self._db.execute("BEGIN IMMEDIATE")
            self._depth = 1
            try:
                yield self
            except BaseException:
                self._depth = 0
                with contextlib.suppress(sqlite3.Error):
                    self._db.execute("ROLLBACK")
                raise
            self._depth = 0
            with self.translated():
                self._db.execute("COMMIT")

    @property
    def schema_version(self) -> int:
        with self._mutex, self.translated():
            return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -------------------------------------------------------------- locks

    @contextlib.contextmanager
    def lock(self, name: str, *, blocking: bool = True, ephemeral: bool = False) -> Iterator[bool]:
        """An exclusive flock on `locks/NAME.lock`: yields True once held, or False at once
        when `blocking=False` and another process holds it. `ephemeral`: the file is removed
        after (a lock whose name is used once, like a launch's nonce)."""
        path = self.lock_path(name)
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | (0 if blocking else fcntl.LOCK_NB))
            except OSError as exc:
                if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                    yield False
                    return
                raise
            try:
                yield True
            finally:
                if ephemeral:
                    with contextlib.suppress(OSError):
                        path.unlink()
                fcntl.flock(fd, fcntl.LOCK_UN)
        finally:
            os.close(fd)

    def lock_held(self, name: str) -> bool:
        """Whether a live process holds the lock now (a dead one's flock is gone with it)."""
        try:
            fd = os.open(self.lock_path(name), os.O_RDWR)
        except FileNotFoundError:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return True
            raise
        else:
            fcntl.flock(fd, fcntl.LOCK_UN)
            return False
        finally:
            os.close(fd)

    @contextlib.contextmanager
    def serialised(self, name: str) -> Iterator[None]:
        """One transaction at a time across processes: the flock, then a write transaction
        (the budget check and the intent row it allows)."""
        with self.lock(name), self.transaction():
            yield

    def lock_path(self, name: str) -> Path:
        if not _LOCK_NAME.match(name):
            raise ValueError(f"bad lock name {name!r}")
        return self.path.parent / "locks" / f"{name}.lock"

    # -------------------------------------------------------------- plumbing

    def close(self) -> None:
        with self._mutex:
            self._db.close()

    @contextlib.contextmanager
    def translated(self) -> Iterator[None]:
        """SQLite's errors about the file as one line naming it (a bug's error stays as it is)."""
        try:
            yield
        except (sqlite3.IntegrityError, sqlite3.ProgrammingError, sqlite3.InterfaceError):
            raise
        except sqlite3.DatabaseError as exc:
            raise damaged(self.path, exc, self.lock_timeout_s) from None


def damaged(path: Path, exc: sqlite3.DatabaseError, lock_timeout_s: float) -> StateDamagedError:
    """What SQLite's complaint means for the user, with the fix."""
    text = str(exc)
    low = text.lower()
    aside = f"move it aside (mv {path} {path}.broken) and gpuctl starts a new one; `gpuctl cleanup` still finds " \
            "the instances it launched by their gpuctl: label"
    if "locked" in low or "busy" in low:
        return StateDamagedError(
            f"the state database {path} has been locked by another process for over {lock_timeout_s:g} s",
            hint=f"wait for the other gpuctl command to finish (find it with `fuser {path}`), or raise "
                 "state.lock_timeout_s")
    if "unable to open" in low or "readonly" in low or "read-only" in low:
        return StateDamagedError(f"cannot open the state database {path}: {text}",
                                 hint=f"check that {path.parent} is writable by you, or point GPUCTL_HOME elsewhere")
    if "full" in low:
        return StateDamagedError(f"cannot write the state database {path}: the disk is full",
                                 hint="free some space, then run the command again")
    return StateDamagedError(f"the state database {path} is damaged ({text})", hint=aside)


def _connect(path: Path, lock_timeout_s: float) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        # Create it 0600 before SQLite does: the ledger says what you run and spend.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so writers queue politely
    # (busy timeout) instead of failing on lock upgrades.
    db = sqlite3.connect(path, timeout=lock_timeout_s, isolation_level=None, check_same_thread=False)
    try:
        db.row_factory = sqlite3.Row
        db.execute(f"PRAGMA busy_timeout={int(lock_timeout_s * 1000)}")
        if db.execute("PRAGMA journal_mode").fetchone()[0] != "wal":
            db.execute("PRAGMA journal_mode=WAL")
        # WAL + NORMAL: no fsync per commit (a ledger row costs microseconds on the request
        # path); still crash-safe, at worst the last rows before a power loss are lost.
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("PRAGMA foreign_keys=ON")
    except BaseException:
        db.close()
        raise
    return db


def _migrate(db: SqliteDb) -> None:
    """Apply the migrations this file has not seen, in one transaction. A current file costs
    one read of its header (no write lock), so every command's open stays in the millisecond."""
    known = len(MIGRATIONS)
    version = db.schema_version
    if version == known:
        return
    if version > known:
        raise newer_schema(str(db.path), version, known)
    with db.transaction():
        version = db.schema_version  # another process may have migrated while we waited
        if version > known:
            raise newer_schema(str(db.path), version, known)
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in statements(script):
                db.execute(statement)
            db.execute(f"PRAGMA user_version = {number}")
