"""The rows of the state database as frozen dataclasses, as they cross out of `gpuctl.state`.

Pure data: no SQL here (gpuctl.state reads and writes them).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, fields
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
    key_name: str | None = None  # the `gpuctl serve` client key's name (migration 9), never the key


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


def rows_as_dicts(rows: Sequence[Any]) -> list[dict[str, Any]]:
    """Dataclass rows as plain dicts, for --json."""
    return [{f.name: getattr(r, f.name) for f in fields(r)} for r in rows]
