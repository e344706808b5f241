"""The seam between the router and the providers: one small protocol and the frozen
dataclasses that cross it. No I/O here, and no provider-specific names.

The canonical request is the OpenAI Chat Completions request itself, kept as data: each
message is the caller's own dict (`Message.data`) and every parameter the router does not need
is carried verbatim in `ChatRequest.params`, so an OpenAI-compatible provider sends it on with
only `model` substituted. Parsing and validating a request body, and shaping answers back into
ChatCompletion / ChatCompletionChunk dicts, is `providers.chat_api`'s.
"""

from __future__ import annotations

import enum
import json
import time
import uuid
from collections.abc import AsyncIterator, Iterable, Mapping
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Literal, NamedTuple, Protocol, runtime_checkable

from gpuctl.errors import Kind, ProviderError

HealthStatus = Literal["ready", "cold", "degraded", "unhealthy", "unconfigured"]

EMPTY: Mapping[str, Any] = MappingProxyType({})
# OpenAI's finish reasons; anything else a server says is mapped onto these (`finish_reason`).
FINISH_REASONS = frozenset({"stop", "length", "tool_calls", "content_filter"})


def content_text(content: Any) -> str:
    """The text of an OpenAI `content`: a string, or the `text` of its text parts."""
    if isinstance(content, str):
        return content
    if isinstance(content, list):
        return "".join(str(p.get("text") or "") for p in content if isinstance(p, dict) and p.get("type") == "text")
    return ""


class NotGiven(enum.Enum):
    """A Python API argument left out (`python_defaults`): unlike None, which is a value."""

    NOT_GIVEN = "not given"


NOT_GIVEN = NotGiven.NOT_GIVEN
DEFAULT_TEMPERATURE, DEFAULT_MAX_TOKENS = 0.7, 2048  # the original package's, kept for its callers


def python_defaults(temperature: float | NotGiven | None, max_tokens: int | NotGiven | None,
                    params: Mapping[str, Any]) -> tuple[float | None, int | None]:
    """The Python API's temperature and max_tokens: a default only for what was left out, and
    none beside `top_p` (Claude models refuse temperature with it) or `max_completion_tokens`."""
    if temperature is NOT_GIVEN:
        temperature = None if params.get("top_p") is not None else DEFAULT_TEMPERATURE
    if max_tokens is NOT_GIVEN:
        max_tokens = None if params.get("max_completion_tokens") is not None else DEFAULT_MAX_TOKENS
    return temperature, max_tokens


class Message(NamedTuple):
    """One OpenAI message. `content` is its text (for the ledger, estimates and the chat);
    `data`, when set, is the message exactly as the caller gave it (content parts, tool_calls,
    tool_call_id, name), and is what providers map. A NamedTuple: immutable, and cheap enough
    to make one per message of every request (bench/bench_fidelity.py)."""

    role: str  # system | developer | user | assistant | tool
    content: str
    data: Mapping[str, Any] | None = None

    @classmethod
    def of(cls, message: Mapping[str, Any]) -> Message:
        content = message.get("content")
        return cls(str(message["role"]), content if type(content) is str else content_text(content), message)

    def as_dict(self) -> Mapping[str, Any]:
        return self.data if self.data is not None else {"role": self.role, "content": self.content}


@dataclass(frozen=True)
class ChatRequest:
    """One chat completion request, OpenAI-shaped; each provider maps it to its own API.

    `model` None: each provider's configured model. `temperature` / `max_tokens` None: not
    given (the provider's default; Anthropic's cap `anthropic.max_tokens`). `params` holds
    every other OpenAI field verbatim (tools, tool_choice, response_format, top_p, n, logprobs,
    max_completion_tokens, vLLM's top_k / min_p / repetition_penalty, ...). `stream` is what
    the caller asked for; whether an answer streams is the router call's (complete or stream).
    """

    messages: tuple[Message, ...]
    model: str | None = None
    temperature: float | None = 0.7
    max_tokens: int | None = 2048
    stop: tuple[str, ...] = ()
    params: Mapping[str, Any] = field(default_factory=lambda: EMPTY)
    stream: bool = False

    @classmethod
    def from_openai(
        cls,
        messages: Iterable[Mapping[str, Any]],
        *,
        model: str | None = None,
        temperature: float | NotGiven | None = NOT_GIVEN,
        max_tokens: int | NotGiven | None = NOT_GIVEN,
        stop: Iterable[str] = (),
        **params: Any,
    ) -> ChatRequest:
        """From trusted Python arguments (the Python API, the chat); `params` as OpenAI names
        them; temperature and max_tokens left out get `python_defaults`. Untrusted bodies go
        through `chat_api.parse_chat_request`, which validates."""
        msgs = tuple(Message.of(m) for m in messages)
        temp, limit = python_defaults(temperature, max_tokens, params)
        return cls(messages=msgs, model=model, temperature=temp, max_tokens=limit, stop=tuple(stop),
                   params=params or EMPTY)

    @property
    def limit(self) -> int | None:
        """The most tokens the answer may have: `max_completion_tokens` (OpenAI's newer name)
        wins over `max_tokens`, as on vLLM (`max_completion_tokens or max_tokens`)."""
        value = self.params.get("max_completion_tokens") if self.params else None
        if isinstance(value, int) and not isinstance(value, bool) and value:
            return value
        return self.max_tokens

    @property
    def tools(self) -> list[Mapping[str, Any]]:
        tools = self.params.get("tools")
        return tools if isinstance(tools, list) else []


@dataclass(frozen=True)
class Usage:
    """Token counts. `estimated`: the server reported none, so gpuctl counted them from the
    text (about 4 characters a token); it is an attribute, never part of OpenAI's `usage`."""

    prompt_tokens: int = 0
    completion_tokens: int = 0
    estimated: bool = False

    @property
    def total_tokens(self) -> int:
        return self.prompt_tokens + self.completion_tokens

    def to_openai(self) -> dict[str, int]:
        """`usage` exactly as OpenAI's wire has it: three counts, no `estimated`."""
        return {"prompt_tokens": self.prompt_tokens, "completion_tokens": self.completion_tokens,
                "total_tokens": self.prompt_tokens + self.completion_tokens}

    def as_dict(self) -> dict[str, Any]:
        """gpuctl's own JSON (`chat --json`, the ledger's views): the counts and `estimated`."""
        return {**self.to_openai(), "estimated": self.estimated}


def estimate_tokens(text: str) -> int:
    """A rough token count for text a server did not count: ~4 characters a token."""
    return (len(text) + 3) // 4


def estimated_usage(request: ChatRequest, answer: str) -> Usage:
    """Usage for an answer whose server reported none (marked `estimated`). `answer` is all
    the model wrote: its text and its tool calls' names and arguments (`written`)."""
    prompt = sum(4 + estimate_tokens(m.content) for m in request.messages)
    return Usage(prompt_tokens=prompt, completion_tokens=estimate_tokens(answer), estimated=True)


def written(text: str, calls: Iterable[ToolCall]) -> str:
    """What a model wrote for an answer, for an estimate: its text, then each tool call's
    name and arguments (they are generated tokens too)."""
    return text + "".join(c.name + c.arguments for c in calls)


@dataclass(frozen=True)
class ToolCall:
    """One function call the model asked for. `arguments` is the JSON text exactly as the
    model wrote it: not always valid JSON, and never repaired here."""

    id: str
    name: str
    arguments: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "type": "function", "function": {"name": self.name, "arguments": self.arguments}}


@dataclass(frozen=True, slots=True)
class ToolCallDelta:
    """A piece of a streamed tool call, as OpenAI streams them: the first piece of call
    `index` has its `id` and `name`, later pieces only `arguments` fragments."""

    index: int
    id: str | None = None
    name: str | None = None
    arguments: str = ""


def finish_reason(reason: str | None, *, tool_calls: bool = False) -> str | None:
    """A finish reason in OpenAI's four words. A message that carries tool calls finished
    with `tool_calls` whatever the server said (vLLM says `stop` for a named tool_choice)."""
    if reason is None:
        return "tool_calls" if tool_calls else None
    if tool_calls and reason == "stop":
        return "tool_calls"
    if reason in FINISH_REASONS:
        return reason
    return "length" if "length" in reason or "token" in reason else "stop"


@dataclass(frozen=True)
class ChatResponse:
    """A complete answer. `provider` and `fallback_reason` are filled in by the router, which
    returns a subclass that also carries the typed fallback (`routing.outcomes.RoutedResponse`).

    `text` and `usage` are what callers of the original package read; `message`, `tool_calls`
    and `to_openai()` are the same answer in OpenAI's shape. `raw` is an OpenAI-compatible
    server's own ChatCompletion (every choice, logprobs, extra fields), kept for `to_openai`."""

    text: str
    provider: str
    model: str
    usage: Usage = field(default_factory=Usage)
    finish_reason: str | None = None
    latency_s: float = 0.0
    ttft_s: float | None = None
    fallback_reason: str | None = None
    tool_calls: tuple[ToolCall, ...] = ()
    raw: Mapping[str, Any] | None = field(default=None, compare=False, repr=False)

    @property
    def message(self) -> dict[str, Any]:
        """The answer as an OpenAI assistant message (content None when it only calls tools)."""
        message: dict[str, Any] = {"role": "assistant", "content": self.text or (None if self.tool_calls else "")}
        if self.tool_calls:
            message["tool_calls"] = [c.as_dict() for c in self.tool_calls]
        return message

    def to_openai(self, *, id: str | None = None, created: int | None = None) -> dict[str, Any]:
        """The answer as an OpenAI ChatCompletion dict. An OpenAI-compatible server's own
        answer is kept whole (every choice, logprobs), with our model name, OpenAI's finish
        reasons and `content: null` beside tool calls."""
        raw = self.raw
        if isinstance(raw, Mapping) and isinstance(raw.get("choices"), list):
            out = dict(raw)
            out["choices"] = [_choice(c) for c in raw["choices"] if isinstance(c, dict)]
            out["model"] = self.model or raw.get("model")
            out.setdefault("id", id or _completion_id())
            out.setdefault("object", "chat.completion")
            out.setdefault("created", created if created is not None else int(time.time()))
            out["usage"] = usage_dict(self.usage)
            return out
        return {
            "id": id or _completion_id(),
            "object": "chat.completion",
            "created": created if created is not None else int(time.time()),
            "model": self.model,
            "choices": [{
                "index": 0,
                "message": self.message,
                "finish_reason": finish_reason(self.finish_reason, tool_calls=bool(self.tool_calls)) or "stop",
                "logprobs": None,
            }],
            "usage": usage_dict(self.usage),
        }


def _completion_id() -> str:
    return f"chatcmpl-{uuid.uuid4().hex}"


def usage_dict(usage: Usage) -> dict[str, int]:
    """`usage` as OpenAI reports it (`Usage.to_openai`): whether gpuctl estimated it stays on
    `Usage.estimated` (and in the ledger), out of the OpenAI wire."""
    return usage.to_openai()


def _choice(choice: dict[str, Any]) -> dict[str, Any]:
    out = dict(choice)
    message = out.get("message")
    calls = bool(isinstance(message, dict) and message.get("tool_calls"))
    if calls and isinstance(message, dict) and message.get("content") == "":
        out["message"] = {**message, "content": None}  # vLLM sends "" beside tool calls; OpenAI null
    out["finish_reason"] = finish_reason(out.get("finish_reason"), tool_calls=calls) or "stop"
    return out


class StreamChunk(NamedTuple):
    """A piece of a streamed answer. The last chunk of a complete stream carries
    `finish_reason` (and `usage`); text may be empty. `tool_calls` holds tool-call pieces;
    `raw` the server's own chunk payloads when the request asked for what these fields cannot
    carry (n > 1, logprobs).

    A NamedTuple rather than a frozen dataclass: just as immutable, and three times cheaper to
    create, which shows on a 2,000-chunk stream (bench/bench_router.py)."""

    text: str = ""
    finish_reason: str | None = None
    usage: Usage | None = None
    model: str | None = None
    tool_calls: tuple[ToolCallDelta, ...] | None = None
    raw: tuple[Mapping[str, Any], ...] | None = None


@dataclass(frozen=True)
class Health:
    """What a health check found. `cold` means scaled to zero and waking, not down."""

    provider: str
    status: HealthStatus
    endpoint: str | None = None  # never with credentials in it
    latency_s: float | None = None
    detail: str = ""
    models: tuple[str, ...] = ()
    # The failure's `ProviderError.kind` when the check failed with one ("auth": the key was
    # refused, a setting to fix rather than an outage), so callers decide without reading `detail`.
    error_kind: str | None = None

    @property
    def ok(self) -> bool:
        return self.status in ("ready", "cold")


@dataclass(frozen=True)
class Unsupported:
    """Why a provider cannot serve a request: the OpenAI parameter, and the words
    ("cannot do n=2"; the router puts the provider's name in front)."""

    param: str
    text: str


class UnsupportedError(ProviderError):
    """A provider refused a request for a capability it lacks (a vLLM started without tool
    calling): the next provider may serve it, and the breaker does not count it."""

    def __init__(self, message: str, *, provider: str, param: str, hint: str | None = None) -> None:
        super().__init__(message, provider=provider, kind=Kind.UNSUPPORTED, status=400, hint=hint)
        self.param = param


def arguments_object(arguments: str) -> dict[str, Any]:
    """Tool-call arguments as the object a provider that needs one gets. Never raises: text
    that is not a JSON object is passed on as `{"_raw_arguments": text}`, so the model on the
    other side still sees what was written."""
    try:
        value = json.loads(arguments) if arguments.strip() else {}
    except ValueError:
        return {"_raw_arguments": arguments}
    return value if isinstance(value, dict) else {"_raw_arguments": arguments}


@dataclass(frozen=True)
class Rental:
    """A machine of a provider's that bills by the hour whatever the traffic (a rented GPU box),
    as `gpuctl status` lists it. `endpoint` never carries credentials."""

    id: str
    state: str  # the provider's word (loading, running) or the ledger's (unconfirmed, ready)
    dph: str | None  # $/h as text
    age_s: float | None
    endpoint: str | None
    detail: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "state": self.state, "dph": self.dph,
                "age_s": None if self.age_s is None else round(self.age_s), "endpoint": self.endpoint,
                "detail": self.detail}


@dataclass(frozen=True)
class Rentals:
    """What a provider rents now; `error` when its own list could not be read (then `items`
    are what gpuctl's ledger knows, which may not be all)."""

    items: tuple[Rental, ...] = ()
    error: str | None = None


@runtime_checkable
class Provider(Protocol):
    """What the router needs from a backend. Errors are raised as `ProviderError`.

    `stream` does its own slow set-up (an SDK import, a client) before it returns, so the
    router's clock for time-to-first-token starts when the request is sent."""

    name: str

    def is_configured(self) -> bool: ...

    def unsupported(self, request: ChatRequest) -> Unsupported | None:
        """What in `request` this provider cannot do, or None. No I/O; cheap for plain text."""
        ...

    async def health(self, *, deep: bool = False) -> Health: ...

    async def chat(self, request: ChatRequest) -> ChatResponse: ...

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]: ...

    async def aclose(self) -> None: ...
