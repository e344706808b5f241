"""Tool calls and JSON output on a vLLM server (issue 13), as facts/PROVIDERS.md records them:
refused (400) without tool calling, `content: ""` beside tool_calls, `stop` for a named
tool_choice, streamed id/name first and then argument fragments, a call cut by max_tokens
left as raw text; and other OpenAI-compatible servers (issue 11 items 14-16)."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import pytest
from openai.types.chat import ChatCompletion, ChatCompletionChunk

from gpuctl.errors import Kind
from gpuctl.http.client import Timeouts
from gpuctl.providers.base import ChatRequest, StreamChunk, UnsupportedError
from gpuctl.providers.chat_api import CompletionChunks, parse_chat_request
from gpuctl.providers.openai_compat import VLLMEndpoint
from tests.fakes.vllm_server import FakeVLLM
from tests.support.chat_requests import WEATHER

T = TypeVar("T")
FAST = Timeouts(connect=1.0, first_byte=5.0, read=5.0)
CALL = {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius"}'}


@pytest.fixture
def vllm() -> Iterator[FakeVLLM]:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", tool_call_parser="hermes", answer="It is sunny.") as fake:
        yield fake


def run(url: str, use: Callable[[VLLMEndpoint], Awaitable[T]], **kw: Any) -> T:
    async def main() -> T:
        async with VLLMEndpoint(url, timeouts=FAST, **kw) as endpoint:
            return await use(endpoint)
    return asyncio.run(main())


def chat(request: ChatRequest) -> Callable[[VLLMEndpoint], Awaitable[Any]]:
    return lambda e: e.chat(request)


def stream(request: ChatRequest) -> Callable[[VLLMEndpoint], Awaitable[list[StreamChunk]]]:
    async def go(e: VLLMEndpoint) -> list[StreamChunk]:
        return [c async for c in e.stream(request)]
    return go


def tools(**extra: Any) -> ChatRequest:
    return parse_chat_request({"messages": [{"role": "user", "content": "Weather in Paris?"}], "tools": [WEATHER],
                               **extra})


def test_without_tool_calling_vllm_refuses_tools_and_the_endpoint_remembers() -> None:
    with FakeVLLM(model="m") as fake:  # started without --enable-auto-tool-choice
        async def twice(e: VLLMEndpoint) -> Any:
            with pytest.raises(UnsupportedError) as info:
                await e.chat(tools())
            return info.value, e.unsupported(tools()), e.unsupported(ChatRequest.from_openai([{"role": "user",
                                                                                              "content": "hi"}]))
        error, later, plain = run(fake.url, twice)
    assert error.kind == Kind.UNSUPPORTED and error.param == "tools" and not error.counts_against_breaker
    assert error.failover and "--enable-auto-tool-choice" in error.message
    assert later is not None and later.param == "tools" and plain is None


def test_tool_calls_non_stream(vllm: FakeVLLM) -> None:
    vllm.tool_call = CALL
    response = run(vllm.url, chat(tools()))
    assert response.text == "" and response.finish_reason == "tool_calls"
    (call,) = response.tool_calls
    assert call.name == "get_weather" and call.arguments == CALL["arguments"] and call.id
    data = response.to_openai()
    assert data["choices"][0]["message"]["content"] is None  # vLLM's "" beside tool calls
    ChatCompletion.model_validate(data)
    sent = vllm.requests[-1].json()
    assert sent["tools"] == [WEATHER] and sent["model"] == "Qwen/Qwen2.5-7B-Instruct"


def test_named_tool_choice_finishes_tool_calls_though_vllm_says_stop(vllm: FakeVLLM) -> None:
    request = tools(tool_choice={"type": "function", "function": {"name": "get_weather"}})
    run(vllm.url, chat(request))
    assert vllm.finished["stop"] == 1  # what the server said...
    response = run(vllm.url, chat(request))
    assert response.finish_reason == "tool_calls" and response.tool_calls  # ...and what we say


def test_tool_calls_stream_id_and_name_first_then_fragments(vllm: FakeVLLM) -> None:
    vllm.tool_call = CALL
    chunks = run(vllm.url, stream(tools()))
    deltas = [d for c in chunks for d in c.tool_calls or ()]
    assert deltas[0].id and deltas[0].name == "get_weather" and deltas[0].arguments == ""
    assert all(d.id is None and d.name is None for d in deltas[1:]) and len(deltas) > 2
    assert "".join(d.arguments for d in deltas) == CALL["arguments"]
    assert chunks[-1].finish_reason == "tool_calls" and not "".join(c.text for c in chunks)
    encoder = CompletionChunks(model="Qwen/Qwen2.5-7B-Instruct", include_usage=True)
    for chunk in chunks:
        for out in encoder.of(chunk):
            ChatCompletionChunk.model_validate(out)


def test_a_call_cut_by_max_tokens_is_returned_as_the_raw_text_it_is(vllm: FakeVLLM) -> None:
    vllm.tool_call = CALL
    response = run(vllm.url, chat(tools(max_tokens=3)))
    assert response.finish_reason == "length" and response.tool_calls == ()
    assert response.text.startswith("<tool_call>")
    streamed = run(vllm.url, stream(tools(max_tokens=3)))
    assert "".join(c.text for c in streamed).startswith("<tool_call>") and streamed[-1].finish_reason == "length"


def test_json_schema_output_parses(vllm: FakeVLLM) -> None:
    schema = {"type": "object", "properties": {"city": {"type": "string"}}}
    request = parse_chat_request({"messages": [{"role": "user", "content": "x"}],
                                  "response_format": {"type": "json_schema", "json_schema": {"name": "c", "schema": schema}}})
    assert json.loads(run(vllm.url, chat(request)).text) == {"city": "fake"}
    assert vllm.requests[-1].json()["response_format"]["json_schema"]["schema"] == schema


def test_vllm_extras_pass_through_untouched(vllm: FakeVLLM) -> None:
    request = parse_chat_request({"messages": [{"role": "user", "content": "x"}], "top_k": 20, "min_p": 0.05,
                                  "repetition_penalty": 1.1, "guided_choice": ["a", "b"]})
    run(vllm.url, chat(request))
    sent = vllm.requests[-1].json()
    assert {k: sent[k] for k in ("top_k", "min_p", "repetition_penalty", "guided_choice")} == {
        "top_k": 20, "min_p": 0.05, "repetition_penalty": 1.1, "guided_choice": ["a", "b"]}


def test_several_choices_and_logprobs_survive(vllm: FakeVLLM) -> None:
    request = parse_chat_request({"messages": [{"role": "user", "content": "x"}], "n": 2, "logprobs": True})
    data = ChatCompletion.model_validate(run(vllm.url, chat(request)).to_openai())
    assert len(data.choices) == 2 and data.choices[0].logprobs is not None
    chunks = run(vllm.url, stream(request))
    assert any(c.raw for c in chunks)  # the server's own payloads ride along for a gateway


# ------------------------------------------------------------------ other OpenAI-compatible servers


def test_issue11_14_a_server_without_health_is_healthy_by_its_model_list() -> None:
    with FakeVLLM(model="local", has_health=False) as fake:
        health = run(fake.url, lambda e: e.health())
        deep = run(fake.url, lambda e: e.health(deep=True))
        assert fake.hits("/health") == 2
    assert health.status == "ready" and "/v1/models answered" in health.detail and "no /health" in health.detail
    assert deep.status == "ready" and "generated a token" in deep.detail
    with FakeVLLM(model="local", has_health=False) as fake:
        fake.fail(404, body={"detail": "Not Found"}, paths=["/v1/models"])
        broken = run(fake.url, lambda e: e.health())
    assert broken.status == "unhealthy" and "no /health" in broken.detail


def test_issue11_15_a_stream_without_usage_is_estimated_not_zero() -> None:
    with FakeVLLM(model="local", usage_in_stream=False, answer="one two three four five six") as fake:
        chunks = run(fake.url, stream(ChatRequest.from_openai([{"role": "user", "content": "count to six"}])))
    usage = chunks[-1].usage
    assert usage is not None and usage.estimated and usage.completion_tokens > 0 and usage.prompt_tokens > 0
    with FakeVLLM(model="local") as fake:
        reported = run(fake.url, stream(ChatRequest.from_openai([{"role": "user", "content": "hi"}])))[-1].usage
    assert reported is not None and not reported.estimated


def test_issue11_16_no_configured_model_uses_the_listed_one_and_reports_it() -> None:
    with FakeVLLM(model="qwen2.5-7b-instruct-q4") as fake:
        fake.reply_model = "/models/qwen2.5-7b-instruct-q4.gguf"  # what llama.cpp echoes
        response = run(fake.url, chat(ChatRequest.from_openai([{"role": "user", "content": "hi"}])))
        chunks = run(fake.url, stream(ChatRequest.from_openai([{"role": "user", "content": "hi"}])))
        sent = [r.json() for r in fake.requests if r.path == "/v1/chat/completions"]
    assert response.model == "qwen2.5-7b-instruct-q4" == chunks[-1].model
    assert all(s["model"] == "qwen2.5-7b-instruct-q4" for s in sent)


def test_done_without_a_finish_reason_is_a_cut_stream() -> None:
    import httpx

    events = ('data: {"model":"m","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n' "data: [DONE]\n\n")
    transport = httpx.MockTransport(lambda r: httpx.Response(200, text=events, headers={"content-type": "text/event-stream"}))
    from gpuctl.errors import StreamBrokenError

    with pytest.raises(StreamBrokenError) as info:
        run("https://x.example", stream(ChatRequest.from_openai([{"role": "user", "content": "hi"}])),
            model="m", transport=transport)
    assert info.value.partial_text == "Hel"
