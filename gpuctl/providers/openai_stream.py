"""Folding a vLLM (OpenAI-compatible) SSE stream into `StreamChunk`s, one network read at a time.

Owns `StreamFold`: the `data:` events of one read → at most one chunk (text, tool-call pieces,
and the server's own payloads when the request asked for n > 1 or logprobs), and what the
stream said besides (model, finish reason, usage, whether it called tools), ending in the last
chunk, with usage estimated (and marked so) when the server sent none.

On the streaming hot path (bench/bench_router.py streams 2,000 chunks against bare httpx SSE):
one call per network read, no per-event allocation beyond the lists of that read, and a plain
text event costs the same as before tool calls existed but for one dict look-up.

Must not: do I/O or build error messages (`VLLMErrors` does, and only when something fails).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from gpuctl.errors import ProviderError
from gpuctl.providers.base import (
    ChatRequest,
    StreamChunk,
    ToolCallDelta,
    Usage,
    estimated_usage,
    finish_reason,
)
from gpuctl.providers.openai_errors import VLLMErrors
from gpuctl.providers.openai_mapping import (
    event_payload,
    merge_deltas,
    tool_deltas,
    usage_of,
    wants_raw,
)


class StreamFold:
    """One streamed answer's state. `shown` holds the text of every chunk yielded (an entry
    per chunk, "" for one of tool-call pieces only): once it is not empty, a failure is a
    broken stream, never a clean one, and its text is the partial text. `called` holds the
    tool calls' names and argument fragments yielded (for an estimate of usage)."""

    def __init__(self, request: ChatRequest, model: str | None) -> None:
        self.request = request
        self.model = model
        self.keep_raw = bool(request.params) and wants_raw(request.params)
        self.finish: str | None = None
        self.usage: Usage | None = None
        self.calls = False
        self.done = False  # `data: [DONE]` arrived
        self.shown: list[str] = []
        self.called: list[str] = []

    def fold(self, datas: list[str], errors: Callable[[], VLLMErrors]) -> tuple[StreamChunk | None, ProviderError | None]:
        """The chunk these events make (None: nothing to show), and the error that ended them."""
        pieces: list[str] = []
        deltas: list[ToolCallDelta] = []
        raws: list[dict[str, Any]] = []
        failed: ProviderError | None = None
        for data in datas:
            if data == "[DONE]":
                self.done = True
                break
            try:
                payload = event_payload(data, errors)
            except ProviderError as exc:
                failed = exc  # show what arrived before it first
                break
            if self.model is None:
                self.model = payload.get("model")
            if payload.get("usage"):
                self.usage = usage_of(payload["usage"])
            for choice in payload.get("choices") or ():
                if not isinstance(choice, dict) or choice.get("index", 0) != 0:
                    continue
                delta = choice.get("delta")
                if isinstance(delta, dict) and delta.get("tool_calls"):
                    try:
                        deltas += tool_deltas(delta["tool_calls"], errors)
                    except ProviderError as exc:
                        failed = exc
                        break
                if choice.get("finish_reason"):
                    self.finish = str(choice["finish_reason"])
                if not isinstance(delta, dict):
                    continue
                text = delta.get("content")
                if isinstance(text, str) and text:
                    pieces.append(text)
            if failed is not None:
                break
            if self.keep_raw:
                raws.append(payload)
        if not (pieces or deltas or raws):
            return None, failed
        text = pieces[0] if len(pieces) == 1 else "".join(pieces)
        self.shown.append(text)
        if deltas:
            self.calls = True
            if len(deltas) > 1:
                deltas = merge_deltas(deltas)
            self.called.extend((d.name or "") + d.arguments for d in deltas)
        return StreamChunk(text, None, None, self.model, tuple(deltas) if deltas else None,
                           tuple(raws) if raws else None), failed

    @property
    def complete(self) -> bool:
        """[DONE] after a finish reason. [DONE] alone is how a server that serves one request
        at a time cuts a running stream short when a second one arrives."""
        return self.done and self.finish is not None

    def last(self) -> StreamChunk:
        """The final chunk. Many servers ignore include_usage: an estimate, marked so, beats
        recording 0 tokens."""
        usage = self.usage or estimated_usage(self.request, "".join(self.shown) + "".join(self.called))
        return StreamChunk("", finish_reason(self.finish, tool_calls=self.calls), usage, self.model)
