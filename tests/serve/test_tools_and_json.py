"""Tools and JSON output through `gpuctl serve`, with the official `openai` SDK as the client:
the whole request reaches vLLM (and the Anthropic fallback answers the same request in the
same shape), and the answers are the SDK's own types."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import closed_port_url
from tests.support.serve import MODEL, Running, chain_env, running_gateway

WEATHER = {"type": "function", "function": {
    "name": "get_weather", "description": "The weather in a city",
    "parameters": {"type": "object", "properties": {"city": {"type": "string"}}, "required": ["city"]}}}
ASK = [{"role": "user", "content": "What is the weather in Paris?"}]
SCHEMA = {"type": "object", "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}},
          "required": ["city", "sunny"]}


@pytest.fixture
def tools_vllm() -> Iterator[FakeVLLM]:
    with FakeVLLM(model=MODEL, tool_call_parser="hermes") as fake:
        fake.tool_call = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
        yield fake


@pytest.fixture
def tools_gateway(gpuctl_home: Path, tools_vllm: FakeVLLM, claude: FakeAnthropic) -> Iterator[Running]:
    with running_gateway(gpuctl_home, chain_env(tools_vllm, claude)) as running:
        yield running


def test_a_tool_call_comes_back_as_the_sdks_tool_calls(tools_gateway: Running, tools_vllm: FakeVLLM) -> None:
    with tools_gateway.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required")
    answer = raw.parse()
    assert raw.headers["x-gpuctl-provider"] == "modal"
    (call,) = answer.choices[0].message.tool_calls or []
    assert call.type == "function" and call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"city": "Paris"}
    assert answer.choices[0].finish_reason == "tool_calls"
    sent = [r for r in tools_vllm.requests if r.path == "/v1/chat/completions"][-1].json()
    assert sent["tools"] == [WEATHER] and sent["tool_choice"] == "required"  # the request as the client sent it
    assert sent["model"] == MODEL  # the provider's own model


def test_a_streamed_tool_call_arrives_as_deltas_the_sdk_can_join(tools_gateway: Running) -> None:
    with tools_gateway.client() as client:
        stream = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required",
                                                stream=True)
        chunks = list(stream)
    deltas = [tc for c in chunks for choice in c.choices for tc in (choice.delta.tool_calls or [])]
    assert deltas and deltas[0].id and deltas[0].function is not None and deltas[0].function.name == "get_weather"
    arguments = "".join(d.function.arguments or "" for d in deltas if d.function is not None)
    assert json.loads(arguments) == {"city": "Paris"}
    assert [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason] == ["tool_calls"]


def test_the_tool_result_turn_gets_the_final_answer(tools_gateway: Running, tools_vllm: FakeVLLM) -> None:
    with tools_gateway.client() as client:
        first = client.chat.completions.create(model=MODEL, messages=ASK, tools=[WEATHER], tool_choice="required")
        call = (first.choices[0].message.tool_calls or [])[0]
        turn2 = [*ASK, {"role": "assistant", "content": None, "tool_calls": [call.model_dump()]},
                 {"role": "tool", "tool_call_id": call.id, "content": '{"temp_c": 18}'}]
        final = client.chat.completions.create(model=MODEL, messages=turn2, tools=[WEATHER])
    assert final.choices[0].message.content and not final.choices[0].message.tool_calls
    last = [r for r in tools_vllm.requests if r.path == "/v1/chat/completions"][-1].json()
    assert last["messages"][-1] == {"role": "tool", "tool_call_id": call.id,
                                                       "content": '{"temp_c": 18}'}


def test_json_schema_output_parses(tools_gateway: Running) -> None:
    with tools_gateway.client() as client:
        answer = client.chat.completions.create(
            model=MODEL, messages=ASK,
            response_format={"type": "json_schema", "json_schema": {"name": "weather", "schema": SCHEMA}})
    data = json.loads(answer.choices[0].message.content or "")
    assert set(SCHEMA["required"]) <= set(data)


def test_with_the_gpu_down_anthropic_answers_the_same_tool_request(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    env = chain_env(None, claude, MODAL_WEB_URL=closed_port_url())
    with running_gateway(gpuctl_home, env) as gw, gw.client() as client:
        raw = client.chat.completions.with_raw_response.create(
            model=MODEL, messages=ASK, tools=[WEATHER], tool_choice={"type": "function", "function": {"name": "get_weather"}})
        answer = raw.parse()
        json_answer = client.chat.completions.create(model=MODEL, messages=ASK,
                                                     response_format={"type": "json_object"})
    assert raw.headers["x-gpuctl-provider"] == "anthropic" and "modal" in raw.headers["x-gpuctl-fallback-reason"]
    (call,) = answer.choices[0].message.tool_calls or []
    assert call.function.name == "get_weather" and isinstance(json.loads(call.function.arguments), dict)
    assert answer.choices[0].finish_reason == "tool_calls"
    sent = claude.bodies[0]
    assert sent["tools"][0]["name"] == "get_weather" and sent["tool_choice"]["type"] == "tool"
    assert isinstance(json.loads(json_answer.choices[0].message.content or ""), dict)


def test_a_request_no_provider_can_serve_is_a_400_naming_the_parameter(gpuctl_home: Path,
                                                                       claude: FakeAnthropic) -> None:
    import openai

    with running_gateway(gpuctl_home, chain_env(None, claude)) as gw, gw.client() as client, \
            pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=ASK, n=2)  # only Anthropic, which cannot do n=2
    error = caught.value.body
    assert isinstance(error, dict) and error.get("param") == "n"
