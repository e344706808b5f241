"""Our OpenAI-shaped chat in Anthropic's Messages shape, and Anthropic's answers back.

Owns, for `anthropic.AnthropicProvider`: OpenAI-style turns → `system=` plus alternating
user/assistant turns (`to_anthropic_messages`), a `ChatRequest` → `messages.create` arguments
(model, capped max_tokens, stops, temperature), a Message → `ChatResponse` (text, usage, stop
reason in OpenAI's vocabulary), and the tally of a stream's events. Pure: no SDK import, no I/O;
bad input is a `UsageError`, an answer that is not a message is `malformed`.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from gpuctl.errors import Kind, ProviderError, UsageError
from gpuctl.providers.base import ChatRequest, ChatResponse, Message, Usage

NAME = "anthropic"

# A conversation that opens with an assistant turn (a chat UI's greeting, say) is rejected by
# the API. We keep that turn and put this minimal user turn before it, rather than silently
# dropping what the assistant said.
LEADING_USER_TURN = "(conversation start)"

# Anthropic's stop reasons in OpenAI's vocabulary, which the rest of gpuctl speaks.
FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}

SYSTEM_ROLES = frozenset({"system", "developer"})  # "developer" is OpenAI's newer name for system


def to_anthropic_messages(messages: Sequence[Message]) -> tuple[str | None, list[dict[str, str]]]:
    """Map OpenAI-style messages to Anthropic's `(system, messages)`. Pure; raises UsageError.

    Rules (the API rejects anything else):
    - every system (or "developer") message, wherever it stands, goes to the top-level
      `system`, joined by blank lines; None when there is none;
    - messages with empty content are dropped (the API rejects empty text blocks);
    - consecutive turns of the same role are merged, joined by a blank line;
    - a conversation that starts with an assistant turn gets `LEADING_USER_TURN` before it;
    - a final assistant turn (a prefill the model continues) loses trailing whitespace,
      which the API rejects there;
    - no user or assistant content at all is a UsageError.
    """
    system_parts: list[str] = []
    turns: list[dict[str, str]] = []
    for message in messages:
        role = message.role
        if role in SYSTEM_ROLES:
            if message.content.strip():
                system_parts.append(message.content)
            continue
        if role not in ("user", "assistant"):
            raise UsageError(
                f"Anthropic cannot take a message with role {role!r}",
                hint="Use only system, user and assistant messages.",
            )
        if not message.content.strip():
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + message.content
        else:
            turns.append({"role": role, "content": message.content})

    if not turns:
        raise UsageError(
            "There is nothing to send: the conversation has no user message.",
            hint="Add at least one user message.",
        )
    if turns[0]["role"] == "assistant":
        turns.insert(0, {"role": "user", "content": LEADING_USER_TURN})
    if turns[-1]["role"] == "assistant":
        turns[-1]["content"] = turns[-1]["content"].rstrip()
    system = "\n\n".join(system_parts) if system_parts else None
    return system, turns


def finish_reason(stop_reason: str | None) -> str | None:
    """Anthropic's stop reason in OpenAI's words; an unknown one passes through as is."""
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, stop_reason)


def model_for(request: ChatRequest, default: str) -> str:
    # A vLLM model name (Qwen/...) must never be sent to Anthropic.
    if request.model and request.model.startswith("claude"):
        return request.model
    return default


def create_kwargs(request: ChatRequest, *, model: str, max_tokens: int) -> dict[str, Any]:
    """The arguments of `messages.create`; `max_tokens` is the configured cap (anthropic.max_tokens)."""
    system, turns = to_anthropic_messages(request.messages)
    # anthropic.max_tokens caps what the paid fallback may generate per answer.
    limit = min(request.max_tokens, max_tokens) if request.max_tokens > 0 else max_tokens
    if limit < 1:
        raise UsageError(f"max_tokens must be at least 1, not {limit}")
    kwargs: dict[str, Any] = {
        "model": model_for(request, model),
        "max_tokens": limit,
        "messages": turns,
    }
    if system is not None:
        kwargs["system"] = system
    stops = [s for s in request.stop if s.strip()]  # the API rejects whitespace-only stops
    if stops:
        kwargs["stop_sequences"] = stops
    if request.temperature is not None:
        # SDK 2.10.0 has no `temperature` argument; `extra_body` is its documented way to
        # send API fields it lacks. OpenAI's range is 0–2, Anthropic's 0–1: clamp.
        kwargs["extra_body"] = {"temperature": min(max(float(request.temperature), 0.0), 1.0)}
    return kwargs


def chat_response(message: Any, *, model: str, latency: float) -> ChatResponse:
    """An SDK Message as our ChatResponse; `model` is the one asked for (when it names none)."""
    content = getattr(message, "content", None)
    usage = getattr(message, "usage", None)
    if not isinstance(content, list) or usage is None:
        raise ProviderError(
            "Anthropic API answered with something that is not a message (check anthropic.base_url)",
            provider=NAME,
            kind=Kind.MALFORMED,
        )
    text = "".join(
        block.text
        for block in content
        if getattr(block, "type", None) == "text"
        and isinstance(getattr(block, "text", None), str)
    )
    return ChatResponse(
        text=text,
        provider=NAME,
        model=str(getattr(message, "model", None) or model),
        usage=Usage(
            prompt_tokens=int(getattr(usage, "input_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "output_tokens", 0) or 0),
        ),
        finish_reason=finish_reason(getattr(message, "stop_reason", None)),
        latency_s=latency,
        # Without streaming the first token reaches us with the whole answer.
        ttft_s=latency,
    )


class StreamTally:
    """What a stream's events said besides their text: model, token counts, stop reason."""

    def __init__(self, model: str) -> None:
        self.model = model
        self.input_tokens = 0
        self.output_tokens = 0
        self.stop_reason: str | None = None
        self.finished = False

    def text_of(self, event: Any) -> str | None:
        """Fold one SDK stream event in; its text, if it carries some."""
        kind = getattr(event, "type", None)
        if kind == "message_start":
            self.model = str(getattr(event.message, "model", None) or self.model)
            self.input_tokens = int(getattr(event.message.usage, "input_tokens", 0) or 0)
        elif kind == "content_block_delta":
            text = getattr(event.delta, "text", None)
            if getattr(event.delta, "type", None) == "text_delta" and text:
                return text  # type: ignore[no-any-return]
        elif kind == "message_delta":
            self.stop_reason = getattr(event.delta, "stop_reason", None) or self.stop_reason
            usage = event.usage
            self.output_tokens = int(getattr(usage, "output_tokens", 0) or 0)
            if getattr(usage, "input_tokens", None) is not None:
                self.input_tokens = int(usage.input_tokens)
        elif kind == "message_stop":
            self.finished = True
        return None

    def usage(self) -> Usage:
        return Usage(prompt_tokens=self.input_tokens, completion_tokens=self.output_tokens)
