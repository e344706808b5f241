"""`gpuctl chat` and the whole OpenAI request (issue 13): a tool call it receives is shown (name
and arguments), `--json-schema FILE` asks for JSON output (also in --json mode), and usage a
server did not report is marked estimated on the stats line and in --json (issue 11 item 15)."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from anthropic import transform_schema

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit

KEY = "sk-ant-fake-key"
SCHEMA = {"title": "Weather", "type": "object", "properties": {"city": {"type": "string"}, "sunny": {"type": "boolean"}}}


@pytest.fixture
def vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVLLM]:
    with FakeVLLM(model="fake-model", tool_call_parser="hermes") as fake:
        monkeypatch.setenv("MODAL_WEB_URL", fake.url)
        monkeypatch.setenv("MODAL_MODEL", "fake-model")
        monkeypatch.setenv("GPUCTL_PRIORITY", "modal")
        yield fake


@pytest.fixture
def schema_file(tmp_path: Path) -> Path:
    path = tmp_path / "weather.json"
    path.write_text(json.dumps(SCHEMA))
    return path


def summary(stdout: str) -> dict[str, Any]:
    events = [json.loads(line) for line in stdout.splitlines()]
    assert events[-1]["type"] == "summary"
    return events[-1]


def test_json_schema_asks_for_json_and_the_answer_parses(cli, vllm: FakeVLLM, schema_file: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", "weather in Paris?", "--json-schema", str(schema_file))
    assert_exit(result, 0)
    assert set(json.loads(result.stdout)) == {"city", "sunny"}
    sent = [r.json() for r in vllm.requests if r.path == "/v1/chat/completions"][-1]
    assert sent["response_format"] == {"type": "json_schema", "json_schema": {"name": "Weather", "schema": SCHEMA}}


def test_json_schema_in_json_mode_on_anthropic(cli, monkeypatch: pytest.MonkeyPatch, schema_file: Path) -> None:  # type: ignore[no-untyped-def]
    with FakeAnthropic(api_key=KEY) as claude:
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        monkeypatch.setenv("GPUCTL_PRIORITY", "anthropic")
        result = cli("--json", "chat", "weather?", "--json-schema", str(schema_file))
        assert_exit(result, 0)
        # The schema as the SDK's own structured-output path sends it (issue 13 review, finding 4).
        assert claude.last_body["output_config"]["format"]["schema"] == transform_schema(SCHEMA)
    assert set(json.loads(summary(result.stdout)["text"])) == {"city", "sunny"}


@pytest.mark.parametrize(("content", "words"), [("{not json", "is not JSON"), ("[1]", "JSON Schema object")])
def test_a_bad_schema_file_is_one_usage_error(cli, vllm: FakeVLLM, tmp_path: Path, content: str, words: str) -> None:  # type: ignore[no-untyped-def]
    bad = tmp_path / "bad.json"
    bad.write_text(content)
    result = cli("chat", "hi", "--json-schema", str(bad))
    assert_exit(result, 2)
    assert "--json-schema" in result.stderr and words in result.stderr and "Traceback" not in result.stderr
    assert cli("chat", "hi", "--json-schema", str(tmp_path / "missing.json")).exit_code == 2
    assert not [r for r in vllm.requests if r.path == "/v1/chat/completions"]  # nothing was asked


def test_a_tool_call_received_is_shown_not_hidden(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    # A server that calls a tool on its own (a default tool set): the chat shows the call.
    with FakeAnthropic(api_key=KEY) as claude:
        claude.tool_call = {"name": "get_weather", "input": {"city": "Paris"}}
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        monkeypatch.setenv("GPUCTL_PRIORITY", "anthropic")
        from gpuctl.chat import session

        original = session.ChatSession.request

        def with_tools(self: Any, question: str) -> Any:
            from dataclasses import replace

            request = original(self, question)
            tool = {"type": "function", "function": {"name": "get_weather", "parameters": {"type": "object"}}}
            return replace(request, params={**request.params, "tools": [tool]})

        monkeypatch.setattr(session.ChatSession, "request", with_tools)
        shown = cli("chat", "weather?")
        as_json = cli("--json", "chat", "weather?")
    assert_exit(shown, 0)
    assert 'tool call: get_weather({"city": "Paris"})' in shown.stdout
    assert_exit(as_json, 0)
    (call,) = summary(as_json.stdout)["tool_calls"]
    assert call["function"] == {"name": "get_weather", "arguments": '{"city": "Paris"}'} and call["id"]


def test_issue11_15_usage_a_server_did_not_send_is_marked_estimated(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    with FakeVLLM(model="local", usage_in_stream=False, answer="one two three four") as server:
        monkeypatch.setenv("GPUCTL_ENDPOINT_URL", server.url)
        monkeypatch.setenv("GPUCTL_PRIORITY", "endpoint")
        people = cli("chat", "count")
        machine = cli("--json", "chat", "count")
    assert_exit(people, 0)
    assert "(estimated)" in people.stderr and "~" in people.stderr
    assert_exit(machine, 0)
    usage = summary(machine.stdout)["usage"]
    assert usage["estimated"] is True and usage["completion_tokens"] > 0
