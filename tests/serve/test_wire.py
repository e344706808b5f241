"""The wire module alone: what a request body becomes, the exact bytes of a stream, header
values; and the options' safety rules (client keys, the admin token, loopback)."""

from __future__ import annotations

import json

import pytest

from gpuctl.errors import ConfigError, UsageError
from gpuctl.providers.base import ChatResponse, StreamChunk, Usage
from gpuctl.serve import openai_wire as wire
from gpuctl.serve.errors import ApiError
from gpuctl.serve.options import is_loopback, parse_keys, serve_options
from tests.support import settings_for

MODELS = ("team-model",)


def parse(body: dict) -> wire.WireRequest:  # type: ignore[type-arg]
    return wire.request_from_body(body, models=MODELS, max_tokens=2048)


def test_a_request_becomes_a_chat_request_for_the_providers_own_models() -> None:
    parts = [{"type": "text", "text": "Hello "}, {"type": "text", "text": "there"}]
    asked = parse({"model": "team-model", "messages": [
        {"role": "developer", "content": "Be brief."},
        {"role": "user", "content": parts},
        {"role": "assistant", "content": "Hi."}],
        "temperature": 0, "max_completion_tokens": 9, "max_tokens": 99, "stop": "\n", "stream": True,
        "stream_options": {"include_usage": True}, "top_p": 0.5, "user": "u1", "top_k": 5})
    # The whole OpenAI request travels as data: roles and content parts as given.
    assert [(m.role, m.data["content"]) for m in asked.chat.messages] == [
        ("developer", "Be brief."), ("user", parts), ("assistant", "Hi.")]
    assert asked.chat.model is None  # each provider answers with its configured model: the public name stays here
    assert asked.chat.temperature == 0 and asked.chat.stop == ("\n",) and asked.chat.stream
    assert {k: asked.chat.params[k] for k in ("max_completion_tokens", "top_p", "user", "top_k", "stream_options")} == {
        "max_completion_tokens": 9, "top_p": 0.5, "user": "u1", "top_k": 5, "stream_options": {"include_usage": True}}
    assert "model" not in asked.chat.params
    assert asked.stream and asked.include_usage and asked.model == "team-model"


def test_defaults_when_the_client_sets_nothing() -> None:
    asked = parse({"messages": [{"role": "user", "content": "hi"}]})
    assert asked.model == "team-model" and asked.chat.temperature is None and asked.chat.max_tokens == 2048
    assert not asked.stream and not asked.include_usage


@pytest.mark.parametrize(("body", "status", "code"), [
    ({"model": "other", "messages": [{"role": "user", "content": "hi"}]}, 404, "model_not_found"),
    ({"messages": []}, 400, "invalid_value"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": 2.5}, 400, "invalid_value"),
    ({"messages": [{"role": "user", "content": "hi"}], "temperature": float("nan")}, 400, "invalid_value"),
    ({"messages": [{"role": "user", "content": "hi"}], "stop": [1]}, 400, "invalid_value"),
])
def test_bad_requests_are_api_errors(body: dict, status: int, code: str) -> None:  # type: ignore[type-arg]
    with pytest.raises(ApiError) as caught:
        parse(body)
    assert caught.value.status == status and caught.value.code == code
    error = json.loads(caught.value.body())["error"]
    assert set(error) == {"message", "type", "param", "code"}


def test_stream_events_are_byte_for_byte_openai() -> None:
    enc = wire.StreamEncoder(completion_id="chatcmpl-1", created=7, model="m", include_usage=True)
    head = b'data: {"id":"chatcmpl-1","object":"chat.completion.chunk","created":7,"model":"m","system_fingerprint":null,'
    assert enc.role() == head + (b'"choices":[{"index":0,"delta":{"role":"assistant","content":"","refusal":null},'
                                 b'"logprobs":null,"finish_reason":null}],"usage":null}\n\n')
    assert enc.chunk(StreamChunk("h\u00e9\"")) == head + (b'"choices":[{"index":0,"delta":{"content":"h\\u00e9\\""},'
                                                         b'"logprobs":null,"finish_reason":null}],"usage":null}\n\n')
    end = enc.chunk(StreamChunk("", "length", Usage(3, 4)))
    events = end.split(b"\n\n")
    assert events[0] == head + b'"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":"length"}],"usage":null}'
    assert events[1] == head + b'"choices":[],"usage":{"prompt_tokens":3,"completion_tokens":4,"total_tokens":7}}'
    assert events[2:] == [b"data: [DONE]", b""]
    for event in events[:2]:
        json.loads(event[len(b"data: "):])  # each event is one JSON object


def test_without_usage_asked_or_known_there_is_no_usage_event() -> None:
    plain = wire.StreamEncoder(completion_id="c", created=1, model="m", include_usage=False)
    assert b"usage" not in plain.chunk(StreamChunk("", "stop", Usage(1, 1)))
    asked = wire.StreamEncoder(completion_id="c", created=1, model="m", include_usage=True)
    assert asked.chunk(StreamChunk("", "stop", None)).count(b"\n\n") == 2  # finish and [DONE]: no 0-token lie


def test_a_whole_answer_names_the_model_that_answered() -> None:
    body = json.loads(wire.completion_body(ChatResponse("hi", "anthropic", "claude-haiku-4-5", Usage(2, 1), None),
                                           completion_id="chatcmpl-x", created=5, model="team-model"))
    assert body["model"] == "claude-haiku-4-5" and body["choices"][0]["finish_reason"] == "stop"
    assert body["usage"] == {"prompt_tokens": 2, "completion_tokens": 1, "total_tokens": 3}


def test_header_values_are_one_ascii_line() -> None:
    value = wire.header_value("modal: waking up (cold start, usually 10–30 s)\r\nX-Evil: 1 …")
    assert value == b"modal: waking up (cold start, usually 10-30 s) X-Evil: 1 ..."
    assert len(wire.header_value("x" * 5000)) == 900


def test_client_keys_match_by_value_and_errors_never_show_a_key() -> None:
    keys = parse_keys("alice:sk-alice-0123456789abcdef, ci:sk-ci-0123456789abcdefgh")
    assert keys.names == ["alice", "ci"] and keys.match("sk-ci-0123456789abcdefgh") == "ci"
    assert keys.match("sk-alice-0123456789abcdeX") is None and keys.match(None) is None
    assert "sk-alice" not in repr(keys)
    for raw, needle in (("alice:short", "'alice' is shorter"), ("nameless-key-0123456789", "entry 1"),
                        ("a:sk-same-0123456789abcd,b:sk-same-0123456789abcd", "same as another"),
                        ("a:sk-one-0123456789abcdef,a:sk-two-0123456789abcdef", "used twice")):
        with pytest.raises(ConfigError) as caught:
            parse_keys(raw)
        assert needle in caught.value.message
        assert "sk-" not in caught.value.message + (caught.value.hint or "")


def test_only_loopback_may_go_without_keys(gpuctl_home) -> None:  # type: ignore[no-untyped-def]
    assert is_loopback("127.0.0.1") and is_loopback("::1") and is_loopback("localhost")
    assert not is_loopback("0.0.0.0") and not is_loopback("10.0.0.5") and not is_loopback("gateway.internal")
    settings = settings_for(gpuctl_home)
    with pytest.raises(UsageError):
        serve_options(settings, host="0.0.0.0")
    assert serve_options(settings, host="0.0.0.0", insecure=True).insecure
    keyed = settings_for(gpuctl_home, GPUCTL_SERVE_API_KEYS="alice:sk-alice-0123456789abcdef")
    assert serve_options(keyed, host="0.0.0.0").keys.names == ["alice"]
    with pytest.raises(ConfigError):
        serve_options(settings_for(gpuctl_home, ADMIN_TOKEN="short"))


def test_a_body_that_trickles_past_its_deadline_is_a_408_that_closes_the_connection() -> None:
    import asyncio

    from gpuctl.serve.asgi import CLOSE, read_body
    from gpuctl.serve.errors import ApiError

    async def trickle() -> dict:  # type: ignore[type-arg]
        await asyncio.sleep(0.01)
        return {"type": "http.request", "body": b"x", "more_body": True}  # never the last piece

    async def main() -> ApiError:
        try:
            await read_body({"headers": []}, trickle, limit=10_000_000, timeout_s=0.05)
        except ApiError as exc:
            return exc
        raise AssertionError("read for ever")

    error = asyncio.run(main())
    assert error.status == 408 and CLOSE in error.headers
