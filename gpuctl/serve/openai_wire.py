"""The OpenAI Chat Completions wire format ⇄ gpuctl's request and answer types: the one place
the gateway translates between HTTP and `gpuctl.providers.base`.

Owns: a request body → `WireRequest` (a `ChatRequest` plus how to answer it), checked the way
the OpenAI API checks it (wrong types and unknown models are `ApiError`s in its shape); an
answer → the `chat.completion` body; stream chunks → `data: {json}\\n\\n` events … `data:
[DONE]` (`StreamEncoder`); the `/v1/models` list; header values.

The request model grows with the fidelity work (tools, JSON output, content parts): when it
does, only this module changes. Until then fields the request model cannot carry yet (`tools`,
`response_format`, `top_p`, `user`, …) are accepted and not forwarded.

Must not: do I/O, know a provider, or add work per streamed chunk beyond one string join
(bench/bench_serve.py measures it).
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpuctl.providers.base import ChatRequest, ChatResponse, Message, StreamChunk, Usage
from gpuctl.serve.errors import ApiError

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
MAX_STOP = 4  # as the OpenAI API
DONE = b"data: [DONE]\n\n"


@dataclass(frozen=True)
class WireRequest:
    """What a client asked: the request to route, whether to stream, and the public model name."""

    chat: ChatRequest
    stream: bool
    include_usage: bool
    model: str


def parse_json(raw: bytes) -> dict[str, Any]:
    """The body as a JSON object, or a 400 saying what is wrong with it."""
    try:
        body = json.loads(raw)
    except (ValueError, UnicodeDecodeError) as exc:
        raise ApiError(400, f"the request body is not valid JSON: {exc}", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    return body


def request_from_body(body: Mapping[str, Any], *, models: Sequence[str], max_tokens: int) -> WireRequest:
    """Check a chat request the way the OpenAI API does and build the `ChatRequest`.

    `models` are the public names clients may ask for (the first when none is given); each
    provider answers with its own configured model, so `ChatRequest.model` stays None.
    `max_tokens` is the default when the client sets none (Anthropic needs one)."""
    model = body.get("model")
    if model is None:
        model = models[0]
    elif not isinstance(model, str):
        raise _type_error("model", "a string", model)
    elif model not in models:
        raise ApiError(404, f"The model `{model}` does not exist or you do not have access to it. "
                            f"This gateway serves: {', '.join(models)}.", code="model_not_found", param="model")
    n = body.get("n")
    if n is not None and (not _is_int(n) or n != 1):
        raise ApiError(400, "only n = 1 is supported", code="unsupported_value", param="n")
    temperature = body.get("temperature")
    if temperature is not None:
        if not _is_number(temperature) or not 0 <= temperature <= 2:
            raise ApiError(400, f"Invalid 'temperature': expected a number from 0 to 2, got {_show(temperature)}.",
                           code="invalid_value", param="temperature")
        temperature = float(temperature)
    limit = body.get("max_completion_tokens", body.get("max_tokens"))
    if limit is None:
        limit = max_tokens
    elif not _is_int(limit) or limit < 1:
        raise ApiError(400, f"Invalid 'max_tokens': expected a whole number of at least 1, got {_show(limit)}.",
                       code="invalid_value", param="max_tokens")
    stream = body.get("stream")
    if stream is not None and not isinstance(stream, bool):
        raise _type_error("stream", "a boolean", stream)
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _type_error("stream_options", "an object", options)
    include_usage = bool(options and options.get("include_usage"))
    chat = ChatRequest(messages=_messages(body.get("messages")), model=None, temperature=temperature,
                       max_tokens=int(limit), stop=_stop(body.get("stop")))
    return WireRequest(chat, bool(stream), include_usage, model)


def _messages(raw: Any) -> tuple[Message, ...]:
    if raw is None:
        raise ApiError(400, "Missing required parameter: 'messages'.", code="missing_required_parameter",
                       param="messages")
    if not isinstance(raw, list) or not raw:
        raise ApiError(400, "Invalid 'messages': expected a non-empty array of messages.", code="invalid_value",
                       param="messages")
    out = []
    for i, msg in enumerate(raw):
        where = f"messages[{i}]"
        if not isinstance(msg, dict):
            raise _type_error(where, "an object", msg)
        role = msg.get("role")
        if role not in ROLES:
            raise ApiError(400, f"Invalid value for '{where}.role': {_show(role)}; expected one of "
                                f"{', '.join(sorted(ROLES))}.", code="invalid_value", param=f"{where}.role")
        # OpenAI's newer name for the system role: every provider here knows it as "system".
        out.append(Message("system" if role == "developer" else role, _content(msg.get("content"), where)))
    return tuple(out)


def _content(content: Any, where: str) -> str:
    if content is None or isinstance(content, str):
        return content or ""
    if isinstance(content, list):
        texts = []
        for j, part in enumerate(content):
            if not isinstance(part, dict) or part.get("type") != "text" or not isinstance(part.get("text"), str):
                raise ApiError(400, f"Invalid '{where}.content[{j}]': only text parts are supported.",
                               code="invalid_value", param=f"{where}.content")
            texts.append(part["text"])
        return "".join(texts)
    raise _type_error(f"{where}.content", "a string or an array of content parts", content)


def _stop(raw: Any) -> tuple[str, ...]:
    if raw is None:
        return ()
    if isinstance(raw, str):
        return (raw,)
    if isinstance(raw, list) and all(isinstance(s, str) for s in raw) and len(raw) <= MAX_STOP:
        return tuple(raw)
    raise ApiError(400, f"Invalid 'stop': expected a string or up to {MAX_STOP} strings.", code="invalid_value",
                   param="stop")


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _type_error(param: str, expected: str, value: Any) -> ApiError:
    return ApiError(400, f"Invalid type for '{param}': expected {expected}, but got {type(value).__name__} "
                         f"({_show(value)}).", code="invalid_type", param=param)


# -------------------------------------------------------------------------------- answers


def usage_body(usage: Usage) -> dict[str, int]:
    return usage.as_dict()


def completion_body(response: ChatResponse, *, completion_id: str, created: int, model: str) -> bytes:
    """The `chat.completion` object for a whole answer. `model` is the answering provider's
    model (as OpenAI names the snapshot that answered), else the public name asked for."""
    return json.dumps({
        "id": completion_id, "object": "chat.completion", "created": created, "model": response.model or model,
        "choices": [{"index": 0, "message": {"role": "assistant", "content": response.text, "refusal": None},
                     "logprobs": None, "finish_reason": response.finish_reason or "stop"}],
        "usage": usage_body(response.usage), "system_fingerprint": None,
    }).encode()


class StreamEncoder:
    """`chat.completion.chunk` events for one streamed answer, byte for byte as the OpenAI API
    sends them: the role first, one event per text chunk, the finish reason in an empty delta,
    then (with `include_usage`) a usage event with `choices: []`, then `data: [DONE]`.

    Every event but the text is built once; a text event is three byte strings joined."""

    def __init__(self, *, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self.head = ('data: {"id":' + json.dumps(completion_id) + ',"object":"chat.completion.chunk","created":'
                     + str(created) + ',"model":' + json.dumps(model) + ',"system_fingerprint":null,"choices":[')
        self.include_usage = include_usage
        # OpenAI sends `"usage": null` on every chunk once usage was asked for.
        self.tail = ("]," + '"usage":null}\n\n' if include_usage else "]}\n\n").encode()
        self.text_head = (self.head + '{"index":0,"delta":{"content":').encode()
        self.text_tail = b'},"logprobs":null,"finish_reason":null}' + self.tail

    def role(self) -> bytes:
        return (self.head + '{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
                '"logprobs":null,"finish_reason":null}').encode() + self.tail

    def text(self, text: str) -> bytes:
        return self.text_head + json.dumps(text).encode() + self.text_tail

    def chunk(self, chunk: StreamChunk) -> bytes:
        """The events for one chunk from the router; the last one ends the stream."""
        out = self.text(chunk.text) if chunk.text else b""
        if chunk.finish_reason is not None:
            out += self.finish(chunk.finish_reason, chunk.usage)
        return out

    def finish(self, reason: str, usage: Usage | None) -> bytes:
        out = (self.head + '{"index":0,"delta":{},"logprobs":null,"finish_reason":' + json.dumps(reason)
               + "}").encode() + self.tail
        # No usage event when the provider reported none: zero tokens would be a lie.
        if self.include_usage and usage is not None:
            out += (self.head + '],"usage":' + json.dumps(usage_body(usage), separators=(",", ":"))
                    + "}\n\n").encode()
        return out + DONE

    @staticmethod
    def error(error: ApiError) -> bytes:
        """An error after the stream began: the OpenAI SDKs raise it as an `APIError`."""
        return b"data: " + error.body() + b"\n\n"


def models_body(models: Sequence[str], *, created: int) -> bytes:
    return json.dumps({"object": "list", "data": [{"id": m, "object": "model", "created": created,
                                                   "owned_by": "gpuctl"} for m in models]}).encode()


def header_value(text: str, limit: int = 900) -> bytes:
    """Text as an HTTP header value: ASCII (the reasons say "10–30 s"), one line, bounded."""
    flat = " ".join(text.replace("–", "-").replace("…", "...").split())
    data = flat.encode("ascii", "replace")
    return data if len(data) <= limit else data[: limit - 3] + b"..."
