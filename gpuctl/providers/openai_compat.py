"""Client for vLLM's OpenAI-compatible server: health, models, chat, streaming chat, metrics,
and `probe_vllm`, the one readiness probe ("can it generate?").

Shared by the Modal and Vast.ai providers and the generic user `endpoint` provider; they
differ only in base URL, key and provider name. Every HTTP, transport and parse failure on
this API leaves as a `ProviderError` (the mapping is in `openai_errors`), so no caller ever
sees an httpx exception, a traceback, or a cut answer presented as complete.

Must not: know about the router's priorities or breakers, read config, print, or put a key
in a message, a log line or `endpoint`. HTTP clients come from gpuctl.http only.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx

from gpuctl.errors import Kind, ProviderError
from gpuctl.http.client import Timeouts, build_async_client
from gpuctl.http.sse import StallWatchdog, sse_data_blocks
from gpuctl.providers.base import (
    ChatRequest,
    ChatResponse,
    Health,
    HealthStatus,
    StreamChunk,
    Unsupported,
)
from gpuctl.providers.openai_errors import (
    VLLMErrors,
    health_of,
    names_a_model,
    normalise_base_url,
    public_endpoint,
    raise_broken,
    refuses_tools,
)
from gpuctl.providers.openai_mapping import (
    chat_body,
    chat_response,
    model_list,
    parse_metrics,
    ping_request,
)
from gpuctl.providers.openai_stream import StreamFold

__all__ = ["VLLMEndpoint", "normalise_base_url", "parse_metrics", "probe_vllm"]

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
HEALTH_TIMEOUT = 10.0  # a health check answers in this or the endpoint counts as cold


class VLLMEndpoint:
    """One vLLM OpenAI-compatible server. Async; create it, use it, `await aclose()`."""

    def __init__(
        self,
        base_url: str,
        *,
        provider: str = "endpoint",
        api_key: str | None = None,
        model: str | None = None,
        timeouts: Timeouts = Timeouts(),
        retries: int = 0,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._root = normalise_base_url(base_url)
        self.name = provider  # the Provider protocol's name: "modal", "vastai", "endpoint"
        self.model = model
        self._api_key = api_key or None
        self._timeouts = timeouts
        self._retries = retries
        self._transport = transport
        self._clock = clock
        self._client: httpx.AsyncClient | None = None
        self._served: str | None = None  # with no model configured: the first one /v1/models lists
        self._no_tools: str | None = None  # set once the server refused `tools` (started without tool calling)
        # The OpenAI base URL users paste into other tools: "<root>/v1", without credentials.
        self.endpoint = public_endpoint(self._root)

    provider = property(lambda self: self.name)  # the older name of `name`

    def is_configured(self) -> bool:
        """Constructed means configured: the URL was validated in __init__."""
        return True

    def unsupported(self, request: ChatRequest) -> Unsupported | None:
        """vLLM takes any OpenAI request; only tools, once this server has refused them."""
        if self._no_tools is not None and request.params and request.params.get("tools"):
            return Unsupported("tools", f"cannot call tools ({self._no_tools})")
        return None

    def __repr__(self) -> str:
        return f"VLLMEndpoint({self.endpoint!r}, provider={self.provider!r}, model={self.model!r})"

    def _http(self) -> httpx.AsyncClient:
        # Built on first use so an endpoint that is configured but never called holds no pool.
        if self._client is None:
            headers = {"Accept": "application/json"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            self._client = build_async_client(base_url=self._root, headers=headers, timeouts=self._timeouts,
                                              retries=self._retries, transport=self._transport)
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> VLLMEndpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- errors (the mapping itself is openai_errors') ---------------------------------

    def _errors(self) -> VLLMErrors:
        # Built per failure, never on the happy path.
        return VLLMErrors(self.provider, self.endpoint, self._timeouts, has_key=bool(self._api_key))

    async def _status_error(self, response: httpx.Response, body: bytes, what: str) -> ProviderError:
        if response.status_code == 400 and refuses_tools(body):
            self._no_tools = "vLLM was started without --enable-auto-tool-choice --tool-call-parser"
            return self._errors().tools_refused(self._no_tools)
        if response.status_code == 404 and (server := names_a_model(body)) is not None:
            served: list[str] = []
            # The 404 is the error to report; the list of served names is a courtesy.
            with contextlib.suppress(ProviderError):
                served = [str(m.get("id")) for m in await self.models()]
            return self._errors().model_not_found(server, served)
        return self._errors().status(response, body, what)

    async def _json(self, response: httpx.Response, what: str) -> Any:
        body = response.content
        if response.status_code != 200:
            raise await self._status_error(response, body, what)
        return self._errors().body(response, body, what)

    # --- API ---------------------------------------------------------------------------

    async def models(self) -> list[dict[str, Any]]:
        """The served models (`id` is the name to send; vLLM adds `max_model_len`)."""
        try:
            response = await self._http().get(MODELS_PATH)
        except httpx.HTTPError as exc:
            raise self._errors().transport(exc, "listing models") from None
        return model_list(await self._json(response, "listing models"), self._errors)

    async def served_model(self) -> str | None:
        """The configured model, else the first one /v1/models lists (asked once): the only
        model ever sent (never the caller's `model`, a public name), and the one reported,
        instead of whatever a server echoes."""
        if self.model:
            return self.model
        if self._served is None:
            try:
                served = [str(m["id"]) for m in await self.models() if m.get("id")]
            except ProviderError:  # no model list: send none; the chat itself tells if the server works
                served = []
            self._served = served[0] if served else ""
        return self._served or None

    async def chat(self, request: ChatRequest) -> ChatResponse:
        body = chat_body(request, await self.served_model(), stream=False)
        started = self._clock()
        try:
            response = await self._http().post(CHAT_PATH, json=body)
        except httpx.HTTPError as exc:
            raise self._errors().transport(exc, "chat completion") from None
        data = await self._json(response, "chat completion")
        return chat_response(data, body, request, errors=self._errors(), latency=self._clock() - started)

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """Text and tool-call pieces as they arrive, then finish_reason and usage (`StreamFold`).
        No [DONE] or finish reason, or a stall over `timeouts.read`: ProviderError (broken,
        with the partial text, once text was yielded). The client is built before the clock."""
        self._http()
        return self._stream(request)

    async def _stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        fold = StreamFold(request, None)
        try:
            body = chat_body(request, await self.served_model(), stream=True)
            fold.model = body.get("model")
            async with self._http().stream(
                "POST", CHAT_PATH, json=body, headers={"Accept": "text/event-stream"}
            ) as response:
                await self._check_stream(response)
                # SSE is parsed per network read, not per event: every `data:` event that
                # arrived together becomes one chunk (vLLM's chunks are not tokens anyway), so
                # a fast stream costs one pass through the router per read, not per event.
                blocks = sse_data_blocks(response).__aiter__()
                # The first event waits for the prompt to be processed (and a queue), so it
                # gets the first-byte budget; after that, `read` bounds each gap.
                gap = self._timeouts.first_byte
                errors = self._errors  # built only when something fails: never per event
                watchdog = StallWatchdog()
                try:
                    while not fold.done:
                        watchdog.waiting(gap)
                        try:
                            datas = await blocks.__anext__()
                        except StopAsyncIteration:
                            break
                        except asyncio.CancelledError:
                            if not watchdog.stalled():
                                raise
                            raise errors().stalled(gap) from None
                        watchdog.idle()
                        gap = self._timeouts.read
                        chunk, failed = fold.fold(datas, errors)
                        if chunk is not None:
                            yield chunk
                        if failed is not None:
                            raise failed
                finally:
                    watchdog.close()
                    await blocks.aclose()  # type: ignore[attr-defined]
                if not fold.complete:
                    raise self._errors().incomplete()
        except ProviderError as exc:
            raise_broken(exc, fold.shown)
        except httpx.HTTPError as exc:
            raise_broken(self._errors().transport(exc, "streaming chat"), fold.shown)
        yield fold.last()

    async def _check_stream(self, response: httpx.Response) -> None:
        """A streamed answer must be a 200 with an SSE body; read and map anything else."""
        if response.status_code != 200:
            raise await self._status_error(response, await response.aread(), "streaming chat")
        ctype = response.headers.get("content-type", "")
        if "text/event-stream" not in ctype:
            raise self._errors().not_sse(ctype, await response.aread())

    async def health(self, *, deep: bool = False, timeout: float | None = None) -> Health:
        """ready / cold / degraded / unhealthy, never raises for the endpoint's failures.

        `GET /health` (no key needed) then `/v1/models` (needs the key, and names what is
        served: this catches a wrong key or a model mismatch up front); `deep` also generates
        one token, because both can answer while the model cannot serve. `cold`: connected but
        no answer within `timeout`, or a 503 (a scaled-to-zero container waking)."""
        budget = HEALTH_TIMEOUT if timeout is None else timeout
        started = self._clock()
        status, detail, served, kind = await self._check_health(budget, deep=deep)
        return Health(provider=self.provider, status=status, endpoint=self.endpoint,
                      latency_s=self._clock() - started, detail=detail, models=served, error_kind=kind)

    async def _check_health(self, budget: float, *,
                            deep: bool) -> tuple[HealthStatus, str, tuple[str, ...], str | None]:
        limits = httpx.Timeout(connect=min(self._timeouts.connect, budget), read=budget, write=budget, pool=budget)
        try:
            response = await self._http().get("/health", timeout=limits)
        except httpx.ReadTimeout:
            return "cold", f"connected, but no answer within {budget:g}s: a cold start?", (), Kind.TIMEOUT
        except httpx.HTTPError as exc:
            error = self._errors().transport(exc, "health check")
            return "unhealthy", error.message, (), error.kind
        # llama.cpp's server, LM Studio and Ollama have no /health (404): /v1/models is their check.
        no_health = response.status_code == 404
        if response.status_code != 200 and not no_health:
            error = await self._status_error(response, response.content, "health check")
            return ("cold" if error.kind == Kind.COLD else "unhealthy"), error.message, (), error.kind
        served: tuple[str, ...] = ()
        try:
            async with asyncio.timeout(budget):
                served = tuple(str(m.get("id")) for m in await self.models())
                if deep:
                    await self.chat(ping_request())
        except TimeoutError:
            what = "generating one token" if deep else "/v1/models"
            return ("cold", f"{'/v1/models' if no_health else '/health'} answered, but {what} took over {budget:g}s",
                    served, Kind.TIMEOUT)
        except ProviderError as exc:
            if no_health and not served:
                return "unhealthy", f"no /health (404), and /v1/models failed: {exc.message}", (), exc.kind
            return (*health_of(exc, deep=deep), served, exc.kind)
        checked = "GET /v1/models answered (no /health here: 404)" if no_health else "GET /health and /v1/models answered"
        if deep:
            return "ready", "generated a token" + (" (no /health here: 404)" if no_health else ""), served, None
        if self.model and served and self.model not in served:
            missing = f"{self.provider}: model {self.model!r} is not served here (served: {', '.join(served)})"
            return "unhealthy", missing, served, Kind.NOT_FOUND
        return "ready", checked, served, None

    async def metrics(self) -> dict[str, float] | None:
        """vllm:* values from /metrics (num_requests_running, token counters, ...), or None
        when the server publishes none."""
        try:
            response = await self._http().get("/metrics", headers={"Accept": "text/plain"})
        except httpx.HTTPError as exc:
            raise self._errors().transport(exc, "reading metrics") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise await self._status_error(response, response.content, "reading metrics")
        return parse_metrics(response.text) or None


PROBE_TIMEOUT_S = 30.0


def probe_vllm(endpoint: str, api_key: str | None, model: str | None, *, provider: str = "endpoint",
               timeout: float = PROBE_TIMEOUT_S) -> Health:
    """Can this vLLM server generate? `/health` plus a 1-token completion of `model` (the one
    readiness probe: Modal deploy, Vast.ai launch and cleanup all ask it).

    Raises ProviderError(kind="auth") when the server refuses the key (the one answer waiting
    will not change). `health()` folds every failure into its text, so an unhealthy answer is
    asked once more where the error kind survives (text would mislead: an endpoint such as
    http://1.2.3.4:40123 contains "401")."""

    async def go() -> Health:
        async with VLLMEndpoint(endpoint, provider=provider, api_key=api_key, model=model) as client:
            health = await client.health(deep=True, timeout=timeout)
            if health.status == "unhealthy":
                try:
                    async with asyncio.timeout(timeout):
                        await client.models()
                except TimeoutError:
                    pass
                except ProviderError as exc:
                    if exc.kind == "auth":
                        raise
            return health

    return asyncio.run(go())

