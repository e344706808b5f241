"""OpenAI requests the fidelity tests share: a weather tool and a tool conversation."""

from __future__ import annotations

import json
from typing import Any

WEATHER: dict[str, Any] = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "The weather in a city now.",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]},
    },
}


def tool(name: str) -> dict[str, Any]:
    return {"type": "function", "function": {"name": name, "description": f"Tool {name}.",
                                             "parameters": {"type": "object", "properties": {"q": {"type": "string"}}}}}


def tool_conversation(call_id: str = "call_1", result: str = '{"sky": "sunny"}') -> list[dict[str, Any]]:
    """system, user, the assistant's call, and the tool's result: turn 2 of a tool conversation."""
    return [
        {"role": "system", "content": "You are a weather bot."},
        {"role": "user", "content": "What is the weather in Paris?"},
        {"role": "assistant", "content": None, "tool_calls": [
            {"id": call_id, "type": "function",
             "function": {"name": "get_weather", "arguments": json.dumps({"city": "Paris"})}}]},
        {"role": "tool", "tool_call_id": call_id, "content": result},
    ]


def long_conversation(turns: int = 20, tools: int = 10) -> tuple[list[dict[str, Any]], list[dict[str, Any]]]:
    """A `turns`-message conversation with tool calls and results in it, and `tools` tools
    (the benchmark's and the mapping tests' shape)."""
    messages: list[dict[str, Any]] = [{"role": "system", "content": "You are a helpful agent."}]
    n = 0
    while len(messages) + 4 <= turns - 1:  # whole rounds only: a call always has its result
        n += 1
        messages.append({"role": "user", "content": f"Question {n}: look up item {n} and summarise it."})
        messages.append({"role": "assistant", "content": "", "tool_calls": [
            {"id": f"call_{n}", "type": "function", "function": {"name": f"tool_{n % tools}",
                                                                 "arguments": json.dumps({"q": f"item {n}"})}}]})
        messages.append({"role": "tool", "tool_call_id": f"call_{n}", "content": f"item {n} is fine"})
        messages.append({"role": "assistant", "content": f"Item {n} is fine."})
    while len(messages) < turns - 1:
        messages.append({"role": "user" if messages[-1]["role"] != "user" else "assistant", "content": "More."})
    messages.append({"role": "user", "content": "Thanks, and the next one?"})
    return messages, [tool(f"tool_{i}") for i in range(tools)]
