"""Every way a request can fail arrives as the status OpenAI would send, in its error shape,
and so as the `openai` SDK's own exception type: never a traceback, never a lost ledger row."""

from __future__ import annotations

import json
from pathlib import Path

import openai
import pytest

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import closed_port_url
from tests.support.routing import ledger
from tests.support.serve import CLIENT_KEY, MODEL, Running, chain_env, running_gateway, wait_for

MESSAGES = [{"role": "user", "content": "Hello there"}]
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}


def _error(exc: openai.APIStatusError) -> dict:  # type: ignore[type-arg]
    body = exc.response.json()
    assert set(body) == {"error"} and {"message", "type", "param", "code"} <= set(body["error"])
    return body["error"]  # type: ignore[no-any-return]


def test_an_unknown_model_is_a_404_not_found(gateway: Running) -> None:
    with gateway.client() as client, pytest.raises(openai.NotFoundError) as caught:
        client.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    error = _error(caught.value)
    assert error["code"] == "model_not_found" and error["param"] == "model" and MODEL in error["message"]


@pytest.mark.parametrize(("body", "param"), [
    ({"model": MODEL, "messages": "hi"}, "messages"),
    ({"model": MODEL}, "messages"),
    ({"model": MODEL, "messages": [{"role": "wizard", "content": "hi"}]}, "messages[0].role"),
    ({"model": MODEL, "messages": [{"role": "user", "content": 5}]}, "messages[0].content"),
    ({"model": MODEL, "messages": MESSAGES, "temperature": "hot"}, "temperature"),
    ({"model": MODEL, "messages": MESSAGES, "max_tokens": 0}, "max_tokens"),
    ({"model": MODEL, "messages": MESSAGES, "max_tokens": True}, "max_tokens"),
    ({"model": MODEL, "messages": MESSAGES, "stream": "yes"}, "stream"),
    # More than OpenAI's 4 stop strings, or n > 1, is what vLLM serves: passed on, not refused.
    ({"model": MODEL, "messages": MESSAGES, "stop": 5}, "stop"),
    ({"model": MODEL, "messages": MESSAGES, "n": 0}, "n"),
    ({"model": 7, "messages": MESSAGES}, "model"),
    ({"model": MODEL, "messages": MESSAGES, "stream": True, "stream_options": {"include_usage": "no"}},
     "stream_options.include_usage"),
])
def test_wrong_types_are_a_400_naming_the_parameter(gateway: Running, body: dict, param: str) -> None:  # type: ignore[type-arg]
    with gateway.client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.post("/chat/completions", body=body, cast_to=object)
    error = _error(caught.value)
    assert error["type"] == "invalid_request_error" and error["param"] == param


@pytest.mark.parametrize("raw", [
    b"{not json", b"[1, 2]", b"\xff\xfe", b"",
    b'{"messages": [{"role": "user", "content": "half a pair \\ud83d"}]}',  # no encoder can send it on
    b'{"messages": [{"role": "user", "content": "hi"}], "top_k": "\\uDC00"}',
    b'{"a": ' * 100_000 + b"1" + b"}" * 100_000,  # nested past the parser's recursion limit
    b'{"messages": [{"role": "user", "content": "hi"}], "x": ' + b"[" * 980 + b"]" * 980 + b"}",  # parsed, not sendable
])
def test_malformed_json_is_a_400_in_openai_shape(gateway: Running, raw: bytes) -> None:
    with gateway.http() as http:
        response = http.post("/v1/chat/completions", content=raw, headers=AUTH)
    assert response.status_code == 400 and response.json()["error"]["code"] == "invalid_json"


def test_a_body_over_the_limit_is_a_413_before_it_is_read_whole(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    with running_gateway(gpuctl_home, chain_env(vllm), max_body_bytes=2048) as gw:
        with gw.client() as client, pytest.raises(openai.APIStatusError) as caught:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "x" * 5000}])
        assert caught.value.status_code == 413 and _error(caught.value)["code"] == "request_too_large"

        def chunks():  # no Content-Length: refused while it arrives
            yield b'{"model": "' + MODEL.encode() + b'", "messages": [{"role": "user", "content": "'
            for _ in range(100):
                yield b"x" * 100
            yield b'"}]}'

        with gw.http() as http:
            response = http.post("/v1/chat/completions", content=chunks(), headers=AUTH)
        assert response.status_code == 413 and response.headers["connection"] == "close"
    assert vllm.hits("/v1/chat/completions") == 0


def test_a_missing_or_wrong_key_is_a_401_and_the_key_is_never_logged(gateway: Running) -> None:
    with gateway.client(api_key="sk-not-the-key-0123456789") as client, pytest.raises(openai.AuthenticationError):
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    with gateway.http() as http:
        response = http.post("/v1/chat/completions", json={"model": MODEL, "messages": MESSAGES})
    assert response.status_code == 401 and response.json()["error"]["code"] == "invalid_api_key"
    with gateway.client() as client:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
    lines = gateway.access_lines()
    assert [line["status"] for line in lines] == [401, 401, 200] and lines[-1]["key"] == "alice"
    assert "sk-not-the-key" not in gateway.log.getvalue() and CLIENT_KEY not in gateway.log.getvalue()


def test_completions_and_unknown_routes_are_404_and_wrong_methods_405(gateway: Running) -> None:
    with gateway.client() as client, pytest.raises(openai.NotFoundError) as caught:
        client.completions.create(model=MODEL, prompt="hi")
    assert _error(caught.value)["code"] == "unknown_url"
    with gateway.http() as http:
        assert http.get("/v2/nothing").status_code == 404
        wrong = http.get("/v1/chat/completions")
    assert wrong.status_code == 405 and wrong.headers["allow"] == "POST"


def test_nobody_answering_is_a_502_with_each_providers_reason(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    claude.status = 500  # Anthropic fails too
    env = chain_env(None, claude, MODAL_WEB_URL=closed_port_url())
    with running_gateway(gpuctl_home, env) as gw, gw.client() as client:
        with pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        with pytest.raises(openai.InternalServerError) as streamed:
            client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert caught.value.status_code == 502 and streamed.value.status_code == 502
    error = _error(caught.value)
    assert error["code"] == "no_provider_answered"
    assert [p["provider"] for p in error["providers"]] == ["modal", "anthropic"]
    assert all(p["outcome"] == "failed" for p in error["providers"])
    assert "modal" in error["message"] and "anthropic" in error["message"]
    # Every request that reached a provider has its row (modal failed its health probe first).
    assert [(r.provider, r.ok) for r in ledger(gpuctl_home)] == [("anthropic", False)] * 2


def test_breakers_all_open_is_a_503_with_retry_after(gpuctl_home: Path) -> None:
    env = chain_env(None, None, MODAL_WEB_URL=closed_port_url())
    with running_gateway(gpuctl_home, env, flags={"routing.failure_threshold": 1, "routing.cooldown_s": 120.0}) as gw:
        # The health monitor's first check finds Modal down, which opens its breaker.
        wait_for(lambda: gw.gateway.readiness.at is not None, what="the first health check")
        with gw.client() as client, pytest.raises(openai.InternalServerError) as caught:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        with gw.http() as http:
            ready = http.get("/ready")
    assert caught.value.status_code == 503  # nothing may be tried now: try again later
    assert 100 <= int(caught.value.response.headers["retry-after"]) <= 120
    assert _error(caught.value)["providers"][0]["reason"] == "breaker_open"
    assert ready.status_code == 503 and ready.json()["provider"] is None


def test_a_provider_refusing_the_request_is_a_400_passed_through(gateway: Running, vllm: FakeVLLM) -> None:
    vllm.max_model_len = 8  # the prompt no longer fits: vLLM says 400, and no other provider would help
    with gateway.client() as client, pytest.raises(openai.BadRequestError) as caught:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "one two three four five "
                                                                                           "six seven eight nine"}])
    assert "maximum context length" in _error(caught.value)["message"]


def test_no_traceback_ever_reaches_a_response(gateway: Running) -> None:
    with gateway.http() as http:
        bodies = [http.post("/v1/chat/completions", content=json.dumps(b).encode(), headers=AUTH)
                  for b in ({"messages": [None]}, {"messages": [{"role": "user", "content": [{"type": "image_url"}]}]},
                            {"messages": MESSAGES, "stream_options": 3}, {"messages": MESSAGES, "temperature": 1e999})]
    for response in bodies:
        assert response.status_code == 400, response.text
        assert "Traceback" not in response.text and response.json()["error"]["message"]


def test_no_answer_within_the_request_timeout_is_a_504(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    vllm.slow(30, paths=["/v1/chat/completions"])
    with running_gateway(gpuctl_home, chain_env(vllm), request_timeout_s=0.3) as gw, gw.client() as client:
        with pytest.raises(openai.APIStatusError) as whole:
            client.chat.completions.create(model=MODEL, messages=MESSAGES)
        with pytest.raises(openai.APIStatusError) as streamed:
            client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
    assert whole.value.status_code == 504 and streamed.value.status_code == 504
    assert _error(whole.value)["code"] == "request_timeout"
    assert [r.error for r in ledger(gpuctl_home)] == ["stopped by user"] * 2  # the GPU's work is on record


def test_an_upstream_error_quoting_the_configured_key_never_shows_it(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    secret = "modalvllmkey-XYZ123"
    vllm.fail(503, body={"error": {"message": f"upstream refused token {secret}", "type": "x", "code": 503}},
              paths=["/v1/chat/completions"])
    env = chain_env(vllm, GPUCTL_MODAL_API_KEY=secret, GPUCTL_PRIORITY="modal")
    with running_gateway(gpuctl_home, env) as gw, gw.http() as http:
        response = http.post("/v1/chat/completions", json={"messages": MESSAGES}, headers=AUTH)
        wait_for(lambda: ledger(gpuctl_home), what="the failed row")
        shown = response.text + repr(response.headers) + "\n".join(map(str, gw.access_lines()))
    assert response.status_code >= 500 and "upstream refused token ***" in response.text
    assert secret not in shown and all(secret not in (row.error or "") for row in ledger(gpuctl_home))


def test_when_every_provider_tried_is_rate_limited_the_client_gets_a_429_with_the_wait(
        gpuctl_home: Path, vllm: FakeVLLM) -> None:
    vllm.fail(429, body={"error": {"message": "slow down", "type": "x", "code": 429}}, headers={"Retry-After": "9"},
              paths=["/v1/chat/completions"])
    with running_gateway(gpuctl_home, chain_env(vllm, GPUCTL_PRIORITY="modal")) as gw, gw.http() as http:
        response = http.post("/v1/chat/completions", json={"messages": MESSAGES}, headers=AUTH)
    assert response.status_code == 429 and response.headers["retry-after"] == "9"
    assert response.json()["error"]["type"] == "rate_limit_exceeded"
