"""The seam between the router and the providers: one small protocol and the frozen
dataclasses that cross it. No I/O here, and no provider-specific names.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

HealthStatus = Literal["ready", "cold", "degraded", "unhealthy", "unconfigured"]


@dataclass(frozen=True)
class Message:
    role: str  # "system" | "user" | "assistant"
    content: str

    def as_dict(self) -> dict[str, str]:
        return {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion request, OpenAI-shaped; each provider maps it to its own API."""

    messages: tuple[Message, ...]
    model: str | None = None  # None: the provider's configured model
    temperature: float | None = 0.7
    max_tokens: int = 2048
    stop: tuple[str, ...] = ()

    @classmethod
    def from_openai(
        cls,
        messages: Iterable[Mapping[str, Any]],
        *,
        model: str | None = None,
        temperature: float | None = 0.7,
        max_tokens: int = 2048,
        stop: Iterable[str] = (),
    ) -> ChatRequest:
        msgs = tuple(Message(role=str(m["role"]), content=str(m.get("content") or "")) for m in messages)
        return cls(messages=msgs, model=model, temperature=temperature, max_tokens=max_tokens, stop=tuple(stop))


@dataclass(frozen=True)
class Usage:
    prompt_tokens: int = 0
    completion_tokens: int = 0

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def as_dict(self) -> dict[str, int]:
        return {
            "prompt_tokens": self.prompt_tokens,
            "completion_tokens": self.completion_tokens,
            "total_tokens": self.total_tokens,
        }


@dataclass(frozen=True)
class ChatResponse:
    """A complete answer. `provider` and `fallback_reason` are filled in by the router, which
    returns a subclass that also carries the typed fallback (`routing.outcomes.RoutedResponse`)."""

    text: str
    provider: str
    model: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    latency_s: float = 0.0
    ttft_s: float | None = None
    fallback_reason: str | None = None


class StreamChunk(NamedTuple):
    """A piece of a streamed answer. The last chunk of a complete stream carries
    `finish_reason` (and `usage` when the provider reported it); text may be empty.

    A NamedTuple rather than a frozen dataclass: just as immutable, and three times cheaper to
    create, which shows on a 2,000-chunk stream (bench/bench_router.py)."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None


@dataclass(frozen=True)
class Health:
    """What a health check found. `cold` means scaled to zero and waking, not down."""

    provider: str
    status: HealthStatus
    endpoint: str | None = None  # never with credentials in it
    latency_s: float | None = None
    detail: str = ""
    models: tuple[str, ...] = ()
    # The ProviderError kind behind a failed check, typed so nobody reads `detail` back:
    # "auth" (the key was refused) makes `gpuctl status` a credentials problem (exit 3).
    error_kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ready", "cold")


@runtime_checkable
class Provider(Protocol):
    """What the router needs from a backend. Errors are raised as `ProviderError`."""

    name: str

    def is_configured(self) -> bool: ...

    async def health(self, *, deep: bool = False) -> Health: ...

    async def chat(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]: ...

    async def aclose(self) -> None: ...
