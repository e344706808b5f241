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

from gpuctl.errors import ProviderError
from gpuctl.providers.anthropic import AnthropicProvider
from gpuctl.providers.anthropic_mapping import create_kwargs, to_anthropic_messages, unsupported
from gpuctl.providers.anthropic_replies import finish_reason
from gpuctl.providers.anthropic_tools import JSON_TOOL
from gpuctl.providers.base import ChatRequest, StreamChunk, UnsupportedError
from gpuctl.providers.chat_api import CompletionChunks, parse_chat_request
from tests.fakes.anthropic_server import FakeAnthropic
from tests.support.chat_requests import WEATHER, long_conversation, tool, tool_conversation

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


# ------------------------------------------------------------------ issue 13 review (findings 3, 4, 6, 7, 11)

HI = [{"role": "user", "content": "hi"}]


def test_review_temperature_and_top_p_are_never_sent_together(fake: FakeAnthropic) -> None:
    """Finding 3: Claude models refuse the pair (the fake does too, with the real message)."""
    # top_p alone (the Python API's default temperature not counted as given): top_p only
    answer = chat(fake, ChatRequest.from_openai(HI, top_p=0.9))
    assert answer.text and fake.last_body.get("top_p") == 0.9 and "temperature" not in fake.last_body
    # a neutral top_p (1) is not sent: the temperature is
    chat(fake, ChatRequest.from_openai(HI, temperature=0.3, top_p=1))
    assert fake.last_body["temperature"] == 0.3 and "top_p" not in fake.last_body
    # both given, neither neutral: Anthropic cannot serve it, and says so with the parameter
    both = parse_chat_request({"messages": HI, "temperature": 0.3, "top_p": 0.9})
    what = unsupported(both)
    assert what is not None and what.param == "top_p" and "temperature and top_p" in what.text
    with pytest.raises(UnsupportedError) as info:  # never sent, also when called directly
        create_kwargs(both, model="claude-haiku-4-5", max_tokens=512)
    assert info.value.param == "top_p" and info.value.kind == "unsupported"


def test_review_a_json_schema_is_sent_as_the_sdks_structured_output_sends_it(fake: FakeAnthropic) -> None:
    """Finding 4: keywords structured output refuses (minimum, maxLength) move into
    descriptions, objects get additionalProperties false; the fake refuses the raw schema."""
    schema = {"type": "object", "properties": {"age": {"type": "integer", "minimum": 0},
                                               "name": {"type": "string", "maxLength": 5}}, "required": ["age"]}
    request = parse_chat_request({"messages": HI, "response_format": {
        "type": "json_schema", "json_schema": {"name": "person", "schema": schema}}})
    answer = chat(fake, request)
    assert set(json.loads(answer.text)) == {"age", "name"}
    sent = fake.last_body["output_config"]["format"]["schema"]
    assert sent == transform_schema(schema) and sent["additionalProperties"] is False
    assert "minimum" not in sent["properties"]["age"] and "minimum" in sent["properties"]["age"]["description"]
    assert schema["properties"]["age"] == {"type": "integer", "minimum": 0}  # the caller's own, untouched


@pytest.mark.parametrize("streamed", [False, True])
def test_review_json_object_is_one_forced_tool_and_the_answer_is_its_input(fake: FakeAnthropic,
                                                                          streamed: bool) -> None:
    """Finding 4: structured output has no "any object" schema (it refuses
    additionalProperties: true); the forced tool's input is the answer's content."""
    request = parse_chat_request({"messages": HI, "response_format": {"type": "json_object"}})
    fake.tool_call = {"name": JSON_TOOL, "input": {"greeting": "hello", "n": 2}}
    if streamed:
        chunks = stream(fake, request)
        text, finish = "".join(c.text for c in chunks), chunks[-1].finish_reason
        assert not any(c.tool_calls for c in chunks)
    else:
        answer = chat(fake, request)
        text, finish = answer.text, answer.finish_reason
        assert answer.tool_calls == () and ChatCompletion.model_validate(answer.to_openai())
    assert json.loads(text) == {"greeting": "hello", "n": 2} and finish == "stop"
    assert "output_config" not in fake.last_body
    assert fake.last_body["tool_choice"] == {"type": "tool", "name": JSON_TOOL}
    assert fake.last_body["tools"] == [{"name": JSON_TOOL, "input_schema": {"type": "object"},
                                        "description": "Give your whole answer as this tool's input: a JSON object."}]


def test_review_json_object_beside_the_callers_tools_lets_the_model_call_them(fake: FakeAnthropic) -> None:
    request = parse_chat_request(body(response_format={"type": "json_object"}, parallel_tool_calls=False))
    fake.tool_call = {"name": "get_weather", "input": {"city": "Paris"}}
    answer = chat(fake, request)
    assert [c.name for c in answer.tool_calls] == ["get_weather"] and answer.finish_reason == "tool_calls"
    assert fake.last_body["tool_choice"] == {"type": "any", "disable_parallel_tool_use": True}
    assert [t["name"] for t in fake.last_body["tools"]] == ["get_weather", JSON_TOOL]
    # a tool of the caller's with the JSON tool's name cannot be told apart: said, not guessed
    clash = parse_chat_request({"messages": HI, "tools": [tool(JSON_TOOL)], "response_format": {"type": "json_object"}})
    what = unsupported(clash)
    assert what is not None and what.param == "response_format"


@pytest.mark.parametrize("streamed", [False, True])
def test_review_tool_history_without_tools_declares_the_tools_it_used(fake: FakeAnthropic, streamed: bool) -> None:
    """Finding 6: the API refuses tool blocks without `tools` (so does the fake): the tools the
    history called are declared, with tool_choice none, and the model answers in text."""
    messages = tool_conversation()
    request = parse_chat_request({"messages": messages})
    text = "".join(c.text for c in stream(fake, request)) if streamed else chat(fake, request).text
    assert text == "It is sunny in Paris."
    assert fake.last_body["tools"] == [{"name": "get_weather", "input_schema": {"type": "object"},
                                        "description": "A tool earlier turns called (not offered now)."}]
    assert fake.last_body["tool_choice"] == {"type": "none"}
    # the Python API's plain path too (no tools given, only history)
    assert chat(fake, ChatRequest.from_openai(messages)).text == "It is sunny in Paris."


def test_review_a_call_left_unanswered_is_something_anthropic_cannot_take() -> None:
    """Finding 7: vLLM takes a conversation that goes on past an unanswered call; Anthropic
    refuses it, so the router skips it with a typed reason instead of sending a 400."""
    unanswered = [HI[0], {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": "{}"}}]},
        {"role": "user", "content": "never mind"}]
    what = unsupported(parse_chat_request({"messages": unanswered, "tools": [WEATHER]}))
    assert what is not None and what.param == "messages[2]" and "never answered (c1)" in what.text
    late = [*tool_conversation()[:4], {"role": "assistant", "content": "Sunny."}, HI[0],
            {"role": "tool", "tool_call_id": "call_1", "content": "again"}]
    what = unsupported(parse_chat_request({"messages": late, "tools": [WEATHER]}))
    assert what is not None and what.param == "messages[6].tool_call_id"
    assert unsupported(parse_chat_request({"messages": tool_conversation(), "tools": [WEATHER]})) is None


def test_review_the_fake_checks_tool_result_ids_against_tool_use_ids(fake: FakeAnthropic) -> None:
    request = ChatRequest.from_openai(tool_conversation(call_id="call_1"), tools=[WEATHER])
    kwargs = create_kwargs(request, model="claude-haiku-4-5", max_tokens=64)
    results = kwargs["messages"][2]["content"]
    results.append({**results[0], "tool_use_id": "call_2"})  # and a result for a call nobody made
    with pytest.raises(ProviderError) as info:
        asyncio.run(_create(fake, kwargs))
    assert info.value.kind == "bad_request" and "unexpected `tool_use_id`" in info.value.message


async def _create(fake: FakeAnthropic, kwargs: dict[str, Any]) -> Any:
    p = provider(fake)
    try:
        client = p._get_client()
        try:
            return await client.messages.create(**kwargs)
        except Exception as exc:
            raise p._map_error(exc) or exc from exc
    finally:
        await p.aclose()


@pytest.mark.parametrize(("stop", "sent"), [(["\n"], None), (["\n", "  "], None), (["\n", "END"], ["END"])])
def test_review_a_stop_list_of_whitespace_only_is_said_not_dropped(stop: list[str], sent: Any) -> None:
    """Finding 11: the API refuses whitespace-only stop sequences; a list of nothing else
    cannot be served (beside a real one they are not sent, as the module says)."""
    request = parse_chat_request({"messages": HI, "stop": stop})
    what = unsupported(request)
    if sent is None:
        assert what is not None and what.param == "stop"
    else:
        assert what is None and create_kwargs(request, model="m", max_tokens=9)["stop_sequences"] == sent


def test_review_data_urls_with_parameters_are_base64_images() -> None:
    """Finding 11: `data:image/png;name=a.png;base64,...` is a base64 image, not a URL; a data
    URL that is not base64 is said to be unsupported."""
    part = {"type": "image_url", "image_url": {"url": f"data:image/png;name=a.png;base64,{PNG}"}}
    request = parse_chat_request({"messages": [{"role": "user", "content": [{"type": "text", "text": "x"}, part]}]})
    assert unsupported(request) is None
    _, turns = to_anthropic_messages(request.messages)
    assert turns[0]["content"][1] == {"type": "image", "source": {"type": "base64", "media_type": "image/png",
                                                                  "data": PNG}}
    plain = {"type": "image_url", "image_url": {"url": "data:image/png,%89PNG"}}
    what = unsupported(parse_chat_request({"messages": [{"role": "user", "content": [plain]}]}))
    assert what is not None and what.param == "messages[0].content[0]" and "base64" in what.text
    svg = {"type": "image_url", "image_url": {"url": "data:image/svg+xml;charset=utf-8;base64,PHN2Zz4="}}
    what = unsupported(parse_chat_request({"messages": [{"role": "user", "content": [svg]}]}))
    assert what is not None and "image/svg+xml" in what.text


def test_review_a_schema_the_sdk_cannot_transform_is_unsupported_not_sent() -> None:
    """A schema without a type (the SDK's transform_schema refuses it) is never sent raw: the
    router skips Anthropic for it, like any capability it lacks."""
    request = parse_chat_request({"messages": HI, "response_format": {
        "type": "json_schema", "json_schema": {"name": "x", "schema": {"properties": {"a": {"type": "string"}}}}}})
    with pytest.raises(UnsupportedError) as info:
        create_kwargs(request, model="claude-haiku-4-5", max_tokens=64)
    assert info.value.param == "response_format.json_schema.schema" and info.value.failover
