"""An OpenAI chat request in Anthropic's Messages shape (the answers coming back are
`anthropic_replies`').

Owns, for `anthropic.AnthropicProvider`: OpenAI messages → `system=` plus alternating
user/assistant turns of content blocks (`to_anthropic_messages`: text, images, tool_use,
tool_result), tools and tool_choice, response_format (`json_schema` → structured output,
`output_config`, with the schema transformed as the SDK's own `messages.parse` does;
`json_object` → one forced tool whose input is the answer, `JSON_TOOL`), the sampling
parameters, and what Anthropic cannot do (`unsupported`: n > 1, logprobs, any parameter it has
no equivalent for at a value that would change the answer, temperature together with top_p,
a stop list of whitespace only, a tool call left unanswered before the conversation goes on).
Pure and no I/O; the SDK is imported only for `transform_schema` (a json_schema request on its
way to Anthropic, when the SDK is loaded anyway); bad input is a `UsageError`.

Said here rather than done silently: tool-call `arguments` that are not a JSON object (models
write what they write) reach Anthropic as `{"_raw_arguments": text}`; a message's `name` has
no Anthropic field and is not sent; temperature is clamped to Anthropic's 0–1; a neutral
`top_p` (1) is not sent; whitespace-only stop sequences beside real ones are not sent (the API
refuses them); a conversation with tool calls in its history but no `tools` declares the
tools it used (with `tool_choice: none`), as the API requires tools for tool blocks.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from gpuctl.errors import UsageError
from gpuctl.providers.anthropic_tools import JSON_TOOL, add_tools, json_tool, response_schema
from gpuctl.providers.base import (
    EMPTY,
    ChatRequest,
    Message,
    Unsupported,
    UnsupportedError,
    arguments_object,
    content_text,
)

if TYPE_CHECKING:
    from anthropic.types import MessageParam
    from anthropic.types.output_config_param import OutputConfigParam

NAME = "anthropic"

# A conversation that opens with an assistant turn (a chat UI's greeting, say) is rejected by
# the API. We keep that turn and put this minimal user turn before it, rather than silently
# dropping what the assistant said.
LEADING_USER_TURN = "(conversation start)"

SYSTEM_ROLES = frozenset({"system", "developer"})  # "developer" is OpenAI's newer name for system
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
# A data URL: its media type, any parameters (`;name=a.png`), then `;base64,` and the data.
_DATA_URL = re.compile(r"^data:(?P<type>[\w/+.-]+)(?:;[\w.+-]+=[^;,]*)*(?P<b64>;base64)?,(?P<data>.*)$",
                       re.DOTALL)

# OpenAI parameters with an Anthropic equivalent (mapped in `create_kwargs`), or with no effect
# on the answer (storage, billing tier, cache keys).
MAPPED = frozenset({
    "tools", "tool_choice", "parallel_tool_calls", "response_format", "top_p", "top_k", "max_completion_tokens",
    "stop", "user", "stream_options", "metadata", "store", "service_tier", "prompt_cache_key", "safety_identifier",
})
# Parameters Anthropic lacks, at the values that leave the answer as it would be anyway.
NEUTRAL: dict[str, tuple[Any, ...]] = {
    "n": (1,), "logprobs": (False,), "top_logprobs": (0,), "presence_penalty": (0, 0.0),
    "frequency_penalty": (0, 0.0), "logit_bias": ({},), "modalities": (["text"],), "min_p": (0, 0.0),
    "repetition_penalty": (1, 1.0),
}


def unsupported(request: ChatRequest) -> Unsupported | None:
    """The first thing in `request` Anthropic cannot do ("cannot do n=2"), or None."""
    params = request.params
    for name, value in params.items():
        if name in MAPPED or value is None or value in NEUTRAL.get(name, ()):
            continue
        shown = repr(value) if not isinstance(value, int | float | str) else str(value)
        return Unsupported(name, f"cannot do {name}={shown[:40]}")
    if params:
        if request.temperature is not None and _top_p(params) is not None:
            return Unsupported("top_p", "cannot take temperature and top_p together (Claude models refuse the pair)")
        if json_tool(request) is not None and any(t.get("function", {}).get("name") == JSON_TOOL for t in request.tools):
            return Unsupported("response_format", f"cannot do json_object beside a tool named {JSON_TOOL}")
    if request.stop and not any(s.strip() for s in request.stop):
        return Unsupported("stop", "cannot stop on whitespace only (its stop sequences need a visible character)")
    return _unsupported_messages(request.messages)


def _unsupported_messages(messages: Sequence[Message]) -> Unsupported | None:
    """Content Anthropic cannot take, and tool results out of the order it requires: every
    call answered in the turn right after it, before the conversation goes on."""
    asked: set[str] = set()  # the ids the last assistant turn called
    answered: set[str] = set()
    for i, message in enumerate(messages):
        data, role = message.data or EMPTY, message.role
        if role in SYSTEM_ROLES:
            continue
        if role == "tool":
            if data.get("tool_call_id") not in asked:
                return Unsupported(f"messages[{i}].tool_call_id", "cannot take a tool result that does not answer "
                                   "the assistant turn right before it")
            answered.add(data["tool_call_id"])
            continue
        if asked - answered:
            missing = ", ".join(sorted(asked - answered))
            return Unsupported(f"messages[{i}]", f"cannot go on past a tool call that was never answered ({missing})")
        calls = data.get("tool_calls") if role == "assistant" else None
        asked = {str(c.get("id")) for c in calls if isinstance(c, dict)} if isinstance(calls, list) else set()
        answered = set()
        content = data.get("content")
        for k, part in enumerate(content if isinstance(content, list) else ()):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("text", "image_url", "refusal"):
                return Unsupported(f"messages[{i}].content[{k}]", f"cannot take {kind} content")
            if kind == "image_url":
                url = str(part["image_url"].get("url", ""))
                match = _DATA_URL.match(url) if url.startswith("data:") else None
                if url.startswith("data:") and (match is None or not match["b64"]):
                    return Unsupported(f"messages[{i}].content[{k}]", "cannot take a data URL that is not base64")
                if match is not None and match["type"] not in IMAGE_TYPES:
                    return Unsupported(f"messages[{i}].content[{k}]", f"cannot take {match['type']} images")
    return None


# ------------------------------------------------------------------ messages


def _image(part: Mapping[str, Any]) -> dict[str, Any]:
    url = str((part.get("image_url") or {}).get("url", ""))
    match = _DATA_URL.match(url) if url.startswith("data:") else None
    if match is not None:
        return {"type": "image", "source": {"type": "base64", "media_type": match["type"], "data": match["data"]}}
    return {"type": "image", "source": {"type": "url", "url": url}}


def _blocks(content: Any) -> list[dict[str, Any]]:
    """OpenAI content (a string or parts) as Anthropic blocks; empty text is dropped (the API
    rejects empty text blocks)."""
    if isinstance(content, str):
        return [{"type": "text", "text": content}] if content.strip() else []
    blocks: list[dict[str, Any]] = []
    for part in content if isinstance(content, list) else ():
        kind = part.get("type") if isinstance(part, dict) else None
        if kind in ("text", "refusal"):
            text = str(part.get(kind) or "")
            if text.strip():
                blocks.append({"type": "text", "text": text})
        elif kind == "image_url":
            blocks.append(_image(part))
    return blocks


def _turn_blocks(message: Message) -> tuple[str, list[dict[str, Any]]]:
    """The Anthropic role and content blocks of one non-system OpenAI message."""
    data = message.data if message.data is not None else {"role": message.role, "content": message.content}
    role = message.role
    if role == "tool":
        if not data.get("tool_call_id"):
            raise UsageError("a tool message needs the tool_call_id of the call it answers",
                             hint="Send tool results as {role: tool, tool_call_id, content}.")
        result: dict[str, Any] = {"type": "tool_result", "tool_use_id": str(data["tool_call_id"])}
        text = content_text(data.get("content"))
        if text:
            result["content"] = text
        return "user", [result]
    if role not in ("user", "assistant"):
        raise UsageError(f"Anthropic cannot take a message with role {role!r}",
                         hint="Use system, developer, user, assistant and tool messages.")
    blocks = _blocks(data.get("content"))
    calls = data.get("tool_calls") if role == "assistant" else None
    for call in calls if isinstance(calls, list) else ():
        function = call.get("function") or {}
        blocks.append({"type": "tool_use", "id": str(call.get("id") or ""), "name": str(function.get("name") or ""),
                       "input": arguments_object(str(function.get("arguments") or ""))})
    return role, blocks


def _simplify(blocks: list[dict[str, Any]]) -> str | list[dict[str, Any]]:
    """A turn of text blocks only as one string (as plain chats always were), else the blocks."""
    if all(b["type"] == "text" for b in blocks):
        return "\n\n".join(b["text"] for b in blocks)
    return blocks


def to_anthropic_messages(messages: Sequence[Message]) -> tuple[str | None, list[MessageParam]]:
    """Map OpenAI messages to Anthropic's `(system, messages)`. Pure; raises UsageError.

    Rules (the API rejects anything else):
    - every system (or "developer") message, wherever it stands, goes to the top-level
      `system`, joined by blank lines; None when there is none;
    - tool messages become `tool_result` blocks of a user turn; assistant `tool_calls` become
      `tool_use` blocks with the same ids (input parsed from the arguments);
    - messages with no content are dropped (the API rejects empty text blocks);
    - consecutive turns of the same role are merged (text joined by a blank line), so several
      tool results, and a user message after them, make one user turn;
    - a conversation that starts with an assistant turn gets `LEADING_USER_TURN` before it;
    - a final assistant turn (a prefill the model continues) loses trailing whitespace,
      which the API rejects there;
    - no user or assistant content at all is a UsageError.
    """
    system_parts: list[str] = []
    turns: list[tuple[str, list[dict[str, Any]]]] = []
    for message in messages:
        if message.role in SYSTEM_ROLES:
            text = content_text(message.data.get("content")) if message.data is not None else message.content
            if text.strip():
                system_parts.append(text)
            continue
        role, blocks = _turn_blocks(message)
        if not blocks:
            continue
        if turns and turns[-1][0] == role:
            turns[-1][1].extend(blocks)
        else:
            turns.append((role, blocks))
    if not turns:
        raise UsageError(
            "There is nothing to send: the conversation has no user message.",
            hint="Add at least one user message.",
        )
    if turns[0][0] == "assistant":
        turns.insert(0, ("user", [{"type": "text", "text": LEADING_USER_TURN}]))
    last = turns[-1]
    if last[0] == "assistant" and last[1][-1]["type"] == "text":
        last[1][-1] = {"type": "text", "text": last[1][-1]["text"].rstrip()}
    out = [cast("MessageParam", {"role": role, "content": _simplify(blocks)}) for role, blocks in turns]
    system = "\n\n".join(system_parts) if system_parts else None
    return system, out


# ------------------------------------------------------------------ parameters


def output_config_of(response_format: Any) -> OutputConfigParam | None:
    """A `json_schema` response_format as structured output (`output_config`), its schema
    transformed as the SDK's `messages.parse` does (`additionalProperties: false` on objects,
    keywords the API does not take moved into descriptions), so the answer's content parses."""
    schema = response_schema(response_format)
    if schema is None:
        return None
    from anthropic import transform_schema  # loaded by now: this request is on its way to Anthropic

    try:
        strict = transform_schema(schema)
    except (ValueError, TypeError, AttributeError) as exc:
        raise UnsupportedError(f"{NAME}: cannot do this response_format.json_schema.schema ({exc})", provider=NAME,
                               param="response_format.json_schema.schema") from None
    return {"format": {"type": "json_schema", "schema": strict}}


def _top_p(params: Mapping[str, Any]) -> Any:
    """`top_p` as given, or None when absent or neutral (1: sample from every token)."""
    top_p = params.get("top_p")
    return None if top_p is None or top_p == 1 else top_p


def model_for(request: ChatRequest, default: str) -> str:
    # A vLLM model name (Qwen/...) must never be sent to Anthropic.
    if request.model and request.model.startswith("claude"):
        return request.model
    return default


def create_kwargs(request: ChatRequest, *, model: str, max_tokens: int) -> dict[str, Any]:
    """The arguments of `messages.create`; `max_tokens` is the configured cap (anthropic.max_tokens)."""
    system, turns = to_anthropic_messages(request.messages)
    asked = request.limit
    # anthropic.max_tokens caps what the paid fallback may generate per answer.
    limit = min(asked, max_tokens) if asked is not None and asked > 0 else max_tokens
    if limit < 1:
        raise UsageError(f"max_tokens must be at least 1, not {limit}")
    kwargs: dict[str, Any] = {"model": model_for(request, model), "max_tokens": limit, "messages": turns}
    if system is not None:
        kwargs["system"] = system
    stops = [s for s in request.stop if s.strip()]  # the API rejects whitespace-only stops
    if stops:
        kwargs["stop_sequences"] = stops
    # SDK 2.10.0 has no temperature/top_p/top_k arguments; `extra_body` is its documented way
    # to send API fields it lacks. OpenAI's temperature range is 0–2, Anthropic's 0–1: clamp.
    # Never both temperature and top_p: current Claude models refuse the pair (`unsupported`).
    extra: dict[str, Any] = {}
    params = request.params
    top_p = _top_p(params) if params else None
    if top_p is not None:
        if request.temperature is not None:
            raise UnsupportedError(f"{NAME}: cannot take temperature and top_p together", provider=NAME,
                                   param="top_p", hint="send one of them (Claude models refuse the pair)")
        extra["top_p"] = top_p
    elif request.temperature is not None:
        extra["temperature"] = min(max(float(request.temperature), 0.0), 1.0)
    if params:
        _add_params(kwargs, extra, request)
    else:
        add_tools(kwargs, request)  # the tools of the history's calls, if it has any
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def _add_params(kwargs: dict[str, Any], extra: dict[str, Any], request: ChatRequest) -> None:
    params = request.params
    if isinstance(params.get("top_k"), int) and params["top_k"] > 0:
        extra["top_k"] = params["top_k"]
    add_tools(kwargs, request)
    output = output_config_of(params.get("response_format"))
    if output is not None:
        kwargs["output_config"] = output
    if isinstance(params.get("user"), str) and params["user"]:
        kwargs["metadata"] = {"user_id": params["user"]}
