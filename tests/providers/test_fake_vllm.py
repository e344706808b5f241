"""The loopback vLLM fake behaves like facts/PROVIDERS.md "vLLM OpenAI-compatible server".
Raw httpx (no gpuctl client) checks the wire shapes themselves, so the client's tests
are tested against the real thing's behaviour, not against the client's assumptions."""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.vllm_server import FakeVLLM, count_prompt_tokens, tokenize

KEY = "sk-vllm-fake-0123456789"
ANSWER = "One two three four five."
MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Count to five"}]


@pytest.fixture
def fake() -> Iterator[FakeVLLM]:
    with FakeVLLM(answer=ANSWER) as server:
        yield server


@pytest.fixture
def client(fake: FakeVLLM) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=fake.url, timeout=2.0) as c:
        yield c


def chat_body(**overrides: Any) -> dict[str, Any]:
    body: dict[str, Any] = {"model": "fake-model", "messages": MESSAGES, "max_tokens": 100}
    body.update(overrides)
    return {k: v for k, v in body.items() if v is not None}


def sse_events(text: str) -> list[str]:
    """The `data:` payloads, checking the framing: `data: ...` then a blank line, nothing else."""
    assert text.endswith("\n\n")
    events = text[:-2].split("\n\n")
    for event in events:
        assert event.startswith("data: ") and "\n" not in event, event
    return [e[len("data: ") :] for e in events]


# --- the unauthenticated endpoints -------------------------------------------------------


def test_health_version_metrics_need_no_key() -> None:
    with FakeVLLM(api_key=KEY) as fake, httpx.Client(base_url=fake.url) as c:
        health = c.get("/health")
        assert health.status_code == 200 and health.content == b""
        assert c.get("/version").json() == {"version": "0.32.0"}
        metrics = c.get("/metrics")
        assert metrics.status_code == 200 and metrics.headers["content-type"].startswith("text/plain")
        assert 'vllm:num_requests_running{engine="0",model_name="fake-model"} 0.0' in metrics.text
        assert c.get("/v1/models").status_code == 401


def test_models_list(client: httpx.Client) -> None:
    data = client.get("/v1/models").json()
    assert data["object"] == "list"
    assert data["data"][0]["id"] == "fake-model" and data["data"][0]["max_model_len"] == 4096
    assert data["data"][0]["root"] == "/models/fake-model"


# --- chat completions --------------------------------------------------------------------


def test_plain_chat_shape_and_consistent_usage(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200 and response.headers["content-type"] == "application/json"
    data = response.json()
    assert data["object"] == "chat.completion" and data["model"] == "fake-model"
    choice = data["choices"][0]
    assert choice["message"]["role"] == "assistant" and choice["message"]["content"] == ANSWER
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] is None
    prompt = count_prompt_tokens(MESSAGES)
    assert prompt == 2 + 2 + 3
    assert data["usage"]["prompt_tokens"] == prompt
    assert data["usage"]["completion_tokens"] == len(tokenize(ANSWER)) == 5
    assert data["usage"]["total_tokens"] == prompt + 5


def test_model_may_be_omitted(client: httpx.Client) -> None:
    assert client.post("/v1/chat/completions", json=chat_body(model=None)).status_code == 200


def test_stream_framing_first_chunk_last_token_usage_done(client: httpx.Client) -> None:
    body = chat_body(stream=True, stream_options={"include_usage": True})
    response = client.post("/v1/chat/completions", json=body)
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    assert response.headers["transfer-encoding"] == "chunked"
    events = sse_events(response.text)
    assert events[-1] == "[DONE]"
    chunks = [json.loads(e) for e in events[:-1]]
    assert chunks[0]["choices"][0]["delta"] == {"role": "assistant", "content": ""}
    assert all(c["object"] == "chat.completion.chunk" and c["model"] == "fake-model" for c in chunks)
    usage_chunk, token_chunks = chunks[-1], chunks[1:-1]
    assert usage_chunk["choices"] == []
    assert usage_chunk["usage"]["completion_tokens"] == len(token_chunks) == 5
    # The last token arrives in the same chunk as finish_reason.
    assert token_chunks[-1]["choices"][0]["delta"]["content"] == " five."
    assert token_chunks[-1]["choices"][0]["finish_reason"] == "stop"
    assert all(c["choices"][0]["finish_reason"] is None for c in token_chunks[:-1])
    assert "".join(c["choices"][0]["delta"]["content"] for c in token_chunks) == ANSWER


def test_stream_without_include_usage_has_no_usage_chunk(client: httpx.Client) -> None:
    events = sse_events(client.post("/v1/chat/completions", json=chat_body(stream=True)).text)
    chunks = [json.loads(e) for e in events[:-1]]
    assert all(c["choices"] for c in chunks) and not any("usage" in c for c in chunks)


def test_several_tokens_per_chunk(fake: FakeVLLM, client: httpx.Client) -> None:
    fake.tokens_per_chunk = 2
    body = chat_body(stream=True, stream_options={"include_usage": True})
    chunks = [json.loads(e) for e in sse_events(client.post("/v1/chat/completions", json=body).text)[:-1]]
    assert len(chunks) == 1 + 3 + 1
    assert chunks[-1]["usage"]["completion_tokens"] == 5


def test_small_max_tokens_finishes_with_length(client: httpx.Client) -> None:
    data = client.post("/v1/chat/completions", json=chat_body(max_tokens=2)).json()
    assert data["choices"][0]["message"]["content"] == "One two"
    assert data["choices"][0]["finish_reason"] == "length" and data["usage"]["completion_tokens"] == 2


def test_prompt_that_fits_but_leaves_little_room_is_cut_not_refused() -> None:
    with FakeVLLM(answer=ANSWER, max_model_len=10) as fake, httpx.Client(base_url=fake.url) as c:
        data = c.post("/v1/chat/completions", json=chat_body(max_tokens=8)).json()  # prompt is 7
        assert data["choices"][0]["finish_reason"] == "length" and data["usage"]["completion_tokens"] == 3


def test_stop_string(client: httpx.Client) -> None:
    data = client.post("/v1/chat/completions", json=chat_body(stop=[" three"])).json()
    choice = data["choices"][0]
    assert choice["message"]["content"] == "One two"
    assert choice["finish_reason"] == "stop" and choice["stop_reason"] == " three"


# --- error shapes ------------------------------------------------------------------------


def test_unknown_model_404(client: httpx.Client) -> None:
    for stream in (False, True):  # JSON with the status, also when streaming was asked for
        response = client.post("/v1/chat/completions", json=chat_body(model="x", stream=stream))
        assert response.status_code == 404 and response.headers["content-type"] == "application/json"
        error = response.json()["error"]
        assert error["message"].startswith("The model `x` does not exist.")
        assert error["type"] == "NotFoundError" and error["code"] == 404 and "param" in error


def test_max_tokens_above_context_400(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=chat_body(max_tokens=5000))
    assert response.status_code == 400
    error = response.json()["error"]
    assert error["type"] == "BadRequestError" and error["code"] == 400 and "5000" in error["message"]


def test_prompt_longer_than_context_400() -> None:
    with FakeVLLM(max_model_len=5) as fake, httpx.Client(base_url=fake.url) as c:
        response = c.post("/v1/chat/completions", json=chat_body(max_tokens=1))
        assert response.status_code == 400 and response.json()["error"]["type"] == "BadRequestError"


def test_malformed_request_json_400(client: httpx.Client) -> None:
    response = client.post(
        "/v1/chat/completions", content=b'{"messages": [', headers={"content-type": "application/json"}
    )
    assert response.status_code == 400
    assert response.json()["error"]["type"] == "Bad Request" and response.json()["error"]["code"] == 400


def test_api_key_401_is_a_plain_string() -> None:
    with FakeVLLM(api_key=KEY) as fake, httpx.Client(base_url=fake.url) as c:
        for headers in ({}, {"Authorization": "Bearer nope"}, {"Authorization": KEY}):
            response = c.post("/v1/chat/completions", json=chat_body(), headers=headers)
            assert response.status_code == 401 and response.json() == {"error": "Unauthorized"}
        ok = c.post("/v1/chat/completions", json=chat_body(), headers={"Authorization": f"Bearer {KEY}"})
        assert ok.status_code == 200


def test_unknown_path_and_method(client: httpx.Client) -> None:
    response = client.get("/v2/nothing")
    assert response.status_code == 404 and response.json() == {"detail": "Not Found"}
    assert client.get("/v1/chat/completions").status_code == 405


# --- fault knobs -------------------------------------------------------------------------


def test_fail_times_then_normal_service_and_per_path(fake: FakeVLLM, client: httpx.Client) -> None:
    fake.fail(503, times=2, paths={"/health"})
    assert client.get("/version").status_code == 200  # other paths unaffected
    assert [client.get("/health").status_code for _ in range(3)] == [503, 503, 200]
    assert client.get("/health").content == b""
    assert fake.hits("/health") == 4 and fake.hits("/version") == 1 and fake.total_hits == 5


def test_fail_html_is_a_proxy_page(fake: FakeVLLM, client: httpx.Client) -> None:
    fake.fail_html(502)
    response = client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 502 and response.headers["content-type"] == "text/html"
    assert b"<title>502 Bad Gateway</title>" in response.content
    fake.reset_faults()
    assert client.post("/v1/chat/completions", json=chat_body()).status_code == 200


def test_malformed_json_knob(fake: FakeVLLM, client: httpx.Client) -> None:
    fake.malformed_json = True
    response = client.post("/v1/chat/completions", json=chat_body())
    assert response.status_code == 200
    with pytest.raises(json.JSONDecodeError):
        response.json()


def test_slow_first_byte(fake: FakeVLLM, client: httpx.Client) -> None:
    fake.slow(0.2, paths={"/health"})
    started = time.monotonic()
    assert client.get("/health").status_code == 200
    assert time.monotonic() - started >= 0.2
    with pytest.raises(httpx.ReadTimeout):
        client.get("/health", timeout=httpx.Timeout(1.0, read=0.05))


def test_cut_after_closes_the_socket_mid_stream(fake: FakeVLLM, client: httpx.Client) -> None:
    fake.cut_after = 3
    received: list[str] = []
    with (
        pytest.raises(httpx.RemoteProtocolError),
        client.stream("POST", "/v1/chat/completions", json=chat_body(stream=True)) as response,
    ):
        for line in response.iter_lines():
            received.append(line)
    assert len([line for line in received if line.startswith("data: ")]) == 3
    assert "data: [DONE]" not in received


def test_omit_done_ends_cleanly_without_done(fake: FakeVLLM, client: httpx.Client) -> None:
    fake.omit_done = True
    text = client.post("/v1/chat/completions", json=chat_body(stream=True)).text
    assert "[DONE]" not in text and sse_events(text)


def test_chunk_delay(fake: FakeVLLM, client: httpx.Client) -> None:
    fake.chunk_delay = 0.02
    started = time.monotonic()
    client.post("/v1/chat/completions", json=chat_body(stream=True))
    assert time.monotonic() - started >= 0.02 * 5  # five gaps: five tokens after the role chunk


def test_requests_are_recorded_and_connections_kept_alive(fake: FakeVLLM, client: httpx.Client) -> None:
    client.post("/v1/chat/completions", json=chat_body(), headers={"X-Trace": "1"})
    client.get("/health?deep=1")
    first, second = fake.requests
    assert first.method == "POST" and first.json()["messages"] == MESSAGES and first.headers["X-Trace"] == "1"
    assert second.path == "/health" and second.query == "deep=1"
    assert first.client_port == second.client_port  # one keep-alive connection


def test_metrics_count_served_tokens(fake: FakeVLLM, client: httpx.Client) -> None:
    client.post("/v1/chat/completions", json=chat_body(max_tokens=2))
    text = client.get("/metrics").text
    assert 'vllm:generation_tokens_total{engine="0",model_name="fake-model"} 2.0' in text
    assert 'vllm:request_success_total{engine="0",finished_reason="length",model_name="fake-model"} 1.0' in text


def test_2000_chunks_stream_fast() -> None:
    with FakeVLLM(answer=" ".join(["tok"] * 2000)) as fake, httpx.Client(base_url=fake.url) as c:
        started = time.monotonic()
        text = c.post("/v1/chat/completions", json=chat_body(max_tokens=4000, stream=True)).text
        elapsed = time.monotonic() - started
    assert len(sse_events(text)) == 1 + 2000 + 1
    assert elapsed < 0.5


def test_stop_interrupts_a_delayed_handler() -> None:
    fake = FakeVLLM().start()
    fake.slow(30.0)
    errors: list[BaseException] = []

    def call() -> None:
        try:
            with httpx.Client(base_url=fake.url, timeout=5.0) as c:
                c.get("/health")
        except httpx.HTTPError as exc:
            errors.append(exc)

    worker = threading.Thread(target=call)
    worker.start()
    deadline = time.monotonic() + 2.0
    while fake.hits("/health") == 0 and time.monotonic() < deadline:
        time.sleep(0.005)
    started = time.monotonic()
    fake.stop()
    worker.join(timeout=2.0)
    assert time.monotonic() - started < 0.5
    assert not worker.is_alive() and len(errors) == 1


# --- tool calls, as facts/PROVIDERS.md "vLLM tool calling" records them --------------------

TOOLS = [{"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}]


def test_tools_are_refused_without_tool_calling(client: httpx.Client) -> None:
    response = client.post("/v1/chat/completions", json=chat_body(tools=TOOLS))
    assert response.status_code == 400 and "--enable-auto-tool-choice" in response.json()["error"]["message"]


def test_the_tool_call_wire_format() -> None:
    with FakeVLLM(tool_call_parser="hermes") as fake, httpx.Client(base_url=fake.url) as c:
        fake.tool_call = {"name": "get_weather", "arguments": '{"city": "Paris"}'}
        plain = c.post("/v1/chat/completions", json=chat_body(tools=TOOLS)).json()["choices"][0]
        assert plain["message"]["content"] == "" and plain["finish_reason"] == "tool_calls"
        (call,) = plain["message"]["tool_calls"]
        assert call["type"] == "function" and call["function"] == fake.tool_call and call["id"]
        named = chat_body(tools=TOOLS, tool_choice={"type": "function", "function": {"name": "get_weather"}})
        assert c.post("/v1/chat/completions", json=named).json()["choices"][0]["finish_reason"] == "stop"
        events = [json.loads(e) for e in sse_events(c.post("/v1/chat/completions",
                                                           json=chat_body(tools=TOOLS, stream=True)).text)[:-1]]
        first = events[1]["choices"][0]["delta"]
        assert first["content"] is None and first["tool_calls"][0].keys() == {"id", "type", "index", "function"}
        assert first["tool_calls"][0]["function"] == {"name": "get_weather"}
        fragments = [e["choices"][0]["delta"]["tool_calls"][0]["function"]["arguments"]
                     for e in events[2:] if e["choices"][0]["delta"].get("tool_calls")]
        assert "".join(fragments) == '{"city": "Paris"}' and len(fragments) > 1
        cut = c.post("/v1/chat/completions", json=chat_body(tools=TOOLS, max_tokens=2)).json()["choices"][0]
        assert cut["finish_reason"] == "length" and cut["message"]["content"].startswith("<tool_call>")
        assert cut["message"]["tool_calls"] == []


# --- what the real server refuses or decides (issue 13 review) ------------------------------


def test_max_completion_tokens_wins_over_max_tokens_as_on_vllm(client: httpx.Client) -> None:
    # vLLM: `max_completion_tokens or max_tokens`
    both = client.post("/v1/chat/completions", json=chat_body(max_tokens=100, max_completion_tokens=2)).json()
    assert both["usage"]["completion_tokens"] == 2 and both["choices"][0]["finish_reason"] == "length"
    alone = client.post("/v1/chat/completions", json=chat_body(max_tokens=None, max_completion_tokens=3)).json()
    assert alone["usage"]["completion_tokens"] == 3


@pytest.mark.parametrize("choice", ["auto", "required", {"type": "function", "function": {"name": "get_weather"}}])
def test_tool_choice_without_tools_is_refused(client: httpx.Client, choice: Any) -> None:
    response = client.post("/v1/chat/completions", json=chat_body(tool_choice=choice))
    assert response.status_code == 400
    assert response.json()["error"]["message"] == "When using `tool_choice`, `tools` must be set."
    assert client.post("/v1/chat/completions", json=chat_body(tool_choice="none")).status_code == 200
