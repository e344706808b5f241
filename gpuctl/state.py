"""The only module that opens SQLite: instances, the usage ledger, breaker state, conversations.

`GPUCTL_HOME/state.db` in WAL mode, so a cron `gpuctl cleanup` and a running `gpuctl chat` can
share it. Migrations are a list that only grows: never edit one that has shipped, append.
Time is injectable (`clock`) so tests never sleep.
"""

from __future__ import annotations

import contextlib
import json
import os
import sqlite3
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, fields
from pathlib import Path
from typing import Any

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
)

LIVE_STATUSES = ("intent", "created", "loading", "running", "ready", "failed")


@dataclass(frozen=True)
class InstanceRow:
    id: int
    provider: str
    remote_id: str | None
    label: str
    profile: str | None
    gpu: str | None
    dph: str | None
    offer_id: str | None
    machine_id: str | None
    status: str
    status_msg: str | None
    endpoint: str | None
    created_at: float
    ready_at: float | None
    destroyed_at: float | None
    cost: str | None

    @property
    def live(self) -> bool:
        return self.destroyed_at is None


@dataclass(frozen=True)
class UsageRecord:
    ts: float
    provider: str
    model: str | None = None
    prompt_tokens: int = 0
    completion_tokens: int = 0
    latency_s: float | None = None
    ttft_s: float | None = None
    cost: str | None = None  # Decimal as text
    ok: bool = True
    error: str | None = None
    fallback_reason: str | None = None
    endpoint: str | None = None
    profile: str | None = None


@dataclass(frozen=True)
class BreakerRecord:
    provider: str
    state: str = "closed"  # closed | open | half_open
    failures: int = 0
    opened_at: float | None = None
    open_until: float | None = None
    last_error: str | None = None
    updated_at: float = 0.0


@dataclass(frozen=True)
class MessageRow:
    id: int
    conversation_id: int
    ts: float
    role: str
    content: str
    partial: bool
    provider: str | None
    model: str | None


@dataclass(frozen=True)
class ConversationRow:
    id: int
    created_at: float
    updated_at: float
    title: str | None
    profile: str | None
    system_prompt: str | None


_INSTANCE_FIELDS = {f.name for f in fields(InstanceRow)} - {"id"}


class State:
    """A connection to the state database. Cheap to open; close it (or use `with`)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        if not path.exists():
            # Create it 0600 before SQLite does: the ledger says what you run and spend.
            os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
        # isolation_level=None: we issue BEGIN IMMEDIATE ourselves so writers queue politely
        # (busy timeout) instead of failing on lock upgrades.
        self._db = sqlite3.connect(path, timeout=30.0, isolation_level=None, check_same_thread=False)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA busy_timeout=30000")
        # WAL + NORMAL: no fsync per commit (a ledger row costs microseconds on the request path);
        # still crash-safe, at worst the last rows before a power loss are lost.
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.execute("PRAGMA foreign_keys=ON")
        self._migrate()

    # -------------------------------------------------------------- plumbing

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @contextlib.contextmanager
    def _tx(self) -> Iterator[sqlite3.Connection]:
        self._db.execute("BEGIN IMMEDIATE")
        try:
            yield self._db
        except BaseException:
            self._db.execute("ROLLBACK")
            raise
        self._db.execute("COMMIT")

    def _migrate(self) -> None:
        with self._tx() as db:
            version = db.execute("PRAGMA user_version").fetchone()[0]
            for number, script in enumerate(MIGRATIONS[version:], start=version + 1):
                for statement in script.split(";"):
                    if statement.strip():
                        db.execute(statement)
                db.execute(f"PRAGMA user_version = {number}")

    @property
    def schema_version(self) -> int:
        return int(self._db.execute("PRAGMA user_version").fetchone()[0])

    # -------------------------------------------------------------- instances

    def add_instance_intent(
        self,
        *,
        provider: str,
        label: str,
        profile: str | None = None,
        gpu: str | None = None,
        dph: str | None = None,
        offer_id: str | None = None,
        machine_id: str | None = None,
    ) -> int:
        """Record that we are about to create an instance; returns the ledger row id."""
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO instances (provider, label, profile, gpu, dph, offer_id, machine_id, status, created_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?, 'intent', ?)",
                (provider, label, profile, gpu, dph, offer_id, machine_id, self.clock()),
            )
            return int(cur.lastrowid or 0)

    def update_instance(self, row_id: int, **changes: Any) -> None:
        unknown = set(changes) - _INSTANCE_FIELDS
        if unknown:
            raise ValueError(f"unknown instance fields: {sorted(unknown)}")
        if not changes:
            return
        cols = ", ".join(f"{name} = ?" for name in changes)
        with self._tx() as db:
            db.execute(f"UPDATE instances SET {cols} WHERE id = ?", (*changes.values(), row_id))

    def set_instance_remote_id(self, row_id: int, remote_id: str) -> None:
        self.update_instance(row_id, remote_id=str(remote_id), status="created")

    def mark_instance_destroyed(self, row_id: int, *, cost: str | None = None, at: float | None = None) -> None:
        self.update_instance(row_id, status="destroyed", destroyed_at=self.clock() if at is None else at, cost=cost)

    def get_instance(self, row_id: int) -> InstanceRow | None:
        row = self._db.execute("SELECT * FROM instances WHERE id = ?", (row_id,)).fetchone()
        return InstanceRow(**dict(row)) if row else None

    def instance_by_remote(self, provider: str, remote_id: str) -> InstanceRow | None:
        row = self._db.execute(
            "SELECT * FROM instances WHERE provider = ? AND remote_id = ? ORDER BY id DESC LIMIT 1",
            (provider, str(remote_id)),
        ).fetchone()
        return InstanceRow(**dict(row)) if row else None

    def live_instances(self, provider: str | None = None) -> list[InstanceRow]:
        """Rows not yet marked destroyed (including intents whose create may have gone through)."""
        sql = "SELECT * FROM instances WHERE destroyed_at IS NULL"
        args: tuple[Any, ...] = ()
        if provider is not None:
            sql += " AND provider = ?"
            args = (provider,)
        return [InstanceRow(**dict(r)) for r in self._db.execute(sql + " ORDER BY id", args)]

    def instances(self, provider: str | None = None, *, since: float | None = None) -> list[InstanceRow]:
        sql = "SELECT * FROM instances WHERE 1=1"
        args: list[Any] = []
        if provider is not None:
            sql += " AND provider = ?"
            args.append(provider)
        if since is not None:
            sql += " AND (destroyed_at IS NULL OR destroyed_at >= ?)"
            args.append(since)
        return [InstanceRow(**dict(r)) for r in self._db.execute(sql + " ORDER BY id", args)]

    # -------------------------------------------------------------- machines

    def exclude_machine(self, provider: str, machine_id: str, reason: str) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO excluded_machines (provider, machine_id, reason, ts) VALUES (?, ?, ?, ?)",
                (provider, str(machine_id), reason, self.clock()),
            )

    def excluded_machines(self, provider: str) -> dict[str, str]:
        rows = self._db.execute("SELECT machine_id, reason FROM excluded_machines WHERE provider = ?", (provider,))
        return {r["machine_id"]: r["reason"] for r in rows}

    # -------------------------------------------------------------- usage ledger

    def record_usage(self, record: UsageRecord) -> int:
        data = {f.name: getattr(record, f.name) for f in fields(UsageRecord)}
        data["ok"] = 1 if record.ok else 0
        cols = ", ".join(data)
        marks = ", ".join("?" for _ in data)
        with self._tx() as db:
            cur = db.execute(f"INSERT INTO usage ({cols}) VALUES ({marks})", tuple(data.values()))
            return int(cur.lastrowid or 0)

    def usage_since(self, since: float | None = None, *, provider: str | None = None) -> list[UsageRecord]:
        sql = "SELECT * FROM usage WHERE 1=1"
        args: list[Any] = []
        if since is not None:
            sql += " AND ts >= ?"
            args.append(since)
        if provider is not None:
            sql += " AND provider = ?"
            args.append(provider)
        out = []
        for row in self._db.execute(sql + " ORDER BY ts, id", args):
            data = dict(row)
            data.pop("id")
            data["ok"] = bool(data["ok"])
            out.append(UsageRecord(**data))
        return out

    def last_usage_at(self, provider: str, *, endpoint: str | None = None) -> float | None:
        sql = "SELECT MAX(ts) FROM usage WHERE provider = ? AND ok = 1"
        args: list[Any] = [provider]
        if endpoint is not None:
            sql += " AND endpoint = ?"
            args.append(endpoint)
        value = self._db.execute(sql, args).fetchone()[0]
        return float(value) if value is not None else None

    # -------------------------------------------------------------- breakers

    def get_breaker(self, provider: str) -> BreakerRecord:
        row = self._db.execute("SELECT * FROM breakers WHERE provider = ?", (provider,)).fetchone()
        return BreakerRecord(**dict(row)) if row else BreakerRecord(provider=provider)

    def put_breaker(self, record: BreakerRecord) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO breakers (provider, state, failures, opened_at, open_until, last_error, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (record.provider, record.state, record.failures, record.opened_at, record.open_until,
                 record.last_error, self.clock()),
            )

    def update_breaker(self, provider: str, change: Callable[[BreakerRecord], BreakerRecord]) -> BreakerRecord:
        """Read-modify-write one breaker inside a single write transaction (safe across processes)."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM breakers WHERE provider = ?", (provider,)).fetchone()
            current = BreakerRecord(**dict(row)) if row else BreakerRecord(provider=provider)
            new = change(current)
            db.execute(
                "INSERT OR REPLACE INTO breakers (provider, state, failures, opened_at, open_until, last_error, updated_at)"
                " VALUES (?, ?, ?, ?, ?, ?, ?)",
                (provider, new.state, new.failures, new.opened_at, new.open_until, new.last_error, self.clock()),
            )
            return new

    # -------------------------------------------------------------- conversations

    def create_conversation(self, *, title: str | None = None, profile: str | None = None,
                            system_prompt: str | None = None) -> int:
        now = self.clock()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO conversations (created_at, updated_at, title, profile, system_prompt) VALUES (?, ?, ?, ?, ?)",
                (now, now, title, profile, system_prompt),
            )
            return int(cur.lastrowid or 0)

    def get_conversation(self, conversation_id: int) -> ConversationRow | None:
        if not 0 < conversation_id < 2**63:  # SQLite integers are 64-bit: no such row
            return None
        row = self._db.execute("SELECT * FROM conversations WHERE id = ?", (conversation_id,)).fetchone()
        return ConversationRow(**dict(row)) if row else None

    def last_conversation(self) -> ConversationRow | None:
        row = self._db.execute("SELECT * FROM conversations ORDER BY updated_at DESC, id DESC LIMIT 1").fetchone()
        return ConversationRow(**dict(row)) if row else None

    def update_conversation(self, conversation_id: int, *, title: str | None = None,
                            system_prompt: str | None = None) -> None:
        with self._tx() as db:
            if title is not None:
                db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
            if system_prompt is not None:
                db.execute("UPDATE conversations SET system_prompt = ? WHERE id = ?", (system_prompt, conversation_id))

    def add_message(self, conversation_id: int, role: str, content: str, *, partial: bool = False,
                    provider: str | None = None, model: str | None = None) -> int:
        now = self.clock()
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO messages (conversation_id, ts, role, content, partial, provider, model) VALUES (?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, now, role, content, 1 if partial else 0, provider, model),
            )
            db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
            return int(cur.lastrowid or 0)

    def messages(self, conversation_id: int) -> list[MessageRow]:
        rows = self._db.execute("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,))
        out = []
        for row in rows:
            data = dict(row)
            data["partial"] = bool(data["partial"])
            out.append(MessageRow(**data))
        return out

    def clear_messages(self, conversation_id: int) -> None:
        with self._tx() as db:
            db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))

    def delete_messages(self, conversation_id: int, message_ids: Sequence[int]) -> None:
        """Remove some messages of one conversation (chat's /retry replaces the last exchange)."""
        with self._tx() as db:
            db.executemany("DELETE FROM messages WHERE conversation_id = ? AND id = ?",
                           [(conversation_id, mid) for mid in message_ids])

    # -------------------------------------------------------------- metrics

    def set_metric(self, provider: str, name: str, value: Any) -> None:
        with self._tx() as db:
            db.execute(
                "INSERT OR REPLACE INTO provider_metrics (provider, name, value, updated_at) VALUES (?, ?, ?, ?)",
                (provider, name, json.dumps(value), self.clock()),
            )

    def bump_metric(self, provider: str, name: str, by: float = 1) -> float:
        with self._tx() as db:
            row = db.execute("SELECT value FROM provider_metrics WHERE provider = ? AND name = ?", (provider, name)).fetchone()
            value = (json.loads(row["value"]) if row else 0) + by
            db.execute(
                "INSERT OR REPLACE INTO provider_metrics (provider, name, value, updated_at) VALUES (?, ?, ?, ?)",
                (provider, name, json.dumps(value), self.clock()),
            )
            return float(value)

    def metrics(self, provider: str) -> dict[str, Any]:
        rows = self._db.execute("SELECT name, value FROM provider_metrics WHERE provider = ?", (provider,))
        return {r["name"]: json.loads(r["value"]) for r in rows}


def state_path(home: Path) -> Path:
    return home / "state.db"


def open_state(home: Path, *, clock: Callable[[], float] = time.time) -> State:
    return State(state_path(home), clock=clock)


def open_for(settings: Any, *, clock: Callable[[], float] = time.time) -> State:
    """The one way code gets the state for resolved settings (the command context, the backend
    manager, the original package's orchestrators): GPUCTL_HOME is created if needed, with a
    clear error when it cannot be."""
    from gpuctl.config import ensure_home

    return open_state(ensure_home(settings.home), clock=clock)


def rows_as_dicts(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Dataclass rows as plain dicts, for --json."""
    return [{f.name: getattr(r, f.name) for f in fields(r)} for r in rows]
