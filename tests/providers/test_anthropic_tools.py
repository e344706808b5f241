"""The OpenAI request on Anthropic (issue 13): the mapping both ways, exactly, and through the
real SDK against the loopback fake: tool_use, tool_result, input_json_delta, stop reasons,
structured output and usage as billed."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Iterator
from typing import Any

import pytest
from anthropic import transform_schema
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gpuctl.providers.anthropic import AnthropicProvider
from gpuctl.providers.anthropic_mapping import create_kwargs, to_anthropic_messages, unsupported
from gpuctl.providers.anthropic_tools import JSON_TOOL
from gpuctl.providers.anthropic_replies import finish_reason
from gpuctl.providers.base import ChatRequest, StreamChunk
from gpuctl.providers.chat_api import CompletionChunks, parse_chat_request
from tests.fakes.anthropic_server import FakeAnthropic
from tests.support.chat_requests import WEATHER, long_conversation

KEY = "sk-ant-test"
PNG = "iVBORw0KGgo="


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY, reply_text="It is sunny in Paris.") as server:
        yield server


def provider(fake: FakeAnthropic) -> AnthropicProvider:
    return AnthropicProvider(api_key=KEY, base_url=fake.url, timeout_s=5)


def chat(fake: FakeAnthropic, request: ChatRequest) -> Any:
    async def go() -> Any:
        p = provider(fake)
        try:
            return await p.chat(request)
        finally:
            await p.aclose()
    return asyncio.run(go())


def stream(fake: FakeAnthropic, request: ChatRequest) -> list[StreamChunk]:
    async def go() -> list[StreamChunk]:
        p = provider(fake)
        try:
            return [c async for c in p.stream(request)]
        finally:
            await p.aclose()
    return asyncio.run(go())


def body(**extra: Any) -> dict[str, Any]:
    return {"messages": [{"role": "user", "content": "What is the weather in Paris?"}], "tools": [WEATHER], **extra}


# ------------------------------------------------------------------ the mapping, exactly


def test_messages_map_to_blocks_exactly() -> None:
    messages = [
        {"role": "developer", "content": "Be brief."},
        {"role": "system", "content": [{"type": "text", "text": "Use tools."}]},
        {"role": "user", "content": [{"type": "text", "text": "Look:"},
                                     {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}},
                                     {"type": "image_url", "image_url": {"url": "https://x.example/a.jpg"}}]},
        {"role": "user", "content": "and the weather?"},
        {"role": "assistant", "content": "Checking.", "tool_calls": [
            {"id": "call_a", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Paris"}'}},
            {"id": "call_b", "type": "function", "function": {"name": "get_weather", "arguments": '{"city": "Pa'}}]},
        {"role": "tool", "tool_call_id": "call_a", "content": "sunny"},
        {"role": "tool", "tool_call_id": "call_b", "content": [{"type": "text", "text": "rain"}]},
        {"role": "user", "content": "Thanks"},
    ]
    system, turns = to_anthropic_messages(parse_chat_request({"messages": messages}).messages)
    assert system == "Be brief.\n\nUse tools."
    assert turns == [
        {"role": "user", "content": [
            {"type": "text", "text": "Look:"},
            {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
            {"type": "image", "source": {"type": "url", "url": "https://x.example/a.jpg"}},
            {"type": "text", "text": "and the weather?"}]},
        {"role": "assistant", "content": [
            {"type": "text", "text": "Checking."},
            {"type": "tool_use", "id": "call_a", "name": "get_weather", "input": {"city": "Paris"}},
            # arguments that are not JSON are never a crash: passed on as text
            {"type": "tool_use", "id": "call_b", "name": "get_weather", "input": {"_raw_arguments": '{"city": "Pa'}}]},
        {"role": "user", "content": [  # several results and the next user message: one turn
            {"type": "tool_result", "tool_use_id": "call_a", "content": "sunny"},
            {"type": "tool_result", "tool_use_id": "call_b", "content": "rain"},
            {"type": "text", "text": "Thanks"}]},
    ]


@pytest.mark.parametrize(("choice", "parallel", "expected"), [
    ("auto", None, {"type": "auto"}),
    ("none", None, {"type": "none"}),
    ("required", None, {"type": "any"}),
    ({"type": "function", "function": {"name": "get_weather"}}, None, {"type": "tool", "name": "get_weather"}),
    ("required", False, {"type": "any", "disable_parallel_tool_use": True}),
    (None, False, {"type": "auto", "disable_parallel_tool_use": True}),
    (None, None, None),
])
def test_tools_and_tool_choice_map_exactly(choice: Any, parallel: Any, expected: Any) -> None:
    extra: dict[str, Any] = {}
    if choice is not None:
        extra["tool_choice"] = choice
    if parallel is not None:
        extra["parallel_tool_calls"] = parallel
    kwargs = create_kwargs(parse_chat_request(body(**extra)), model="claude-haiku-4-5", max_tokens=512)
    assert kwargs["tools"] == [{"name": "get_weather", "description": "The weather in a city now.",
                                "input_schema": WEATHER["function"]["parameters"]}]
    assert kwargs.get("tool_choice") == expected


def test_response_format_user_and_sampling_map() -> None:
    schema = {"type": "object", "properties": {"answer": {"type": "string"}}, "required": ["answer"]}
    request = parse_chat_request({"messages": [{"role": "user", "content": "hi"}], "user": "u-7",
                                  "top_k": 40, "temperature": 1.5, "max_completion_tokens": 9000, "stop": ["END"],
                                  "response_format": {"type": "json_schema", "json_schema": {"name": "a", "schema": schema}}})
    kwargs = create_kwargs(request, model="claude-haiku-4-5", max_tokens=512)
    assert kwargs["output_config"] == {"format": {"type": "json_schema", "schema": transform_schema(schema)}}
    assert kwargs["metadata"] == {"user_id": "u-7"} and kwargs["stop_sequences"] == ["END"]
    assert kwargs["extra_body"] == {"temperature": 1.0, "top_k": 40}  # clamped to Anthropic's 0–1
    assert kwargs["max_tokens"] == 512  # capped by anthropic.max_tokens
    # top_p alone (temperature not given) is sent alone: Claude models refuse the pair.
    top_p = parse_chat_request({"messages": [{"role": "user", "content": "hi"}], "top_p": 0.5})
    assert create_kwargs(top_p, model="claude-haiku-4-5", max_tokens=512)["extra_body"] == {"top_p": 0.5}
    # json_object is one forced tool whose input is the answer (structured output has no "any object").
    json_object = parse_chat_request({"messages": [{"role": "user", "content": "hi"}],
                                      "response_format": {"type": "json_object"}})
    forced = create_kwargs(json_object, model="claude-haiku-4-5", max_tokens=512)
    assert "output_config" not in forced and forced["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert [t["name"] for t in forced["tools"]] == [JSON_TOOL]
    assert forced["tools"][0]["input_schema"] == {"type": "object"}


@pytest.mark.parametrize(("extra", "param", "words"), [
    ({"n": 2}, "n", "cannot do n=2"),
    ({"logprobs": True}, "logprobs", "cannot do logprobs=True"),
    ({"presence_penalty": 0.5}, "presence_penalty", "cannot do presence_penalty=0.5"),
    ({"repetition_penalty": 1.2}, "repetition_penalty", "cannot do repetition_penalty=1.2"),
])
def test_what_anthropic_cannot_do_is_said_not_dropped(extra: dict[str, Any], param: str, words: str) -> None:
    what = unsupported(parse_chat_request(body(**extra)))
    assert what is not None and what.param == param and what.text == words


def test_neutral_values_and_mapped_fields_are_fine() -> None:
    fine = body(n=1, logprobs=False, presence_penalty=0, frequency_penalty=0.0, min_p=0, repetition_penalty=1,
                top_k=20, tool_choice="auto", response_format={"type": "json_object"}, user="u", store=False)
    assert unsupported(parse_chat_request(fine)) is None
    audio = {"messages": [{"role": "user", "content": [{"type": "input_audio", "input_audio": {}}]}]}
    what = unsupported(parse_chat_request(audio))
    assert what is not None and what.param == "messages[0].content[0]"


@pytest.mark.parametrize(("stop", "expected"), [
    ("end_turn", "stop"), ("stop_sequence", "stop"), ("max_tokens", "length"), ("tool_use", "tool_calls"),
    ("refusal", "content_filter"), ("model_context_window_exceeded", "length"), ("something_new", "stop"),
])
def test_stop_reasons_in_openais_words(stop: str, expected: str) -> None:
    assert finish_reason(stop) == expected


# ------------------------------------------------------------------ through the SDK and the fake


def test_tool_use_comes_back_as_tool_calls_with_the_same_ids(fake: FakeAnthropic) -> None:
    fake.tool_call = {"name": "get_weather", "input": {"city": "Paris"}}
    response = chat(fake, parse_chat_request(body()))
    assert response.finish_reason == "tool_calls" and response.text == ""
    (call,) = response.tool_calls
    assert call.id.startswith("toolu_") and call.name == "get_weather" and json.loads(call.arguments) == {"city": "Paris"}
    ChatCompletion.model_validate(response.to_openai())
    # the next turn: the same id goes back as tool_use and its tool_result, and the fake checks they match
    turn2 = [*body()["messages"], response.message, {"role": "tool", "tool_call_id": call.id, "content": "sunny"}]
    answer = chat(fake, parse_chat_request({"messages": turn2, "tools": [WEATHER]}))
    assert answer.text == "It is sunny in Paris." and answer.finish_reason == "stop"
    sent = fake.last_body["messages"]
    assert sent[1]["content"][0]["id"] == call.id and sent[2]["content"][0]["tool_use_id"] == call.id


def test_streamed_tool_use_is_argument_deltas(fake: FakeAnthropic) -> None:
    fake.tool_call = {"name": "get_weather", "input": {"city": "Paris", "unit": "celsius"}}
    chunks = stream(fake, parse_chat_request(body()))
    deltas = [d for c in chunks for d in c.tool_calls or ()]
    assert deltas[0].id is not None and deltas[0].name == "get_weather" and deltas[0].index == 0
    assert len(deltas) > 3  # input_json_delta fragments, one chunk each
    assert json.loads("".join(d.arguments for d in deltas)) == {"city": "Paris", "unit": "celsius"}
    assert chunks[-1].finish_reason == "tool_calls"
    encoder = CompletionChunks(model="claude-haiku-4-5", include_usage=True)
    for chunk in chunks:
        for out in encoder.of(chunk):
            ChatCompletionChunk.model_validate(out)


def test_named_tool_choice_forces_that_tool(fake: FakeAnthropic) -> None:
    response = chat(fake, parse_chat_request(body(tool_choice={"type": "function", "function": {"name": "get_weather"}})))
    assert [c.name for c in response.tool_calls] == ["get_weather"] and response.finish_reason == "tool_calls"
    assert fake.last_body["tool_choice"] == {"type": "tool", "name": "get_weather"}


def test_json_output_parses(fake: FakeAnthropic) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}}}
    request = parse_chat_request({"messages": [{"role": "user", "content": "weather?"}],
                                  "response_format": {"type": "json_schema", "json_schema": {"name": "w", "schema": schema}}})
    assert set(json.loads(chat(fake, request).text)) == {"city", "sunny"}
    streamed = "".join(c.text for c in stream(fake, request))
    assert set(json.loads(streamed)) == {"city", "sunny"}
    # Sent as the SDK's `messages.parse` sends a schema: additionalProperties false on objects.
    assert fake.last_body["output_config"] == {"format": {"type": "json_schema", "schema": transform_schema(schema)}}
    assert fake.last_body["output_config"]["format"]["schema"]["additionalProperties"] is False


def test_refusal_is_content_filter(fake: FakeAnthropic) -> None:
    fake.force_stop_reason = "refusal"
    assert chat(fake, ChatRequest.from_openai([{"role": "user", "content": "hi"}])).finish_reason == "content_filter"


def test_tool_and_system_tokens_are_counted_as_billed(fake: FakeAnthropic) -> None:
    plain = chat(fake, ChatRequest.from_openai([{"role": "user", "content": "What is the weather in Paris?"}]))
    with_tools = chat(fake, parse_chat_request(body()))
    # the fake bills the tool definitions as input tokens, as Anthropic does: we report its count
    assert with_tools.usage.prompt_tokens == fake_input_tokens(fake) > plain.usage.prompt_tokens


def fake_input_tokens(fake: FakeAnthropic) -> int:
    sent = fake.last_body
    words = " ".join([json.dumps(t) for t in sent["tools"]] + [m["content"] for m in sent["messages"]])
    return len(words.split())


def test_image_parts_reach_the_api(fake: FakeAnthropic) -> None:
    request = parse_chat_request({"messages": [{"role": "user", "content": [
        {"type": "text", "text": "What is this?"},
        {"type": "image_url", "image_url": {"url": f"data:image/png;base64,{PNG}"}}]}]})
    assert chat(fake, request).text == "It is sunny in Paris."
    assert fake.last_body["messages"][0]["content"][1]["source"]["type"] == "base64"


def test_a_long_tool_conversation_is_one_the_api_accepts(fake: FakeAnthropic) -> None:
    messages, tools = long_conversation(20, 10)
    answer = chat(fake, parse_chat_request({"messages": messages, "tools": tools}))
    assert answer.text == "It is sunny in Paris."  # the fake checked alternation and tool_use/tool_result pairs
    sent = fake.last_body["messages"]
    assert [m["role"] for m in sent] == ["user", "assistant"] * (len(sent) // 2) + ["user"] * (len(sent) % 2)
    assert len(fake.last_body["tools"]) == 10
