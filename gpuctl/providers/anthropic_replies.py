"""Anthropic's answers in OpenAI's shape: a Message → `ChatResponse`, a stream's events →
`StreamChunk`s (the request side is `anthropic_mapping`'s).

Owns: text and `tool_use` blocks → text and `tool_calls` (the same ids, so the next turn
matches), `stop_reason` in OpenAI's words (end_turn/stop_sequence→stop, max_tokens→length,
tool_use→tool_calls, refusal→content_filter), usage as Anthropic bills it (`input_tokens`
already counts the system prompt and the tool definitions; cache writes and reads are input
too), and `StreamTally`, which folds stream events: text deltas, a tool_use block's start
(id, name) and its `input_json_delta`s (argument fragments). A call of `json_tool` (the forced
tool of a `json_object` request, `anthropic_tools.JSON_TOOL`) is the answer's text, not a tool
call: its input is the JSON the caller asked for, and the answer finished with `stop`.
Pure: no SDK import, no I/O.
"""

from __future__ import annotations

import json
from typing import Any

from gpuctl.errors import Kind, ProviderError
from gpuctl.providers.anthropic_mapping import NAME
from gpuctl.providers.base import ChatResponse, StreamChunk, ToolCall, ToolCallDelta, Usage

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


def finish_reason(stop_reason: str | None) -> str | None:
    """Anthropic's stop reason in OpenAI's words; an unknown one is `stop`."""
    if stop_reason is None:
        return None
    return FINISH_REASONS.get(stop_reason, "stop")


def usage_of(usage: Any) -> Usage:
    """Input tokens as billed: plain input (system and tool definitions included) plus cache
    writes and reads; output tokens as they are."""
    prompt = sum(int(getattr(usage, name, 0) or 0)
                 for name in ("input_tokens", "cache_creation_input_tokens", "cache_read_input_tokens"))
    return Usage(prompt_tokens=prompt, completion_tokens=int(getattr(usage, "output_tokens", 0) or 0))


def chat_response(message: Any, *, model: str, latency: float, json_tool: str | None = None) -> ChatResponse:
    """An SDK Message as our ChatResponse; `model` is the one asked for (when it names none);
    a call of `json_tool` is the answer's text."""
    content = getattr(message, "content", None)
    usage = getattr(message, "usage", None)
    if not isinstance(content, list) or usage is None:
        raise ProviderError(
            "Anthropic API answered with something that is not a message (check anthropic.base_url)",
            provider=NAME,
            kind=Kind.MALFORMED,
        )
    texts: list[str] = []
    calls: list[ToolCall] = []
    for block in content:
        kind = getattr(block, "type", None)
        if kind == "text" and isinstance(getattr(block, "text", None), str):
            texts.append(block.text)
        elif kind == "tool_use" and json_tool is not None and block.name == json_tool:
            texts.append(json.dumps(block.input))
        elif kind == "tool_use":
            calls.append(ToolCall(id=str(block.id), name=str(block.name), arguments=json.dumps(block.input)))
    finish = finish_reason(getattr(message, "stop_reason", None))
    return ChatResponse(
        text="".join(texts),
        provider=NAME,
        model=str(getattr(message, "model", None) or model),
        usage=usage_of(usage),
        finish_reason="stop" if finish == "tool_calls" and not calls else finish,
        latency_s=latency,
        # Without streaming the first token reaches us with the whole answer.
        ttft_s=latency,
        tool_calls=tuple(calls),
    )


class StreamTally:
    """What a stream's events said besides their text: model, token counts, stop reason, and
    which content blocks are tool calls (OpenAI numbers tool calls 0, 1, ...; Anthropic
    numbers every block)."""

    def __init__(self, model: str, json_tool: str | None = None) -> None:
        self.model = model
        self.json_tool = json_tool
        self._answer: int | None = None  # the block index of the json_tool call (its input is text)
        self._answered = False  # the json_tool call got input fragments
        self.usage_seen: Any = None
        self.output_tokens = 0
        self.stop_reason: str | None = None
        self.finished = False
        self._tools: dict[int, int] = {}  # block index → tool-call index
        self._args: set[int] = set()  # tool calls that got argument fragments

    def chunk_of(self, event: Any) -> StreamChunk | None:
        """Fold one SDK stream event in; the chunk it makes, if any."""
        kind = getattr(event, "type", None)
        if kind == "content_block_delta":
            delta = event.delta
            dtype = getattr(delta, "type", None)
            if dtype == "text_delta" and delta.text:
                return StreamChunk(text=delta.text)
            if dtype == "input_json_delta" and event.index == self._answer and delta.partial_json:
                self._answered = True
                return StreamChunk(text=delta.partial_json)
            if dtype == "input_json_delta" and event.index in self._tools:
                call = self._tools[event.index]
                self._args.add(call)
                return StreamChunk(tool_calls=(ToolCallDelta(call, arguments=delta.partial_json or ""),))
        elif kind == "content_block_start":
            block = event.content_block
            if getattr(block, "type", None) == "tool_use" and self.json_tool is not None \
                    and block.name == self.json_tool:
                self._answer = event.index
            elif getattr(block, "type", None) == "tool_use":
                call = self._tools[event.index] = len(self._tools)
                return StreamChunk(tool_calls=(ToolCallDelta(call, id=str(block.id), name=str(block.name)),))
        elif kind == "content_block_stop":
            if event.index == self._answer and not self._answered:
                return StreamChunk(text="{}")  # an empty input is the empty object
            ended = self._tools.get(event.index)
            if ended is not None and ended not in self._args:
                # A call without input fragments takes no arguments: say so as JSON.
                return StreamChunk(tool_calls=(ToolCallDelta(ended, arguments="{}"),))
        elif kind == "message_start":
            self.model = str(getattr(event.message, "model", None) or self.model)
            self.usage_seen = event.message.usage
        elif kind == "message_delta":
            self.stop_reason = getattr(event.delta, "stop_reason", None) or self.stop_reason
            usage = event.usage
            self.output_tokens = int(getattr(usage, "output_tokens", 0) or 0)
            if getattr(usage, "input_tokens", None) is not None:
                self.usage_seen = usage
        elif kind == "message_stop":
            self.finished = True
        return None

    @property
    def finish_reason(self) -> str | None:
        """The stop reason in OpenAI's words; the forced json_tool call alone is a `stop`."""
        finish = finish_reason(self.stop_reason)
        return "stop" if finish == "tool_calls" and not self._tools else finish

    def usage(self) -> Usage:
        prompt = usage_of(self.usage_seen).prompt_tokens if self.usage_seen is not None else 0
        return Usage(prompt_tokens=prompt, completion_tokens=self.output_tokens)
