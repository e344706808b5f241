"""The schema of the state database and how a connection to it is opened.

Owns: the migrations (a list that only grows: never edit one that has shipped, append), the
connection settings (WAL, busy timeout, foreign keys), the write transaction, and applying the
migrations on open. Part of `gpuctl.state`, the only package that touches the database; nothing
outside it imports this module.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Iterator
from pathlib import Path

MIGRATIONS: tuple[str, ...] = (
    # 1: instances gpuctl created (or is about to create: status 'intent' is written before
    #    the create call, so a crash in between still leaves a trace for cleanup).
    """
    CREATE TABLE instances (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        provider TEXT NOT NULL,
        remote_id TEXT,
        label TEXT NOT NULL,
        profile TEXT,
        gpu TEXT,
        dph TEXT,
        offer_id TEXT,
        machine_id TEXT,
        status TEXT NOT NULL,
        status_msg TEXT,
        endpoint TEXT,
        created_at REAL NOT NULL,
        ready_at REAL,
        destroyed_at REAL,
        cost TEXT
    );
    CREATE INDEX instances_live ON instances(provider, destroyed_at);
    CREATE INDEX instances_remote ON instances(provider, remote_id);
    """,
    # 2: one row per completion (or failed attempt) through gpuctl.
    """
    CREATE TABLE usage (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        ts REAL NOT NULL,
        provider TEXT NOT NULL,
        model TEXT,
        prompt_tokens INTEGER NOT NULL DEFAULT 0,
        completion_tokens INTEGER NOT NULL DEFAULT 0,
        latency_s REAL,
        ttft_s REAL,
        cost TEXT,
        ok INTEGER NOT NULL,
        error TEXT,
        fallback_reason TEXT,
        endpoint TEXT,
        profile TEXT
    );
    CREATE INDEX usage_ts ON usage(ts);
    """,
    # 3: circuit breaker per provider, shared by every gpuctl process.
    """
    CREATE TABLE breakers (
        provider TEXT PRIMARY KEY,
        state TEXT NOT NULL,
        failures INTEGER NOT NULL DEFAULT 0,
        opened_at REAL,
        open_until REAL,
        last_error TEXT,
        updated_at REAL NOT NULL
    );
    """,
    # 4: chat conversations and their messages.
    """
    CREATE TABLE conversations (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        created_at REAL NOT NULL,
        updated_at REAL NOT NULL,
        title TEXT,
        profile TEXT,
        system_prompt TEXT
    );
    CREATE TABLE messages (
        id INTEGER PRIMARY KEY AUTOINCREMENT,
        conversation_id INTEGER NOT NULL REFERENCES conversations(id) ON DELETE CASCADE,
        ts REAL NOT NULL,
        role TEXT NOT NULL,
        content TEXT NOT NULL,
        partial INTEGER NOT NULL DEFAULT 0,
        provider TEXT,
        model TEXT
    );
    CREATE INDEX messages_conv ON messages(conversation_id, id);
    """,
    # 5: machines that failed us (CDI injection, stuck loading): not offered again.
    """
    CREATE TABLE excluded_machines (
        provider TEXT NOT NULL,
        machine_id TEXT NOT NULL,
        reason TEXT,
        ts REAL NOT NULL,
        PRIMARY KEY (provider, machine_id)
    );
    """,
    # 6: small per-provider counters and facts (requests served, last health latency, ...).
    """
    CREATE TABLE provider_metrics (
        provider TEXT NOT NULL,
        name TEXT NOT NULL,
        value TEXT,
        updated_at REAL NOT NULL,
        PRIMARY KEY (provider, name)
    );
    """,
    # 7: "when did this provider last answer?" is asked on the request path (cold detection).
    """
    CREATE INDEX usage_provider_ts ON usage(provider, ok, ts);
    """,
    # 8: how many containers a Modal deployment keeps warm (they bill whatever the traffic).
    """
    ALTER TABLE instances ADD COLUMN warm_containers INTEGER;
    """,
    # 9: the name of the client key a `gpuctl serve` request came with (`cost report --by key`).
    """
    ALTER TABLE usage ADD COLUMN key_name TEXT;
    """,
)


def connect(path: Path) -> sqlite3.Connection:
    """Open the database at `path` (created 0600), migrated to the latest schema."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        # Create it 0600 before SQLite does: the ledger says what you run and spend.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so writers queue politely
    # (busy timeout) instead of failing on lock upgrades.
    db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
    db.row_factory = sqlite3.Row
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA busy_timeout=30000")
    # WAL + NORMAL: no fsync per commit (a ledger row costs microseconds on the request path);
    # still crash-safe, at worst the last rows before a power loss are lost.
    db.execute("PRAGMA synchronous=NORMAL")
    db.execute("PRAGMA foreign_keys=ON")
    migrate(db)
    return db


@contextlib.contextmanager
def write_transaction(db: sqlite3.Connection) -> Iterator[sqlite3.Connection]:
    """One write transaction, taken up front (BEGIN IMMEDIATE), so a read-modify-write inside it
    is safe across processes; rolled back on any exception."""
    db.execute("BEGIN IMMEDIATE")
    try:
        yield db
    except BaseException:
        db.execute("ROLLBACK")
        raise
    db.execute("COMMIT")


def migrate(db: sqlite3.Connection) -> None:
    """Apply the migrations this database has not seen yet, in one transaction."""
    with write_transaction(db) as tx:
        version = tx.execute("PRAGMA user_version").fetchone()[0]
        for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
            for statement in script.split(";"):
                if statement.strip():
                    tx.execute(statement)
            tx.execute(f"PRAGMA user_version = {number}")


def schema_version(db: sqlite3.Connection) -> int:
    return int(db.execute("PRAGMA user_version").fetchone()[0])
