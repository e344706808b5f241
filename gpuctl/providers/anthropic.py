"""The Anthropic fallback: our OpenAI-shaped `ChatRequest` over the official `anthropic` SDK.

Owns the `Provider` itself: the SDK client (built on first use), health, chat and streaming.
The request mapping is `anthropic_mapping`'s (with what Anthropic cannot do), the answers'
`anthropic_replies`', the SDK error mapping `anthropic_errors`'. It must not import `anthropic` at module level (the import costs ~1.1 s
and `gpuctl --help` must stay fast), must not retry (the router fails over; the SDK would obey
`retry-after` without a cap), must not read config files, and must never put the API key in
a message, an endpoint or a log.
"""

from __future__ import annotations

import os
import time
from collections.abc import AsyncIterator, Callable
from typing import TYPE_CHECKING
from urllib.parse import urlsplit, urlunsplit

from gpuctl.errors import Kind, ProviderError, StreamBrokenError
from gpuctl.providers.anthropic_errors import KEY_HINT, AnthropicErrors
from gpuctl.providers.anthropic_mapping import NAME, create_kwargs, unsupported
from gpuctl.providers.anthropic_replies import StreamTally, chat_response
from gpuctl.providers.anthropic_tools import json_tool
from gpuctl.providers.base import (
    ChatRequest,
    ChatResponse,
    Health,
    HealthStatus,
    StreamChunk,
    Unsupported,
)

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

DEFAULT_MODEL = "claude-haiku-4-5"
DEFAULT_BASE_URL = "https://api.anthropic.com"


def _redact_url(url: str) -> str:
    """The URL without user:password, so it can be shown in `status`."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class AnthropicProvider:
    """The `Provider` for Anthropic's Messages API, through `anthropic.AsyncAnthropic`."""

    name = NAME

    def __init__(
        self,
        *,
        api_key: str | None,
        model: str = DEFAULT_MODEL,
        max_tokens: int = 2048,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_key = api_key or None
        self.model = model
        self.max_tokens = max_tokens
        # An empty ANTHROPIC_BASE_URL breaks the SDK instead of meaning "unset": treat it as None.
        self.base_url = (base_url or "").strip() or None
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._clock = clock
        self._client: AsyncAnthropic | None = None

    def __repr__(self) -> str:  # never the key
        return f"AnthropicProvider(model={self.model!r}, configured={self.is_configured()})"

    # -- the protocol ---------------------------------------------------------------------

    def is_configured(self) -> bool:
        return bool(self._api_key)

    def unsupported(self, request: ChatRequest) -> Unsupported | None:
        """n > 1, logprobs, image types and parameters the Messages API has no equivalent for."""
        return unsupported(request)

    @property
    def endpoint(self) -> str:
        return _redact_url(self.base_url or DEFAULT_BASE_URL)

    async def health(self, *, deep: bool = False) -> Health:
        """Configured means ready, without a call: every Messages call is billed. `deep`
        sends a 1-token request and reports what happened (it never raises ProviderError)."""
        if not self.is_configured():
            return Health(
                provider=self.name,
                status="unconfigured",
                endpoint=self.endpoint,
                detail=f"no API key. {KEY_HINT}",
            )
        if not deep:
            return Health(
                provider=self.name,
                status="ready",
                endpoint=self.endpoint,
                detail="API key set (not checked; use --deep)",
            )
        client = self._get_client()
        started = self._clock()
        try:
            await client.messages.create(
                model=self.model, max_tokens=1, messages=[{"role": "user", "content": "ping"}]
            )
        except Exception as exc:
            error = self._map_error(exc)
            if error is None:
                raise
            # Busy is not down: the key works, the service is shedding load.
            status: HealthStatus = (
                "degraded" if error.kind == Kind.RATE_LIMIT or error.status == 529 else "unhealthy"
            )
            return Health(
                provider=self.name,
                status=status,
                endpoint=self.endpoint,
                latency_s=self._clock() - started,
                detail=error.message,
                error_kind=error.kind,
            )
        return Health(
            provider=self.name,
            status="ready",
            endpoint=self.endpoint,
            latency_s=self._clock() - started,
            detail=f"{self.model} answered",
            models=(self.model,),
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        kwargs = create_kwargs(request, model=self.model, max_tokens=self.max_tokens)
        client = self._get_client()
        started = self._clock()
        try:
            message = await client.messages.create(**kwargs)
        except Exception as exc:
            error = self._map_error(exc)
            if error is None:
                raise
            raise error from exc  # the SDK error stays in the chain for --debug; it holds no key
        return chat_response(message, model=str(kwargs["model"]), latency=self._clock() - started,
                             json_tool=json_tool(request))

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """Text and tool-call chunks, then one chunk with `finish_reason`, `usage` and `model`.
        The SDK is imported and its client built here, before the router's clock starts; every
        error (a bad request included) is still raised from iteration, not this call."""
        try:
            self._get_client()
        except ProviderError as exc:
            return _raising(exc)
        return self._stream(request)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # -- internals ------------------------------------------------------------------------

    def _get_client(self) -> AsyncAnthropic:
        if self._client is not None:
            return self._client
        if not self._api_key:
            raise ProviderError(
                "Anthropic is not configured: no API key",
                provider=self.name,
                kind=Kind.AUTH,
                hint=KEY_HINT,
            )
        import anthropic  # slow (~1.1 s): only when the fallback is actually used

        base_url = self.base_url
        if base_url is None and not os.environ.get("ANTHROPIC_BASE_URL", "").strip():
            # The SDK would read ANTHROPIC_BASE_URL itself, and an empty one breaks it.
            base_url = DEFAULT_BASE_URL
        self._client = anthropic.AsyncAnthropic(
            api_key=self._api_key,
            base_url=base_url,
            # A refused or unroutable host should fail over fast; reads may take a while.
            timeout=anthropic.Timeout(self.timeout_s, connect=min(5.0, self.timeout_s)),
            max_retries=self.max_retries,
        )
        return self._client

    def _map_error(self, exc: Exception, *, in_stream: bool = False) -> ProviderError | None:
        errors = AnthropicErrors(self.timeout_s, self.endpoint, api_key=self._api_key)
        return errors.map(exc, in_stream=in_stream)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        kwargs = create_kwargs(request, model=self.model, max_tokens=self.max_tokens)
        client = self._get_client()
        tally = StreamTally(str(kwargs["model"]), json_tool(request))
        shown: list[str] = []
        try:
            events = await client.messages.create(**kwargs, stream=True)
        except Exception as exc:
            error = self._map_error(exc)
            if error is None:
                raise
            raise error from exc
        try:
            async with events:
                async for event in events:
                    chunk = tally.chunk_of(event)
                    if chunk is not None:
                        shown.append(chunk.text)
                        yield chunk
        except Exception as exc:
            error = self._map_error(exc, in_stream=True)
            if error is None:
                raise
            raise self._broken(error, shown) from exc
        if not tally.finished:
            raise self._broken(
                ProviderError(
                    "Anthropic stream ended before message_stop",
                    provider=self.name,
                    kind=Kind.STREAM_CUT,
                ),
                shown,
            )
        yield StreamChunk(
            finish_reason=tally.finish_reason,
            usage=tally.usage(),
            model=tally.model,
        )

    def _broken(self, error: ProviderError, shown: list[str]) -> ProviderError:
        """After text was shown the request must not be silently re-sent: say so."""
        if not shown:
            return error
        return StreamBrokenError(
            f"{error.message} after part of the answer was shown",
            provider=self.name,
            partial_text="".join(shown),
            hint=error.hint,
        )


async def _raising(error: ProviderError) -> AsyncIterator[StreamChunk]:
    raise error
    yield  # an async generator that fails when iterated, as a stream's errors do
