"""Client for vLLM's OpenAI-compatible server: health, models, chat, streaming chat, metrics.

Shared by the Modal and Vast.ai providers and the generic user `endpoint` provider; they
differ only in base URL, key and provider name. Owns the mapping of every HTTP, transport
and parse failure on this API to `ProviderError` (kind + one-line message + hint), so no
caller ever sees an httpx exception, a traceback, or a cut answer presented as complete.

Must not: know about the router's priorities or breakers, read config, print, or put a key
in a message, a log line or `endpoint`. HTTP clients come from gpuctl.http only.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import time
from collections.abc import AsyncIterator, Callable
from typing import Any, NoReturn

import httpx

from gpuctl.errors import ConfigError, ProviderError, StreamBrokenError
from gpuctl.http.client import Timeouts, build_async_client, redact
from gpuctl.providers.base import (
    ChatRequest,
    ChatResponse,
    Health,
    HealthStatus,
    StreamChunk,
    Usage,
)

CHAT_PATH = "/v1/chat/completions"
MODELS_PATH = "/v1/models"
HEALTH_TIMEOUT = 10.0  # a health check answers in this or the endpoint counts as cold
_MAX_DETAIL = 200  # longest piece of a server's message quoted in ours


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


def _one_line(text: str, limit: int = _MAX_DETAIL) -> str:
    text = " ".join(text.split())
    return redact(text if len(text) <= limit else text[: limit - 1] + "…")


def _looks_like_html(content_type: str, body: bytes) -> bool:
    if "html" in content_type.lower():
        return True
    head = body[:200].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def _server_message(body: bytes) -> str | None:
    """vLLM's error text from {"error": {"message"}}, {"error": "..."} or {"detail": ...}."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if data.get("detail"):
        return str(data["detail"])
    return None


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
        url = httpx.URL(self._root).copy_with(username=None, password=None, query=None, fragment=None)
        return redact(str(url).rstrip("/")) + "/v1"

    def _http(self) -> httpx.AsyncClient:
        # Built on first use so an endpoint that is configured but never called holds no pool.
        if self._client is None:
            headers = {"Accept": "application/json"}
            if self._api_key:
                headers["Authorization"] = f"Bearer {self._api_key}"
            self._client = build_async_client(
                base_url=self._root,
                headers=headers,
                timeouts=self._timeouts,
                retries=self._retries,
                transport=self._transport,
            )
        return self._client

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.aclose()

    async def __aenter__(self) -> VLLMEndpoint:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # --- errors ------------------------------------------------------------------------

    def _error(self, message: str, *, kind: str, status: int | None = None, hint: str | None = None) -> ProviderError:
        return ProviderError(redact(message), provider=self.provider, kind=kind, status=status, hint=hint)

    def _transport_error(self, exc: httpx.HTTPError, what: str) -> ProviderError:
        where = self.endpoint
        if isinstance(exc, httpx.ConnectTimeout):
            return self._error(
                f"{self.provider}: timed out connecting to {where} after {self._timeouts.connect:g}s",
                kind="connect",
                hint="the host is unreachable: check the URL, your network, or whether the instance still exists",
            )
        if isinstance(exc, httpx.ConnectError):
            text = str(exc).lower()
            if any(s in text for s in ("name or service not known", "nodename nor servname", "getaddrinfo", "name resolution")):
                return self._error(
                    f"{self.provider}: cannot resolve the host of {where}",
                    kind="connect",
                    hint="check the endpoint URL (a Modal app that was stopped loses its URL)",
                )
            return self._error(
                f"{self.provider}: cannot connect to {where} (connection refused): the endpoint is down",
                kind="connect",
                hint="start or redeploy the server; a vLLM server whose engine died exits, so it refuses connections",
            )
        if isinstance(exc, httpx.ReadTimeout):
            return self._error(
                f"{self.provider}: no response from {where} within {self._timeouts.first_byte:g}s ({what})",
                kind="timeout",
                hint="a cold start may take longer than the first-byte timeout: raise it, or retry in a minute",
            )
        if isinstance(exc, httpx.TimeoutException):
            return self._error(f"{self.provider}: {what} timed out ({type(exc).__name__})", kind="timeout")
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            return self._error(
                f"{self.provider}: {where} closed the connection before the response was complete ({what})",
                kind="stream_cut",
                hint="the server may have crashed or restarted; the answer was not used",
            )
        if isinstance(exc, httpx.DecodingError):
            return self._error(f"{self.provider}: could not decode the response to {what}", kind="malformed")
        return self._error(f"{self.provider}: {what} failed: {type(exc).__name__}: {_one_line(str(exc))}", kind="connect")

    async def _status_error(self, response: httpx.Response, body: bytes, what: str) -> ProviderError:
        status = response.status_code
        reason = response.reason_phrase or ""
        where = self.endpoint
        ctype = response.headers.get("content-type", "")
        if _looks_like_html(ctype, body):
            detail = "got an HTML page, not JSON — a proxy error?"
        else:
            server = _server_message(body)
            detail = _one_line(server) if server else (_one_line(body.decode("utf-8", "replace")) or "no details")
        if status in (401, 403):
            sent = "the API key was refused" if self._api_key else "no API key was sent"
            return self._error(
                f"{self.provider}: HTTP {status} from {where}: {sent}",
                kind="auth",
                status=status,
                hint=f"set {self.provider}.api_key to the key the vLLM server was started with (--api-key)",
            )
        if status == 404:
            server = _server_message(body) or ""
            if "model" in server.lower():
                return await self._model_not_found(server)
            return self._error(
                f"{self.provider}: HTTP 404 for {what} at {where}: {detail}",
                kind="not_found",
                status=404,
                hint="is this the root of a vLLM OpenAI-compatible server? (the URL should not include a path)",
            )
        if status == 503:
            return self._error(
                f"{self.provider}: HTTP 503 from {where}: cold start or GPU quota ({detail})",
                kind="cold",
                status=503,
                hint="a scaled-to-zero container may be waking: retry in a minute; if it persists, check the provider's GPU quota",
            )
        if status == 429:
            after = response.headers.get("retry-after")
            return self._error(
                f"{self.provider}: rate limited by {where} (HTTP 429{f', retry after {after}s' if after else ''})",
                kind="rate_limit",
                status=429,
                hint="wait and retry, or lower the request rate",
            )
        if status == 400 or status == 422:
            return self._error(
                f"{self.provider}: the server rejected the request: {detail}",
                kind="bad_request",
                status=status,
                hint="check max_tokens against the model's context length and the message format",
            )
        return self._error(
            f"{self.provider}: HTTP {status} {reason} from {where} ({what}): {detail}",
            kind="http",
            status=status,
            hint="a proxy in front of the server answered: the server behind it may be down or restarting"
            if detail.startswith("got an HTML page")
            else "the server failed: check its logs",
        )

    async def _model_not_found(self, server_message: str) -> ProviderError:
        served: list[str] = []
        # The 404 is the error to report; the list of served names is a courtesy.
        with contextlib.suppress(ProviderError):
            served = [str(m.get("id")) for m in await self.models()]
        wanted = re.search(r"`([^`]*)`", server_message)
        name = f"'{wanted.group(1)}' " if wanted else ""
        served_text = ", ".join(served) if served else "unknown"
        return self._error(
            f"{self.provider}: model {name}is not served at {self.endpoint}; served: {served_text}",
            kind="not_found",
            status=404,
            hint=f"set {self.provider}.model to a served name (or leave it unset to use the server's model)",
        )

    async def _json(self, response: httpx.Response, what: str) -> Any:
        body = response.content
        if response.status_code != 200:
            raise await self._status_error(response, body, what)
        ctype = response.headers.get("content-type", "")
        if _looks_like_html(ctype, body):
            raise self._error(
                f"{self.provider}: {what} at {self.endpoint}: got an HTML page, not JSON — a proxy error?",
                kind="malformed",
                status=response.status_code,
            )
        try:
            return json.loads(body)
        except ValueError:
            raise self._error(
                f"{self.provider}: {what} at {self.endpoint} returned malformed JSON ({len(body)} bytes)",
                kind="malformed",
                status=response.status_code,
                hint="is this a vLLM OpenAI-compatible server?",
            ) from None

    def _malformed(self, what: str, why: str) -> ProviderError:
        return self._error(f"{self.provider}: unexpected {what} from {self.endpoint}: {why}", kind="malformed")

    # --- API ---------------------------------------------------------------------------

    async def models(self) -> list[dict[str, Any]]:
        """The served models (`id` is the name to send; vLLM adds `max_model_len`)."""
        try:
            response = await self._http().get(MODELS_PATH)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, "listing models") from None
        data = await self._json(response, "listing models")
        if not isinstance(data, dict) or not isinstance(data.get("data"), list):
            raise self._malformed("model list", "no `data` list")
        return [m for m in data["data"] if isinstance(m, dict)]

    def _body(self, request: ChatRequest, *, stream: bool) -> dict[str, Any]:
        body: dict[str, Any] = {"messages": [m.as_dict() for m in request.messages], "max_tokens": request.max_tokens}
        model = request.model or self.model
        if model:
            body["model"] = model
        if request.temperature is not None:
            body["temperature"] = request.temperature
        if request.stop:
            body["stop"] = list(request.stop)
        if stream:
            body["stream"] = True
            body["stream_options"] = {"include_usage": True}
        return body

    async def chat(self, request: ChatRequest) -> ChatResponse:
        body = self._body(request, stream=False)
        started = self._clock()
        try:
            response = await self._http().post(CHAT_PATH, json=body)
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, "chat completion") from None
        data = await self._json(response, "chat completion")
        latency = self._clock() - started
        try:
            choice = data["choices"][0]
            message = choice["message"]
            text = message.get("content") or ""
            if not isinstance(text, str):
                raise TypeError("content is not text")
        except (KeyError, IndexError, TypeError, AttributeError) as exc:
            raise self._malformed("chat completion", f"no choices[0].message.content ({type(exc).__name__})") from None
        return ChatResponse(
            text=text,
            provider=self.provider,
            model=str(data.get("model") or body.get("model") or ""),
            usage=_usage(data.get("usage")),
            finish_reason=choice.get("finish_reason"),
            latency_s=latency,
        )

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """Yield text as it arrives; the last chunk has finish_reason and usage. A stream that
        ends without `data: [DONE]`, or stalls longer than `timeouts.read` between events,
        raises ProviderError (StreamBrokenError, with the partial text, once text was yielded)."""
        body = self._body(request, stream=True)
        shown: list[str] = []
        model = body.get("model")
        finish_reason: str | None = None
        usage: Usage | None = None
        try:
            async with self._http().stream(
                "POST", CHAT_PATH, json=body, headers={"Accept": "text/event-stream"}
            ) as response:
                if response.status_code != 200:
                    raise await self._status_error(response, await response.aread(), "streaming chat")
                ctype = response.headers.get("content-type", "")
                if "text/event-stream" not in ctype:
                    raw = await response.aread()
                    if _looks_like_html(ctype, raw):
                        raise self._malformed("streaming chat", "got an HTML page, not JSON — a proxy error?")
                    raise self._malformed("streaming chat", f"expected an SSE stream, got {ctype or 'no content type'}")
                # SSE is parsed per network read, not per event: every `data:` event that
                # arrived together becomes one chunk (vLLM's chunks are not tokens anyway), so
                # a fast stream costs one pass through the router per read, not per event.
                blocks = _sse_data_blocks(response).__aiter__()
                # The first event waits for the prompt to be processed (and a queue), so it
                # gets the first-byte budget; after that, `read` bounds each gap.
                gap = self._timeouts.first_byte
                watchdog = _StallWatchdog()
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
                            raise self._error(
                                f"{self.provider}: the stream from {self.endpoint} stalled: no data for {gap:g}s",
                                kind="timeout",
                                hint="the server may be overloaded or stuck; the partial answer was not used",
                            ) from None
                        watchdog.idle()
                        gap = self._timeouts.read
                        pieces: list[str] = []
                        failed: ProviderError | None = None
                        for data in datas:
                            if data == "[DONE]":
                                done = True
                                break
                            try:
                                payload = self._event_payload(data)
                            except ProviderError as exc:
                                failed = exc  # show what arrived before it first
                                break
                            model = payload.get("model") or model
                            if payload.get("usage"):
                                usage = _usage(payload["usage"])
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
                    raise self._error(
                        f"{self.provider}: the stream from {self.endpoint} ended without [DONE]: the answer is incomplete",
                        kind="stream_cut",
                        hint="the server may have crashed or restarted; retry the request",
                    )
        except ProviderError as exc:
            _raise_broken(exc, shown)
        except httpx.HTTPError as exc:
            _raise_broken(self._transport_error(exc, "streaming chat"), shown)
        yield StreamChunk(text="", finish_reason=finish_reason or "stop", usage=usage, model=model)

    def _event_payload(self, data: str) -> dict[str, Any]:
        """One `data:` event as JSON; vLLM reports a failure mid-stream as {"error": ...}."""
        try:
            payload = json.loads(data)
        except ValueError:
            raise self._malformed("stream event", "not JSON") from None
        if not isinstance(payload, dict):
            raise self._malformed("stream event", "not a JSON object")
        if "error" in payload:
            message = _server_message(data.encode()) or "unknown error"
            raise self._error(f"{self.provider}: the server failed mid-stream: {_one_line(message)}", kind="http")
        return payload

    async def health(self, *, deep: bool = False, timeout: float | None = None) -> Health:
        """ready / cold / degraded / unhealthy, never raises for the endpoint's failures.

        `GET /health` (no key needed); `deep` also lists models and generates one token,
        because /health can answer while the model cannot serve. `cold`: connected but no
        answer within `timeout`, or a 503 (a scaled-to-zero container waking)."""
        budget = HEALTH_TIMEOUT if timeout is None else timeout
        limits = httpx.Timeout(connect=min(self._timeouts.connect, budget), read=budget, write=budget, pool=budget)
        started = self._clock()

        def result(status: HealthStatus, detail: str = "", models: tuple[str, ...] = ()) -> Health:
            return Health(
                provider=self.provider,
                status=status,
                endpoint=self.endpoint,
                latency_s=self._clock() - started,
                detail=detail,
                models=models,
            )

        try:
            response = await self._http().get("/health", timeout=limits)
        except httpx.ReadTimeout:
            return result("cold", f"connected, but no answer within {budget:g}s: a cold start?")
        except httpx.HTTPError as exc:
            return result("unhealthy", self._transport_error(exc, "health check").message)
        body = response.content
        if response.status_code != 200:
            error = await self._status_error(response, body, "health check")
            return result("cold" if error.kind == "cold" else "unhealthy", error.message)
        served: tuple[str, ...] = ()
        if not deep:
            # /health needs no key; /v1/models does, and names what is served: checking both
            # catches a wrong key or a model mismatch (the seed's "model not found") up front.
            try:
                async with asyncio.timeout(budget):
                    served = tuple(str(m.get("id")) for m in await self.models())
            except TimeoutError:
                return result("cold", f"/health answered, but /v1/models took over {budget:g}s")
            except ProviderError as exc:
                status: HealthStatus = "unhealthy" if exc.kind in ("auth", "connect") else "degraded"
                return result(status, exc.message)
            if self.model and served and self.model not in served:
                return result("unhealthy", f"{self.provider}: model {self.model!r} is not served here "
                                           f"(served: {', '.join(served)})", served)
            return result("ready", "GET /health and /v1/models answered", served)

        try:
            async with asyncio.timeout(budget):
                served = tuple(str(m.get("id")) for m in await self.models())
                probe = ChatRequest.from_openai(
                    [{"role": "user", "content": "ping"}],
                    model=self.model or (served[0] if served else None),
                    temperature=0.0,
                    max_tokens=1,
                )
                await self.chat(probe)
        except TimeoutError:
            return result("cold", f"/health answered, but generating one token took over {budget:g}s", served)
        except ProviderError as exc:
            if exc.kind in ("cold", "timeout"):
                return result("cold", exc.message, served)
            if exc.kind in ("auth", "not_found", "bad_request"):
                return result("unhealthy", exc.message, served)
            return result("degraded", f"/health answered, but it cannot generate: {exc.message}", served)
        return result("ready", "generated a token", served)

    async def metrics(self) -> dict[str, float] | None:
        """vllm:* values from /metrics (num_requests_running, token counters, ...), or None
        when the server publishes none."""
        try:
            response = await self._http().get("/metrics", headers={"Accept": "text/plain"})
        except httpx.HTTPError as exc:
            raise self._transport_error(exc, "reading metrics") from None
        if response.status_code == 404:
            return None
        if response.status_code != 200:
            raise await self._status_error(response, response.content, "reading metrics")
        return parse_metrics(response.text) or None


async def _sse_data_blocks(response: httpx.Response) -> AsyncIterator[list[str]]:
    """The `data` of each complete server-sent event, grouped by the network read it arrived in.

    A small reader of the SSE format (WHATWG "server-sent events"): lines end in LF, CRLF or CR;
    `data:` lines (one optional space after the colon) accumulate, joined by LF; a blank line
    dispatches the event; comments (`:`) and other fields (`event`, `id`, `retry`) are ignored,
    since vLLM sends none. A final event without its blank line is dropped, as the format says.
    """
    tail = ""
    data: list[str] = []

    def take(lines: list[str]) -> list[str]:
        ready: list[str] = []
        for line in lines:
            line = line.rstrip("\r\n")
            if not line:
                if data:
                    ready.append(data[0] if len(data) == 1 else "\n".join(data))
                    data.clear()
            elif line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
        return ready

    async for text in response.aiter_text():
        lines = (tail + text).splitlines(keepends=True)
        # The last line may be cut mid-way (or a CR may be the first half of CRLF): keep it.
        tail = lines.pop() if lines and not lines[-1].endswith("\n") else ""
        ready = take(lines)
        if ready:
            yield ready
    if tail.endswith("\r"):  # the stream ended on a bare CR: that line was complete
        ready = take(tail.splitlines(keepends=True))
        if ready:
            yield ready


class _StallWatchdog:
    """Cancels the reading task when one wait for the next SSE event lasts longer than `gap`.

    One timer re-armed lazily instead of an `asyncio.timeout` per event: on a 2,000-chunk stream
    the per-event timers cost ~15% of the CPU (bench/bench_router.py). It only fires while we
    wait on the server, never while the consumer is busy with a chunk.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._since = self._loop.time()
        self._gap = 0.0
        self._waiting = False
        self._fired = False
        self._handle: asyncio.TimerHandle | None = None

    def waiting(self, gap: float) -> None:
        self._since = self._loop.time()
        self._gap = gap
        self._waiting = True
        if self._handle is None:
            self._handle = self._loop.call_at(self._since + gap, self._check)

    def idle(self) -> None:
        self._waiting = False

    def _check(self) -> None:
        now = self._loop.time()
        if self._waiting and now >= self._since + self._gap and self._task is not None:
            self._fired = True
            self._handle = None
            self._task.cancel()
            return
        deadline = self._since + self._gap if self._waiting else now + self._gap
        self._handle = self._loop.call_at(max(deadline, now + 0.001), self._check)

    def stalled(self) -> bool:
        """True if the cancellation came from us (and is absorbed), False if from elsewhere."""
        if not self._fired or self._task is None:
            return False
        self._fired = False
        return self._task.uncancel() == 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None


def _usage(raw: Any) -> Usage:
    if not isinstance(raw, dict):
        return Usage()
    try:
        return Usage(
            prompt_tokens=int(raw.get("prompt_tokens") or 0),
            completion_tokens=int(raw.get("completion_tokens") or 0),
        )
    except (TypeError, ValueError):
        return Usage()


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

