"""The OpenAI chat-completions wire format, both ways, for `openai_compat.VLLMEndpoint`.

Owns: the request body built from a `ChatRequest` (the caller's body with the server's own
model, never the caller's `model`: that is a public name such as "gpt-4o-mini", and vLLM
answers 404 to a name it does not serve), a
complete answer (text, tool calls, usage, finish reason, the server's own JSON) read back into
a `ChatResponse`, the served-model list, one streamed `data:` event parsed and its tool-call
deltas, the 1-token request a deep health check sends, and vLLM's Prometheus metrics parsed.
(Folding a stream's deltas stays inline in `openai_stream`: it runs 2,000 times per answer.)

The body is the caller's, verbatim, with one documented exception besides `model`: a
`developer` message goes as `system`. vLLM passes roles through to the model's chat template,
and templates that predate OpenAI's `developer` role (Qwen2.5's among them) silently drop it.

Must not: do I/O or build error messages itself (bad input leaves through `VLLMErrors`).
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from gpuctl.errors import Kind
from gpuctl.providers.base import (
    EMPTY,
    ChatRequest,
    ChatResponse,
    ToolCall,
    ToolCallDelta,
    Usage,
    estimated_usage,
    finish_reason,
    written,
)
from gpuctl.providers.openai_errors import VLLMErrors, one_line, server_message


def chat_body(request: ChatRequest, model: str | None, *, stream: bool) -> dict[str, Any]:
    """The JSON body of POST /v1/chat/completions: the request as the caller gave it (its own
    message dicts, every parameter verbatim: tools, response_format, vLLM's extras), with
    `model`, the server's own (configured, or the one it lists), in place of the caller's
    (None: no `model`, which vLLM allows), and `developer` messages as `system`."""
    body: dict[str, Any] = dict(request.params) if request.params else {}
    body["messages"] = [m.as_dict() if m.role != "developer" else {**m.as_dict(), "role": "system"}
                        for m in request.messages]
    if model:
        body["model"] = model
    if request.temperature is not None:
        body["temperature"] = request.temperature
    if request.max_tokens is not None:
        body["max_tokens"] = request.max_tokens
    if request.stop and "stop" not in body:
        body["stop"] = list(request.stop)
    if stream:
        body["stream"] = True
        # Usage only comes with include_usage; the caller's other stream options are kept.
        options = body.get("stream_options")
        body["stream_options"] = {**options, "include_usage": True} if isinstance(options, dict) else {
            "include_usage": True}
    else:
        body.pop("stream_options", None)  # vLLM refuses stream_options without stream
    return body


def ping_request() -> ChatRequest:
    """The smallest completion that proves the server can generate: one token of "ping"
    (of the server's own model, as every request)."""
    return ChatRequest.from_openai([{"role": "user", "content": "ping"}], temperature=0.0, max_tokens=1)


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


def tool_calls_of(message: dict[str, Any]) -> tuple[ToolCall, ...]:
    """`message.tool_calls` as vLLM sends them; arguments stay the text the model wrote."""
    calls = message.get("tool_calls")
    if not calls or not isinstance(calls, list):
        return ()
    out = []
    for call in calls:
        function = call.get("function") if isinstance(call, dict) else None
        if isinstance(function, dict):
            arguments = function.get("arguments")
            out.append(ToolCall(id=str(call.get("id") or ""), name=str(function.get("name") or ""),
                                arguments=arguments if isinstance(arguments, str) else json.dumps(arguments)))
    return tuple(out)


def chat_response(data: Any, body: dict[str, Any], request: ChatRequest, *, errors: VLLMErrors,
                  latency: float) -> ChatResponse:
    """A complete answer's JSON as a ChatResponse; `body` is what was sent. The model is the
    one we sent (a llama.cpp server echoes any name, or a file path), else the server's."""
    try:
        choice = data["choices"][0]
        message = choice["message"]
        text = message.get("content") or ""
        if not isinstance(text, str):
            raise TypeError("content is not text")
        calls = tool_calls_of(message)
    except (KeyError, IndexError, TypeError, AttributeError) as exc:
        why = f"no choices[0].message.content ({type(exc).__name__})"
        raise errors.malformed("chat completion", why) from None
    usage = usage_of(data.get("usage")) if data.get("usage") else estimated_usage(request, written(text, calls))
    return ChatResponse(
        text=text,
        provider=errors.provider,
        model=str(body.get("model") or data.get("model") or ""),
        usage=usage,
        finish_reason=finish_reason(choice.get("finish_reason"), tool_calls=bool(calls)),
        latency_s=latency,
        tool_calls=calls,
        raw=data,
    )


def tool_deltas(calls: Any, errors: Callable[[], VLLMErrors]) -> list[ToolCallDelta]:
    """One streamed `delta.tool_calls` list: the first piece of a call has id and name.
    Anything else than OpenAI's shape (an index that is not a whole number, a name that is not
    text) is a malformed stream (`errors` is called only then)."""
    if not isinstance(calls, list):
        raise errors().malformed("stream event", "delta.tool_calls is not a list of tool call deltas")
    out = []
    for call in calls:
        function = call.get("function", EMPTY) if isinstance(call, dict) else None
        index = call.get("index", 0) if isinstance(call, dict) else None
        if not isinstance(function, dict) or type(index) is not int or index < 0:
            raise errors().malformed("stream event", "a tool call delta without a whole-number index")
        ident, name, arguments = call.get("id"), function.get("name"), function.get("arguments")
        if not (ident is None or isinstance(ident, str)) or not (name is None or isinstance(name, str)) \
                or not (arguments is None or isinstance(arguments, str)):
            raise errors().malformed("stream event", "a tool call delta whose id, name or arguments is not text")
        out.append(ToolCallDelta(index, ident, name, arguments or ""))
    return out


def merge_deltas(deltas: list[ToolCallDelta]) -> list[ToolCallDelta]:
    """Pieces of the same call (one index) as one piece: what one network read brought of a
    call is one entry of a chunk, as OpenAI's own stream has it (id and name first)."""
    merged: dict[int, ToolCallDelta] = {}
    for d in deltas:
        seen = merged.get(d.index)
        merged[d.index] = d if seen is None else ToolCallDelta(
            d.index, seen.id or d.id, seen.name or d.name, seen.arguments + d.arguments)
    return list(merged.values())


# Asking for what a StreamChunk cannot carry (several choices, logprobs): chunks then also
# carry the server's own payloads, for a gateway to pass on.
RAW_PARAMS = ("n", "logprobs", "top_logprobs")


def wants_raw(params: Any) -> bool:
    n = params.get("n")
    return bool((isinstance(n, int) and n > 1) or params.get("logprobs") or params.get("top_logprobs"))


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
