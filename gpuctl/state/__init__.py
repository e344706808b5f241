"""The only package that opens the database: instances, the usage ledger, breaker state,
conversations, per-provider metrics.

`GPUCTL_HOME/state.db` (SQLite) in WAL mode, so a cron `gpuctl cleanup` and a running `gpuctl
chat` can share it. The schema and the connection are `schema.py`'s (migrations are a list
that only grows), the row dataclasses `rows.py`'s; both are re-exported here, so callers import
everything from `gpuctl.state`. Time is injectable (`clock`) so tests never sleep.
"""

from __future__ import annotations

import json
import sqlite3
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import fields
from pathlib import Path
from typing import Any

from gpuctl.state.rows import (
    LIVE_STATUSES,
    BreakerRecord,
    ConversationRow,
    ConversationSummary,
    InstanceRow,
    MessageRow,
    UsageRecord,
    rows_as_dicts,
)
from gpuctl.state.schema import MIGRATIONS, connect, schema_version, write_transaction

__all__ = [
    "LIVE_STATUSES",
    "MIGRATIONS",
    "BreakerRecord",
    "ConversationRow",
    "ConversationSummary",
    "InstanceRow",
    "MessageRow",
    "State",
    "UsageRecord",
    "open_for",
    "open_state",
    "rows_as_dicts",
    "state_path",
]

_INSTANCE_FIELDS = {f.name for f in fields(InstanceRow)} - {"id"}


class State:
    """A connection to the state database. Cheap to open; close it (or use `with`)."""

    def __init__(self, path: Path, *, clock: Callable[[], float] = time.time) -> None:
        self.path = path
        self.clock = clock
        self._db = connect(path)

    # -------------------------------------------------------------- plumbing

    def close(self) -> None:
        self._db.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _tx(self) -> AbstractContextManager[sqlite3.Connection]:
        return write_transaction(self._db)

    @property
    def schema_version(self) -> int:
        return schema_version(self._db)

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
        sql, args = _where("SELECT * FROM instances WHERE destroyed_at IS NULL", ("provider = ?", provider))
        return [InstanceRow(**dict(r)) for r in self._db.execute(sql + " ORDER BY id", args)]

    def instances(self, provider: str | None = None, *, since: float | None = None) -> list[InstanceRow]:
        sql, args = _where("SELECT * FROM instances WHERE 1=1", ("provider = ?", provider),
                           ("(destroyed_at IS NULL OR destroyed_at >= ?)", since))
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
        sql, args = _where("SELECT * FROM usage WHERE 1=1", ("ts >= ?", since), ("provider = ?", provider))
        out = []
        for row in self._db.execute(sql + " ORDER BY ts, id", args):
            data = dict(row)
            data.pop("id")
            data["ok"] = bool(data["ok"])
            out.append(UsageRecord(**data))
        return out

    def last_usage_at(self, provider: str, *, endpoint: str | None = None) -> float | None:
        sql, args = _where("SELECT MAX(ts) FROM usage WHERE provider = ? AND ok = 1", ("endpoint = ?", endpoint))
        value = self._db.execute(sql, [provider, *args]).fetchone()[0]
        return float(value) if value is not None else None

    # -------------------------------------------------------------- breakers

    def get_breaker(self, provider: str) -> BreakerRecord:
        row = self._db.execute("SELECT * FROM breakers WHERE provider = ?", (provider,)).fetchone()
        return BreakerRecord(**dict(row)) if row else BreakerRecord(provider=provider)

    def put_breaker(self, record: BreakerRecord) -> None:
        with self._tx() as db:
            _write_breaker(db, record.provider, record, self.clock())

    def update_breaker(self, provider: str, change: Callable[[BreakerRecord], BreakerRecord]) -> BreakerRecord:
        """Read-modify-write one breaker inside a single write transaction (safe across processes)."""
        with self._tx() as db:
            row = db.execute("SELECT * FROM breakers WHERE provider = ?", (provider,)).fetchone()
            current = BreakerRecord(**dict(row)) if row else BreakerRecord(provider=provider)
            new = change(current)
            _write_breaker(db, provider, new, self.clock())
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
                    provider: str | None = None, model: str | None = None,
                    tokens: tuple[int, int] | None = None) -> int:
        """`tokens`: an answer's (prompt, completion) usage, when the provider reported it."""
        now = self.clock()
        prompt, completion = tokens if tokens is not None else (None, None)
        with self._tx() as db:
            cur = db.execute(
                "INSERT INTO messages (conversation_id, ts, role, content, partial, provider, model, prompt_tokens, "
                "completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, now, role, content, 1 if partial else 0, provider, model, prompt, completion),
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

    def conversations(self, limit: int | None = None) -> tuple[list[ConversationSummary], int]:
        """The stored conversations, most recently active first (at most `limit`), and how many
        there are in all."""
        total = int(self._db.execute("SELECT COUNT(*) FROM conversations").fetchone()[0])
        rows = self._db.execute(
            "SELECT c.id, c.created_at, c.updated_at, c.title, c.profile, COUNT(m.id) AS messages, "
            "COALESCE(SUM(COALESCE(m.prompt_tokens, 0) + COALESCE(m.completion_tokens, 0)), 0) AS tokens, "
            "(SELECT l.provider FROM messages l WHERE l.conversation_id = c.id AND l.provider IS NOT NULL "
            " ORDER BY l.id DESC LIMIT 1) AS provider "
            "FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id "
            "GROUP BY c.id, c.created_at, c.updated_at, c.title, c.profile "
            "ORDER BY c.updated_at DESC, c.id DESC" + ("" if limit is None else " LIMIT ?"),
            () if limit is None else (limit,))
        return [ConversationSummary(**dict(r)) for r in rows], total

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
            _write_metric(db, provider, name, value, self.clock())

    def bump_metric(self, provider: str, name: str, by: float = 1) -> float:
        with self._tx() as db:
            row = db.execute("SELECT value FROM provider_metrics WHERE provider = ? AND name = ?", (provider, name)).fetchone()
            value = (json.loads(row["value"]) if row else 0) + by
            _write_metric(db, provider, name, value, self.clock())
            return float(value)

    def metrics(self, provider: str) -> dict[str, Any]:
        rows = self._db.execute("SELECT name, value FROM provider_metrics WHERE provider = ?", (provider,))
        return {r["name"]: json.loads(r["value"]) for r in rows}


def _where(sql: str, *conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """`sql` with ` AND <condition>` for each condition whose value is not None, and the values."""
    used = [(condition, value) for condition, value in conditions if value is not None]
    return sql + "".join(f" AND {condition}" for condition, _ in used), [value for _, value in used]


def _write_breaker(db: sqlite3.Connection, provider: str, record: BreakerRecord, now: float) -> None:
    db.execute(
        "INSERT OR REPLACE INTO breakers (provider, state, failures, opened_at, open_until, last_error, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?)",
        (provider, record.state, record.failures, record.opened_at, record.open_until, record.last_error, now),
    )


def _write_metric(db: sqlite3.Connection, provider: str, name: str, value: Any, now: float) -> None:
    db.execute(
        "INSERT OR REPLACE INTO provider_metrics (provider, name, value, updated_at) VALUES (?, ?, ?, ?)",
        (provider, name, json.dumps(value), now),
    )


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
