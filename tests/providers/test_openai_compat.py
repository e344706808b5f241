"""VLLMEndpoint against the loopback vLLM fake (real sockets: streaming, timeouts, refused
connections, cut streams) and httpx.MockTransport for the small shape cases."""

from __future__ import annotations

import asyncio
import json
import socket
from collections.abc import Awaitable, Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

from gpuctl.errors import ConfigError, ProviderError, StreamBrokenError
from gpuctl.http.client import Timeouts
from gpuctl.providers.base import ChatRequest, StreamChunk
from gpuctl.providers.openai_compat import VLLMEndpoint, normalise_base_url, parse_metrics
from tests.fakes.vllm_server import FakeVLLM, count_prompt_tokens, tokenize

KEY = "sk-vllm-test-0123456789abcdef"
ANSWER = "The quick brown fox jumps over the lazy dog."
FAST = Timeouts(connect=1.0, first_byte=2.0, read=1.0, write=1.0, pool=1.0)
T = TypeVar("T")


@pytest.fixture
def fake() -> Iterator[FakeVLLM]:
    with FakeVLLM(answer=ANSWER) as server:
        yield server


@pytest.fixture
def keyed() -> Iterator[FakeVLLM]:
    with FakeVLLM(answer=ANSWER, api_key=KEY) as server:
        yield server


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def ask(text: str = "hello there", **kw: Any) -> ChatRequest:
    return ChatRequest.from_openai([{"role": "user", "content": text}], **kw)


def run(url: str, use: Callable[[VLLMEndpoint], Awaitable[T]], **kw: Any) -> T:
    """Run `use(endpoint)` in a fresh event loop and always close the endpoint."""
    kw.setdefault("timeouts", FAST)

    async def main() -> T:
        async with VLLMEndpoint(url, **kw) as endpoint:
            return await use(endpoint)

    return asyncio.run(main())


def fails(url: str, use: Callable[[VLLMEndpoint], Awaitable[Any]], **kw: Any) -> ProviderError:
    # A configured model: a fault knob's "next request" is then the one under test, not the
    # /v1/models look-up an endpoint without one makes first.
    kw.setdefault("model", "fake-model")
    with pytest.raises(ProviderError) as info:
        run(url, use, **kw)
    err = info.value
    assert "\n" not in err.message  # one line
    return err


async def collect(endpoint: VLLMEndpoint, request: ChatRequest) -> list[StreamChunk]:
    return [chunk async for chunk in endpoint.stream(request)]


def chat(request: ChatRequest | None = None) -> Callable[[VLLMEndpoint], Awaitable[Any]]:
    return lambda e: e.chat(request or ask())


def stream(request: ChatRequest | None = None) -> Callable[[VLLMEndpoint], Awaitable[list[StreamChunk]]]:
    return lambda e: collect(e, request or ask())


# --- URLs --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given",
    ["http://10.0.0.5:41234", "http://10.0.0.5:41234/", "http://10.0.0.5:41234/v1", " http://10.0.0.5:41234/v1/ "],
)
def test_base_url_is_normalised(given: str) -> None:
    assert normalise_base_url(given) == "http://10.0.0.5:41234"
    assert VLLMEndpoint(given).endpoint == "http://10.0.0.5:41234/v1"


@pytest.mark.parametrize("bad", ["", "10.0.0.5:8000", "ftp://host", "https://"])
def test_bad_base_url_is_a_config_error(bad: str) -> None:
    with pytest.raises(ConfigError):
        VLLMEndpoint(bad)


def test_endpoint_never_shows_credentials() -> None:
    endpoint = VLLMEndpoint("https://user:pa55word@x.modal.run/v1", api_key=KEY)
    assert endpoint.endpoint == "https://x.modal.run/v1"
    assert KEY not in repr(endpoint) and "pa55word" not in repr(endpoint)


# --- plain chat --------------------------------------------------------------------------


def test_chat_returns_answer_usage_and_latency(fake: FakeVLLM) -> None:
    ticks = iter([10.0, 10.25])
    response = run(fake.url, chat(ask("hello there friend")), clock=lambda: next(ticks), provider="modal")
    assert response.text == ANSWER
    assert response.provider == "modal" and response.model == "fake-model"
    assert response.finish_reason == "stop"
    assert response.usage.prompt_tokens == count_prompt_tokens([{"content": "hello there friend"}]) == 4
    assert response.usage.completion_tokens == len(tokenize(ANSWER)) == 9
    assert response.latency_s == pytest.approx(0.25)


def test_chat_request_body_and_auth_header(keyed: FakeVLLM) -> None:
    request = ask("hi", temperature=0.2, max_tokens=64, stop=["\n\n"])
    run(keyed.url, chat(request), api_key=KEY, model="fake-model")
    sent = keyed.requests[-1]
    assert sent.headers["Authorization"] == f"Bearer {KEY}"
    assert sent.json() == {
        "messages": [{"role": "user", "content": "hi"}],
        "max_tokens": 64,
        "model": "fake-model",
        "temperature": 0.2,
        "stop": ["\n\n"],
    }


def test_unset_model_is_the_listed_one_and_the_request_model_is_never_sent(fake: FakeVLLM) -> None:
    # Issue 11 item 16: no configured model → the one /v1/models lists is sent (and reported).
    response = run(fake.url, chat(ask(temperature=None)))
    sent = fake.requests[-1].json()
    assert sent["model"] == "fake-model" == response.model and "temperature" not in sent
    # The caller's model is a public name (an OpenAI SDK's "gpt-4o-mini"): the server's own is
    # sent instead, configured or listed (issue 13 review, finding 1; it used to win).
    assert run(fake.url, chat(ask(model="gpt-4o-mini")), model="fake-model").text
    assert fake.requests[-1].json()["model"] == "fake-model"
    assert run(fake.url, chat(ask(model="gpt-4o-mini"))).model == "fake-model"
    assert fake.requests[-1].json()["model"] == "fake-model"


def test_small_max_tokens_gives_finish_length(fake: FakeVLLM) -> None:
    response = run(fake.url, chat(ask(max_tokens=3)))
    assert response.finish_reason == "length"
    assert response.text == "The quick brown" and response.usage.completion_tokens == 3


# --- streaming ---------------------------------------------------------------------------


def test_stream_assembles_the_answer_and_takes_usage_from_the_usage_chunk(fake: FakeVLLM) -> None:
    chunks = run(fake.url, stream(ask("hello there")))
    assert "".join(c.text for c in chunks) == ANSWER
    assert all(c.text for c in chunks[:-1])
    last = chunks[-1]
    assert last.text == "" and last.finish_reason == "stop" and last.model == "fake-model"
    assert last.usage is not None and last.usage.completion_tokens == 9 and last.usage.prompt_tokens == 3
    body = fake.requests[-1].json()
    assert body["stream"] is True and body["stream_options"] == {"include_usage": True}


def test_stream_counts_tokens_from_usage_not_chunks(fake: FakeVLLM) -> None:
    fake.tokens_per_chunk = 4
    chunks = run(fake.url, stream())
    assert len(chunks) == 4  # 3 text chunks (4+4+1 tokens) and the final one
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 9


def test_stream_finish_length(fake: FakeVLLM) -> None:
    chunks = run(fake.url, stream(ask(max_tokens=2)))
    assert "".join(c.text for c in chunks) == "The quick"
    assert chunks[-1].finish_reason == "length"


def test_stream_of_2000_chunks_is_fast(fake: FakeVLLM) -> None:
    fake.answer = " ".join(["tok"] * 2000)
    chunks = run(fake.url, stream(ask(max_tokens=2000)))
    assert len(chunks) == 2001
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 2000


def test_stream_cut_after_text_is_a_stream_broken_error_with_the_partial_text(fake: FakeVLLM) -> None:
    fake.cut_after = 4  # role chunk + 3 tokens, then the socket closes
    with pytest.raises(StreamBrokenError) as info:
        run(fake.url, stream())
    err = info.value
    assert err.kind == "stream_cut" and err.failover
    assert err.partial_text == "The quick brown"
    assert "\n" not in err.message and err.hint is not None and "incomplete" in err.hint


def test_stream_cut_before_any_text_is_a_plain_stream_cut(fake: FakeVLLM) -> None:
    fake.cut_after = 1  # only the role chunk (no text)
    err = fails(fake.url, stream())
    assert err.kind == "stream_cut" and not isinstance(err, StreamBrokenError)


def test_stream_without_done_is_never_presented_as_complete(fake: FakeVLLM) -> None:
    fake.omit_done = True
    with pytest.raises(StreamBrokenError) as info:
        run(fake.url, stream())
    assert "[DONE]" in info.value.message and info.value.partial_text == ANSWER


def test_stream_stall_between_chunks_is_bounded_by_read(fake: FakeVLLM) -> None:
    fake.chunk_delay = 0.3
    err = fails(fake.url, stream(), timeouts=Timeouts(connect=1.0, first_byte=0.1, read=0.1))
    assert err.kind == "timeout" and "stalled" in err.message


def test_stream_malformed_event(fake: FakeVLLM) -> None:
    fake.malformed_json = True
    assert fails(fake.url, stream()).kind == "malformed"


def test_stream_errors_come_back_as_json_statuses(keyed: FakeVLLM) -> None:
    assert fails(keyed.url, stream(), api_key="wrong-key").kind == "auth"
    err = fails(keyed.url, stream(), api_key=KEY, model="nope")  # a configured model the server lacks
    assert err.kind == "not_found" and "fake-model" in err.message


def test_stream_consumer_may_stop_early(fake: FakeVLLM) -> None:
    async def first(endpoint: VLLMEndpoint) -> str:
        gen = endpoint.stream(ask())
        chunk = await anext(gen)
        await gen.aclose()  # type: ignore[attr-defined]
        return chunk.text

    assert run(fake.url, first) == "The"


# --- slow first byte ---------------------------------------------------------------------


def test_slow_first_byte_within_the_budget(fake: FakeVLLM) -> None:
    fake.slow(0.15, paths={"/v1/chat/completions"})
    assert run(fake.url, chat(), timeouts=Timeouts(connect=1.0, first_byte=1.0, read=0.05)).text == ANSWER
    chunks = run(fake.url, stream(), timeouts=Timeouts(connect=1.0, first_byte=1.0, read=0.5))
    assert "".join(c.text for c in chunks) == ANSWER


def test_slow_first_byte_beyond_the_budget(fake: FakeVLLM) -> None:
    fake.slow(0.4, paths={"/v1/chat/completions"})
    err = fails(fake.url, chat(), timeouts=Timeouts(connect=1.0, first_byte=0.1))
    assert err.kind == "timeout" and "0.1s" in err.message and err.hint


# --- failures mapped to ProviderError ----------------------------------------------------


def test_refused_connection() -> None:
    err = fails(f"http://127.0.0.1:{closed_port()}", chat(), provider="vastai")
    assert err.kind == "connect" and err.provider == "vastai"
    assert "connection refused" in err.message and err.failover


def test_unknown_model_names_the_served_models(fake: FakeVLLM) -> None:
    err = fails(fake.url, chat(), model="meta-llama/Llama-3.1-8B", provider="modal")
    assert err.kind == "not_found" and err.status == 404
    assert "'meta-llama/Llama-3.1-8B'" in err.message and "served: fake-model" in err.message
    assert err.hint is not None and "modal.model" in err.hint


def test_unknown_path_404(fake: FakeVLLM) -> None:
    err = fails(fake.url + "/prefix", chat())
    assert err.kind == "not_found" and "Not Found" in err.message


def test_503_is_cold(fake: FakeVLLM) -> None:
    fake.fail(503)
    err = fails(fake.url, chat())
    assert err.kind == "cold" and "cold start or GPU quota" in err.message
    assert not err.counts_against_breaker
    assert fake.hits("/v1/chat/completions") == 1  # retries=0 by default: the router fails over itself


def test_401_wrong_or_missing_key_never_shows_the_key(keyed: FakeVLLM) -> None:
    err = fails(keyed.url, chat(), api_key="sk-wrong-key-000000000000", provider="modal")
    assert err.kind == "auth" and err.status == 401 and "refused" in err.message
    assert err.hint is not None and "modal.api_key" in err.hint
    assert "sk-wrong-key" not in err.message + err.hint
    assert "no API key was sent" in fails(keyed.url, chat()).message


def test_html_502_page_from_a_proxy(fake: FakeVLLM) -> None:
    fake.fail_html(502)
    err = fails(fake.url, chat())
    assert err.kind == "http" and err.status == 502
    assert "got an HTML page, not JSON — a proxy error?" in err.message
    assert "<" not in err.message and "nginx" not in err.message


def test_malformed_json_answer(fake: FakeVLLM) -> None:
    fake.malformed_json = True
    err = fails(fake.url, chat())
    assert err.kind == "malformed" and "malformed JSON" in err.message


def test_plain_answer_cut_mid_body(fake: FakeVLLM) -> None:
    fake.cut_after = 0
    assert fails(fake.url, chat()).kind == "stream_cut"


def test_400_carries_vllms_message(fake: FakeVLLM) -> None:
    err = fails(fake.url, chat(ask(max_tokens=5000)))
    assert err.kind == "bad_request" and not err.failover
    assert "'max_tokens' or 'max_completion_tokens' is too large: 5000" in err.message


def test_429_and_500(fake: FakeVLLM) -> None:
    fake.fail(429, headers={"Retry-After": "3"}, times=1)
    err = fails(fake.url, chat())
    assert err.kind == "rate_limit" and "retry after 3s" in err.message
    fake.fail(500, body={"error": {"message": "EngineCore died", "type": "InternalServerError", "code": 500}})
    err = fails(fake.url, chat())
    assert err.kind == "http" and err.status == 500 and "EngineCore died" in err.message


# --- MockTransport cases -----------------------------------------------------------------


def mock(handler: Callable[[httpx.Request], httpx.Response]) -> dict[str, Any]:
    return {"transport": httpx.MockTransport(handler)}


def test_200_html_page_is_malformed() -> None:
    page = httpx.Response(200, html="<!DOCTYPE html><html><body>Sign in to continue</body></html>")
    err = fails("https://x.example", chat(), **mock(lambda r: page))
    assert err.kind == "malformed" and "HTML page" in err.message and "Sign in" not in err.message


def test_json_without_choices_is_malformed() -> None:
    err = fails("https://x.example", chat(), **mock(lambda r: httpx.Response(200, json={"object": "x"})))
    assert err.kind == "malformed" and "choices" in err.message


def test_stream_answered_with_json_is_malformed() -> None:
    err = fails("https://x.example", stream(), **mock(lambda r: httpx.Response(200, json={"choices": []})))
    assert err.kind == "malformed" and "SSE" in err.message


def test_mid_stream_error_event() -> None:
    events = (
        'data: {"model":"m","choices":[{"index":0,"delta":{"content":"Hi"},"finish_reason":null}]}\n\n'
        'data: {"error":{"message":"engine died","type":"InternalServerError","code":500}}\n\n'
    )
    handler = lambda r: httpx.Response(200, text=events, headers={"content-type": "text/event-stream"})  # noqa: E731
    with pytest.raises(StreamBrokenError) as info:
        run("https://x.example", stream(), **mock(handler))
    assert "engine died" in info.value.message and info.value.partial_text == "Hi"


def test_server_message_echoing_a_key_is_redacted() -> None:
    body = {"error": {"message": f"bad header Authorization: Bearer {KEY}", "type": "BadRequestError", "code": 400}}
    err = fails("https://x.example", chat(), **mock(lambda r: httpx.Response(400, json=body)))
    assert KEY not in err.message and "Bearer ***" in err.message


def test_dns_failure_is_connect() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        raise httpx.ConnectError("[Errno -2] Name or service not known")

    err = fails("https://nowhere.invalid", chat(), **mock(handler))
    assert err.kind == "connect" and "cannot resolve" in err.message


# --- health ------------------------------------------------------------------------------


def test_health_ready_shallow_and_deep(fake: FakeVLLM) -> None:
    ticks = iter([1.0, 1.5])
    health = run(fake.url, lambda e: e.health(), clock=lambda: next(ticks), provider="modal")
    assert health.status == "ready" and health.ok and health.latency_s == pytest.approx(0.5)
    assert health.endpoint == fake.url + "/v1" and health.provider == "modal"
    assert fake.hits("/v1/chat/completions") == 0
    deep = run(fake.url, lambda e: e.health(deep=True))
    assert deep.status == "ready" and deep.models == ("fake-model",)
    probe = fake.requests[-1].json()
    assert probe["max_tokens"] == 1 and probe["model"] == "fake-model"


def test_health_503_is_cold(fake: FakeVLLM) -> None:
    fake.fail(503)
    health = run(fake.url, lambda e: e.health())
    assert health.status == "cold" and health.ok and "503" in health.detail


def test_health_slow_is_cold(fake: FakeVLLM) -> None:
    fake.slow(0.4, paths={"/health"})
    health = run(fake.url, lambda e: e.health(timeout=0.05))
    assert health.status == "cold" and "no answer within 0.05s" in health.detail


def test_health_refused_is_unhealthy() -> None:
    health = run(f"http://127.0.0.1:{closed_port()}", lambda e: e.health(deep=True))
    assert health.status == "unhealthy" and not health.ok and "connection refused" in health.detail


def test_deep_health_with_a_wrong_key_is_unhealthy(keyed: FakeVLLM) -> None:
    health = run(keyed.url, lambda e: e.health(deep=True), api_key="sk-wrong-key-000000000000")
    assert health.status == "unhealthy" and "401" in health.detail
    assert "sk-wrong-key" not in health.detail


def test_deep_health_that_cannot_generate_is_degraded(fake: FakeVLLM) -> None:
    fake.fail(500, paths={"/v1/chat/completions"})
    health = run(fake.url, lambda e: e.health(deep=True))
    assert health.status == "degraded" and health.models == ("fake-model",)


def test_deep_health_with_an_unserved_model_is_unhealthy(fake: FakeVLLM) -> None:
    health = run(fake.url, lambda e: e.health(deep=True), model="other")
    assert health.status == "unhealthy" and "served: fake-model" in health.detail


# --- models and metrics ------------------------------------------------------------------


def test_models(keyed: FakeVLLM) -> None:
    models = run(keyed.url, lambda e: e.models(), api_key=KEY)
    assert [m["id"] for m in models] == ["fake-model"] and models[0]["max_model_len"] == 4096


def test_metrics(fake: FakeVLLM) -> None:
    run(fake.url, chat())
    metrics = run(fake.url, lambda e: e.metrics())
    assert metrics is not None
    assert metrics["vllm:num_requests_running"] == 0.0
    assert metrics["vllm:generation_tokens_total"] == 9.0
    assert metrics["vllm:request_success_total"] == 1.0  # summed over finished_reason labels
    assert not any(k.endswith(("_bucket", "_created")) for k in metrics)
    assert not any(k.startswith("python_") for k in metrics)


def test_metrics_absent(fake: FakeVLLM) -> None:
    fake.fail(404, body={"detail": "Not Found"}, paths={"/metrics"})
    assert run(fake.url, lambda e: e.metrics()) is None


def test_parse_metrics_handles_labels_with_spaces() -> None:
    text = 'vllm:x{a="b c",model_name="m"} 2.5\nvllm:x{a="d",model_name="m"} 1\n# TYPE vllm:x gauge\nvllm:y NaN\n'
    parsed = parse_metrics(text)
    assert parsed["vllm:x"] == 3.5 and "vllm:y" in parsed


def test_no_secret_in_any_error(keyed: FakeVLLM) -> None:
    keyed.fail_html(502, times=1)
    messages = []
    for use in (chat(), stream(), lambda e: e.models()):
        err = fails(keyed.url, use, api_key="sk-wrong-key-000000000000")
        messages.append(json.dumps([err.message, err.hint]))
    assert not any("sk-wrong-key" in m for m in messages)


def test_is_a_provider() -> None:
    from gpuctl.providers.base import Provider

    endpoint = VLLMEndpoint("http://127.0.0.1:8000", provider="vastai")
    assert isinstance(endpoint, Provider)
    assert endpoint.name == endpoint.provider == "vastai" and endpoint.is_configured()


# --- streaming: events per read ----------------------------------------------------------


def test_events_arriving_together_become_one_chunk() -> None:
    events = (
        'data: {"model":"m","choices":[{"index":0,"delta":{"role":"assistant","content":""}}]}\n\n'
        'data: {"model":"m","choices":[{"index":0,"delta":{"content":"Hel"}}]}\n\n'
        'data: {"model":"m","choices":[{"index":0,"delta":{"content":"lo"},"finish_reason":"stop"}]}\n\n'
        'data: {"model":"m","choices":[],"usage":{"prompt_tokens":3,"completion_tokens":2,"total_tokens":5}}\n\n'
        "data: [DONE]\n\n"
    )
    handler = lambda r: httpx.Response(200, text=events, headers={"content-type": "text/event-stream"})  # noqa: E731
    chunks = run("https://x.example", stream(), **mock(handler))
    assert [c.text for c in chunks] == ["Hello", ""]
    assert chunks[-1].finish_reason == "stop" and chunks[-1].usage.completion_tokens == 2
