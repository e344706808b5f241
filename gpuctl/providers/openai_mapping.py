"""The OpenAI chat-completions wire format, both ways, for `openai_compat.VLLMEndpoint`.

Owns: the request body built from a `ChatRequest`, a complete answer's text, usage and finish
reason read back into a `ChatResponse`, the served-model list, one streamed `data:` event
parsed, and the 1-token request a deep health check sends. (Folding a stream's deltas into text
stays inline in `VLLMEndpoint.stream`: it runs once per event, 2,000 times per answer.)

Must not: do I/O or build error messages itself (bad input leaves through `VLLMErrors`).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from gpuctl.errors import Kind
from gpuctl.providers.base import ChatRequest, ChatResponse, Usage
from gpuctl.providers.openai_errors import VLLMErrors, one_line, server_message


def chat_body(request: ChatRequest, default_model: str | None, *, stream: bool) -> dict[str, Any]:
    """The JSON body of POST /v1/chat/completions; `default_model` when the request names none."""
    body: dict[str, Any] = {"messages": [m.as_dict() for m in request.messages], "max_tokens": request.max_tokens}
    model = request.model or default_model
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


def ping_request(model: str | None) -> ChatRequest:
    """The smallest completion that proves the server can generate: one token of "ping"."""
    return ChatRequest.from_openai([{"role": "user", "content": "ping"}], model=model, temperature=0.0, max_tokens=1)


def model_list(data: Any, errors: Callable[[], VLLMErrors]) -> list[dict[str, Any]]:
    """The entries of GET /v1/models (`id` is the name to send; vLLM adds `max_model_len`)."""
    if not isinstance(data, dict) or not isinstance(data.get("data"), list):
        raise errors().malformed("model list", "no `data` list")
    return [m for m in data["data"] if isinstance(m, dict)]


def usage_of(raw: Any) -> Usage:
    """`usage` as vLLM sends it; anything unreadable counts as no usage, never as an error."""
    if not isinstance(raw, dict):
        return Usage()
    try:
        return Usage(
            prompt_tokens=int(raw.get("prompt_tokens") or 0),
            completion_tokens=int(raw.get("completion_tokens") or 0),
        )
    except (TypeError, ValueError):
        return Usage()


def chat_response(data: Any, body: dict[str, Any], *, errors: VLLMErrors, latency: float) -> ChatResponse:
    """A complete answer's JSON as a ChatResponse; `body` is what was sent (for the model)."""
    try:
        choice = data["choices"][0]
        message = choice["message"]
        text = message.get("content") or ""
        if not isinstance(text, str):
            raise TypeError("content is not text")
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        why = f"no choices[0].message.content ({type(exc).__name__})"
        raise errors.malformed("chat completion", why) from None
    return ChatResponse(
        text=text,
        provider=errors.provider,
        model=str(data.get("model") or body.get("model") or ""),
        usage=usage_of(data.get("usage")),
        finish_reason=choice.get("finish_reason"),
        latency_s=latency,
    )


def event_payload(data: str, errors: Callable[[], VLLMErrors]) -> dict[str, Any]:
    """One `data:` event as JSON; vLLM reports a failure mid-stream as {"error": ...}.

    On the streaming hot path: `errors` is called only when the event is bad."""
    try:
        payload = json.loads(data)
    except ValueError:
        raise errors().malformed("stream event", "not JSON") from None
    if not isinstance(payload, dict):
        raise errors().malformed("stream event", "not a JSON object")
    if "error" in payload:
        message = server_message(data) or "unknown error"
        where = errors()
        raise where.error(f"{where.provider}: the server failed mid-stream: {one_line(message)}", kind=Kind.HTTP)
    return payload
