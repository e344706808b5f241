"""The OpenAI request as gpuctl's canonical form (issue 13): parsing and validating a body,
what an OpenAI-compatible server is sent (the body verbatim, model substituted), and answers
and stream chunks in OpenAI's shape, checked with the official `openai` package's types."""

from __future__ import annotations

import json
from typing import Any

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gpuctl.errors import EXIT_USAGE, UsageError
from gpuctl.providers.base import (
    ChatRequest,
    ChatResponse,
    StreamChunk,
    ToolCall,
    ToolCallDelta,
    Usage,
    arguments_object,
    finish_reason,
)
from gpuctl.providers.chat_api import (
    CompletionChunks,
    RequestError,
    completion_dict,
    parse_chat_request,
)
from gpuctl.providers.openai_mapping import chat_body
from tests.support.chat_requests import WEATHER, tool, tool_conversation


def test_a_full_request_parses_and_keeps_every_field() -> None:
    body = {
        "model": "Qwen/Qwen2.5-7B-Instruct",
        "messages": tool_conversation(),
        "tools": [WEATHER], "tool_choice": "auto", "parallel_tool_calls": False,
        "response_format": {"type": "json_object"}, "temperature": 0.2, "top_p": 0.9,
        "max_completion_tokens": 100, "stop": "\n\n", "presence_penalty": 0.1, "frequency_penalty": 0.2,
        "logprobs": True, "top_logprobs": 2, "n": 1, "user": "u-1", "stream": True,
        "stream_options": {"include_usage": True}, "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1,
    }
    request = parse_chat_request(body)
    assert request.model == "Qwen/Qwen2.5-7B-Instruct" and request.temperature == 0.2 and request.stream
    assert request.max_tokens is None and request.limit == 100 and request.stop == ("\n\n",)
    assert [m.role for m in request.messages] == ["system", "user", "assistant", "tool"]
    assert request.messages[2].data is body["messages"][2]  # the caller's own dict, untouched
    # What an OpenAI-compatible server gets: the body itself, only the model substituted: the
    # server's own, never the caller's (a public name; issue 13 review, finding 1).
    sent = chat_body(request, "served-name", stream=False)
    expected = {k: v for k, v in body.items() if k not in ("stream", "stream_options")}
    assert sent == {**expected, "model": "served-name"}
    assert chat_body(ChatRequest(request.messages, params=request.params), "served-name", stream=False)["model"] \
        == "served-name"
    streamed = chat_body(request, None, stream=True)
    assert streamed["stream"] is True and streamed["stream_options"] == {"include_usage": True}


def test_the_text_path_is_unchanged() -> None:
    request = ChatRequest.from_openai([{"role": "user", "content": "hi"}], max_tokens=64, stop=["x"])
    assert chat_body(request, "m", stream=False) == {
        "messages": [{"role": "user", "content": "hi"}], "model": "m", "temperature": 0.7, "max_tokens": 64,
        "stop": ["x"]}
    assert request.params == {} and request.limit == 64


@pytest.mark.parametrize(("body", "param"), [
    ([], None),
    ({"messages": []}, "messages"),
    ({"messages": [{"role": "robot", "content": "x"}]}, "messages[0].role"),
    ({"messages": [{"role": "user", "content": 3}]}, "messages[0].content"),
    ({"messages": [{"role": "user"}]}, "messages[0].content"),
    ({"messages": [{"role": "user", "content": [{"type": "image_url", "image_url": {}}]}]},
     "messages[0].content[0].image_url.url"),
    ({"messages": [{"role": "tool", "content": "42"}]}, "messages[0].tool_call_id"),
    ({"messages": [{"role": "assistant", "content": None, "tool_calls": [{"id": "c"}]}]},
     "messages[0].tool_calls[0]"),
    ({"messages": [{"role": "user", "content": "x"}], "temperature": 3}, "temperature"),
    ({"messages": [{"role": "user", "content": "x"}], "max_tokens": 0}, "max_tokens"),
    ({"messages": [{"role": "user", "content": "x"}], "n": True}, "n"),
    ({"messages": [{"role": "user", "content": "x"}], "stop": [1]}, "stop"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [{"type": "function", "function": {"name": "a b"}}]},
     "tools[0].function.name"),
    ({"messages": [{"role": "user", "content": "x"}], "tools": [WEATHER],
      "tool_choice": {"type": "function", "function": {"name": "other"}}}, "tool_choice"),
    ({"messages": [{"role": "user", "content": "x"}], "tool_choice": "sometimes"}, "tool_choice"),
    ({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "yaml"}}, "response_format"),
    ({"messages": [{"role": "user", "content": "x"}], "response_format": {"type": "json_schema"}},
     "response_format.json_schema"),
    ({"messages": [{"role": "user", "content": "x"}], "stream": "yes"}, "stream"),
])
def test_a_bad_body_is_a_request_error_naming_the_parameter(body: Any, param: str | None) -> None:
    with pytest.raises(RequestError) as info:
        parse_chat_request(body)
    assert info.value.param == param and isinstance(info.value, UsageError)
    assert info.value.exit_code == EXIT_USAGE and "\n" not in info.value.message
    if param:
        assert param in info.value.message


def test_unknown_fields_pass_through_unvalidated() -> None:
    request = parse_chat_request({"messages": [{"role": "user", "content": "x"}], "guided_json": {"a": 1},
                                  "chat_template_kwargs": {"enable_thinking": False}})
    assert request.params == {"guided_json": {"a": 1}, "chat_template_kwargs": {"enable_thinking": False}}


def test_an_answer_is_a_valid_chat_completion() -> None:
    text = ChatResponse("Paris is sunny.", "anthropic", "claude-haiku-4-5", Usage(10, 4), "stop")
    call = ChatResponse("", "modal", "Qwen", Usage(10, 8), "stop",
                        tool_calls=(ToolCall("call_1", "get_weather", '{"city": "Paris"}'),))
    for response in (text, call):
        data = response.to_openai()
        parsed = ChatCompletion.model_validate(data)
        assert parsed.model == response.model and parsed.usage is not None
        assert parsed.usage.total_tokens == response.usage.total_tokens
        assert completion_dict(response, id="x")["id"] == "x"
    parsed = ChatCompletion.model_validate(call.to_openai())
    choice = parsed.choices[0]
    # a named tool_choice makes vLLM say "stop": decided by the presence of tool calls
    assert choice.finish_reason == "tool_calls" and choice.message.content is None
    assert choice.message.tool_calls is not None
    assert choice.message.tool_calls[0].function.name == "get_weather"
    assert json.loads(choice.message.tool_calls[0].function.arguments) == {"city": "Paris"}
    assert call.message == {"role": "assistant", "content": None, "tool_calls": [call.tool_calls[0].as_dict()]}


def test_a_servers_own_answer_is_kept_whole() -> None:
    raw = {"id": "chatcmpl-1", "object": "chat.completion", "created": 1, "model": "/models/x.gguf",
           "choices": [{"index": i, "finish_reason": "stop", "logprobs": {"content": []},
                        "message": {"role": "assistant", "content": f"answer {i}"}} for i in range(2)],
           "usage": {"prompt_tokens": 1, "completion_tokens": 2, "total_tokens": 3}}
    response = ChatResponse("answer 0", "endpoint", "qwen", Usage(1, 2), "stop", raw=raw)
    parsed = ChatCompletion.model_validate(response.to_openai())
    assert [c.message.content for c in parsed.choices] == ["answer 0", "answer 1"]
    assert parsed.model == "qwen" and parsed.choices[1].logprobs is not None


@pytest.mark.parametrize(("given", "calls", "expected"), [
    ("stop", False, "stop"), ("stop", True, "tool_calls"), ("length", True, "length"),
    ("tool_calls", True, "tool_calls"), ("content_filter", False, "content_filter"),
    ("abort", False, "stop"), (None, False, None),
])
def test_finish_reasons_are_openais_four(given: str | None, calls: bool, expected: str | None) -> None:
    assert finish_reason(given, tool_calls=calls) == expected


def test_stream_chunks_are_valid_chat_completion_chunks() -> None:
    encoder = CompletionChunks(model="claude-haiku-4-5", include_usage=True)
    stream = [
        StreamChunk(text="Let me check."),
        StreamChunk(tool_calls=(ToolCallDelta(0, id="toolu_1", name="get_weather"),)),
        StreamChunk(tool_calls=(ToolCallDelta(0, arguments='{"city": '),)),
        StreamChunk(tool_calls=(ToolCallDelta(0, arguments='"Paris"}'),)),
        StreamChunk(finish_reason="stop", usage=Usage(12, 9), model="claude-haiku-4-5"),
    ]
    out = [c for chunk in stream for c in encoder.of(chunk)]
    parsed = [ChatCompletionChunk.model_validate(c) for c in out]
    assert len({p.id for p in parsed}) == 1
    assert parsed[0].choices[0].delta.role == "assistant" and parsed[0].choices[0].delta.content == "Let me check."
    first_call = parsed[1].choices[0].delta.tool_calls
    assert first_call is not None and first_call[0].id == "toolu_1" and first_call[0].type == "function"
    assert first_call[0].function is not None and first_call[0].function.name == "get_weather"
    arguments = "".join(p.choices[0].delta.tool_calls[0].function.arguments or ""  # type: ignore[index,union-attr]
                        for p in parsed[1:4])
    assert json.loads(arguments) == {"city": "Paris"}
    assert parsed[4].choices[0].finish_reason == "tool_calls"
    assert parsed[5].choices == [] and parsed[5].usage is not None and parsed[5].usage.total_tokens == 21
    assert CompletionChunks(model="m").of(StreamChunk(finish_reason="stop", usage=Usage(1, 1)))[-1]["choices"]


def test_raw_payloads_stream_as_the_server_sent_them() -> None:
    encoder = CompletionChunks(model="ours", id="chatcmpl-ours")
    payload = {"id": "theirs", "object": "chat.completion.chunk", "created": 1, "model": "theirs",
               "choices": [{"index": 1, "delta": {"content": "b"}, "finish_reason": None,
                            "logprobs": {"content": [{"token": "b", "logprob": -0.1, "bytes": None,
                                                      "top_logprobs": []}]}}]}
    out = encoder.of(StreamChunk(text="", raw=(payload,)))
    parsed = ChatCompletionChunk.model_validate(out[0])
    assert parsed.id == "chatcmpl-ours" and parsed.model == "ours" and parsed.choices[0].index == 1
    assert encoder.of(StreamChunk(finish_reason="stop", usage=Usage(1, 1))) == []  # already said by the server


@pytest.mark.parametrize(("arguments", "expected"), [
    ('{"city": "Paris"}', {"city": "Paris"}), ("", {}), ('{"city": "Par', {"_raw_arguments": '{"city": "Par'}),
    ("[1, 2]", {"_raw_arguments": "[1, 2]"}),
])
def test_arguments_that_are_not_an_object_never_crash(arguments: str, expected: dict[str, Any]) -> None:
    assert arguments_object(arguments) == expected


# ------------------------------------------------------------------ issue 13 review (findings 5, 7, 8, 11)


def _call(call_id: str, name: str = "get_weather") -> dict[str, Any]:
    return {"id": call_id, "type": "function", "function": {"name": name, "arguments": "{}"}}


QUESTION = {"role": "user", "content": "weather?"}


@pytest.mark.parametrize(("body", "param", "words"), [
    # finding 7: tool-call ids
    ({"messages": [QUESTION, {"role": "assistant", "content": None, "tool_calls": [_call("c1")]},
                   {"role": "tool", "tool_call_id": "", "content": "sunny"}]},
     "messages[2].tool_call_id", "must not be empty"),
    ({"messages": [QUESTION, {"role": "assistant", "content": None, "tool_calls": [_call("c1")]},
                   {"role": "tool", "tool_call_id": "c2", "content": "sunny"}]},
     "messages[2].tool_call_id", "'c2', which no earlier assistant tool call has"),
    ({"messages": [QUESTION, {"role": "tool", "tool_call_id": "c1", "content": "sunny"}]},
     "messages[1].tool_call_id", "no earlier assistant tool call"),
    ({"messages": [QUESTION, {"role": "assistant", "content": None, "tool_calls": [_call("")]}]},
     "messages[1].tool_calls[0].id", "must not be empty"),
    # finding 8: OpenAI's rule for tool names (no '.'), and no two alike
    ({"messages": [QUESTION], "tools": [tool("github.create_issue")]}, "tools[0].function.name", "'_' or '-'"),
    ({"messages": [QUESTION], "tools": [WEATHER, WEATHER]}, "tools[1].function.name", "must be unique"),
    # finding 11: tool_choice without tools (vLLM refuses it too)
    ({"messages": [QUESTION], "tool_choice": "required"}, "tool_choice", "needs `tools`"),
    ({"messages": [QUESTION], "tool_choice": "auto"}, "tool_choice", "needs `tools`"),
    ({"messages": [QUESTION], "tools": [],
      "tool_choice": {"type": "function", "function": {"name": "get_weather"}}}, "tool_choice", "needs `tools`"),
])
def test_review_a_bad_tool_request_names_its_parameter(body: dict[str, Any], param: str, words: str) -> None:
    with pytest.raises(RequestError) as info:
        parse_chat_request(body)
    assert info.value.param == param and words in info.value.message


def test_review_valid_tool_conversations_still_parse() -> None:
    parse_chat_request({"messages": tool_conversation(), "tools": [WEATHER, tool("create-issue_2")]})
    # "none" asks for no call: it needs no tools (vLLM takes it alone too)
    assert parse_chat_request({"messages": [QUESTION], "tool_choice": "none"}).params["tool_choice"] == "none"
    # a result may answer any earlier call (vLLM takes that; Anthropic says what it cannot do)
    parse_chat_request({"messages": [QUESTION, {"role": "assistant", "content": None, "tool_calls": [_call("c1")]},
                                     {"role": "tool", "tool_call_id": "c1", "content": "x"},
                                     {"role": "assistant", "content": "Done."}, QUESTION,
                                     {"role": "tool", "tool_call_id": "c1", "content": "again"}]})


def test_review_max_completion_tokens_wins_over_max_tokens() -> None:
    """Finding 5: as on vLLM (`max_completion_tokens or max_tokens`)."""
    both = parse_chat_request({"messages": [QUESTION], "max_tokens": 2048, "max_completion_tokens": 5})
    assert both.limit == 5
    assert parse_chat_request({"messages": [QUESTION], "max_tokens": 7}).limit == 7
    assert ChatRequest.from_openai([QUESTION], max_completion_tokens=5).limit == 5
    # the Python API's default max_tokens (2048) applies only when neither is given
    assert ChatRequest.from_openai([QUESTION], max_completion_tokens=5).max_tokens is None
    assert ChatRequest.from_openai([QUESTION]).max_tokens == 2048


def test_review_the_python_apis_default_temperature_never_meets_top_p() -> None:
    """Finding 3: 0.7 is a default, not the caller's choice: beside top_p it is left out."""
    assert ChatRequest.from_openai([QUESTION], top_p=0.9).temperature is None
    assert ChatRequest.from_openai([QUESTION]).temperature == 0.7
    assert ChatRequest.from_openai([QUESTION], temperature=0.2, top_p=0.9).temperature == 0.2


def test_review_openai_usage_never_carries_gpuctls_estimated_flag() -> None:
    """The OpenAI wire stays OpenAI's: `estimated` is an attribute (and in the ledger), never a
    field of `usage` in `to_openai()` or CompletionChunks."""
    usage = Usage(5, 8, estimated=True)
    answer = ChatResponse("hi", "endpoint", "m", usage, "stop")
    assert answer.to_openai()["usage"] == {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}
    raw = {"choices": [{"index": 0, "message": {"role": "assistant", "content": "hi"}, "finish_reason": "stop"}]}
    kept = ChatResponse("hi", "endpoint", "m", usage, "stop", raw=raw).to_openai()
    assert kept["usage"] == {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}
    last = CompletionChunks(model="m", include_usage=True).of(StreamChunk(finish_reason="stop", usage=usage))[-1]
    assert last["usage"] == {"prompt_tokens": 5, "completion_tokens": 8, "total_tokens": 13}
    assert usage.estimated and usage.as_dict()["estimated"] is True  # gpuctl's own JSON keeps it
