"""The loopback Anthropic fake behaves like the Messages API: the real SDK parses it, and it
rejects what the real API rejects. Raw HTTP (httpx) checks the wire shapes themselves."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import anthropic
import httpx
import pytest

from tests.fakes.anthropic_server import FakeAnthropic

KEY = "sk-ant-test-fake-0123456789"
HEADERS = {"Authorization": f"Bearer {KEY}", "anthropic-version": "2026-10-21"}


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY, reply_text="one two three four five") as server:
        yield server


def body(**overrides: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "model": "claude-haiku-4-5",
        "max_tokens": 64,
        "messages": [{"role": "user", "content": "hello"}],
    }
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def post(
    fake: FakeAnthropic, payload: Any, headers: dict[str, str] | None = None
) -> httpx.Response:
    with httpx.Client(base_url=fake.url, timeout=5) as client:
        return client.post(
            "/v1/messages", json=payload, headers=HEADERS if headers is None else headers
        )


def sse_events(text: str) -> list[tuple[str, dict[str, Any]]]:
    events = []
    for block in text.strip().split("\n\n"):
        lines = block.split("\n")
        assert lines[0].startswith("event: ") and lines[1].startswith("data: "), block
        events.append((lines[0][len("event: ") :], json.loads(lines[1][len("data: ") :])))
    return events


def test_real_sdk_parses_a_json_reply(fake: FakeAnthropic) -> None:
    with anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0) as client:
        message = client.messages.create(**body(system="Be terse."))
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "claude-haiku-4-5"
    assert [block.type for block in message.content] == ["text"]
    assert message.content[0].text == "one two three four five"  # type: ignore[union-attr]
    assert message.stop_reason == "end_turn" and message.stop_sequence is None
    assert message.usage.input_tokens == 3  # "Be terse." + "hello"
    assert message.usage.output_tokens == 5
    assert fake.requests == 1 and fake.stream_requests == 0
    assert fake.last_headers["authorization"] == f"Bearer {KEY}"
    assert fake.last_body["system"] == "Be terse."


def test_real_sdk_streams_every_event_kind(fake: FakeAnthropic) -> None:
    with (
        anthropic.Anthropic(api_key=KEY, base_url=fake.url, max_retries=0) as client,
        client.messages.stream(**body()) as stream,
    ):
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text == "one two three four five"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 5
    assert fake.stream_requests == 1


def test_sse_wire_format_has_event_and_data_lines(fake: FakeAnthropic) -> None:
    response = post(fake, body(stream=True))
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/event-stream")
    events = sse_events(response.text)
    names = [name for name, _ in events]
    assert names[:3] == ["message_start", "content_block_start", "ping"]
    assert names[-3:] == ["content_block_stop", "message_delta", "message_stop"]
    assert all(payload["type"] == name for name, payload in events)
    deltas = [p["delta"] for n, p in events if n == "content_block_delta"]
    assert all(d["type"] == "text_delta" for d in deltas)
    assert "".join(d["text"] for d in deltas) == "one two three four five"
    message_delta = dict(events)["message_delta"]
    assert message_delta["delta"]["stop_reason"] == "end_turn"
    assert message_delta["usage"]["output_tokens"] == 5


def test_max_tokens_cuts_the_answer(fake: FakeAnthropic) -> None:
    reply = post(fake, body(max_tokens=2)).json()
    assert reply["content"][0]["text"] == "one two "
    assert reply["stop_reason"] == "max_tokens"
    assert reply["usage"]["output_tokens"] == 2


def test_stop_sequence_ends_the_answer_before_it(fake: FakeAnthropic) -> None:
    reply = post(fake, body(stop_sequences=["three"])).json()
    assert reply["content"][0]["text"] == "one two "
    assert reply["stop_reason"] == "stop_sequence"
    assert reply["stop_sequence"] == "three"


@pytest.mark.parametrize(
    ("payload", "fragment"),
    [
        (body(max_tokens=None), "max_tokens: Field required"),
        (body(messages=[]), "at least one message"),
        (
            body(messages=[{"role": "system", "content": "x"}, {"role": "user", "content": "hi"}]),
            'Unexpected role "system"',
        ),
        (
            body(messages=[{"role": "assistant", "content": "hi"}]),
            'first message must use the "user" role',
        ),
        (
            body(messages=[{"role": "user", "content": "a"}, {"role": "user", "content": "b"}]),
            "roles must alternate",
        ),
        (body(messages=[{"role": "user", "content": ""}]), "must be non-empty"),
        (body(temperature=1.5), "temperature"),
        (body(stop_sequences=["  "]), "stop_sequences"),
        (body(top_logprobs=3), "Extra inputs are not permitted"),
        # issue 13 review: what current Claude models and the Messages API refuse
        (body(temperature=0.5, top_p=0.9), "`temperature` and `top_p` cannot both be specified"),
        (
            body(output_config={"format": {"type": "json_schema", "schema": {
                "type": "object", "additionalProperties": True}}}),
            "'additionalProperties' must be explicitly set to false",
        ),
        (
            body(output_config={"format": {"type": "json_schema", "schema": {
                "type": "object", "additionalProperties": False,
                "properties": {"age": {"type": "integer", "minimum": 0}}}}}),
            "'minimum' is not supported",
        ),
        (
            body(tools=[{"name": "github.create_issue", "input_schema": {"type": "object"}}]),
            "String should match pattern",
        ),
        (
            body(tools=[{"name": "a", "input_schema": {"type": "object"}}] * 2),
            "Tool names must be unique",
        ),
        (body(tool_choice={"type": "any"}), "may only be specified while providing tools"),
        (
            body(messages=[
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "a", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "x"}]},
            ]),
            "must define tools",
        ),
        (
            body(tools=[{"name": "a", "input_schema": {"type": "object"}}], messages=[
                {"role": "user", "content": "q"},
                {"role": "assistant", "content": [{"type": "tool_use", "id": "c1", "name": "a", "input": {}}]},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": "c1", "content": "x"},
                                             {"type": "tool_result", "tool_use_id": "c9", "content": "y"}]},
            ]),
            "unexpected `tool_use_id` found in `tool_result` blocks: c9",
        ),
        (
            body(
                messages=[{"role": "user", "content": "a"}, {"role": "assistant", "content": "b "}]
            ),
            "trailing whitespace",
        ),
    ],
)
def test_invalid_requests_get_a_400_like_the_real_api(
    fake: FakeAnthropic, payload: Any, fragment: str
) -> None:
    response = post(fake, payload)
    assert response.status_code == 400, response.text
    error = response.json()
    assert error["type"] == "error"
    assert error["error"]["type"] == "invalid_request_error"
    assert fragment in error["error"]["message"]


def test_a_non_claude_model_is_not_found(fake: FakeAnthropic) -> None:
    response = post(fake, body(model="Qwen/Qwen2.5-7B-Instruct"))
    assert response.status_code == 404
    assert response.json()["error"]["type"] == "not_found_error"


def test_wrong_key_gets_anthropics_401_shape(fake: FakeAnthropic) -> None:
    response = post(fake, body(), headers={**HEADERS, "Authorization": "Bearer sk-ant-wrong"})
    assert response.status_code == 401
    assert response.json()["type"] == "error"
    assert response.json()["error"]["type"] == "authentication_error"
    assert fake.auth_failures == 1
    # The real API also takes x-api-key.
    ok = post(fake, body(), headers={"x-api-key": KEY, "anthropic-version": "2026-10-21"})
    assert ok.status_code == 200


def test_missing_version_header_is_a_400(fake: FakeAnthropic) -> None:
    response = post(fake, body(), headers={"Authorization": f"Bearer {KEY}"})
    assert response.status_code == 400
    assert "anthropic-version" in response.json()["error"]["message"]


@pytest.mark.parametrize(
    ("status", "error_type", "has_retry_after"),
    [(429, "rate_limit_error", True), (500, "api_error", False), (529, "overloaded_error", True)],
)
def test_status_override(
    fake: FakeAnthropic, status: int, error_type: str, has_retry_after: bool
) -> None:
    fake.status = status
    response = post(fake, body())
    assert response.status_code == status
    assert response.json()["error"]["type"] == error_type
    assert ("retry-after" in response.headers) is has_retry_after
    assert fake.requests == 1


def test_status_override_for_a_number_of_requests(fake: FakeAnthropic) -> None:
    fake.status = 529
    fake.status_times = 1
    assert post(fake, body()).status_code == 529
    assert post(fake, body()).status_code == 200
    assert fake.requests == 2


def test_stream_error_event(fake: FakeAnthropic) -> None:
    fake.stream_error_after = 2
    events = sse_events(post(fake, body(stream=True)).text)
    names = [name for name, _ in events]
    assert names.count("content_block_delta") == 2
    assert names[-1] == "error" and "message_stop" not in names
    assert events[-1][1]["error"]["type"] == "overloaded_error"


def test_stream_cut_clean_ends_without_message_stop(fake: FakeAnthropic) -> None:
    fake.stream_cut_after = 1
    fake.stream_cut_mode = "clean"
    names = [name for name, _ in sse_events(post(fake, body(stream=True)).text)]
    assert names.count("content_block_delta") == 1
    assert "message_stop" not in names and "error" not in names


def test_stream_cut_drop_breaks_the_body(fake: FakeAnthropic) -> None:
    fake.stream_cut_after = 1
    with pytest.raises(httpx.RemoteProtocolError):
        post(fake, body(stream=True))


def test_malformed_reply_is_html(fake: FakeAnthropic) -> None:
    fake.malformed = True
    response = post(fake, body())
    assert response.status_code == 200
    assert response.headers["content-type"] == "text/html"


def test_counters_and_bodies_record_every_request(fake: FakeAnthropic) -> None:
    post(fake, body())
    post(fake, body(stream=True))
    post(fake, body(max_tokens=None))
    assert fake.requests == 3
    assert fake.stream_requests == 1
    assert len(fake.bodies) == 3
    assert "max_tokens" not in fake.last_body
