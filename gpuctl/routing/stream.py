"""One request's answer from whichever provider can give it: `RoutedStream` (as it streams)
and `complete` (whole).

Both walk `Router.candidates` and fail over on connection errors, timeouts, 5xx, 429 and
malformed replies — but a stream only before its first token: once text has been shown, a
broken stream is reported plainly (`StreamBrokenError`) and never silently re-sent. Every
answer, failure and stopped answer leaves a ledger row. When the last provider that could be
tried fails, the rest of the walk is still done (none is tried), so the error names every
provider's reason ("…; anthropic: cannot do n=2").

Must not: reach into `BackendManager` (it uses the `Router`'s public methods only), or add
per-chunk calls to the streaming loop (bench/bench_router.py measures it).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any, NoReturn

from gpuctl.errors import ProviderError, StreamBrokenError
from gpuctl.providers.base import (
    ChatRequest,
    ChatResponse,
    StreamChunk,
    ToolCall,
    Usage,
    estimated_usage,
    written,
)
from gpuctl.routing.outcomes import STOPPED, Attempt, Fallback, Reason, RoutedResponse, give_up
from gpuctl.routing.policy import Router
from gpuctl.routing.registry import Slot

logger = logging.getLogger("gpuctl.router")


async def complete(router: Router, request: ChatRequest, *, only: str | None = None) -> RoutedResponse:
    """The whole answer from the first provider that can give it."""
    attempts: list[Attempt] = []
    async with contextlib.aclosing(router.candidates(only, attempts, request=request)) as candidates:
        async for slot, has_next in candidates:
            assert slot.provider is not None
            started, started_at = router.timer(), router.clock()
            try:
                response = await slot.provider.chat(request)
            except ProviderError as exc:
                attempts.append(router.failed_before_text(slot, exc, request, started, started_at))
                if exc.failover and has_next:
                    continue
                if not has_next:
                    await _skip_rest(candidates)
                raise give_up(attempts, exc) from None
            except (asyncio.CancelledError, KeyboardInterrupt):
                # The caller gave up (a gateway client hung up, Ctrl-C): the provider worked
                # for it all the same, so the ledger keeps a row, as for a stopped stream.
                router.ledger.record(slot, request, latency=router.timer() - started, started_at=started_at,
                                     error=STOPPED, usage=estimated_usage(request, ""))
                raise
            router.succeeded(slot.name)
            fallback = Fallback.of(attempts)
            routed = RoutedResponse.of(response, provider=slot.name, fallback=fallback,
                                       latency_s=response.latency_s or router.timer() - started)
            router.ledger.record(slot, request, response=routed, latency=routed.latency_s, started_at=started_at,
                                 fallback=fallback)
            return routed
    raise give_up(attempts, None)


@dataclass
class RoutedStream:
    """An answer as it streams, from whichever provider could start it.

    Iterate it for `StreamChunk`s. After iteration: `provider`, `fallback_reason` (text) and
    `fallback` (typed), `attempts`, `text`, `tool_calls`, `usage`, `finish_reason`, `ttft_s`,
    `latency_s`, and `response()` (the whole answer, `.to_openai()` included). A failure after
    text (or part of a tool call) was yielded raises `StreamBrokenError` (with the partial
    text and tool calls, the cut one named in its message) and is never re-sent elsewhere.
    """

    router: Router
    request: ChatRequest
    only: str | None = None
    provider: str | None = None
    model: str | None = None
    fallback_reason: str | None = None
    fallback: Fallback | None = None
    attempts: list[Attempt] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    ttft_s: float | None = None
    latency_s: float | None = None
    complete: bool = False
    trying: str | None = None  # the provider being waited on now (for "waiting for modal…")
    _slot: Slot | None = None  # the one answering
    _started: float = 0.0
    _started_at: float = 0.0
    _calls: dict[int, list[Any]] = field(default_factory=dict)  # index → [id, name, argument fragments]

    @property
    def text(self) -> str:
        return "".join(self.parts)

    @property
    def tool_calls(self) -> tuple[ToolCall, ...]:
        """The tool calls streamed so far, their argument fragments joined."""
        return tuple(ToolCall(id, name, "".join(args)) for _, (id, name, args) in sorted(self._calls.items()))

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        return self._run()

    async def _run(self) -> AsyncIterator[StreamChunk]:
        router = self.router
        async with contextlib.aclosing(router.candidates(self.only, self.attempts, self._trying,
                                                         self.request)) as candidates:
            async for slot, has_next in candidates:
                opened = await self._open(slot, has_next, candidates)
                if opened is None:
                    continue  # failed before its first token; the next provider answers
                chunks, buffered, started = opened
                self._slot = slot
                self.provider = slot.name
                self.fallback = Fallback.of(self.attempts)
                self.fallback_reason = None if self.fallback is None else self.fallback.text
                self.ttft_s = router.timer() - started
                parts = self.parts
                try:
                    for chunk in buffered:
                        self._take(chunk)
                        yield chunk
                    async for chunk in chunks:
                        # The hot path of every stream: plain text chunks skip the bookkeeping call.
                        if chunk.finish_reason is None and chunk.usage is None and chunk.tool_calls is None:
                            if chunk.text:
                                parts.append(chunk.text)
                        else:
                            self._take(chunk)
                        yield chunk
                except ProviderError as exc:
                    self.latency_s = router.timer() - started
                    self._broke(slot, exc)
                finally:
                    await _close(chunks)
                    if not self.complete and self.latency_s is None:
                        # The consumer stopped early (Ctrl-C): keep an honest ledger row.
                        self.latency_s = router.timer() - started
                        self._record(slot, error=STOPPED)
                return
        raise give_up(self.attempts, None)

    def _trying(self, name: str) -> None:
        self.trying = name

    async def _open(self, slot: Slot, has_next: bool,
                    candidates: Any = None) -> tuple[Any, list[StreamChunk], float] | None:
        """Start streaming from one provider and pull up to its first text (or tool call).
        None when it failed before that and another provider may answer; raises otherwise.

        The clock for time-to-first-token and tokens/s starts when `stream()` has returned:
        the provider's own set-up (an SDK import, a client) is not the provider's speed."""
        router = self.router
        assert slot.provider is not None
        self._started_at = router.clock()
        buffered: list[StreamChunk] = []
        chunks: Any = None
        started = self._started = router.timer()
        try:
            chunks = slot.provider.stream(self.request)
            started = self._started = router.timer()
            # Pull until the first text (or the end): failures up to here can still fail over.
            async for chunk in chunks:
                buffered.append(chunk)
                if chunk.text or chunk.tool_calls or chunk.raw or chunk.finish_reason is not None:
                    break
        except ProviderError as exc:
            await _close(chunks)
            self.attempts.append(router.failed_before_text(slot, exc, self.request, started, self._started_at))
            if exc.failover and has_next:
                return None
            if not has_next and candidates is not None:
                await _skip_rest(candidates)
            raise give_up(self.attempts, exc) from None
        except (asyncio.CancelledError, KeyboardInterrupt):
            # Given up on before the first token (a gateway client hung up, Ctrl-C while a cold
            # GPU wakes): the provider was working on it, so the ledger keeps a row.
            await _close(chunks)
            router.ledger.record(slot, self.request, latency=router.timer() - started, started_at=self._started_at,
                                 error=STOPPED, usage=estimated_usage(self.request, ""))
            raise
        return chunks, buffered, started

    def _broke(self, slot: Slot, exc: ProviderError) -> NoReturn:
        """Text was shown, then the provider failed: count it, record it, and say so."""
        reason = Reason.from_error(slot.name, exc)
        if exc.counts_against_breaker:
            self.router.failed(slot.name, reason)
        self._record(slot, error=reason.text)
        calls = self.tool_calls
        if calls:  # cut inside the last call (a call is only whole when the answer finishes)
            where = f"inside a tool call to {calls[-1].name or '(unnamed)'}" + (
                f", after {len(self.text)} characters of text" if self.text else "")
        else:
            where = f"after {len(self.text)} characters"
        raise StreamBrokenError(
            f"{slot.name}: the answer broke off {where} ({exc.message}); it was not re-sent",
            provider=slot.name, partial_text=self.text, partial_tool_calls=calls,
            hint="retry the question (in chat: /retry)",
        ) from None

    def _take(self, chunk: StreamChunk) -> None:
        if chunk.text:
            self.parts.append(chunk.text)
        if chunk.tool_calls:
            for delta in chunk.tool_calls:
                call = self._calls.setdefault(delta.index, ["", "", []])
                call[0] = delta.id or call[0]
                call[1] = delta.name or call[1]
                call[2].append(delta.arguments)
        if chunk.model:
            self.model = chunk.model
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
            self._finish()

    def _finish(self) -> None:
        slot = self._slot
        assert slot is not None
        self.latency_s = self.router.timer() - self._started
        self.complete = True
        self.router.succeeded(slot.name)
        self._record(slot, response=ChatResponse(self.text, slot.name, self.model or self.request.model or "",
                                                 self.usage or Usage(), self.finish_reason, 0.0, self.ttft_s,
                                                 self.fallback_reason, self.tool_calls), fallback=self.fallback)

    def _record(self, slot: Slot, *, response: ChatResponse | None = None, error: str | None = None,
                fallback: Fallback | None = None) -> None:
        if error is not None and self.usage is None:
            # Cut or stopped before the server's count (it comes last): the prompt was read and
            # the text so far was generated all the same, so the row estimates them, marked so.
            self.usage = estimated_usage(self.request, written(self.text, self.tool_calls))
        self.router.ledger.record(slot, self.request, response=response, latency=self.latency_s or 0.0,
                                  started_at=self._started_at, error=error, fallback=fallback, usage=self.usage,
                                  model=self.model, ttft=self.ttft_s)

    def response(self) -> RoutedResponse:
        """The finished answer (after iteration)."""
        answer = ChatResponse(self.text, self.provider or "", self.model or "", self.usage or Usage(),
                              self.finish_reason, self.latency_s or 0.0, self.ttft_s, None, self.tool_calls)
        return RoutedResponse.of(answer, provider=self.provider or "", latency_s=self.latency_s or 0.0,
                                 fallback=self.fallback)


async def _skip_rest(candidates: Any) -> None:
    """The last provider that could be tried failed: walk the rest of the candidates, so each
    one's reason for being skipped (it cannot do the request, its breaker is open) is in the
    error too. None of them is tried: there was no next one."""
    async for slot, _ in candidates:
        logger.debug("not trying %s: the request already failed on the last provider", slot.name)


async def _close(agen: Any) -> None:
    aclose = getattr(agen, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a broken stream must not hide the real error
            logger.debug("closing stream failed", exc_info=True)
