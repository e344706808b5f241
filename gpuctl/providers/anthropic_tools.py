"""Tools for Anthropic, for `anthropic_mapping`: OpenAI function tools and tool_choice in
Anthropic's shape, the tools a conversation's history needs declared, and `JSON_TOOL`, the one
forced tool whose input is the answer when any JSON object is asked for (`json_object`: the
API's structured output takes no schema that means "any object"; `anthropic_replies` turns the
tool's input back into the answer's text). Pure: no SDK import at run time, no I/O.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any, cast

from gpuctl.providers.base import EMPTY, ChatRequest, Message

if TYPE_CHECKING:
    from anthropic.types import ToolChoiceParam, ToolParam

JSON_TOOL = "json_answer"
ANY_OBJECT: dict[str, object] = {"type": "object"}
_JSON_TOOL_PARAM: dict[str, Any] = {"name": JSON_TOOL, "input_schema": ANY_OBJECT,
                                    "description": "Give your whole answer as this tool's input: a JSON object."}


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


def response_schema(response_format: Any) -> dict[str, Any] | None:
    """The JSON Schema a `json_schema` response_format asks for (None: no schema given)."""
    if not isinstance(response_format, Mapping) or response_format.get("type") != "json_schema":
        return None
    schema = (response_format.get("json_schema") or {}).get("schema")
    return schema if isinstance(schema, dict) and schema else None


def json_tool(request: ChatRequest) -> str | None:
    """`JSON_TOOL` when the answer is asked as any JSON object (`json_object`, or `json_schema`
    without a schema) and may be given as text (no tool call is required); else None."""
    rf = request.params.get("response_format") if request.params else None
    if not isinstance(rf, Mapping) or rf.get("type") not in ("json_object", "json_schema"):
        return None
    if response_schema(rf) is not None:
        return None
    choice = request.params.get("tool_choice")
    return JSON_TOOL if not request.tools or choice in (None, "auto", "none") else None


def add_tools(kwargs: dict[str, Any], request: ChatRequest) -> None:
    """`tools` and `tool_choice`: the caller's; else, for tool blocks in the history, the tools
    it used (the API refuses tool blocks without tools) with `tool_choice: none`; and the
    forced `JSON_TOOL` when the answer is any JSON object (`json_tool`)."""
    params = request.params
    tools: list[ToolParam] = tools_of(request.tools)
    choice: Any = None
    if tools:
        choice = tool_choice_of(params.get("tool_choice"), params.get("parallel_tool_calls"))
    else:
        tools = history_tools(request.messages)
        choice = {"type": "none"} if tools else None
    answer = json_tool(request)
    if answer is not None:
        if request.tools and params.get("tool_choice") != "none":
            # One of the caller's tools, or the answer (JSON_TOOL): a call the model must make.
            choice = {"type": "any"}
            if params.get("parallel_tool_calls") is False:
                choice["disable_parallel_tool_use"] = True
        else:
            choice = {"type": "tool", "name": answer}
        tools.append(cast("ToolParam", _JSON_TOOL_PARAM))
    if tools:
        kwargs["tools"] = tools
    if choice is not None:
        kwargs["tool_choice"] = choice


def history_tools(messages: Sequence[Message]) -> list[ToolParam]:
    """The tools the conversation's earlier calls named, declared with any input."""
    names: dict[str, None] = {}
    for message in messages:
        calls = (message.data or EMPTY).get("tool_calls") if message.role == "assistant" else None
        for call in calls if isinstance(calls, list) else ():
            name = str(((call or {}).get("function") or {}).get("name") or "")
            names.setdefault(name or "tool", None)
    return [cast("ToolParam", {"name": name, "input_schema": ANY_OBJECT,
                               "description": "A tool earlier turns called (not offered now)."}) for name in names]
