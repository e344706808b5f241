"""`State`: the one object code holds to read and write the state, on either backend.

Owns the SQL of the tables (the same statements on SQLite and PostgreSQL: `?` placeholders,
`ON CONFLICT` upserts), the instance ledger, excluded machines, conversations, the locks
(`lock`, `try_lock`, `lock_held`, `serialised`) and what `gpuctl state info` shows. The request
path's part (usage rows, breakers, counters) is `memory.RoutingMemory`'s. Which backend, and
from which settings, is `gpuctl.state.open_for`'s choice.

Must not: print, or import psycopg at module level (only a PostgreSQL state imports it).
"""

from __future__ import annotations

import socket
import time
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import dataclass, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

from gpuctl.errors import ConfigError
from gpuctl.state.conversations import ConversationStore
from gpuctl.state.hot import take_over_spool
from gpuctl.state.memory import Db, RoutingMemory
from gpuctl.state.rows import (
    InstanceRow,
    UsageGroup,
    UsageRecord,
    UsageSummary,
    UsageTimes,
)
from gpuctl.state.schema import MIGRATIONS
from gpuctl.state.url import Location

_INSTANCE_FIELDS = {f.name for f in fields(InstanceRow)} - {"id"}
TABLES = ("instances", "usage", "breakers", "conversations", "messages", "excluded_machines", "provider_metrics")


@dataclass(frozen=True)
class StateInfo:
    """What `gpuctl state info` shows (the URL masked)."""

    backend: str
    where: str
    schema_version: int
    known_schema_version: int
    rows: dict[str, int]
    spooled: bool

    def as_dict(self) -> dict[str, Any]:
        return {"backend": self.backend, "url": self.where, "schema_version": self.schema_version,
                "known_schema_version": self.known_schema_version, "rows": self.rows,
                "spool_pending": self.spooled}


class State(ConversationStore, RoutingMemory):
    """The state database. Cheap to open; close it (or use `with`): closing writes what is
    queued. `State(path)` is a SQLite file; `State(location=...)` any backend."""

    def __init__(self, path: Path | None = None, *, clock: Callable[[], float] = time.time,
                 location: Location | None = None, host: str | None = None, lock_timeout_s: float = 30.0,
                 connect_timeout_s: float = 5.0, spool_dir: Path | None = None) -> None:
        if location is None:
            if path is None:
                raise ValueError("State needs a path or a location")
            location = Location("sqlite", str(path), Path(path))
        self.location = location
        self.path = location.path
        self.clock = clock
        self.host = host or socket.gethostname()
        if location.kind == "sqlite":
            from gpuctl.state.sqlite import SqliteDb

            assert location.path is not None
            self._db = SqliteDb(location.path, lock_timeout_s=lock_timeout_s)
            return
        try:
            from gpuctl.state.pg import PgDb
        except ImportError:
            raise ConfigError(f"state.url is a PostgreSQL database ({location.shown}) but psycopg is not installed",
                              hint="pip install 'psycopg[binary]' (it comes with gpuctl's own install)") from None
        opts: dict[str, Any] = {"connect_timeout_s": connect_timeout_s, "lock_timeout_s": lock_timeout_s}
        self._db = PgDb(location, wait=False, **opts)  # unreachable now: routing goes on, money waits
        if spool_dir is None:
            raise ValueError("a shared state needs a spool directory (GPUCTL_HOME)")
        spool = spool_dir / f"spool-{location.tag}.jsonl"
        legacy = spool_dir / f"spool-{location.legacy_tag}.jsonl"
        if legacy != spool:
            take_over_spool(legacy, spool)
        self._start_hot_path(PgDb(location, lazy=True, **opts), spool)

    # -------------------------------------------------------------- plumbing

    def close(self) -> None:
        try:
            self._stop_hot_path()
        finally:
            self._db.close()

    def __enter__(self) -> State:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @property
    def backend(self) -> str:
        return self._db.kind

    @property
    def where(self) -> str:
        """The file, or the URL with its password masked: what messages may show."""
        return self._db.where

    @property
    def schema_version(self) -> int:
        return self._db.schema_version

    def info(self) -> StateInfo:
        """Backend, masked URL, schema version and row counts (queued rows written first)."""
        self.flush()
        counts = {t: int(self._db.query(f"SELECT COUNT(*) AS n FROM {t}")[0]["n"]) for t in TABLES}
        return StateInfo(self.backend, self.where, self.schema_version, len(MIGRATIONS), counts, self.spooled)

    # -------------------------------------------------------------- locks

    def lock(self, name: str, *, blocking: bool = True, ephemeral: bool = False) -> AbstractContextManager[bool]:
        """Hold the lock `name` (across processes; on PostgreSQL across hosts) until exit;
        yields False at once if `blocking=False` and another process holds it. A process that
        dies releases its locks (flock; a PostgreSQL session). `ephemeral`: a name used once."""
        return self._db.lock(name, blocking=blocking, ephemeral=ephemeral)

    def try_lock(self, name: str, *, ephemeral: bool = False) -> AbstractContextManager[bool]:
        return self.lock(name, blocking=False, ephemeral=ephemeral)

    def lock_held(self, name: str) -> bool:
        """Whether a live process (on any host sharing the database) holds `name` now."""
        return self._db.lock_held(name)

    def serialised(self, name: str) -> AbstractContextManager[None]:
        """One transaction, one process at a time across every host: what is read and written
        inside (through this State) commits together or not at all."""
        return self._db.serialised(name)

    # -------------------------------------------------------------- instances

    def add_instance_intent(self, *, provider: str, label: str, profile: str | None = None, gpu: str | None = None,
                            dph: str | None = None, offer_id: str | None = None,
                            machine_id: str | None = None) -> int:
        """Record that we are about to create an instance; returns the ledger row id."""
        with self._db.transaction():
            return self._db.insert(
                "INSERT INTO instances (provider, label, profile, gpu, dph, offer_id, machine_id, status, created_at,"
                " host) VALUES (?, ?, ?, ?, ?, ?, ?, 'intent', ?, ?)",
                (provider, label, profile, gpu, dph, offer_id, machine_id, self.clock(), self.host),
            )

    def update_instance(self, row_id: int, **changes: Any) -> None:
        unknown = set(changes) - _INSTANCE_FIELDS
        if unknown:
            raise ValueError(f"unknown instance fields: {sorted(unknown)}")
        if not changes:
            return
        cols = ", ".join(f"{name} = ?" for name in changes)
        with self._db.transaction():
            self._db.execute(f"UPDATE instances SET {cols} WHERE id = ?", (*changes.values(), row_id))

    def set_instance_remote_id(self, row_id: int, remote_id: str) -> None:
        self.update_instance(row_id, remote_id=str(remote_id), status="created")

    def mark_instance_destroyed(self, row_id: int, *, cost: str | None = None, at: float | None = None) -> None:
        self.update_instance(row_id, status="destroyed", destroyed_at=self.clock() if at is None else at, cost=cost)

    def get_instance(self, row_id: int) -> InstanceRow | None:
        rows = self._db.query("SELECT * FROM instances WHERE id = ?", (row_id,))
        return InstanceRow(**rows[0]) if rows else None

    def instance_by_remote(self, provider: str, remote_id: str) -> InstanceRow | None:
        rows = self._db.query("SELECT * FROM instances WHERE provider = ? AND remote_id = ? ORDER BY id DESC LIMIT 1",
                              (provider, str(remote_id)))
        return InstanceRow(**rows[0]) if rows else None

    def live_instances(self, provider: str | None = None) -> list[InstanceRow]:
        """Rows not yet marked destroyed (including intents whose create may have gone through)."""
        sql, args = _where("SELECT * FROM instances WHERE destroyed_at IS NULL", ("provider = ?", provider))
        return [InstanceRow(**r) for r in self._db.query(sql + " ORDER BY id", args)]

    def instances(self, provider: str | None = None, *, since: float | None = None) -> list[InstanceRow]:
        sql, args = _where("SELECT * FROM instances WHERE 1=1", ("provider = ?", provider),
                           ("(destroyed_at IS NULL OR destroyed_at >= ?)", since))
        return [InstanceRow(**r) for r in self._db.query(sql + " ORDER BY id", args)]

    # -------------------------------------------------------------- machines

    def exclude_machine(self, provider: str, machine_id: str, reason: str) -> None:
        with self._db.transaction():
            self._db.execute(
                "INSERT INTO excluded_machines (provider, machine_id, reason, ts) VALUES (?, ?, ?, ?)"
                " ON CONFLICT (provider, machine_id) DO UPDATE SET reason = excluded.reason, ts = excluded.ts",
                (provider, str(machine_id), reason, self.clock()),
            )

    def excluded_machines(self, provider: str, *, since: float | None = None) -> dict[str, str]:
        """machine id → why it was excluded; `since`: only exclusions made at or after it."""
        sql, args = _where("SELECT machine_id, reason FROM excluded_machines WHERE provider = ?", ("ts >= ?", since))
        rows = self._db.query(sql, (provider, *args))
        return {r["machine_id"]: r["reason"] for r in rows}

    def forget_excluded_machines(self, provider: str, machine_ids: Sequence[str] | None = None) -> int:
        """Drop these exclusions (None: every one of `provider`); returns how many there were."""
        sql, args = "DELETE FROM excluded_machines WHERE provider = ?", [provider]
        if machine_ids is not None:
            if not machine_ids:
                return 0
            sql += f" AND machine_id IN ({', '.join('?' for _ in machine_ids)})"
            args += [str(m) for m in machine_ids]
        with self._db.transaction():
            return self._db.execute(sql, tuple(args))

    # -------------------------------------------------------------- usage (reads)

    def usage_since(self, since: float | None = None, *, provider: str | None = None) -> list[UsageRecord]:
        """Usage rows in time order; what this process queued is written first."""
        self.flush()
        sql, args = _where("SELECT * FROM usage WHERE 1=1", ("ts >= ?", since), ("provider = ?", provider))
        return [usage_record(data) for data in self._db.query(sql + " ORDER BY ts, id", args)]

    def usage_summary(self, since: float, until: float, *, by: str = "provider", priced_now: Sequence[str] = (),
                      replay: str | None = None) -> UsageSummary:
        """`cost report`'s view of [since, until] in a few reads, however many rows: the groups
        per provider and `by` (model, host or day; counted and summed by the database, costs
        exactly), the answered rows of `priced_now` providers that carry no cost, and the
        answered requests of `replay` (`usage_times`; with their hosts when `by` is host)."""
        self.flush()
        pg = self._db.kind == "postgresql"
        day = "CAST(FLOOR(ts / 86400) AS BIGINT)" if pg else "CAST(ts / 86400 AS INTEGER)"
        # By provider, model or host the groups follow the covering index usage_report: one pass.
        cols = {"provider": ("provider", "NULL", "NULL", "NULL", "NULL"),
                "model": ("provider", "model", "NULL", "NULL", "NULL"),
                "host": ("provider", "model", "host", "NULL", "NULL"), "day": ("provider", "NULL", "NULL", day, "NULL"),
                "key": ("provider", "NULL", "NULL", "NULL", "key_name")}[by]
        keys = ", ".join(c for c in cols if c != "NULL")
        # Costs are decimal text, summed exactly: PostgreSQL as NUMERIC; SQLite has no decimal
        # type, so its groups hand the texts over joined (in C: faster than any per-row callback).
        total = "SUM(CAST(cost AS NUMERIC))" if pg else "group_concat(cost, ',')"
        # SQLite's `+ts`: the period bound must not steer the planner away from the covering index.
        # Not on PostgreSQL: there `+ts` is an expression it cannot estimate, and it would plan
        # for a few rows (a sort spilled to disk instead of hashing a million).
        ts = "ts" if pg else "+ts"
        groups = [UsageGroup(p, m, h, None if d is None else int(d), int(n), int(f or 0), int(t or 0), _sum(c), k)
                  for p, m, h, d, k, n, f, t, c in self._db.rows(
                      f"SELECT {', '.join(cols)}, COUNT(*), SUM(CASE WHEN ok = 0 THEN 1 ELSE 0 END),"
                      f" SUM(prompt_tokens + completion_tokens), {total} FROM usage WHERE {ts} >= ? AND {ts} <= ?"
                      f" GROUP BY {keys}", (since, until))]
        unpriced: list[UsageRecord] = []
        if priced_now:  # the partial index usage_unpriced holds just these rows
            marks = ", ".join("?" for _ in priced_now)
            for data in self._db.query(f"SELECT * FROM usage WHERE ts >= ? AND ts <= ? AND cost IS NULL AND ok = 1"
                                       f" AND provider IN ({marks}) ORDER BY ts, id", (since, until, *priced_now)):
                unpriced.append(usage_record(data))
        replayed = self.usage_times(since, until, provider=replay, hosts=by == "host") if replay else UsageTimes([])
        return UsageSummary(groups, unpriced, replayed)

    def usage_times(self, since: float, until: float, *, provider: str | None = None, hosts: bool = False,
                    prompt_sizes: bool = False) -> UsageTimes:
        """The answered requests in [since, until] (of `provider`, or all) as a replay of their
        times reads them (see `UsageTimes`): one provider's come from the covering index
        usage_replay, without a look at the table. `prompt_sizes`: also the requests per prompt
        size (a second read, counted by the database)."""
        self.flush()
        sql, args = _where(" FROM usage WHERE ok = 1 AND ts >= ? AND ts <= ?", ("provider = ?", provider))
        args = [since, until, *args]
        # (ts, id): requests at the same instant in the order they were written (whose host
        # opened a period), as before the index.
        rows = self._db.rows(f"SELECT ts, latency_s, prompt_tokens + completion_tokens{', host' if hosts else ''}"
                             f"{sql} ORDER BY ts, id", args)
        first = self._db.rows(f"SELECT model{sql} AND model IS NOT NULL AND model <> '' ORDER BY ts, id LIMIT 1",
                              args)
        sizes = self._db.rows(f"SELECT prompt_tokens, COUNT(*), SUM(completion_tokens), MIN(completion_tokens){sql}"
                              " GROUP BY prompt_tokens", args) if prompt_sizes else None
        return UsageTimes(rows, first[0][0] if first else None, sizes)

    @property
    def db(self) -> Db:
        """The backend, for the rest of gpuctl.state (copying between backends); not for callers."""
        return self._db


def _sum(costs: Any) -> Decimal:
    """A group's cost: PostgreSQL's exact NUMERIC sum, or SQLite's costs joined by commas."""
    if costs is None:
        return Decimal(0)
    if isinstance(costs, str):
        parts = costs.split(",")
        try:
            total = sum(map(Decimal, parts), Decimal(0))
        except ArithmeticError:
            total = Decimal("NaN")
        return total if total.is_finite() else sum((_decimal(c) for c in parts), Decimal(0))
    return Decimal(costs)


def _decimal(text: str) -> Decimal:
    try:
        d = Decimal(text)
    except ArithmeticError:  # text that is no number adds nothing (as costs.to_decimal reads it)
        return Decimal(0)
    return d if d.is_finite() else Decimal(0)


def _where(sql: str, *conditions: tuple[str, Any]) -> tuple[str, list[Any]]:
    """`sql` with ` AND <condition>` for each condition whose value is not None, and the values."""
    used = [(condition, value) for condition, value in conditions if value is not None]
    return sql + "".join(f" AND {condition}" for condition, _ in used), [value for _, value in used]


def usage_record(data: dict[str, Any]) -> UsageRecord:
    """A usage row read back (either backend) as the record that was written."""
    data.pop("id", None)
    data.pop("uid", None)
    data["ok"] = bool(data["ok"])
    data["tokens_estimated"] = bool(data.get("tokens_estimated"))
    return UsageRecord(**data)
