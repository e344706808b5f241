"""An OpenAI chat request in Anthropic's Messages shape (the answers coming back are
`anthropic_replies`').

Owns, for `anthropic.AnthropicProvider`: OpenAI messages → `system=` plus alternating
user/assistant turns of content blocks (`to_anthropic_messages`: text, images, tool_use,
tool_result), tools and tool_choice, response_format → structured output (`output_config`),
the sampling parameters, and what Anthropic cannot do (`unsupported`: n > 1, logprobs, any
parameter it has no equivalent for, at a value that would change the answer). Pure: no SDK
import at run time (its TypedDicts are for type checking), no I/O; bad input is a `UsageError`.

Two things are said here rather than done silently: tool-call `arguments` that are not a
JSON object (models write what they write) reach Anthropic as `{"_raw_arguments": text}`; a
message's `name` has no Anthropic field and is not sent. Temperature is clamped to Anthropic's
0–1.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from gpuctl.errors import UsageError
from gpuctl.providers.base import ChatRequest, Message, Unsupported, arguments_object, content_text

if TYPE_CHECKING:
    from anthropic.types import MessageParam, ToolChoiceParam, ToolParam
    from anthropic.types.output_config_param import OutputConfigParam

NAME = "anthropic"

# A conversation that opens with an assistant turn (a chat UI's greeting, say) is rejected by
# the API. We keep that turn and put this minimal user turn before it, rather than silently
# dropping what the assistant said.
LEADING_USER_TURN = "(conversation start)"

SYSTEM_ROLES = frozenset({"system", "developer"})  # "developer" is OpenAI's newer name for system
IMAGE_TYPES = frozenset({"image/jpeg", "image/png", "image/gif", "image/webp"})
_DATA_URL = re.compile(r"^data:(?P<type>[\w/+.-]+);base64,(?P<data>.*)$", re.DOTALL)

# What OpenAI's `json_object` means, as a schema structured output accepts: any JSON object.
ANY_OBJECT: dict[str, object] = {"type": "object", "additionalProperties": True}

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
    for name, value in request.params.items():
        if name in MAPPED or value is None or value in NEUTRAL.get(name, ()):
            continue
        shown = repr(value) if not isinstance(value, int | float | str) else str(value)
        return Unsupported(name, f"cannot do {name}={shown[:40]}")
    for i, message in enumerate(request.messages):
        content = (message.data or {}).get("content")
        for k, part in enumerate(content if isinstance(content, list) else ()):
            kind = part.get("type") if isinstance(part, dict) else None
            if kind not in ("text", "image_url", "refusal"):
                return Unsupported(f"messages[{i}].content[{k}]", f"cannot take {kind} content")
            if kind == "image_url":
                match = _DATA_URL.match(str(part["image_url"].get("url", "")))
                if match is not None and match["type"] not in IMAGE_TYPES:
                    return Unsupported(f"messages[{i}].content[{k}]", f"cannot take {match['type']} images")
    return None


# ------------------------------------------------------------------ messages


def _image(part: Mapping[str, Any]) -> dict[str, Any]:
    url = str((part.get("image_url") or {}).get("url", ""))
    match = _DATA_URL.match(url)
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


def tools_of(tools: Sequence[Mapping[str, Any]]) -> list[ToolParam]:
    """OpenAI function tools as Anthropic tools: {name, description, input_schema}."""
    out: list[ToolParam] = []
    for tool in tools:
        function = tool.get("function") or {}
        param: dict[str, Any] = {"name": str(function.get("name") or ""),
                                 "input_schema": function.get("parameters") or {"type": "object", "properties": {}}}
        if function.get("description"):
            param["description"] = str(function["description"])
        if function.get("strict") is not None:
            param["strict"] = bool(function["strict"])
        out.append(cast("ToolParam", param))
    return out


def tool_choice_of(choice: Any, parallel: Any) -> ToolChoiceParam | None:
    """auto→auto, none→none, required→any, a named function→tool; `parallel_tool_calls:
    false` → `disable_parallel_tool_use`."""
    if choice is None and parallel is not False:
        return None
    if choice is None or choice == "auto":
        out: dict[str, Any] = {"type": "auto"}
    elif choice == "none":
        return cast("ToolChoiceParam", {"type": "none"})
    elif choice == "required":
        out = {"type": "any"}
    else:
        out = {"type": "tool", "name": str(((choice or {}).get("function") or {}).get("name") or "")}
    if parallel is False:
        out["disable_parallel_tool_use"] = True
    return cast("ToolChoiceParam", out)


def output_config_of(response_format: Any) -> OutputConfigParam | None:
    """response_format json_schema / json_object as structured output (`output_config`), so
    the answer's content parses; `text` (or none) asks for nothing."""
    if not isinstance(response_format, Mapping) or response_format.get("type") not in ("json_schema", "json_object"):
        return None
    schema: dict[str, object] = ANY_OBJECT
    if response_format["type"] == "json_schema":
        schema = (response_format.get("json_schema") or {}).get("schema") or ANY_OBJECT
    return {"format": {"type": "json_schema", "schema": schema}}


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
    extra: dict[str, Any] = {}
    if request.temperature is not None:
        extra["temperature"] = min(max(float(request.temperature), 0.0), 1.0)
    params = request.params
    if params:
        _add_params(kwargs, extra, params)
    if extra:
        kwargs["extra_body"] = extra
    return kwargs


def _add_params(kwargs: dict[str, Any], extra: dict[str, Any], params: Mapping[str, Any]) -> None:
    if params.get("top_p") is not None:
        extra["top_p"] = params["top_p"]
    if isinstance(params.get("top_k"), int) and params["top_k"] > 0:
        extra["top_k"] = params["top_k"]
    tools = params.get("tools")
    if tools:
        kwargs["tools"] = tools_of(tools)
        choice = tool_choice_of(params.get("tool_choice"), params.get("parallel_tool_calls"))
        if choice is not None:
            kwargs["tool_choice"] = choice
    output = output_config_of(params.get("response_format"))
    if output is not None:
        kwargs["output_config"] = output
    if isinstance(params.get("user"), str) and params["user"]:
        kwargs["metadata"] = {"user_id": params["user"]}
