"""The whole OpenAI request through the router (issue 13) and what it measures (issue 11
items 12 and 15): a two-turn tool conversation on each provider and across a fallback in the
middle, providers that cannot do a request skipped with a typed reason, a 400 naming the
parameter when none can, half-streamed tool calls never re-sent, TTFT from the request's
sending, and estimated usage marked in the ledger."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

import pytest
from openai.types.chat import ChatCompletion

from gpuctl.config import load_settings
from gpuctl.errors import Kind, ProviderError, StreamBrokenError
from gpuctl.providers.base import ChatRequest, StreamChunk, Unsupported, Usage
from gpuctl.providers.chat_api import RequestError
from gpuctl.routing.manager import BackendManager
from gpuctl.routing.outcomes import ReasonKind
from gpuctl.state import BreakerRecord
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import closed_port_url
from tests.support.chat_requests import WEATHER
from tests.support.fake_provider import FakeProvider, fake_slot
from tests.support.routing import ledger, manager

NO_COLD_GATE = {"routing.fallback_on_cold": False}
QUESTION = [{"role": "user", "content": "What is the weather in Paris?"}]
ARGS = '{"city": "Paris"}'


async def turn(m: BackendManager, messages: list[dict[str, Any]], *, stream: bool, **kw: Any) -> Any:
    if not stream:
        return await m.chat_completion(messages, tools=[WEATHER], max_tokens=256, **kw)
    routed = await m.chat_completion(messages, tools=[WEATHER], max_tokens=256, stream=True, **kw)
    async for _ in routed:
        pass
    return routed.response()


def conversation(m: BackendManager, *, stream: bool, between: Any = None, **kw: Any) -> tuple[Any, Any]:
    """Turn 1 (the model calls the tool), then turn 2 (its result goes back, the model answers)."""
    async def go() -> tuple[Any, Any]:
        try:
            first = await turn(m, QUESTION, stream=stream, **kw)
            if between is not None:
                between()
            (call,) = first.tool_calls
            history = [*QUESTION, first.message, {"role": "tool", "tool_call_id": call.id, "content": "sunny, 21 C"}]
            return first, await turn(m, history, stream=stream, **kw)
        finally:
            await m.aclose()
    return asyncio.run(go())


def check(first: Any, second: Any, provider: str) -> None:
    assert first.provider == provider and first.finish_reason == "tool_calls"
    assert [c.name for c in first.tool_calls] == ["get_weather"] and json.loads(first.tool_calls[0].arguments)
    assert second.text and second.finish_reason == "stop" and not second.tool_calls
    for answer in (first, second):
        ChatCompletion.model_validate(answer.to_openai())


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_conversation_on_vllm(gpuctl_home: Path, stream: bool) -> None:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", tool_call_parser="hermes", answer="Sunny.") as vllm:
        vllm.tool_call = {"name": "get_weather", "arguments": ARGS}
        first, second = conversation(manager(gpuctl_home, modal_url=vllm.url, flags=NO_COLD_GATE), stream=stream)
    check(first, second, "modal")
    assert second.provider == "modal" and second.text == "Sunny."


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_conversation_on_anthropic(gpuctl_home: Path, claude: FakeAnthropic, stream: bool) -> None:
    claude.tool_call = {"name": "get_weather", "input": {"city": "Paris"}}
    first, second = conversation(manager(gpuctl_home, modal_url=None, claude=claude), stream=stream)
    check(first, second, "anthropic")
    assert second.text == "Hi from Claude"


@pytest.mark.parametrize("stream", [False, True])
def test_a_tool_conversation_across_a_fallback_in_the_middle(gpuctl_home: Path, claude: FakeAnthropic,
                                                              stream: bool) -> None:
    """Turn 1 answered by vLLM (its call id), vLLM dies, turn 2 answered by Anthropic: the id
    vLLM made goes to Anthropic as tool_use and tool_result, and they match."""
    vllm = FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", tool_call_parser="hermes").start()
    vllm.tool_call = {"name": "get_weather", "arguments": ARGS}
    m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, flags=NO_COLD_GATE)
    try:
        first, second = conversation(m, stream=stream, between=vllm.stop)
    finally:
        vllm.stop()
    check(first, second, "modal")
    assert second.provider == "anthropic" and second.fallback_reason.startswith("modal:")
    sent = claude.last_body["messages"]
    assert sent[1]["content"][0] == {"type": "tool_use", "id": first.tool_calls[0].id, "name": "get_weather",
                                     "input": {"city": "Paris"}}
    assert sent[2]["content"][0]["tool_use_id"] == first.tool_calls[0].id


def test_a_vllm_without_tool_calling_falls_back_and_is_skipped_after(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    claude.tool_call = {"name": "get_weather", "input": {"city": "Paris"}}
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct") as vllm:  # no --enable-auto-tool-choice
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, flags=NO_COLD_GATE)

        async def go() -> tuple[Any, Any, Any]:
            try:
                a = await m.chat_completion(QUESTION, tools=[WEATHER])
                b = await m.chat_completion(QUESTION, tools=[WEATHER])
                c = await m.chat_completion(QUESTION)  # plain text still goes to vLLM
                return a, b, c
            finally:
                await m.aclose()
        first, second, plain = asyncio.run(go())
        tool_requests = [r for r in vllm.requests if r.path == "/v1/chat/completions" and b"tools" in r.body]
    assert first.provider == second.provider == "anthropic" and first.tool_calls
    assert len(tool_requests) == 1  # refused once; skipped after, never re-sent there
    assert first.fallback.attempts[0].reason.kind is ReasonKind.UNSUPPORTED
    assert "cannot call tools" in second.fallback_reason and plain.provider == "modal"
    assert m.state.get_breaker("modal").failures == 0  # a missing capability is not a failure


def test_anthropic_cannot_do_n2_so_the_next_provider_answers(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct") as vllm:
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, GPUCTL_PRIORITY="anthropic,modal",
                    flags=NO_COLD_GATE)

        async def go() -> Any:
            try:
                return await m.chat_completion(QUESTION, n=2)
            finally:
                await m.aclose()
        answer = asyncio.run(go())
    assert answer.provider == "modal" and claude.requests == 0
    (attempt,) = answer.fallback.attempts
    assert attempt.reason.kind is ReasonKind.UNSUPPORTED and attempt.reason.param == "n"
    assert attempt.text == "anthropic: cannot do n=2" and answer.fallback_reason == "anthropic: cannot do n=2"
    assert len(ChatCompletion.model_validate(answer.to_openai()).choices) == 2


def test_when_no_configured_provider_can_serve_it_is_a_400_naming_the_parameter(gpuctl_home: Path,
                                                                                 claude: FakeAnthropic) -> None:
    m = manager(gpuctl_home, modal_url=None, claude=claude)

    async def go() -> None:
        try:
            await m.chat_completion(QUESTION, logprobs=True, top_logprobs=2)
        finally:
            await m.aclose()
    with pytest.raises(RequestError) as info:
        asyncio.run(go())
    assert info.value.param == "logprobs" and info.value.exit_code == 2
    assert "anthropic cannot do logprobs=True" in info.value.message and claude.requests == 0


def test_a_bad_request_body_is_refused_before_any_provider(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    m = manager(gpuctl_home, modal_url=None, claude=claude)

    async def go() -> None:
        try:
            await m.chat_completion(QUESTION, tools=[{"type": "function", "function": {"name": "bad name"}}])
        finally:
            await m.aclose()
    with pytest.raises(RequestError) as info:
        asyncio.run(go())
    assert info.value.param == "tools[0].function.name" and claude.requests == 0


def routed(home: Path, *providers: FakeProvider, timer: Any = None) -> BackendManager:
    kw = {} if timer is None else {"timer": timer}
    return BackendManager(load_settings(env={}, home=home), slots=[fake_slot(p) for p in providers], **kw)


def test_an_unsupported_skip_never_claims_a_half_open_probe(gpuctl_home: Path) -> None:
    primary, backup = FakeProvider("primary"), FakeProvider("backup")
    primary.cannot = Unsupported("n", "cannot do n=3")
    m = routed(gpuctl_home, primary, backup)
    # primary's breaker is due for its half-open probe: a request it cannot serve must not take it
    m.state.update_breaker("primary", lambda r: BreakerRecord("primary", "open", 3, 0.0, 1.0, "down", 0.0))
    answer = asyncio.run(m.complete(ChatRequest.from_openai(QUESTION, n=3)))
    assert answer.provider == "backup" and primary.calls["chat"] == 0
    assert answer.fallback is not None and answer.fallback.attempts[0].reason.kind is ReasonKind.UNSUPPORTED
    record = m.state.get_breaker("primary")
    assert record.state == "open" and record.open_until == 1.0  # unclaimed: the next request may probe it
    asyncio.run(m.aclose())


def test_a_half_streamed_tool_call_is_never_re_sent(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", tool_call_parser="hermes") as vllm:
        vllm.tool_call = {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius", "days": 3}'}
        vllm.cut_after = 4  # role, the call's id and name, two argument fragments: then the socket drops
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, flags=NO_COLD_GATE)

        async def go() -> None:
            try:
                stream = await m.chat_completion(QUESTION, tools=[WEATHER], stream=True)
                async for _ in stream:
                    pass
            finally:
                await m.aclose()
        with pytest.raises(StreamBrokenError):
            asyncio.run(go())
    assert claude.requests == 0


class SlowStart(FakeProvider):
    """A provider whose `stream()` spends 5 s of the router's clock before it sends (an SDK
    import), then answers at once."""

    def __init__(self, clock: list[float]) -> None:
        super().__init__("slow")
        self.clock = clock

    def stream(self, request: ChatRequest) -> Any:
        self.clock[0] += 5.0
        return super().stream(request)


def test_issue11_12_ttft_starts_when_the_request_is_sent(gpuctl_home: Path) -> None:
    now = [100.0]
    provider = SlowStart(now)
    m = routed(gpuctl_home, provider, timer=lambda: now[0])

    async def go() -> Any:
        stream = m.stream_chat(ChatRequest.from_openai(QUESTION))
        async for _ in stream:
            now[0] += 0.25
        return stream
    stream = asyncio.run(go())
    asyncio.run(m.aclose())
    assert stream.ttft_s == pytest.approx(0.0) and stream.latency_s is not None and stream.latency_s < 5.0


def test_anthropic_builds_its_client_before_the_clock_starts(claude: FakeAnthropic) -> None:
    from gpuctl.providers.anthropic import AnthropicProvider

    provider = AnthropicProvider(api_key="sk-ant-fake-key", base_url=claude.url)
    chunks = provider.stream(ChatRequest.from_openai(QUESTION))
    assert provider._client is not None  # the slow import happened in stream(), not while timed
    asyncio.run(_drain_and_close(provider, chunks))


async def _drain_and_close(provider: Any, chunks: Any) -> list[StreamChunk]:
    try:
        return [c async for c in chunks]
    finally:
        await provider.aclose()


def test_issue11_15_estimated_usage_is_marked_in_the_ledger(gpuctl_home: Path) -> None:
    with FakeVLLM(model="local", usage_in_stream=False, answer="one two three") as server:
        m = manager(gpuctl_home, modal_url=None, GPUCTL_PRIORITY="endpoint", GPUCTL_ENDPOINT_URL=server.url)

        async def go() -> Usage | None:
            try:
                stream = await m.chat_completion(QUESTION, stream=True)
                async for _ in stream:
                    pass
                return stream.usage
            finally:
                await m.aclose()
        usage = asyncio.run(go())
    assert usage is not None and usage.estimated
    (row,) = ledger(gpuctl_home)
    assert row.tokens_estimated and row.completion_tokens == usage.completion_tokens > 0


def test_the_text_path_still_returns_what_it_did(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    m = manager(gpuctl_home, modal_url=closed_port_url(), claude=claude, flags=NO_COLD_GATE)

    async def go() -> Any:
        try:
            return await m.chat_completion(QUESTION, temperature=0.7, max_tokens=64)
        finally:
            await m.aclose()
    answer = asyncio.run(go())
    assert (answer.text, answer.provider) == ("Hi from Claude", "anthropic") and answer.usage.completion_tokens > 0
    assert answer.message == {"role": "assistant", "content": "Hi from Claude"} and answer.tool_calls == ()
    assert ChatCompletion.model_validate(answer.to_openai()).choices[0].message.content == "Hi from Claude"


def test_unsupported_errors_keep_their_kind() -> None:
    # the kind the router reads to skip without counting a failure
    error = ProviderError("x", provider="p", kind=Kind.UNSUPPORTED)
    assert error.failover and not error.counts_against_breaker


def test_issue11_14_status_says_which_check_answered(gpuctl_home: Path) -> None:
    with FakeVLLM(model="local", has_health=False) as server:  # llama.cpp, LM Studio, Ollama: no /health
        m = manager(gpuctl_home, modal_url=None, GPUCTL_PRIORITY="endpoint", GPUCTL_ENDPOINT_URL=server.url)

        async def go() -> dict[str, Any]:
            try:
                return await m.get_vllm_status()
            finally:
                await m.aclose()
        status = asyncio.run(go())
    (row,) = [p for p in status["providers"] if p["provider"] == "endpoint"]
    assert status["status"] == "ready" and status["provider"] == "endpoint" and row["status"] == "ready"
    assert row["detail"] == "GET /v1/models answered (no /health here: 404)" and row["models"] == ["local"]


# ------------------------------------------------------------------ issue 13 review


def test_review_a_gateway_body_naming_any_model_is_answered_by_vllms_own(gpuctl_home: Path,
                                                                         claude: FakeAnthropic) -> None:
    """Finding 1: `parse_chat_request(body)` with an OpenAI client's model name goes to vLLM
    with vLLM's model (never a 404 that opens modal's breaker and sends everything to the paid
    fallback); Anthropic keeps its rule (a claude-… name is honoured, anything else its model)."""
    from gpuctl.providers.chat_api import parse_chat_request

    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", answer="from Qwen") as vllm:
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, flags=NO_COLD_GATE)

        async def go() -> list[Any]:
            try:
                answers = [await m.complete(parse_chat_request({"model": "gpt-4o-mini", "messages": QUESTION}))
                           for _ in range(4)]
                stream = m.stream_chat(parse_chat_request({"model": "gpt-4o-mini", "messages": QUESTION}))
                async for _ in stream:
                    pass
                claude_named = await m.complete(parse_chat_request({"model": "claude-sonnet-4-6",
                                                                    "messages": QUESTION}), only="anthropic")
                return [*answers, stream.response(), claude_named]
            finally:
                await m.aclose()
        *answers, named = asyncio.run(go())
        sent = [r.json()["model"] for r in vllm.requests if r.path == "/v1/chat/completions"]
    assert [a.provider for a in answers] == ["modal"] * 5 and all(a.fallback is None for a in answers)
    assert sent == ["Qwen/Qwen2.5-7B-Instruct"] * 5 and claude.requests == 1
    assert named.provider == "anthropic" and claude.last_body["model"] == "claude-sonnet-4-6"
    assert m.state.get_breaker(m.router.slots[0].breaker_key).failures == 0


def test_review_the_python_api_sends_top_p_alone_and_max_completion_tokens_alone(gpuctl_home: Path,
                                                                                  claude: FakeAnthropic) -> None:
    """Findings 3 and 5: README's `top_p=0.9` (with the API's default temperature left out)
    reaches Claude as top_p alone; `max_completion_tokens=5` is the limit everywhere, without
    the API's default max_tokens=2048 beside it."""
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", answer="one two three four five six seven") as vllm:
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, flags=NO_COLD_GATE)

        async def go() -> tuple[Any, Any]:
            try:
                on_vllm = await m.chat_completion(QUESTION, max_completion_tokens=5, top_p=0.9)
                on_claude = await m.chat_completion(QUESTION, max_completion_tokens=2, top_p=0.9,
                                                    provider="anthropic")
                return on_vllm, on_claude
            finally:
                await m.aclose()
        on_vllm, on_claude = asyncio.run(go())
        sent = vllm.requests[-1].json()
    assert {k: sent.get(k) for k in ("max_tokens", "max_completion_tokens", "temperature", "top_p")} == {
        "max_tokens": None, "max_completion_tokens": 5, "temperature": None, "top_p": 0.9}
    assert on_vllm.usage.completion_tokens == 5 and on_vllm.finish_reason == "length"
    body = claude.last_body
    assert body["max_tokens"] == 2 and body["top_p"] == 0.9 and "temperature" not in body
    assert on_claude.provider == "anthropic" and on_claude.finish_reason == "length"


def test_review_temperature_with_top_p_skips_anthropic_with_a_typed_reason(gpuctl_home: Path,
                                                                            claude: FakeAnthropic) -> None:
    """Finding 3: both given: vLLM serves it; Anthropic alone cannot, a 400 naming top_p."""
    m = manager(gpuctl_home, modal_url=None, claude=claude)

    async def go() -> None:
        try:
            await m.chat_completion(QUESTION, temperature=0.3, top_p=0.9)
        finally:
            await m.aclose()
    with pytest.raises(RequestError) as info:
        asyncio.run(go())
    assert info.value.param == "top_p" and claude.requests == 0


def test_review_an_unanswered_call_goes_to_vllm_and_anthropic_says_why_not(gpuctl_home: Path,
                                                                            claude: FakeAnthropic) -> None:
    """Finding 7: valid for vLLM, not for Anthropic: skipped with a typed reason, never a 400."""
    history = [*QUESTION, {"role": "assistant", "content": None, "tool_calls": [
        {"id": "c1", "type": "function", "function": {"name": "get_weather", "arguments": ARGS}}]},
        {"role": "user", "content": "Never mind: is it Friday?"}]
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", tool_call_parser="hermes", answer="Yes.") as vllm:
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, GPUCTL_PRIORITY="anthropic,modal",
                    flags=NO_COLD_GATE)

        async def go() -> Any:
            try:
                return await m.chat_completion(history, tools=[WEATHER])
            finally:
                await m.aclose()
        answer = asyncio.run(go())
    assert answer.provider == "modal" and answer.text == "Yes." and claude.requests == 0
    (attempt,) = answer.fallback.attempts
    assert attempt.reason.kind is ReasonKind.UNSUPPORTED and attempt.reason.param == "messages[2]"
    assert "never answered (c1)" in attempt.text


@pytest.mark.parametrize("streamed", [False, True])
def test_review_the_final_error_names_every_providers_reason(gpuctl_home: Path, claude: FakeAnthropic,
                                                             streamed: bool) -> None:
    """Finding 10: modal is down and anthropic cannot do n=2: the error says both."""
    from gpuctl.errors import AllProvidersFailedError

    m = manager(gpuctl_home, modal_url=closed_port_url(), claude=claude, flags=NO_COLD_GATE)

    async def go() -> None:
        try:
            answer = await m.chat_completion(QUESTION, n=2, stream=streamed)
            if streamed:
                async for _ in answer:
                    pass
        finally:
            await m.aclose()
    with pytest.raises(AllProvidersFailedError) as info:
        asyncio.run(go())
    assert "modal: cannot connect" in info.value.message and "anthropic: cannot do n=2" in info.value.message
    assert [a.provider for a in info.value.attempts] == ["modal", "anthropic"]  # type: ignore[attr-defined]
    assert claude.requests == 0


def test_review_a_stream_cut_inside_a_tool_call_says_so_and_keeps_the_call(gpuctl_home: Path,
                                                                           claude: FakeAnthropic) -> None:
    """Finding 14: not "broke off after 0 characters": the call that was cut, by name, and
    the partial call on the error."""
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", tool_call_parser="hermes") as vllm:
        vllm.tool_call = {"name": "get_weather", "arguments": '{"city": "Paris", "unit": "celsius", "days": 3}'}
        vllm.cut_after = 4  # role, the call's id and name, two argument fragments: then the socket drops
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, flags=NO_COLD_GATE)

        async def go() -> None:
            try:
                stream = await m.chat_completion(QUESTION, tools=[WEATHER], stream=True)
                async for _ in stream:
                    pass
            finally:
                await m.aclose()
        with pytest.raises(StreamBrokenError) as info:
            asyncio.run(go())
    error = info.value
    assert "broke off inside a tool call to get_weather" in error.message and "0 characters" not in error.message
    (call,) = error.partial_tool_calls
    assert call.name == "get_weather" and call.id and call.arguments == '{"city": "Pari'  # type: ignore[attr-defined]
    assert error.partial_text == "" and claude.requests == 0
