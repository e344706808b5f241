"""The whole OpenAI request's cost on the request path (issue 13), in-process, no network.

Rows: a 20-message conversation with 10 tools mapped to Anthropic's Messages arguments and its
answer (a tool_use Message) mapped back to an OpenAI ChatCompletion (target ≤ 100 µs; the
baseline is `json.dumps` of the same request, a yardstick measured in the same run); and the
same request validated and turned into the body a vLLM server gets, against today's text path
(`ChatRequest.from_openai` + the body) for a text conversation of the same length (≤ 20 µs
added). The streaming row (2,000 chunks against bare httpx SSE) is bench_router's.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable
from typing import Any

from bench.common import Row, interleaved, median


def _per_call(fns: dict[str, Callable[[], Any]], n: int, repeats: int) -> dict[str, float]:
    """Median seconds per call of each function over `repeats` batches of `n` calls, the
    batches interleaved so that drift on a shared machine hits all of them alike."""
    def batch(fn: Callable[[], Any]) -> Callable[[], float]:
        def timed() -> float:
            started = time.perf_counter()
            for _ in range(n):
                fn()
            return (time.perf_counter() - started) / n
        return timed

    for fn in fns.values():
        fn()
    results = interleaved({name: batch(fn) for name, fn in fns.items()}, repeats)
    return {name: median(times) for name, times in results.items()}


def _conversation() -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """20 messages: a system prompt, 4 rounds of question / tool call / result / answer, two
    more text turns and the last question; 10 tools."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful agent."}]
    k = 0
    while len(messages) < 17:
        k += 1
        messages += [
            {"role": "user", "content": f"Question {k}: look up item {k} and summarise it."},
            {"role": "assistant", "content": "", "tool_calls": [{"id": f"call_{k}", "type": "function", "function": {
                "name": f"tool_{k % 10}", "arguments": json.dumps({"q": f"item {k}"})}}]},
            {"role": "tool", "tool_call_id": f"call_{k}", "content": f"item {k} is fine"},
            {"role": "assistant", "content": f"Item {k} is fine."},
        ]
    messages += [{"role": "user", "content": "And item 5?"}, {"role": "assistant", "content": "Also fine."},
                 {"role": "user", "content": "Thanks, and the next one?"}]
    assert len(messages) == 20
    tools = [{"type": "function", "function": {"name": f"tool_{i}", "description": f"Tool {i}.", "parameters": {
        "type": "object", "properties": {"q": {"type": "string"}}, "required": ["q"]}}} for i in range(10)]
    return messages, tools


def _anthropic_message() -> Any:
    from anthropic.types import Message

    return Message.model_validate({
        "id": "msg_1", "type": "message", "role": "assistant", "model": "claude-haiku-4-5",
        "content": [{"type": "text", "text": "Checking."},
                    {"type": "tool_use", "id": "toolu_1", "name": "tool_3", "input": {"q": "item 11"}}],
        "stop_reason": "tool_use", "stop_sequence": None, "usage": {"input_tokens": 900, "output_tokens": 30},
    })


def run(*, n: int = 500, repeats: int = 31) -> list[Row]:
    from gpuctl.providers.anthropic_mapping import create_kwargs
    from gpuctl.providers.anthropic_replies import chat_response
    from gpuctl.providers.base import ChatRequest
    from gpuctl.providers.chat_api import parse_chat_request
    from gpuctl.providers.openai_mapping import chat_body

    messages, tools = _conversation()
    body = {"messages": messages, "tools": tools, "tool_choice": "auto", "temperature": 0.7, "max_tokens": 2048}
    request = parse_chat_request(body)
    message = _anthropic_message()

    def there_and_back() -> None:
        create_kwargs(request, model="claude-haiku-4-5", max_tokens=2048)
        chat_response(message, model="claude-haiku-4-5", latency=0.1).to_openai(id="chatcmpl-1", created=1)


    text = [{"role": m["role"] if m["role"] != "tool" else "user", "content": m.get("content") or "..."}
            for m in messages]

    def text_path() -> None:
        chat_body(ChatRequest.from_openai(text, temperature=0.7, max_tokens=2048), "m", stream=False)

    def tool_path() -> None:
        chat_body(parse_chat_request(body), "m", stream=False)

    timed = _per_call({"yardstick": lambda: json.dumps(body), "mapped": there_and_back, "base": text_path,
                       "ours": tool_path}, n, repeats)
    yardstick, mapped, base, ours = timed["yardstick"], timed["mapped"], timed["base"], timed["ours"]
    added = (ours - base) * 1e6
    return [
        Row("20 messages + 10 tools mapped to Anthropic and back", f"json.dumps of it {yardstick * 1e6:.1f} µs",
            f"{mapped * 1e6:.1f} µs", "≤ 100 µs", mapped * 1e6 <= 100),
        Row("the same request validated and passed through to vLLM", f"text path {base * 1e6:.1f} µs",
            f"+{added:.1f} µs", "≤ 20 µs added", added <= 20),
    ]
