"""Streams under real conditions: the first token is passed on while the GPU still generates,
a client that hangs up cancels the upstream request (the fake vLLM records the abort) and
leaves a "stopped" ledger row, and the in-flight bound answers 429 instead of queueing."""

from __future__ import annotations

from pathlib import Path

import openai
import pytest

from gpuctl.routing.outcomes import STOPPED
from tests.fakes.vllm_server import FakeVLLM
from tests.support.routing import ledger
from tests.support.serve import CLIENT_KEY, MODEL, chain_env, running_gateway, wait_for

LONG = " ".join(f"word{i}" for i in range(30))
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "Tell me a long story"}], "stream": True}
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}


def _stopped_rows(home: Path) -> list:  # type: ignore[type-arg]
    return [r for r in ledger(home) if r.error == STOPPED]


def test_the_first_token_is_passed_on_while_the_gpu_still_generates(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    vllm.answer, vllm.chunk_delay = LONG, 0.01
    with running_gateway(gpuctl_home, chain_env(vllm)) as gw, gw.http() as http, \
            http.stream("POST", "/v1/chat/completions", json=BODY, headers=AUTH) as response:
        lines = response.iter_lines()
        first = next(line for line in lines if '"content":"word0"' in line)
        assert vllm.running == 1  # upstream is still generating: nothing was buffered
        rest = [line for line in lines if line]
    assert first.startswith("data: ") and rest[-1] == "data: [DONE]"


def test_a_client_hanging_up_mid_stream_cancels_upstream_and_the_ledger_says_stopped(
        gpuctl_home: Path, vllm: FakeVLLM) -> None:
    vllm.answer, vllm.chunk_delay = LONG, 0.01
    with running_gateway(gpuctl_home, chain_env(vllm)) as gw, gw.client() as client:
        stream = client.chat.completions.create(**BODY)  # type: ignore[call-overload]
        got = [next(stream), next(stream), next(stream)]
        stream.close()  # the client goes away after a few tokens
        wait_for(lambda: vllm.cancelled == 1, what="the fake vLLM to see the cancel")
        wait_for(lambda: _stopped_rows(gpuctl_home), what="the stopped ledger row")
        wait_for(lambda: any(line["status"] == 499 for line in gw.access_lines()), what="the access log line")
    assert got[1].choices[0].delta.content == "word0"
    assert vllm.finished["abort"] == 1 and vllm.finished["stop"] == 0
    (row,) = _stopped_rows(gpuctl_home)
    assert row.provider == "modal" and row.key_name == "alice" and not row.ok
    # The prompt was read and some words generated: a stop is never a free request.
    assert row.prompt_tokens > 0 and row.completion_tokens >= 1 and row.tokens_estimated
    assert gw.gateway.inflight == 0


def test_a_client_giving_up_on_a_whole_answer_cancels_it_and_keeps_the_row(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    vllm.slow(30, paths=["/v1/chat/completions"])  # a cold GPU: the answer would take 30 s
    with running_gateway(gpuctl_home, chain_env(vllm)) as gw, gw.client(timeout=0.5) as client:
        with pytest.raises(openai.APITimeoutError):
            client.chat.completions.create(model=MODEL, messages=BODY["messages"])  # type: ignore[arg-type]
        wait_for(lambda: _stopped_rows(gpuctl_home), what="the stopped ledger row")
        wait_for(lambda: gw.gateway.inflight == 0, what="the request to end in the gateway")
    (row,) = _stopped_rows(gpuctl_home)
    assert row.provider == "modal" and row.latency_s is not None and row.latency_s < 10
    assert row.prompt_tokens > 0 and row.completion_tokens == 0 and row.tokens_estimated


def test_past_the_in_flight_limit_the_answer_is_429_with_retry_after(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    vllm.answer, vllm.chunk_delay = LONG, 0.01
    with running_gateway(gpuctl_home, chain_env(vllm), max_inflight=1, retry_after_s=2) as gw, gw.client() as client:
        stream = client.chat.completions.create(**BODY)  # type: ignore[call-overload]
        next(stream)  # one request in flight: the limit
        with pytest.raises(openai.RateLimitError) as caught:
            client.chat.completions.create(model=MODEL, messages=BODY["messages"])  # type: ignore[arg-type]
        assert caught.value.response.headers["retry-after"] == "2"
        assert caught.value.response.json()["error"]["code"] == "overloaded"
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        answer = client.chat.completions.create(model=MODEL, messages=BODY["messages"])  # type: ignore[arg-type]
    assert text.endswith("word29") and answer.choices[0].message.content == LONG
    assert vllm.hits("/v1/chat/completions") == 2  # the refused request never reached the GPU


def test_a_stream_that_breaks_after_text_ends_with_an_error_event(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    vllm.answer, vllm.cut_after = LONG, 5  # the GPU server dies after a few events
    with running_gateway(gpuctl_home, chain_env(vllm)) as gw, gw.client() as client:
        stream = client.chat.completions.create(**BODY)  # type: ignore[call-overload]
        texts = []
        with pytest.raises(openai.APIError) as caught:
            for chunk in stream:
                texts.append((chunk.choices[0].delta.content or "") if chunk.choices else "")
    assert "".join(texts).startswith("word0") and "broke off" in str(caught.value.message)
    (row,) = ledger(gpuctl_home)
    assert row.provider == "modal" and not row.ok and row.error
