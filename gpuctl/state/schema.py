"""The schema of the state database: the migrations, the same on both backends.

Owns: `MIGRATIONS` (a list that only grows: never edit one that has shipped, append) and the
one translation a migration needs on PostgreSQL (`for_postgres`: SQLite's column types to
PostgreSQL's). Migrations are written in the SQL both run: `INTEGER PRIMARY KEY
AUTOINCREMENT`, `INTEGER`, `REAL`, `TEXT`, `CREATE [UNIQUE] INDEX` (partial: `... WHERE`),
`DROP INDEX`, `ALTER TABLE ... ADD COLUMN`; statements are separated by `;`. Applying them is
each backend's (sqlite.py, pg.py), on open. Part of `gpuctl.state`; nothing outside it imports
this module.
"""

from __future__ import annotations

import re

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
    # 9 (issue 15): shared state. Which machine wrote a usage row or launched an instance
    #    (`cost report --by host`); a writer-made unique id per usage row, so a batch retried
    #    after a dropped connection (or drained from the local spool twice) is written once;
    #    and `cost report`'s scan as a covering index in its grouping order, so a million rows
    #    are counted and summed in one pass without a sort.
    """
    ALTER TABLE usage ADD COLUMN host TEXT;
    ALTER TABLE usage ADD COLUMN uid TEXT;
    ALTER TABLE instances ADD COLUMN host TEXT;
    CREATE UNIQUE INDEX usage_uid ON usage(uid);
    CREATE INDEX usage_report ON usage(provider, model, host, ts, ok, prompt_tokens, completion_tokens, cost);
    """,
    # 10: token counts gpuctl estimated because the server reported none (a stream without usage).
    """
    ALTER TABLE usage ADD COLUMN tokens_estimated INTEGER NOT NULL DEFAULT 0;
    """,
    # 11: "when did this provider, at this endpoint, last answer?" is asked on the request path
    #     (cold detection per breaker key): constant time, not a scan of the provider's rows.
    """
    CREATE INDEX usage_endpoint_ts ON usage(provider, endpoint, ok, ts);
    """,
    # 12: the tokens each answer cost, so `gpuctl chat --list` can say what a conversation used.
    """
    ALTER TABLE messages ADD COLUMN prompt_tokens INTEGER;
    ALTER TABLE messages ADD COLUMN completion_tokens INTEGER;
    """,
    # 13: the name of the client key a `gpuctl serve` request came with (`cost report --by key`).
    """
    ALTER TABLE usage ADD COLUMN key_name TEXT;
    """,
    # 14 (issue 15): `cost report` over a million rows. The replay of one provider's requests reads
    #    its times from a covering index in (ts, id) order (no look at the table, no sort), which
    #    also answers "when did this provider last answer?" as usage_provider_ts did; the few
    #    answered rows without a cost (priced when reported) have a partial index of their own.
    #    Its columns start like usage_replay's so that SQLite, without statistics, prefers it.
    """
    CREATE INDEX usage_replay ON usage(provider, ok, ts, id, latency_s, prompt_tokens, completion_tokens, host);
    DROP INDEX usage_provider_ts;
    CREATE INDEX usage_unpriced ON usage(provider, ok, ts) WHERE cost IS NULL AND ok = 1;
    """,
)


def statements(script: str) -> list[str]:
    """The statements of one migration, in order."""
    return [part.strip() for part in script.split(";") if part.strip()]


_PG_TYPES = (
    (re.compile(r"\bINTEGER PRIMARY KEY AUTOINCREMENT\b", re.I), "BIGINT GENERATED BY DEFAULT AS IDENTITY PRIMARY KEY"),
    # PostgreSQL's REAL is 4 bytes: a timestamp would lose its seconds. SQLite's are 8.
    (re.compile(r"\bREAL\b", re.I), "DOUBLE PRECISION"),
    (re.compile(r"\bINTEGER\b", re.I), "BIGINT"),
)


def for_postgres(statement: str) -> str:
    """One migration statement as PostgreSQL runs it: the same table, with 8-byte numbers."""
    for pattern, replacement in _PG_TYPES:
        statement = pattern.sub(replacement, statement)
    return statement
