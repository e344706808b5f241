"""The rows of the state database as frozen dataclasses, as they cross out of `gpuctl.state`.

Pure data: no SQL here (gpuctl.state reads and writes them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
from decimal import Decimal
from typing import Any

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
    warm_containers: int | None = None  # Modal's min_containers (migration 8)
    host: str | None = None  # the machine that launched it (migration 9)

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
    tokens_estimated: bool = False  # the server reported no usage: the counts are gpuctl's estimate
    host: str | None = None  # the machine that wrote it (migration 9; default: state.host)
    key_name: str | None = None  # the `gpuctl serve` client key's name (migration 13), never the key


@dataclass(frozen=True)
class UsageGroup:
    """The usage rows of one provider (and model, host or UTC day, as the report groups them),
    counted and summed in the database. A column the report does not group by is None."""

    provider: str
    model: str | None
    host: str | None
    day: int | None  # UTC days since the epoch (ts // 86400)
    requests: int
    failed: int
    tokens: int
    cost: Decimal  # the sum of the costs the rows carry (a row without one adds 0 here)
    key_name: str | None = None  # with --by key: the `gpuctl serve` client key's name


@dataclass(frozen=True)
class UsageTimes:
    """The answered requests of a period (of one provider, or all) as a replay of their times
    reads them, without a row object each (a period may hold hundreds of thousands): in time
    order, plain tuples (ts, latency_s, tokens) or, with hosts, (ts, latency_s, tokens, host),
    tokens being prompt + completion; the model of the first that names one; and, when asked,
    the requests per prompt size: (prompt_tokens, requests, completion_tokens summed, the
    fewest completion_tokens), for per-request token prices."""

    rows: list[tuple[Any, ...]]
    model: str | None = None
    prompt_sizes: list[tuple[Any, ...]] | None = None


@dataclass(frozen=True)
class UsageSummary:
    """A period of the usage ledger for `cost report`, without a million row objects: the
    groups; the answered rows that carry no cost (priced when reported); and the answered
    requests of the provider whose container time is replayed."""

    groups: list[UsageGroup]
    unpriced: list[UsageRecord]
    replayed: UsageTimes


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
    prompt_tokens: int | None = None  # an answer's usage (None: a question, or not reported)
    completion_tokens: int | None = None


@dataclass(frozen=True)
class ConversationRow:
    id: int
    created_at: float
    updated_at: float
    title: str | None
    profile: str | None
    system_prompt: str | None


@dataclass(frozen=True)
class ConversationSummary:
    """One line of `gpuctl chat --list`: a stored conversation and what it used."""

    id: int
    created_at: float
    updated_at: float
    title: str | None
    profile: str | None
    messages: int
    provider: str | None  # who gave the last answer
    tokens: int  # prompt + completion tokens of its answers (what was billed)


def rows_as_dicts(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Dataclass rows as plain dicts, for --json."""
    return [{f.name: getattr(r, f.name) for f in fields(r)} for r in rows]
