"""The gateway through the official `openai` SDK, against a real uvicorn in front of the fake
vLLM (as Modal) and the fake Anthropic: answers, streams, the fallback in the headers, and the
ledger row each request leaves (with the client key's name)."""

from __future__ import annotations

from pathlib import Path

import openai

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support.routing import ledger
from tests.support.serve import CLIENT_KEY, MODEL, Running, chain_env, running_gateway

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]


def test_a_whole_answer_comes_back_in_openai_shape_from_the_first_provider(
        gateway: Running, vllm: FakeVLLM, gpuctl_home: Path) -> None:
    with gateway.client() as client:
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, max_tokens=64)
        answer = raw.parse()
    assert raw.headers["x-gpuctl-provider"] == "modal"
    assert "x-gpuctl-fallback-reason" not in raw.headers
    assert answer.object == "chat.completion" and answer.id.startswith("chatcmpl-")
    assert answer.choices[0].message.content == "Hello from the fake vLLM server"
    assert answer.choices[0].message.role == "assistant" and answer.choices[0].finish_reason == "stop"
    assert answer.model == MODEL
    assert answer.usage is not None and answer.usage.completion_tokens == 6
    assert answer.usage.total_tokens == answer.usage.prompt_tokens + 6
    sent = [r.json() for r in vllm.requests if r.path == "/v1/chat/completions"][-1]
    assert sent["messages"] == MESSAGES and sent["max_tokens"] == 64 and sent["model"] == MODEL
    (row,) = gateway.ledger()
    assert row.ok and row.provider == "modal" and row.key_name == "alice" and row.completion_tokens == 6


def test_a_stream_arrives_chunk_by_chunk_with_the_usage_chunk_last(gateway: Running, gpuctl_home: Path) -> None:
    with gateway.client() as client:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True,
                                                stream_options={"include_usage": True})
        chunks = list(stream)
    texts = [c.choices[0].delta.content for c in chunks if c.choices and c.choices[0].delta.content]
    assert "".join(texts) == "Hello from the fake vLLM server" and len(texts) == 6
    assert chunks[0].choices[0].delta.role == "assistant"
    assert [c.choices[0].finish_reason for c in chunks if c.choices][-1] == "stop"
    assert chunks[-1].choices == [] and chunks[-1].usage is not None and chunks[-1].usage.completion_tokens == 6
    assert all(c.usage is None for c in chunks[:-1])
    assert len({c.id for c in chunks}) == 1 and all(c.object == "chat.completion.chunk" for c in chunks)
    (row,) = gateway.ledger()
    assert row.ok and row.ttft_s is not None and row.key_name == "alice" and row.completion_tokens == 6


def test_stream_bytes_are_the_openai_wire_format(gateway: Running) -> None:
    body = {"model": MODEL, "messages": MESSAGES, "stream": True}
    with gateway.http() as http, http.stream("POST", "/v1/chat/completions", json=body,
                                             headers={"Authorization": f"Bearer {CLIENT_KEY}"}) as response:
        assert response.status_code == 200
        assert response.headers["content-type"] == "text/event-stream; charset=utf-8"
        assert response.headers["x-gpuctl-provider"] == "modal"
        raw = b"".join(response.iter_bytes())
    events = raw.split(b"\n\n")
    assert events[-1] == b"" and events[-2] == b"data: [DONE]"
    assert all(e.startswith(b'data: {"id":"chatcmpl-') for e in events[:-2])
    assert b'"usage"' not in raw  # not asked for: no usage key at all, as OpenAI
    assert events[0].endswith(b'"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
                              b'"logprobs":null,"finish_reason":null}]}')
    assert events[-3].endswith(b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"stop"}]}')


def test_when_the_vllm_dies_anthropic_answers_and_the_headers_say_why(
        gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    with running_gateway(gpuctl_home, chain_env(vllm, claude)) as gw, gw.client() as client:
        first = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
        assert first.headers["x-gpuctl-provider"] == "modal"
        vllm.stop()  # the GPU server is gone: connections are refused
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES)
        answer = raw.parse()
        stream = client.chat.completions.with_raw_response.create(model=MODEL, messages=MESSAGES, stream=True)
        streamed = "".join(c.choices[0].delta.content or "" for c in stream.parse() if c.choices)
    assert raw.headers["x-gpuctl-provider"] == "anthropic"
    assert raw.headers["x-gpuctl-fallback-reason"].startswith("modal: ")
    assert answer.choices[0].message.content == "Hello from Claude" and answer.model == "claude-haiku-4-5"
    assert stream.headers["x-gpuctl-provider"] == "anthropic" and streamed == "Hello from Claude"
    rows = ledger(gpuctl_home)
    assert [r.provider for r in rows if r.ok] == ["modal", "anthropic", "anthropic"]
    assert all(r.key_name == "alice" for r in rows)


def test_models_lists_the_public_name_and_needs_a_key(gateway: Running) -> None:
    with gateway.client() as client:
        assert [m.id for m in client.models.list()] == [MODEL]
    with gateway.client(api_key="sk-wrong-key-0123456789") as client:
        try:
            client.models.list()
        except openai.AuthenticationError as exc:
            assert exc.status_code == 401 and exc.response.headers["www-authenticate"].startswith("Bearer")
        else:
            raise AssertionError("a wrong key was accepted")


def test_concurrent_streams_through_the_async_sdk(gateway: Running, vllm: FakeVLLM) -> None:
    import asyncio

    async def main() -> list[str]:
        async with openai.AsyncOpenAI(base_url=gateway.base_url, api_key=CLIENT_KEY, max_retries=0,
                                      timeout=10) as client:
            async def one() -> str:
                stream = await client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
                return "".join([c.choices[0].delta.content or "" async for c in stream if c.choices])

            return await asyncio.gather(*(one() for _ in range(12)))

    vllm.chunk_delay = 0.005  # they overlap
    answers = asyncio.run(main())
    assert answers == ["Hello from the fake vLLM server"] * 12
    rows = gateway.ledger()
    assert len(rows) == 12 and all(r.ok and r.key_name == "alice" for r in rows)
