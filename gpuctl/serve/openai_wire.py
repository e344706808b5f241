"""The OpenAI Chat Completions wire format ⇄ gpuctl's request and answer types: the one place
the gateway translates between HTTP and `gpuctl.providers`.

Owns: a request body → `WireRequest` (the `ChatRequest` that `providers.chat_api` parses — the
whole OpenAI request: tools, JSON output, content parts — plus how to answer it), with what
only a gateway checks (the public model name, `stream_options`); an answer → the
`chat.completion` body (`ChatResponse.to_openai`); stream chunks → `data: {json}\n\n` events …
`data: [DONE]` (`StreamEncoder`); the `/v1/models` list; header values.

Must not: do I/O, know a provider, or add work per streamed text chunk beyond one string join
(bench/bench_serve.py measures it).
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from gpuctl.providers.base import (
    ChatRequest,
    ChatResponse,
    StreamChunk,
    ToolCallDelta,
    Usage,
    finish_reason,
    usage_dict,
)
from gpuctl.providers.chat_api import CompletionChunks, RequestError, parse_chat_request
from gpuctl.serve.errors import ApiError

DONE = b"data: [DONE]\n\n"
MAX_DEPTH = 128  # levels of nesting a request body may have
_COMPACT = (",", ":")


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
    except RecursionError:
        raise ApiError(400, "the request body is nested too deeply", code="invalid_json") from None
    if not isinstance(body, dict):
        raise ApiError(400, "the request body must be a JSON object", code="invalid_json")
    if raw.count(b"[") + raw.count(b"{") > MAX_DEPTH and _deeper_than(body, MAX_DEPTH):
        # The parser takes ~1000 levels; encoding it again for a provider fails sooner, deep in
        # its client, as a 500. No real request nests like this (a JSON schema does not).
        raise ApiError(400, f"the request body is nested more than {MAX_DEPTH} levels deep", code="invalid_json")
    if b"\\ud" in raw or b"\\uD" in raw:
        # JSON may escape half a surrogate pair (`"\ud83d"`), which no UTF-8 encoder can send
        # on: refuse it here rather than fail deep in a provider's client as a 500.
        try:
            json.dumps(body, ensure_ascii=False).encode()
        except UnicodeEncodeError:
            raise ApiError(400, "the request body holds an unpaired UTF-16 surrogate escape (\\ud800-\\udfff)",
                           code="invalid_json") from None
    return body


def _deeper_than(value: Any, limit: int) -> bool:
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        if depth > limit:
            return True
        if isinstance(item, dict):
            stack.extend((v, depth + 1) for v in item.values() if isinstance(v, dict | list))
        elif isinstance(item, list):
            stack.extend((v, depth + 1) for v in item if isinstance(v, dict | list))
    return False


def request_from_body(body: Mapping[str, Any], *, models: Sequence[str], max_tokens: int) -> WireRequest:
    """Check a chat request and build the `ChatRequest` (`providers.chat_api` validates the
    request itself; every field it does not read travels to the providers verbatim).

    `models` are the public names clients may ask for (the first when none is given). Each
    provider answers with its own configured model, so the public name is not forwarded.
    `max_tokens` is the limit when the client sets none (the CLI's default, `chat.max_tokens`)."""
    model = body.get("model")
    if model is None:
        model = models[0]
    elif not isinstance(model, str):
        raise _type_error("model", "a string", model)
    elif model not in models:
        model = model if len(model) <= 100 else model[:99] + "…"  # an error quotes, never echoes a body
        raise ApiError(404, f"The model `{model}` does not exist or you do not have access to it. "
                            f"This gateway serves: {', '.join(models)}.", code="model_not_found", param="model")
    options = body.get("stream_options")
    if options is not None and not isinstance(options, dict):
        raise _type_error("stream_options", "an object", options)
    if options and options.get("include_usage") is not None and not isinstance(options["include_usage"], bool):
        raise _type_error("stream_options.include_usage", "a boolean", options["include_usage"])
    forwarded = {k: v for k, v in body.items() if k != "model"}
    if forwarded.get("max_tokens") is None and forwarded.get("max_completion_tokens") is None:
        forwarded["max_tokens"] = max_tokens
    try:
        chat = parse_chat_request(forwarded)
    except RequestError as exc:
        raise ApiError(400, exc.message, code="invalid_value", param=exc.param) from None
    return WireRequest(chat, chat.stream, bool(options and options.get("include_usage")), model)


def _show(value: Any) -> str:
    text = json.dumps(value) if not isinstance(value, str) else repr(value)
    return text if len(text) <= 40 else text[:37] + "…"


def _type_error(param: str, expected: str, value: Any) -> ApiError:
    return ApiError(400, f"Invalid type for '{param}': expected {expected}, but got {type(value).__name__} "
                         f"({_show(value)}).", code="invalid_type", param=param)


# -------------------------------------------------------------------------------- answers


def completion_body(response: ChatResponse, *, completion_id: str, created: int, model: str) -> bytes:
    """The `chat.completion` object for a whole answer (tool calls, every choice of an n > 1
    answer, logprobs included). `model` is the answering provider's model (as OpenAI names the
    snapshot that answered), else the public name asked for."""
    body = response.to_openai(id=completion_id, created=created)
    body["model"] = response.model or model
    return json.dumps(body).encode()


class StreamEncoder:
    """`chat.completion.chunk` events for one streamed answer, byte for byte as the OpenAI API
    sends them: the role first, one event per text chunk, tool-call deltas (index, id, type and
    name first, then argument fragments), the finish reason in an empty delta, then (with
    `include_usage`) a usage event with `choices: []`, then `data: [DONE]`. A server's own
    payloads (n > 1, logprobs) pass through with our id and model (`CompletionChunks`).

    Every event but the text is built once; a text event is three byte strings joined."""

    def __init__(self, *, completion_id: str, created: int, model: str, include_usage: bool) -> None:
        self.head = ('data: {"id":' + json.dumps(completion_id) + ',"object":"chat.completion.chunk","created":'
                     + str(created) + ',"model":' + json.dumps(model) + ',"system_fingerprint":null,"choices":[')
        self.include_usage = include_usage
        # OpenAI sends `"usage": null` on every chunk once usage was asked for.
        self.tail = ("]," + '"usage":null}\n\n' if include_usage else "]}\n\n").encode()
        self.text_head = (self.head + '{"index":0,"delta":{"content":').encode()
        self.text_tail = b'},"logprobs":null,"finish_reason":null}' + self.tail
        self.calls = False  # tool calls were streamed: the finish reason is `tool_calls`
        self.raw = CompletionChunks(model=model, id=completion_id, created=created, include_usage=include_usage)
        self.passthrough = False

    def role(self) -> bytes:
        return (self.head + '{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
                '"logprobs":null,"finish_reason":null}').encode() + self.tail

    def start(self, first: StreamChunk) -> bytes:
        """The first events: the role, then the first chunk (a server's own payloads carry
        their own role)."""
        if first.raw is not None:
            return self.chunk(first)
        return self.role() + self.chunk(first)

    def text(self, text: str) -> bytes:
        return self.text_head + json.dumps(text).encode() + self.text_tail

    def chunk(self, chunk: StreamChunk) -> bytes:
        """The events for one chunk from the router; the last one ends the stream."""
        if chunk.raw is not None or self.passthrough:
            self.passthrough = True
            out = b"".join(b"data: " + json.dumps(d, separators=_COMPACT).encode() + b"\n\n"
                           for d in self.raw.of(chunk))
            return out + DONE if chunk.finish_reason is not None else out
        out = self.text(chunk.text) if chunk.text else b""
        if chunk.tool_calls:
            out += self.tool_calls(chunk.tool_calls)
        if chunk.finish_reason is not None:
            out += self.finish(chunk.finish_reason, chunk.usage)
        return out

    def tool_calls(self, deltas: Sequence[ToolCallDelta]) -> bytes:
        self.calls = True
        entries = [{"index": d.index, "id": d.id, "type": "function",
                    "function": {"name": d.name, "arguments": d.arguments}} if d.id is not None
                   else {"index": d.index, "function": {"arguments": d.arguments}} for d in deltas]
        return (self.head + '{"index":0,"delta":{"tool_calls":' + json.dumps(entries, separators=_COMPACT)
                + '},"logprobs":null,"finish_reason":null}').encode() + self.tail

    def finish(self, reason: str, usage: Usage | None) -> bytes:
        reason = finish_reason(reason, tool_calls=self.calls) or "stop"
        out = (self.head + '{"index":0,"delta":{},"logprobs":null,"finish_reason":' + json.dumps(reason)
               + "}").encode() + self.tail
        # No usage event when the provider reported none: zero tokens would be a lie.
        if self.include_usage and usage is not None:
            out += (self.head + '],"usage":' + json.dumps(usage_dict(usage), separators=_COMPACT)
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
