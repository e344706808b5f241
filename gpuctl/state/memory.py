"""What routing reads and writes on every request: usage rows, breakers, per-provider counters.

`RoutingMemory` is the part of `State` on the request path. On SQLite each call is one local
statement (microseconds). On PostgreSQL nothing here waits on the network per request: usage
rows and counter bumps are queued for the background writer (`hot.Writer`), breakers, counters
and "last answered at" are read through a cache at most `hot.CACHE_S` stale (writes go through
and update it), and with the database unreachable routing goes on with this process's memory
while rows wait in the local spool (`hot.Spool`).

Must not: decide anything about routing (gpuctl.routing does), or print.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable, Sequence
from contextlib import AbstractContextManager
from dataclasses import fields
from pathlib import Path
from typing import Any, Protocol

from gpuctl.state.errors import StateUnavailableError
from gpuctl.state.hot import Bump, Row, Spool, TtlCache, Writer
from gpuctl.state.rows import BreakerRecord, UsageRecord

USAGE_COLUMNS = (*(f.name for f in fields(UsageRecord)), "uid")
INSERT_USAGE = (f"INSERT INTO usage ({', '.join(USAGE_COLUMNS)}) VALUES ({', '.join('?' for _ in USAGE_COLUMNS)})"
                " ON CONFLICT (uid) DO NOTHING")
_OK = USAGE_COLUMNS.index("ok")


class Db(Protocol):
    """What the backends (sqlite.SqliteDb, pg.PgDb) offer; see either for the details.
    `wait=False`: refused at once (StateUnavailableError) while a shared database is down."""

    kind: str
    where: str

    @property
    def available(self) -> bool: ...
    def query(self, sql: str, args: Sequence[Any] = (), *, wait: bool = True) -> list[dict[str, Any]]: ...
    def rows(self, sql: str, args: Sequence[Any] = ()) -> list[tuple[Any, ...]]: ...
    def execute(self, sql: str, args: Sequence[Any] = ()) -> int: ...
    def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None: ...
    def insert(self, sql: str, args: Sequence[Any] = ()) -> int: ...
    def transaction(self, *, wait: bool = True) -> AbstractContextManager[Any]: ...
    def lock(self, name: str, *, blocking: bool = True, ephemeral: bool = False) -> AbstractContextManager[bool]: ...
    def lock_held(self, name: str) -> bool: ...
    def serialised(self, name: str) -> AbstractContextManager[None]: ...
    def close(self) -> None: ...
    @property
    def schema_version(self) -> int: ...


class RoutingMemory:
    """Usage rows, breakers and counters; mixed into `State`, which sets `_db`, `clock`, `host`."""

    _db: Db
    clock: Callable[[], float]
    host: str | None
    _writer: Writer | None = None
    _writer_db: Db | None = None
    _cache: TtlCache | None = None

    def _start_hot_path(self, writer_db: Db, spool: Path) -> None:
        """A shared database: batch the writes (on a connection of the writer's own), cache the reads."""
        self._writer_db = writer_db
        self._cache = TtlCache()
        self._last_ok: dict[tuple[str, str | None], float] = {}
        self._spool = Spool(spool)
        self._writer = Writer(self._write_batch, self._spool, on_stuck=writer_db.close)

    def _stop_hot_path(self) -> None:
        if self._writer is not None:
            self._writer.close()
            self._writer = None
        if self._writer_db is not None:
            self._writer_db.close()

    def flush(self) -> bool:
        """Write every queued row now (True), or spool them (False: the database is down)."""
        return self._writer.flush() if self._writer is not None else True

    @property
    def spooled(self) -> bool:
        """Rows are waiting in the local spool for the database to come back."""
        spool: Spool | None = getattr(self, "_spool", None)
        return spool is not None and spool.pending()

    # -------------------------------------------------------------- usage

    def record_usage(self, record: UsageRecord) -> None:
        """One usage row: written now on SQLite; on PostgreSQL queued, written within ~200 ms."""
        data = {f.name: getattr(record, f.name) for f in fields(UsageRecord)}
        data["ok"] = 1 if record.ok else 0
        data["tokens_estimated"] = 1 if record.tokens_estimated else 0  # INTEGER on both backends
        data["host"] = record.host or self.host
        row = (*data.values(), uuid.uuid4().hex)
        if self._writer is None:
            with self._db.transaction():
                self._db.execute(INSERT_USAGE, row)
            return
        self._writer.put(row)
        if record.ok:
            for key in ((record.provider, record.endpoint), (record.provider, None)):
                if record.ts > self._last_ok.get(key, float("-inf")):
                    self._last_ok[key] = record.ts

    def _write_batch(self, rows: list[Row], bumps: list[Bump]) -> None:
        """The writer's one transaction: rows (each once, by its uid) and counter bumps."""
        db = self._writer_db
        assert db is not None
        with db.transaction():
            if rows:
                db.executemany(INSERT_USAGE, [(*r[:_OK], int(bool(r[_OK])), *r[_OK + 1:]) for r in rows])
            for provider, name, by in bumps:
                _bump(db, provider, name, by, self.clock())
        if bumps and self._cache is not None:
            for provider in {p for p, _, _ in bumps}:  # re-read: the pending bumps are in now
                self._cache.drop(("metrics", provider))

    def last_usage_at(self, provider: str, *, endpoint: str | None = None) -> float | None:
        """When this provider (at this endpoint) last answered, by the ledger."""
        sql = "SELECT MAX(ts) AS ts FROM usage WHERE provider = ? AND ok = 1"
        args: list[Any] = [provider]
        if endpoint is not None:
            sql, args = sql + " AND endpoint = ?", [provider, endpoint]
        if self._cache is None:
            value = self._db.query(sql, args)[0]["ts"]
            return float(value) if value is not None else None
        key = ("last_ok", provider, endpoint)
        fresh, value = self._cache.fresh(key)
        if not fresh:
            try:
                value = self._db.query(sql, args, wait=False)[0]["ts"]
                self._cache.put(key, value)
            except StateUnavailableError:
                value = self._cache.known(key)
        mine = self._last_ok.get((provider, endpoint))
        best = max((v for v in (value, mine) if v is not None), default=None)
        return float(best) if best is not None else None

    # -------------------------------------------------------------- breakers

    def get_breaker(self, provider: str) -> BreakerRecord:
        sql = "SELECT * FROM breakers WHERE provider = ?"
        if self._cache is None:
            rows = self._db.query(sql, (provider,))
            return BreakerRecord(**rows[0]) if rows else BreakerRecord(provider=provider)
        key = ("breaker", provider)
        fresh, record = self._cache.fresh(key)
        if fresh:
            return record  # type: ignore[no-any-return]
        try:
            rows = self._db.query(sql, (provider,), wait=False)
        except StateUnavailableError:
            return self._cache.known(key, BreakerRecord(provider=provider))  # type: ignore[no-any-return]
        record = BreakerRecord(**rows[0]) if rows else BreakerRecord(provider=provider)
        self._cache.put(key, record)
        return record

    def put_breaker(self, record: BreakerRecord) -> None:
        self.update_breaker(record.provider, lambda _current: record)

    def update_breaker(self, provider: str, change: Callable[[BreakerRecord], BreakerRecord]) -> BreakerRecord:
        """Read-modify-write one breaker in one transaction (safe across processes and hosts).
        With the shared database unreachable, the change is made to this process's memory."""
        try:
            with self._db.transaction(wait=self._cache is None):
                if self._cache is not None:  # lock the row, so two hosts' changes queue
                    self._db.execute("INSERT INTO breakers (provider, state, failures, updated_at)"
                                     " VALUES (?, 'closed', 0, ?) ON CONFLICT (provider) DO NOTHING",
                                     (provider, self.clock()))
                    rows = self._db.query("SELECT * FROM breakers WHERE provider = ? FOR UPDATE", (provider,))
                else:
                    rows = self._db.query("SELECT * FROM breakers WHERE provider = ?", (provider,))
                current = BreakerRecord(**rows[0]) if rows else BreakerRecord(provider=provider)
                new = change(current)
                _write_breaker(self._db, provider, new, self.clock())
        except StateUnavailableError:
            if self._cache is None:
                raise
            new = change(self._cache.known(("breaker", provider), BreakerRecord(provider=provider)))
        if self._cache is not None:
            self._cache.put(("breaker", provider), new)
        return new

    # -------------------------------------------------------------- metrics

    def set_metric(self, provider: str, name: str, value: Any) -> None:
        if self._cache is not None:
            key = ("metrics", provider)
            self._cache.put(key, {**self._cache.known(key, {}), name: value})
        try:
            with self._db.transaction(wait=self._cache is None):
                _write_metric(self._db, provider, name, value, self.clock())
        except StateUnavailableError:
            if self._cache is None:
                raise

    def bump_metric(self, provider: str, name: str, by: float = 1) -> float:
        if self._writer is not None:
            self._writer.bump(provider, name, by)
            return float(self.metrics(provider).get(name) or 0)
        with self._db.transaction():
            value = _bump(self._db, provider, name, by, self.clock())
        return float(value)

    def metrics(self, provider: str) -> dict[str, Any]:
        sql = "SELECT name, value FROM provider_metrics WHERE provider = ?"
        if self._cache is None:
            return {r["name"]: json.loads(r["value"]) for r in self._db.query(sql, (provider,))}
        key = ("metrics", provider)
        fresh, stored = self._cache.fresh(key)
        if not fresh:
            try:
                stored = {r["name"]: json.loads(r["value"]) for r in self._db.query(sql, (provider,), wait=False)}
                self._cache.put(key, stored)
            except StateUnavailableError:
                stored = self._cache.known(key, {})
        out = dict(stored)
        assert self._writer is not None
        for name, pending in self._writer.pending_bumps(provider).items():
            out[name] = (out.get(name) or 0) + pending
        return out


def _bump(db: Db, provider: str, name: str, by: float, now: float) -> float:
    rows = db.query("SELECT value FROM provider_metrics WHERE provider = ? AND name = ?"
                    + (" FOR UPDATE" if db.kind == "postgresql" else ""), (provider, name))
    value = (json.loads(rows[0]["value"]) if rows else 0) + by
    _write_metric(db, provider, name, value, now)
    return float(value)


def _write_breaker(db: Db, provider: str, record: BreakerRecord, now: float) -> None:
    db.execute(
        "INSERT INTO breakers (provider, state, failures, opened_at, open_until, last_error, updated_at)"
        " VALUES (?, ?, ?, ?, ?, ?, ?) ON CONFLICT (provider) DO UPDATE SET state = excluded.state,"
        " failures = excluded.failures, opened_at = excluded.opened_at, open_until = excluded.open_until,"
        " last_error = excluded.last_error, updated_at = excluded.updated_at",
        (provider, record.state, record.failures, record.opened_at, record.open_until, record.last_error, now),
    )


def _write_metric(db: Db, provider: str, name: str, value: Any, now: float) -> None:
    db.execute(
        "INSERT INTO provider_metrics (provider, name, value, updated_at) VALUES (?, ?, ?, ?)"
        " ON CONFLICT (provider, name) DO UPDATE SET value = excluded.value, updated_at = excluded.updated_at",
        (provider, name, json.dumps(value), now),
    )
