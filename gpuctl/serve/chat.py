"""`POST /v1/chat/completions` and `GET /v1/models`: HTTP in, `BackendManager.complete` /
`stream_chat` out, and back (the wire format is `openai_wire`'s).

A stream's headers wait for the first token, so that a request nobody can answer still gets a
real status (502/503 with each provider's reason) and the answering provider is in
`x-gpuctl-provider`; after that every chunk is sent as it arrives. A client that hangs up
cancels the upstream request (the ledger keeps the partial answer, marked stopped). Each
request leaves one access-log line and its metrics.

Must not: route, price, or hold the request model's rules (`openai_wire` has those).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import secrets
import time
from typing import Any

from gpuctl.errors import AllProvidersFailedError, GpuctlError, StreamBrokenError
from gpuctl.providers.base import Usage
from gpuctl.routing.ledger import CLIENT_KEY
from gpuctl.routing.manager import BackendManager
from gpuctl.serve import openai_wire as wire
from gpuctl.serve.asgi import (
    HangUpWatch,
    Headers,
    Receive,
    Scope,
    Send,
    read_body,
    send_bytes,
    send_error,
)
from gpuctl.serve.errors import ApiError, api_error
from gpuctl.serve.gateway import Gateway

SSE_HEADERS: Headers = [(b"content-type", b"text/event-stream; charset=utf-8"), (b"cache-control", b"no-cache"),
                        (b"x-accel-buffering", b"no")]  # nginx: pass each event on at once
CLIENT_CLOSED = 499  # nginx's word for "the client went away first" (the log's status)


async def models(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> dict[str, Any]:
    key = gw.authorize(scope)
    await send_bytes(send, 200, wire.models_body(gw.options.models, created=int(gw.started_at)))
    return {"status": 200, "key": key}


async def completions(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> dict[str, Any]:
    raise ApiError(404, "POST /v1/completions is not served: use /v1/chat/completions", code="unknown_url")


async def chat_completions(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> dict[str, Any]:
    key = gw.authorize(scope)
    body = await read_body(scope, receive, gw.options.max_body_bytes)
    asked = wire.request_from_body(wire.parse_json(body), models=gw.options.models, max_tokens=gw.options.max_tokens)
    manager = gw.acquire()
    token = CLIENT_KEY.set(key)
    log: dict[str, Any] = {"key": key, "model": asked.model, "stream": asked.stream}
    started = time.perf_counter()
    try:
        if asked.stream:
            await _stream(gw, manager, asked, receive, send, log)
        else:
            await _whole(gw, manager, asked, receive, send, log)
    finally:
        CLIENT_KEY.reset(token)
        gw.release(manager)
        _observe(gw, manager, log, time.perf_counter() - started)
    return log


async def _whole(gw: Gateway, manager: BackendManager, asked: wire.WireRequest, receive: Receive, send: Send,
                 log: dict[str, Any]) -> None:
    watch = HangUpWatch(receive)
    try:
        async with asyncio.timeout(gw.options.request_timeout_s):
            response = await manager.complete(asked.chat)
    except asyncio.CancelledError:
        if not watch.hung_up():
            raise
        log["status"] = CLIENT_CLOSED
        return
    except (GpuctlError, TimeoutError) as exc:
        watch.stop()
        await _fail(gw, send, exc, log)
        return
    finally:
        watch.stop()
    log.update(status=200, provider=response.provider, answered_model=response.model, usage=response.usage,
               fallback=response.fallback, latency_s=response.latency_s, ttft_s=response.ttft_s)
    payload = wire.completion_body(response, completion_id=_completion_id(), created=int(time.time()),
                                   model=asked.model)
    await send_bytes(send, 200, payload, _routing_headers(response.provider, response.fallback_reason))


async def _stream(gw: Gateway, manager: BackendManager, asked: wire.WireRequest, receive: Receive, send: Send,
                  log: dict[str, Any]) -> None:
    watch = HangUpWatch(receive)
    stream = manager.stream_chat(asked.chat)
    async with contextlib.aclosing(stream.__aiter__()) as chunks:  # type: ignore[type-var]
        try:
            try:
                async with asyncio.timeout(gw.options.request_timeout_s):
                    first = await anext(chunks)
            except (GpuctlError, TimeoutError) as exc:
                watch.stop()
                await _fail(gw, send, exc, log)
                return
            encoder = wire.StreamEncoder(completion_id=_completion_id(), created=int(time.time()),
                                         model=first.model or asked.model, include_usage=asked.include_usage)
            assert stream.provider is not None
            log.update(status=200, provider=stream.provider)
            await send({"type": "http.response.start", "status": 200,
                        "headers": SSE_HEADERS + _routing_headers(stream.provider, stream.fallback_reason)})
            finished = first.finish_reason is not None
            await send({"type": "http.response.body", "body": encoder.start(first), "more_body": True})
            try:
                async for chunk in chunks:
                    finished = chunk.finish_reason is not None
                    data = encoder.chunk(chunk)
                    if data:
                        await send({"type": "http.response.body", "body": data, "more_body": True})
                tail = b"" if finished else encoder.finish("stop", stream.usage)
            except StreamBrokenError as exc:  # after text was sent: say so in the stream, as OpenAI does
                log["error"] = exc.message
                tail = encoder.error(api_error(exc))
            watch.stop()  # from here on `receive` says "disconnect" by itself
            await send({"type": "http.response.body", "body": tail, "more_body": False})
        except asyncio.CancelledError:
            if not watch.hung_up():
                raise
            log["status"] = CLIENT_CLOSED
        finally:
            watch.stop()
            log.update(usage=stream.usage, fallback=stream.fallback, latency_s=stream.latency_s, ttft_s=stream.ttft_s,
                       answered_model=stream.model)


async def _fail(gw: Gateway, send: Send, exc: BaseException, log: dict[str, Any]) -> None:
    """Nobody answered (or the request was refused upstream): the error in OpenAI's shape."""
    if isinstance(exc, TimeoutError):
        error = ApiError(504, f"no answer within {gw.options.request_timeout_s:g}s (serve.request_timeout_s)",
                         "timeout", "request_timeout")
    else:
        error = api_error(exc)
    if isinstance(exc, AllProvidersFailedError):
        log["attempts"] = exc.attempts
        if error.status == 503:
            error.headers.append((b"retry-after", str(gw.retry_after(exc.attempts)).encode()))
    log.update(status=error.status, error=error.message)
    await send_error(send, error)


def _routing_headers(provider: str, fallback_reason: str | None) -> Headers:
    headers: Headers = [(b"x-gpuctl-provider", provider.encode())]
    if fallback_reason:
        headers.append((b"x-gpuctl-fallback-reason", wire.header_value(fallback_reason)))
    return headers


# Unique per process (random) and per answer (a counter): no system call per request.
_IDS = itertools.count()
_ID_PREFIX = "chatcmpl-" + secrets.token_hex(6)


def _completion_id() -> str:
    return f"{_ID_PREFIX}{next(_IDS):012x}"


def _observe(gw: Gateway, manager: BackendManager, log: dict[str, Any], seconds: float) -> None:
    """Metrics and the access log's fields for one chat request (the dispatcher writes the line)."""
    provider = log.get("provider") or "none"
    usage: Usage = log.pop("usage", None) or Usage()
    fallback = log.pop("fallback", None)
    attempts = list(fallback.attempts) if fallback is not None else list(log.pop("attempts", ()))
    log.pop("attempts", None)
    status = log.get("status", 500)
    outcome = ("ok" if status == 200 and "error" not in log else "client_closed" if status == CLIENT_CLOSED
               else "error" if status >= 500 or status == 200 else "rejected")
    latency = log.pop("latency_s", None)
    cost = None
    if provider != "none":
        cost = manager.estimate_cost(provider, log.get("answered_model"), usage, latency or seconds)
    ttft = log.pop("ttft_s", None)
    gw.metrics.answered(provider, outcome, latency=seconds, ttft=ttft, prompt_tokens=usage.prompt_tokens,
                        completion_tokens=usage.completion_tokens, cost=cost, attempts=attempts)
    log.update(provider=log.get("provider"), ttft_ms=None if ttft is None else round(ttft * 1000, 1),
               prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
               cost=None if cost is None else str(cost),
               fallback_reason=fallback.text if fallback is not None else None,
               attempts=[a.text for a in attempts] or None)
