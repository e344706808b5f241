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
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import httpx

from gpuctl.errors import ConfigError, Kind, ProviderError, StreamBrokenError
from gpuctl.http.client import Timeouts, build_async_client, redact
from gpuctl.http.sse import StallWatchdog, sse_data_blocks
from gpuctl.providers.base import (
    ChatRequest,
    ChatResponse,
    Health,
    HealthStatus,
    StreamChunk,
    Usage,
)
from gpuctl.providers.openai_errors import VLLMErrors, health_of, names_a_model
from gpuctl.providers.openai_mapping import (
    chat_body,
    chat_response,
    event_payload,
    model_list,
    ping_request,
    usage_of,
)

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
HEALTH_TIMEOUT = 10.0  # a health check answers in this or the endpoint counts as cold


def normalise_base_url(base_url: str) -> str:
    """The server root: no trailing slash, no trailing /v1 (users paste either form)."""
    url = base_url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    parsed = httpx.URL(url) if url else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"endpoint URL must look like https://host or http://host:port, got {redact(base_url)!r}",
            hint="set the provider's URL to the vLLM server root (a trailing /v1 is fine)",
        )
    return url


_PROM_LINE = re.compile(r"^([A-Za-z_:][A-Za-z0-9_:]*)(\{.*\})?\s+(\S+)")


def parse_metrics(text: str) -> dict[str, float]:
    """vllm:* samples from Prometheus text, summed over label sets (e.g. per model or finish
    reason). Histogram buckets and `_created` timestamps are dropped; `_sum`/`_count` kept."""
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("vllm:"):
            continue
        match = _PROM_LINE.match(line)
        if match is None:
            continue
        name = match.group(1)
        if name.endswith(("_bucket", "_created")):
            continue
        try:
            value = float(match.group(3))
        except ValueError:
            continue
        out[name] = out.get(name, 0.0) + value
    return out


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
        self._endpoint: str | None = None

    @property
    def provider(self) -> str:
        return self.name

    def is_configured(self) -> bool:
        """Constructed means configured: the URL was validated in __init__."""
        return True

    def __repr__(self) -> str:
        return f"VLLMEndpoint({self.endpoint!r}, provider={self.provider!r}, model={self.model!r})"

    @property
    def endpoint(self) -> str:
        """The OpenAI base URL users paste into other tools: "<root>/v1", without credentials."""
        if self._endpoint is None:  # a URL parse and a redaction: once, not per answer
            url = httpx.URL(self._root).copy_with(username=None, password=None, query=None, fragment=None)
            self._endpoint = redact(str(url).rstrip("/")) + "/v1"
        return self._endpoint

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
        # Built per failure, never on the happy path: `endpoint` costs a URL parse.
        return VLLMErrors(self.provider, self.endpoint, self._timeouts, has_key=bool(self._api_key))

    async def _status_error(self, response: httpx.Response, body: bytes, what: str) -> ProviderError:
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

    async def chat(self, request: ChatRequest) -> ChatResponse:
        body = chat_body(request, self.model, stream=False)
        started = self._clock()
        try:
            response = await self._http().post(CHAT_PATH, json=body)
        except httpx.HTTPError as exc:
            raise self._errors().transport(exc, "chat completion") from None
        data = await self._json(response, "chat completion")
        return chat_response(data, body, errors=self._errors(), latency=self._clock() - started)

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """Yield text as it arrives; the last chunk has finish_reason and usage. A stream that
        ends without `data: [DONE]`, or stalls longer than `timeouts.read` between events,
        raises ProviderError (StreamBrokenError, with the partial text, once text was yielded)."""
        body = chat_body(request, self.model, stream=True)
        shown: list[str] = []
        model = body.get("model")
        finish_reason: str | None = None
        usage: Usage | None = None
        try:
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
                done = False
                try:
                    while not done:
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
                        pieces: list[str] = []
                        failed: ProviderError | None = None
                        for data in datas:
                            if data == "[DONE]":
                                done = True
                                break
                            try:
                                payload = event_payload(data, errors)
                            except ProviderError as exc:
                                failed = exc  # show what arrived before it first
                                break
                            model = payload.get("model") or model
                            if payload.get("usage"):
                                usage = usage_of(payload["usage"])
                            for choice in payload.get("choices") or ():
                                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                                    continue
                                delta = choice.get("delta")
                                text = delta.get("content") if isinstance(delta, dict) else None
                                if choice.get("finish_reason"):
                                    finish_reason = str(choice["finish_reason"])
                                if isinstance(text, str) and text:
                                    pieces.append(text)
                        if pieces:
                            text = pieces[0] if len(pieces) == 1 else "".join(pieces)
                            shown.append(text)
                            yield StreamChunk(text=text, model=model)
                        if failed is not None:
                            raise failed
                finally:
                    watchdog.close()
                    await blocks.aclose()  # type: ignore[attr-defined]
                if not done:
                    raise self._errors().incomplete()
        except ProviderError as exc:
            _raise_broken(exc, shown)
        except httpx.HTTPError as exc:
            _raise_broken(self._errors().transport(exc, "streaming chat"), shown)
        yield StreamChunk(text="", finish_reason=finish_reason or "stop", usage=usage, model=model)

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
        status, detail, served = await self._check_health(budget, deep=deep)
        return Health(provider=self.provider, status=status, endpoint=self.endpoint,
                      latency_s=self._clock() - started, detail=detail, models=served)

    async def _check_health(self, budget: float, *, deep: bool) -> tuple[HealthStatus, str, tuple[str, ...]]:
        limits = httpx.Timeout(connect=min(self._timeouts.connect, budget), read=budget, write=budget, pool=budget)
        try:
            response = await self._http().get("/health", timeout=limits)
        except httpx.ReadTimeout:
            return "cold", f"connected, but no answer within {budget:g}s: a cold start?", ()
        except httpx.HTTPError as exc:
            return "unhealthy", self._errors().transport(exc, "health check").message, ()
        if response.status_code != 200:
            error = await self._status_error(response, response.content, "health check")
            return ("cold" if error.kind == Kind.COLD else "unhealthy"), error.message, ()
        served: tuple[str, ...] = ()
        try:
            async with asyncio.timeout(budget):
                served = tuple(str(m.get("id")) for m in await self.models())
                if deep:
                    await self.chat(ping_request(self.model or (served[0] if served else None)))
        except TimeoutError:
            what = "generating one token" if deep else "/v1/models"
            return "cold", f"/health answered, but {what} took over {budget:g}s", served
        except ProviderError as exc:
            return (*health_of(exc, deep=deep), served)
        if deep:
            return "ready", "generated a token", served
        if self.model and served and self.model not in served:
            missing = f"{self.provider}: model {self.model!r} is not served here (served: {', '.join(served)})"
            return "unhealthy", missing, served
        return "ready", "GET /health and /v1/models answered", served

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


def _raise_broken(exc: ProviderError, shown: list[str]) -> NoReturn:
    """Once text has been shown, a failure must not look like a clean (fail-over-able) error."""
    if shown and not isinstance(exc, StreamBrokenError):
        raise StreamBrokenError(
            exc.message,
            provider=exc.provider,
            partial_text="".join(shown),
            hint="the text shown so far is incomplete; the request was not re-sent",
        ) from None
    raise exc


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

