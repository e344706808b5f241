"""`gpuctl state migrate`: copy one state into another (a SQLite file into a shared PostgreSQL).

Idempotent: every row is matched to the target by what identifies it, not by its id (ids are
the target's own), and a row already there is not copied again:

- usage: its unique id (`uid`; rows written before migration 9 are given one in the source
  first, so a second run matches them); instances: provider + label + created_at (the label
  carries the launch's random nonce); conversations: created_at + title, their messages by
  conversation + time + role; breakers, excluded machines, metrics: their keys (the target's
  value is kept).

`other_rows` counts the target's rows that are not the source's: merging into a database that
already holds another host's state is refused unless asked for (`merge=True`). Everything is
written in one transaction on the target: a failure copies nothing.

Must not: print, or be used by anything but `gpuctl.ops.state`.
"""

from __future__ import annotations

import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpuctl.state.memory import USAGE_COLUMNS
from gpuctl.state.store import State

_INSTANCE_COLS = ("provider", "remote_id", "label", "profile", "gpu", "dph", "offer_id", "machine_id", "status",
                  "status_msg", "endpoint", "created_at", "ready_at", "destroyed_at", "cost", "warm_containers", "host")
_CONVERSATION_COLS = ("created_at", "updated_at", "title", "profile", "system_prompt")
_MESSAGE_COLS = ("conversation_id", "ts", "role", "content", "partial", "provider", "model")
# Tables keyed by their own columns: (table, key columns, other columns).
_KEYED = (
    ("breakers", ("provider",), ("state", "failures", "opened_at", "open_until", "last_error", "updated_at")),
    ("excluded_machines", ("provider", "machine_id"), ("reason", "ts")),
    ("provider_metrics", ("provider", "name"), ("value", "updated_at")),
)


@dataclass
class TableCopy:
    """One table: rows in the source, how many the target already had, how many were copied."""

    source: int = 0
    already: int = 0
    copied: int = 0


@dataclass
class CopyReport:
    tables: dict[str, TableCopy] = field(default_factory=dict)
    other_rows: int = 0  # rows in the target that are not the source's
    dry_run: bool = False

    def table(self, name: str) -> TableCopy:
        return self.tables.setdefault(name, TableCopy())

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": self.dry_run, "other_rows": self.other_rows,
                "tables": {k: {"source": v.source, "already": v.already, "copied": v.copied}
                           for k, v in self.tables.items()}}


def _insert(table: str, cols: Sequence[str]) -> str:
    return f"INSERT INTO {table} ({', '.join(cols)}) VALUES ({', '.join('?' for _ in cols)})"


def copy_state(source: State, target: State, *, dry_run: bool = False,
               refuse: Callable[[CopyReport], None] = lambda report: None) -> CopyReport:
    """Copy what `target` lacks from `source`. `refuse(report)` is called with the counts
    before anything is written (it raises to stop: the target holds other rows)."""
    report = CopyReport(dry_run=dry_run)
    if not dry_run:  # rows from before migration 9 get the uid that matches them next time
        missing = source.db.rows("SELECT id FROM usage WHERE uid IS NULL")
        if missing:
            with source.db.transaction():
                source.db.executemany("UPDATE usage SET uid = ? WHERE id = ?", [(uuid.uuid4().hex, r[0]) for r in missing])
    src, dst = source.db, target.db
    target.flush()
    # One migrate into a database at a time, its plan read inside the same transaction as its
    # writes: two runs at once (one source twice, or two sources without --merge) queue, and
    # the second sees what the first wrote (copies nothing twice, or refuses to merge).
    with dst.serialised("state-migrate"):
        plans = [_plan_usage(src, dst, report), _plan_instances(src, dst, report),
                 _plan_conversations(src, dst, report)]
        plans += [_plan_keyed(src, dst, report, *spec) for spec in _KEYED]
        refuse(report)
        if dry_run:
            return report
        for write in plans:
            write()
    return report


def _count(db: Any, table: str) -> int:
    return int(db.query(f"SELECT COUNT(*) AS n FROM {table}")[0]["n"])


def _plan_usage(src: Any, dst: Any, report: CopyReport) -> Callable[[], None]:
    there = {r[0] for r in dst.rows("SELECT uid FROM usage WHERE uid IS NOT NULL")}
    rows = src.rows(f"SELECT {', '.join(USAGE_COLUMNS)} FROM usage ORDER BY id")
    uid = USAGE_COLUMNS.index("uid")
    new = [r for r in rows if r[uid] is None or r[uid] not in there]
    t = report.table("usage")
    t.source, t.already, t.copied = len(rows), len(rows) - len(new), len(new)
    report.other_rows += _count(dst, "usage") - t.already
    return lambda: dst.executemany(_insert("usage", USAGE_COLUMNS), new) if new else None


def _plan_instances(src: Any, dst: Any, report: CopyReport) -> Callable[[], None]:
    cols = ", ".join(_INSTANCE_COLS)
    key = (_INSTANCE_COLS.index("provider"), _INSTANCE_COLS.index("label"), _INSTANCE_COLS.index("created_at"))
    there = {tuple(r[i] for i in key) for r in dst.rows(f"SELECT {cols} FROM instances")}
    rows = src.rows(f"SELECT {cols} FROM instances ORDER BY id")
    new = [r for r in rows if tuple(r[i] for i in key) not in there]
    t = report.table("instances")
    t.source, t.already, t.copied = len(rows), len(rows) - len(new), len(new)
    report.other_rows += _count(dst, "instances") - t.already
    return lambda: dst.executemany(_insert("instances", _INSTANCE_COLS), new) if new else None


def _plan_conversations(src: Any, dst: Any, report: CopyReport) -> Callable[[], None]:
    there = {(r["created_at"], r["title"]): r["id"] for r in dst.query("SELECT id, created_at, title FROM conversations")}
    convs = src.query(f"SELECT id, {', '.join(_CONVERSATION_COLS)} FROM conversations ORDER BY id")
    msgs = src.rows(f"SELECT {', '.join(_MESSAGE_COLS)} FROM messages ORDER BY id")
    t, m = report.table("conversations"), report.table("messages")
    t.source, m.source = len(convs), len(msgs)
    matched = {c["id"]: there[(c["created_at"], c["title"])] for c in convs if (c["created_at"], c["title"]) in there}
    t.already, t.copied = len(matched), len(convs) - len(matched)
    seen: set[tuple[Any, ...]] = set()
    if matched:
        marks = ", ".join("?" for _ in matched)
        seen = {tuple(r) for r in dst.rows(f"SELECT conversation_id, ts, role FROM messages WHERE conversation_id"
                                           f" IN ({marks})", list(matched.values()))}
    fresh = [r for r in msgs if r[0] not in matched or (matched[r[0]], r[1], r[2]) not in seen]
    m.already, m.copied = len(msgs) - len(fresh), len(fresh)
    report.other_rows += _count(dst, "conversations") - t.already + _count(dst, "messages") - m.already

    def write() -> None:
        ids = dict(matched)
        for c in convs:
            if c["id"] not in ids:
                ids[c["id"]] = dst.insert(_insert("conversations", _CONVERSATION_COLS),
                                          [c[k] for k in _CONVERSATION_COLS])
        if fresh:
            dst.executemany(_insert("messages", _MESSAGE_COLS), [(ids[r[0]], *r[1:]) for r in fresh])

    return write


def _plan_keyed(src: Any, dst: Any, report: CopyReport, table: str, key: Sequence[str],
                other: Sequence[str]) -> Callable[[], None]:
    cols = (*key, *other)
    there = {tuple(r) for r in dst.rows(f"SELECT {', '.join(key)} FROM {table}")}
    rows = src.rows(f"SELECT {', '.join(cols)} FROM {table}")
    new = [r for r in rows if tuple(r[: len(key)]) not in there]
    t = report.table(table)
    t.source, t.already, t.copied = len(rows), len(rows) - len(new), len(new)
    # A key both have (a breaker, a counter) is not "another host's row": the target's value stays.
    report.other_rows += len(there) - t.already
    return lambda: dst.executemany(_insert(table, cols), new) if new else None
