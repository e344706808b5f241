"""The OpenAI Chat Completions API as gpuctl's canonical form, both ways.

Owns: `parse_chat_request` (an untrusted request body → `ChatRequest`, validating only what
routing and mapping rely on; every other field travels verbatim), `RequestError` (a bad body,
naming the parameter: a 400), `completion_dict` (a `ChatResponse` → an OpenAI ChatCompletion
dict) and `CompletionChunks` (each `StreamChunk` → the ChatCompletionChunk dicts it makes).
These are the entry points a gateway serves. The body's `model` is kept as the caller's
public name (`ChatRequest.model`): OpenAI-compatible providers always send their own model,
Anthropic honours only a `claude-…` name. Beyond the shape, the rules a provider would refuse
late are checked here: tool names (OpenAI's `^[a-zA-Z0-9_-]{1,64}$`, each once), tool-call
ids (a tool result answers an earlier call, by a non-empty id), `tool_choice` only with
`tools` (but "none").

Must not: do I/O, know a provider, or touch the streaming hot path beyond one chunk at a time.
"""

from __future__ import annotations

import math
import re
import time
import uuid
from collections.abc import Mapping
from typing import Any

from gpuctl.errors import UsageError
from gpuctl.providers.base import (
    EMPTY,
    ChatRequest,
    ChatResponse,
    Message,
    StreamChunk,
    finish_reason,
    usage_dict,
)

ROLES = frozenset({"system", "developer", "user", "assistant", "tool"})
TOOL_CHOICES = ("auto", "none", "required")
RESPONSE_FORMATS = ("text", "json_object", "json_schema")
# OpenAI's own rule for function names (no '.'); Anthropic refuses anything else too.
_TOOL_NAME = re.compile(r"^[A-Za-z0-9_-]{1,64}$")
# Fields read into ChatRequest's own attributes; every other one goes to `params` verbatim.
_OWN = frozenset({"messages", "model", "temperature", "max_tokens", "stream"})  # `stop` stays too: sent as given


class RequestError(UsageError):
    """A chat request that is not a valid OpenAI request, or that no configured provider can
    serve; `param` names the parameter (`messages[2].content`, `tools`, `n`), as OpenAI's
    400 errors do."""

    def __init__(self, message: str, *, param: str | None, hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.param = param


def _bad(param: str, what: str) -> RequestError:
    return RequestError(f"invalid chat request: {param} {what}", param=param)


def _number(body: Mapping[str, Any], name: str, low: float | None = None, high: float | None = None) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        raise _bad(name, "must be a finite number")
    if (low is not None and value < low) or (high is not None and value > high):
        raise _bad(name, f"must be between {low:g} and {high:g}")


def _integer(body: Mapping[str, Any], name: str, low: int) -> None:
    value = body.get(name)
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int):
        raise _bad(name, "must be a whole number")
    if value < low:
        raise _bad(name, f"must be at least {low}")


def _flag(body: Mapping[str, Any], name: str) -> None:
    if body.get(name) is not None and not isinstance(body[name], bool):
        raise _bad(name, "must be true or false")


def _parts(content: list[Any], where: str) -> None:
    for i, part in enumerate(content):
        if not isinstance(part, dict) or not isinstance(part.get("type"), str):
            raise _bad(f"{where}[{i}]", "must be an object with a `type`")
        kind = part["type"]
        if kind == "text" and not isinstance(part.get("text"), str):
            raise _bad(f"{where}[{i}].text", "must be a string")
        if kind == "image_url":
            image = part.get("image_url")
            if not isinstance(image, dict) or not isinstance(image.get("url"), str):
                raise _bad(f"{where}[{i}].image_url.url", "must be a string")


def _message(message: Any, i: int) -> Message:
    if type(message) is dict:
        role, content = message.get("role"), message.get("content")
        # The common cases, checked first and cheaply: a plain text turn, a text tool result.
        if (type(content) is str and role in ROLES and "tool_calls" not in message
                and (role != "tool" or type(message.get("tool_call_id")) is str)):
            return Message(role, content, message)
    where = f"messages[{i}]"
    if not isinstance(message, dict):
        raise _bad(where, "must be an object")
    role = message.get("role")
    if role not in ROLES:
        raise _bad(f"{where}.role", f"must be one of {', '.join(sorted(ROLES))}, not {role!r}")
    content = message.get("content")
    if isinstance(content, list):
        _parts(content, f"{where}.content")
    elif content is None:
        if role != "assistant" or not message.get("tool_calls"):
            raise _bad(f"{where}.content", "is required (only an assistant message with tool_calls may omit it)")
    elif not isinstance(content, str):
        raise _bad(f"{where}.content", "must be a string or a list of content parts")
    if role == "tool" and not isinstance(message.get("tool_call_id"), str):
        raise _bad(f"{where}.tool_call_id", "is required on a tool message")
    calls = message.get("tool_calls")
    if calls is not None:
        if role != "assistant" or not isinstance(calls, list):
            raise _bad(f"{where}.tool_calls", "must be a list, on an assistant message")
        for k, call in enumerate(calls):
            function = call.get("function") if isinstance(call, dict) else None
            if (not isinstance(call, dict) or not isinstance(call.get("id"), str) or not isinstance(function, dict)
                    or not isinstance(function.get("name"), str)
                    or not isinstance(function.get("arguments", ""), str)):
                raise _bad(f"{where}.tool_calls[{k}]", "must be {id, type: function, function: {name, arguments}}")
    return Message.of(message)


def _tools(body: Mapping[str, Any]) -> set[str]:
    tools = body.get("tools")
    if tools is None:
        return set()
    if not isinstance(tools, list):
        raise _bad("tools", "must be a list")
    names: set[str] = set()
    for i, tool in enumerate(tools):
        function = tool.get("function") if isinstance(tool, dict) else None
        if not isinstance(tool, dict) or tool.get("type", "function") != "function" or not isinstance(function, dict):
            raise _bad(f"tools[{i}]", "must be {type: function, function: {name, parameters}}")
        name = function.get("name")
        if not isinstance(name, str) or not _TOOL_NAME.match(name):
            raise _bad(f"tools[{i}].function.name", "must be 1-64 letters, digits, '_' or '-'")
        if name in names:
            raise _bad(f"tools[{i}].function.name", f"repeats {name!r}: tool names must be unique")
        if function.get("parameters") is not None and not isinstance(function["parameters"], dict):
            raise _bad(f"tools[{i}].function.parameters", "must be a JSON Schema object")
        names.add(name)
    return names


def _tool_choice(body: Mapping[str, Any], names: set[str]) -> None:
    choice = body.get("tool_choice")
    if choice is None or choice == "none":
        return  # "none" asks for no call: it needs no tools (vLLM takes it alone too)
    if not names:
        raise _bad("tool_choice", "needs `tools` (only \"none\" may be given without them)")
    if choice in TOOL_CHOICES:
        return
    function = choice.get("function") if isinstance(choice, dict) else None
    if not isinstance(function, dict) or not isinstance(function.get("name"), str):
        raise _bad("tool_choice", "must be auto, none, required or {type: function, function: {name}}")
    if function["name"] not in names:
        raise _bad("tool_choice", f"names {function['name']!r}, which is not in `tools`")


def _response_format(body: Mapping[str, Any]) -> None:
    rf = body.get("response_format")
    if rf is None:
        return
    if not isinstance(rf, dict) or rf.get("type") not in RESPONSE_FORMATS:
        raise _bad("response_format", f"must be {{type: {' | '.join(RESPONSE_FORMATS)}}}")
    if rf["type"] == "json_schema":
        spec = rf.get("json_schema")
        if not isinstance(spec, dict) or not isinstance(spec.get("name"), str):
            raise _bad("response_format.json_schema", "must be {name, schema}")
        if spec.get("schema") is not None and not isinstance(spec["schema"], dict):
            raise _bad("response_format.json_schema.schema", "must be a JSON Schema object")


def _tool_ids(messages: tuple[Message, ...]) -> None:
    """Every tool result answers a call an earlier assistant message made, by a non-empty id."""
    called: set[str] = set()
    for i, message in enumerate(messages):
        role, data = message.role, message.data or EMPTY
        if role == "assistant":
            for k, call in enumerate(data.get("tool_calls") or ()):
                if not call["id"]:
                    raise _bad(f"messages[{i}].tool_calls[{k}].id", "must not be empty")
                called.add(call["id"])
        elif role == "tool":
            ident = data["tool_call_id"]
            if not ident:
                raise _bad(f"messages[{i}].tool_call_id", "must not be empty")
            if ident not in called:
                raise _bad(f"messages[{i}].tool_call_id", f"is {ident!r}, which no earlier assistant tool call has")


def parse_chat_request(body: Any) -> ChatRequest:
    """An OpenAI Chat Completions request body as a `ChatRequest`; `RequestError` (with
    `param`) for anything a provider could not read. Unknown fields pass through untouched."""
    if not isinstance(body, dict):
        raise RequestError("invalid chat request: the body must be a JSON object", param=None)
    messages = body.get("messages")
    if not isinstance(messages, list) or not messages:
        raise _bad("messages", "must be a non-empty list")
    parsed = tuple(_message(m, i) for i, m in enumerate(messages))
    _tool_ids(parsed)
    model = body.get("model")
    if model is not None and not isinstance(model, str):
        raise _bad("model", "must be a string")
    _number(body, "temperature", 0, 2)
    _number(body, "top_p", 0, 1)
    _number(body, "presence_penalty", -2, 2)
    _number(body, "frequency_penalty", -2, 2)
    for name in ("max_tokens", "max_completion_tokens", "n"):
        _integer(body, name, 1)
    _integer(body, "top_logprobs", 0)
    for name in ("stream", "logprobs", "parallel_tool_calls"):
        _flag(body, name)
    stop = body.get("stop")
    if stop is not None and not isinstance(stop, str) and not (
            isinstance(stop, list) and all(isinstance(s, str) for s in stop)):
        raise _bad("stop", "must be a string or a list of strings")
    if body.get("stream_options") is not None and not isinstance(body["stream_options"], dict):
        raise _bad("stream_options", "must be an object")
    _tool_choice(body, _tools(body))
    _response_format(body)
    params = {k: v for k, v in body.items() if k not in _OWN}
    return ChatRequest(
        messages=parsed, model=model or None, temperature=body.get("temperature"), max_tokens=body.get("max_tokens"),
        stop=(stop,) if isinstance(stop, str) else tuple(stop or ()), params=params or EMPTY,
        stream=bool(body.get("stream")),
    )


# ------------------------------------------------------------------ answers


def completion_dict(response: ChatResponse, *, id: str | None = None, created: int | None = None) -> dict[str, Any]:
    """`response` as an OpenAI ChatCompletion dict (`ChatResponse.to_openai`)."""
    return response.to_openai(id=id, created=created)


class CompletionChunks:
    """A stream's `StreamChunk`s as OpenAI ChatCompletionChunk dicts, one stream at a time.

    `of(chunk)` returns the dicts that chunk makes (none, one, or two when usage follows):
    the role on the first, content deltas, tool-call deltas (`index`, `id`, `type`,
    `function.name` first, then `function.arguments` fragments), the finish reason in OpenAI's
    words, and with `include_usage` a last chunk with `choices: []` and `usage`."""

    def __init__(self, *, model: str, id: str | None = None, created: int | None = None,
                 include_usage: bool = False) -> None:
        self.model = model
        self.id = id or f"chatcmpl-{uuid.uuid4().hex}"
        self.created = created if created is not None else int(time.time())
        self.include_usage = include_usage
        self._first = True
        self._raw = False
        self._calls: set[int] = set()  # choices that carried tool calls (raw mode: by choice index)

    def _head(self) -> dict[str, Any]:
        return {"id": self.id, "object": "chat.completion.chunk", "created": self.created, "model": self.model}

    def of(self, chunk: StreamChunk) -> list[dict[str, Any]]:
        if chunk.raw is not None:
            self._raw = True
            return [p for p in (self._raw_payload(p) for p in chunk.raw) if p is not None]
        if self._raw:
            return []  # the server's own payloads already said it all, usage included
        out: list[dict[str, Any]] = []
        delta: dict[str, Any] = {}
        if self._first:
            delta["role"] = "assistant"
        if chunk.text or (self._first and chunk.tool_calls is None):
            delta["content"] = chunk.text
        if chunk.tool_calls:
            self._calls.add(0)
            delta["tool_calls"] = [
                {"index": d.index, "id": d.id, "type": "function",
                 "function": {"name": d.name, "arguments": d.arguments}} if d.id is not None
                else {"index": d.index, "function": {"arguments": d.arguments}}
                for d in chunk.tool_calls
            ]
        finish = None if chunk.finish_reason is None else finish_reason(chunk.finish_reason, tool_calls=bool(self._calls))
        if delta or finish is not None:
            self._first = False
            out.append({**self._head(), "choices": [{"index": 0, "delta": delta, "finish_reason": finish,
                                                     "logprobs": None}]})
        if chunk.usage is not None and self.include_usage:
            out.append({**self._head(), "choices": [], "usage": usage_dict(chunk.usage)})
        return out

    def _raw_payload(self, payload: Mapping[str, Any]) -> dict[str, Any] | None:
        out = {**payload, "id": self.id, "model": self.model, "created": self.created}
        choices = payload.get("choices") or []
        if not choices and not self.include_usage:
            return None
        fixed = []
        for choice in choices:
            if not isinstance(choice, dict):
                continue
            choice = dict(choice)
            index = choice.get("index", 0)
            delta = choice.get("delta")
            if isinstance(delta, dict) and delta.get("tool_calls"):
                self._calls.add(index)
            if choice.get("finish_reason") is not None:
                choice["finish_reason"] = finish_reason(choice["finish_reason"], tool_calls=index in self._calls)
            fixed.append(choice)
        out["choices"] = fixed
        if not self.include_usage:
            out.pop("usage", None)
        return out
