"""The shared database's schema: gpuctl's migrations applied on open, under an advisory lock
(two hosts opening at once: one applies, the other waits, then finds nothing to do), and the
lock keys of gpuctl's named locks.

Must not: hold a connection of its own (the caller's is used), or print.
"""

from __future__ import annotations

import hashlib
from typing import Any, Protocol

import psycopg

from gpuctl.state.errors import StateDamagedError, StateUnavailableError, newer_schema
from gpuctl.state.pg_faults import first_line
from gpuctl.state.schema import MIGRATIONS, for_postgres, statements

MIGRATION_LOCK = "migrations"


class Migrating(Protocol):
    """What a migration needs of the database it opens (`pg.PgDb`)."""

    where: str
    lock_timeout_s: float

    def unavailable(self, exc: BaseException, *, during: str | None = None) -> StateUnavailableError: ...

    def translate(self, exc: psycopg.Error, *, lock: str | None = None) -> Exception: ...


def lock_key(name: str) -> int:
    """The advisory lock key (a signed 64-bit number) for a gpuctl lock name."""
    digest = hashlib.blake2b(f"gpuctl:{name}".encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big", signed=True)


def version_of(conn: psycopg.Connection[Any]) -> int | None:
    """The schema version, or None for a database gpuctl never opened."""
    try:
        row = conn.execute("SELECT max(version) AS v FROM gpuctl_schema").fetchone()
    except psycopg.errors.UndefinedTable:
        return None
    return int(row["v"]) if row and row["v"] is not None else 0


def apply_migrations(conn: psycopg.Connection[Any], db: Migrating) -> None:
    """Bring the database to the latest schema. The check is one read; applying takes the
    migration advisory lock, so a second host opening at once waits, then finds it done."""
    known = len(MIGRATIONS)
    try:
        version = version_of(conn)
        if version == known:
            return
        if version is not None and version > known:
            raise newer_schema(db.where, version, known)
        conn.execute(f"SET lock_timeout = {int(max(db.lock_timeout_s, 60) * 1000)}")
        conn.execute("SELECT pg_advisory_lock(%s)", (lock_key(MIGRATION_LOCK),))
        try:
            version = version_of(conn)
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
                conn.execute("SELECT pg_advisory_unlock(%s)", (lock_key(MIGRATION_LOCK),))
                conn.execute("RESET lock_timeout")
    except psycopg.OperationalError as exc:
        if conn.broken or conn.closed:
            raise db.unavailable(exc, during="the schema check") from None
        raise db.translate(exc) from None
    except psycopg.DatabaseError as exc:
        # A half-migrated database, or one that holds another application's `usage` table: the
        # migration cannot apply (it was rolled back whole). Say so in one line, as for SQLite.
        raise StateDamagedError(
            f"the shared state {db.where} cannot be brought to gpuctl's schema ({first_line(exc)})",
            hint="its tables were changed by hand or belong to another application: point state.url at "
                 "a database gpuctl created, or at an empty one") from None
