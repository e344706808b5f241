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


# --- issue 13 review (findings 1, 2, 9, 12, 13) ---------------------------------------------


@pytest.mark.parametrize("configured", [None, "Qwen/Qwen2.5-7B-Instruct"])
def test_review_the_callers_model_is_never_sent_to_vllm(vllm: FakeVLLM, configured: str | None) -> None:
    """Finding 1: an OpenAI SDK always names a model ("gpt-4o-mini"): a public name. The
    server's own (configured, or the one /v1/models lists) is sent, and answers."""
    request = parse_chat_request({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]})
    answer = run(vllm.url, chat(request), model=configured)
    chunks = run(vllm.url, stream(request), model=configured)
    sent = [r.json()["model"] for r in vllm.requests if r.path == "/v1/chat/completions"]
    assert sent == ["Qwen/Qwen2.5-7B-Instruct"] * 2
    assert answer.text == "It is sunny." and answer.model == chunks[-1].model == "Qwen/Qwen2.5-7B-Instruct"


def test_review_developer_messages_reach_vllm_as_system(vllm: FakeVLLM) -> None:
    """Finding 2: vLLM passes roles to the chat template, and Qwen2.5's drops `developer`."""
    messages = [{"role": "developer", "content": "Answer in French.", "name": "ops"},
                {"role": "user", "content": "hi"}]
    request = parse_chat_request({"messages": messages})
    run(vllm.url, chat(request))
    sent = vllm.requests[-1].json()["messages"]
    assert sent == [{"role": "system", "content": "Answer in French.", "name": "ops"}, messages[1]]
    assert messages[0]["role"] == "developer"  # the caller's own dict is untouched


SSE_HEAD = {"id": "chatcmpl-x", "object": "chat.completion.chunk", "created": 1, "model": "m"}


def sse(*deltas: dict[str, Any], finish: str = "tool_calls") -> bytes:
    """One SSE body: the deltas, a finish, usage and [DONE] (all in one network read)."""
    def event(delta: dict[str, Any], reason: str | None = None) -> str:
        choice = {"index": 0, "delta": delta, "logprobs": None, "finish_reason": reason}
        return "data: " + json.dumps({**SSE_HEAD, "choices": [choice]}) + "\n\n"
    usage = {**SSE_HEAD, "choices": [], "usage": {"prompt_tokens": 3, "completion_tokens": 9, "total_tokens": 12}}
    return ("".join(event(d) for d in deltas) + event({}, finish) + "data: " + json.dumps(usage) + "\n\n"
            + "data: [DONE]\n\n").encode()


def mock(body: bytes) -> Any:
    import httpx

    return httpx.MockTransport(lambda r: httpx.Response(200, content=body, headers={"content-type": "text/event-stream"}))


@pytest.mark.parametrize("calls", [
    [{"index": "first", "id": "c", "type": "function", "function": {"name": "f"}}],
    [{"index": [0], "id": "c", "function": {"name": "f"}}],
    [{"index": 0, "id": "c", "function": {"name": 5}}],
    [{"index": 0, "function": "get_weather"}],
    {"index": 0},
])
def test_review_malformed_tool_call_deltas_are_a_malformed_stream(calls: Any) -> None:
    """Finding 9: a misbehaving server's tool-call delta is a ProviderError (one line), never
    a ValueError or TypeError traceback."""
    from gpuctl.errors import ProviderError

    body = sse({"role": "assistant", "content": ""}, {"tool_calls": calls})
    with pytest.raises(ProviderError) as info:
        run("https://x.example", stream(tools()), model="m", transport=mock(body))
    assert info.value.kind == Kind.MALFORMED and "tool call delta" in info.value.message


def test_review_fragments_of_one_call_in_one_read_are_one_entry() -> None:
    """Finding 12: what one network read brought of a call is one entry of the chunk (id and
    name first, the arguments joined), as OpenAI's own stream has it; the openai package's
    accumulator rebuilds both calls."""
    from openai.lib.streaming.chat import ChatCompletionStreamState

    def call(index: int, ident: str, arguments: str) -> list[dict[str, Any]]:
        first = {"content": None, "tool_calls": [{"id": ident, "type": "function", "index": index,
                                                  "function": {"name": "get_weather"}}]}
        return [first, *({"tool_calls": [{"index": index, "function": {"arguments": arguments[k:k + 5]}}]}
                         for k in range(0, len(arguments), 5))]
    body = sse({"role": "assistant", "content": ""}, *call(0, "call_A", '{"city": "Paris"}'),
               *call(1, "call_B", '{"city": "Rome"}'))
    chunks = run("https://x.example", stream(tools()), model="m", transport=mock(body))
    first, last = chunks
    assert last.finish_reason == "tool_calls" and last.usage is not None
    assert first.tool_calls is not None and [(d.index, d.id, d.name, d.arguments) for d in first.tool_calls] == [
        (0, "call_A", "get_weather", '{"city": "Paris"}'), (1, "call_B", "get_weather", '{"city": "Rome"}')]
    state = ChatCompletionStreamState()
    encoder = CompletionChunks(model="m", include_usage=True)
    for chunk in chunks:
        for out in encoder.of(chunk):
            delta = out["choices"][0]["delta"] if out["choices"] else {}
            assert len({c["index"] for c in delta.get("tool_calls", [])}) == len(delta.get("tool_calls", []))
            state.handle_chunk(ChatCompletionChunk.model_validate(out))
    final = state.get_final_completion().choices[0].message.tool_calls or []
    assert [(c.id, c.function.arguments) for c in final] == [("call_A", '{"city": "Paris"}'),
                                                             ("call_B", '{"city": "Rome"}')]


def test_review_estimated_usage_counts_tool_calls_whether_streamed_or_not() -> None:
    """Finding 13: a tool call is generated text too: a server that reports no usage gets the
    same estimate for the same answer, streamed or not (it was 0 tokens when not streamed)."""
    with FakeVLLM(model="local", tool_call_parser="hermes", usage_in_stream=False) as fake:
        fake.tool_call = CALL
        whole = run(fake.url, chat(tools(tool_choice="required")))
        chunks = run(fake.url, stream(tools(tool_choice="required")))
    # the fake's plain answers always report usage: take it away as such servers do
    assert whole.tool_calls
    from gpuctl.providers.openai_errors import VLLMErrors
    from gpuctl.providers.openai_mapping import chat_response

    data = dict(whole.raw or {})
    data.pop("usage")
    errors = VLLMErrors("local", "http://x/v1", FAST, has_key=False)
    unreported = chat_response(data, {"model": "local"}, tools(tool_choice="required"), errors=errors, latency=0.1)
    streamed = chunks[-1].usage
    assert unreported.usage.estimated and streamed is not None and streamed.estimated
    assert unreported.usage.completion_tokens == streamed.completion_tokens > len(CALL["arguments"]) // 4
