"""`FakeProvider`: the `providers.base.Provider` protocol in memory, for router tests.

Scripted health, answers, failures (a `ProviderError` of any kind), cut streams and requests
held in flight; it counts every call. No network and no sleeps: a test that needs "a request
is still running" holds one with `hold()` and lets it go with `release()`.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

from gpuctl.errors import ProviderError
from gpuctl.providers.base import (
    ChatRequest,
    ChatResponse,
    Health,
    HealthStatus,
    StreamChunk,
    Unsupported,
    Usage,
)
from gpuctl.routing.registry import Slot


class FakeProvider:
    """A provider named `name` that answers `answer` (word by word when streamed)."""

    def __init__(self, name: str, *, answer: str = "hello from the fake", model: str = "fake-model",
                 health: HealthStatus = "ready", health_detail: str = "") -> None:
        self.name = name
        self.answer = answer
        self.model = model
        self.health_status: HealthStatus = health
        self.health_detail = health_detail
        self.error: ProviderError | None = None  # raised by every chat/stream while set
        self.cannot: Unsupported | None = None  # what `unsupported` says about every request while set
        self.cut_after: int | None = None  # stream: fail (stream_cut) after this many words
        self.calls = {"health": 0, "chat": 0, "stream": 0}
        self.health_timeouts: list[float | None] = []
        self.closed = 0
        self._held: asyncio.Event | None = None
        self.entered = asyncio.Event()  # set when a held request has reached the provider

    # -------------------------------------------------------------- scripting

    def fail(self, kind: str = "connect", message: str | None = None, *, status: int | None = None) -> None:
        self.error = ProviderError(message or f"{self.name}: fake {kind} failure", provider=self.name, kind=kind,
                                   status=status)

    def heal(self) -> None:
        self.error = None
        self.cut_after = None

    def hold(self) -> None:
        """The next requests wait inside the provider until `release()`."""
        self._held = asyncio.Event()
        self.entered = asyncio.Event()

    def release(self) -> None:
        if self._held is not None:
            self._held.set()
        self._held = None

    # -------------------------------------------------------------- the protocol

    def is_configured(self) -> bool:
        return True

    def unsupported(self, request: ChatRequest) -> Unsupported | None:
        return self.cannot

    async def health(self, *, deep: bool = False, timeout: float | None = None) -> Health:
        self.calls["health"] += 1
        self.health_timeouts.append(timeout)
        return Health(self.name, self.health_status, endpoint=f"fake://{self.name}", latency_s=0.001,
                      detail=self.health_detail, models=(self.model,))

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self.calls["chat"] += 1
        await self._wait()
        if self.error is not None:
            raise self.error
        return ChatResponse(self.answer, self.name, request.model or self.model, self._usage(request), "stop", 0.01)

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        self.calls["stream"] += 1
        return self._stream(request)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        await self._wait()
        if self.error is not None:
            raise self.error
        words = self.answer.split(" ")
        for index, word in enumerate(words):
            if self.cut_after is not None and index >= self.cut_after:
                raise ProviderError(f"{self.name}: stream cut", provider=self.name, kind="stream_cut")
            yield StreamChunk(text=word if index == 0 else " " + word)
        yield StreamChunk(finish_reason="stop", usage=self._usage(request), model=request.model or self.model)

    async def aclose(self) -> None:
        self.closed += 1

    # --------------------------------------------------------------

    async def _wait(self) -> None:
        if self._held is not None:
            self.entered.set()
            await self._held.wait()

    def _usage(self, request: ChatRequest) -> Usage:
        prompt = sum(len(m.content.split()) for m in request.messages)
        return Usage(prompt_tokens=prompt, completion_tokens=len(self.answer.split()))


def fake_slot(provider: FakeProvider, **traits: object) -> Slot:
    """A configured slot for `provider`; `traits` are `Slot` fields (scaledown_s, billing, ...)."""
    return Slot(provider.name, provider, endpoint=f"fake://{provider.name}", **traits)  # type: ignore[arg-type]


def unconfigured_slot(name: str, why_not: str = "set FAKE_URL", **traits: object) -> Slot:
    return Slot(name, None, why_not, **traits)  # type: ignore[arg-type]
