"""`gpuctl chat` through the real app (CliRunner) against the loopback fakes: one-shot, piped
REPL lines, slash commands, conversations, NDJSON, fallback, errors."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuctl.state import open_state
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit, closed_port_url

ANSWER = "Paged attention keeps the KV cache in blocks."
KEY = "sk-ant-fake-key"


@pytest.fixture
def vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVLLM]:
    with FakeVLLM(model="fake-model", answer=ANSWER) as fake:
        monkeypatch.setenv("MODAL_WEB_URL", fake.url)
        monkeypatch.setenv("MODAL_MODEL", "fake-model")
        monkeypatch.setenv("GPUCTL_PRIORITY", "modal")
        yield fake


@pytest.fixture
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY, reply_text="Claude answers instead.") as fake:
        yield fake


def use_claude(monkeypatch: pytest.MonkeyPatch, claude: FakeAnthropic, priority: str = "modal,anthropic") -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
    monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
    monkeypatch.setenv("GPUCTL_PRIORITY", priority)


def chat_bodies(fake: FakeVLLM) -> list[dict[str, Any]]:
    return [r.json() for r in fake.requests if r.path == "/v1/chat/completions"]


def stored(home: Path) -> list[Any]:
    with open_state(home) as st:
        conv = st.last_conversation()
        return st.messages(conv.id) if conv else []


def ndjson(text: str) -> list[dict[str, Any]]:
    lines = text.splitlines()
    assert lines, "no output"
    return [json.loads(line) for line in lines]  # every line must parse


# -------------------------------------------------------------- one-shot and pipes


def test_one_shot_streams_plain_text_and_stats_on_stderr(cli, vllm: FakeVLLM, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", "What is paged attention?")
    assert_exit(result, 0)
    assert result.stdout == ANSWER + "\n"
    assert "\x1b" not in result.stdout and "\x1b" not in result.stderr  # not a terminal: no control codes
    stats = result.stderr.strip().splitlines()[-1]
    assert stats.startswith("modal · fake-model · ") and "tok/s" in stats and "TTFT" in stats
    assert "$" in stats  # an estimated cost (Modal by GPU-seconds)
    body = chat_bodies(vllm)[-1]
    assert body["stream"] is True
    assert body["messages"] == [
        {"role": "system", "content": "You are a helpful assistant."},
        {"role": "user", "content": "What is paged attention?"},
    ]
    messages = stored(gpuctl_home)
    assert [(m.role, m.content, m.partial) for m in messages] == [
        ("user", "What is paged attention?", False), ("assistant", ANSWER, False)]
    assert messages[1].provider == "modal" and messages[1].model == "fake-model"


def test_piped_slash_lines_are_a_repl(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", input="hello\n/cost\n/exit\n")
    assert_exit(result, 0)
    out = result.stdout.splitlines()
    assert out[0] == ANSWER
    assert out[1].startswith("Session spend: ") and "estimated for 1 answer" in out[1] and "modal: 1 answer" in out[1]
    assert len(chat_bodies(vllm)) == 1  # "/cost" and "/exit" were commands, not questions


def test_piped_text_without_commands_is_one_prompt(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", input="first line\n/usr/bin is a path, not a command\n")
    assert_exit(result, 0)
    bodies = chat_bodies(vllm)
    assert len(bodies) == 1
    assert bodies[0]["messages"][-1]["content"] == "first line\n/usr/bin is a path, not a command"


def test_piped_stdin_goes_before_the_prompt_argument(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("chat", "Summarise this.", input="some document\n"), 0)
    assert chat_bodies(vllm)[-1]["messages"][-1]["content"] == "some document\n\nSummarise this."


def test_empty_stdin_is_a_usage_error(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", input="")
    assert_exit(result, 2)
    assert "stdin is empty" in result.stderr and not chat_bodies(vllm)


def test_prompt_file(cli, vllm: FakeVLLM, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    prompt = tmp_path / "prompt.txt"
    prompt.write_text("Explain KV caches.\nBriefly.\n", encoding="utf-8")
    assert_exit(cli("chat", "-f", str(prompt)), 0)
    assert chat_bodies(vllm)[-1]["messages"][-1]["content"] == "Explain KV caches.\nBriefly.\n"
    missing = cli("chat", "-f", str(tmp_path / "nope.txt"))
    assert_exit(missing, 2)
    assert missing.stderr.count("Error:") == 1 and "does not exist" in missing.stderr


def test_flags_reach_the_request(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("chat", "hi", "--temperature", "0.2", "--max-tokens", "64", "--system", "Be terse."), 0)
    body = chat_bodies(vllm)[-1]
    assert body["temperature"] == 0.2 and body["max_tokens"] == 64
    assert body["messages"][0] == {"role": "system", "content": "Be terse."}


def test_no_stream_uses_a_plain_completion(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", "hi", "--no-stream")
    assert_exit(result, 0)
    assert result.stdout == ANSWER + "\n"
    assert "stream" not in chat_bodies(vllm)[-1]


def test_triple_quotes_make_one_multiline_question(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("chat", input='"""\nline one\n\nline two\n"""\n/exit\n'), 0)
    bodies = chat_bodies(vllm)
    assert len(bodies) == 1 and bodies[0]["messages"][-1]["content"] == "line one\n\nline two"


# -------------------------------------------------------------- --json (NDJSON)


def test_json_is_ndjson_ending_with_a_summary(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", "hi", "--json")  # a global option after the subcommand
    assert_exit(result, 0)
    events = ndjson(result.stdout)
    chunks, summary = events[:-1], events[-1]
    assert chunks and all(e["type"] == "chunk" for e in chunks)
    assert summary["type"] == "summary" and summary["provider"] == "modal" and summary["model"] == "fake-model"
    assert "".join(c["text"] for c in chunks) == summary["text"] == ANSWER
    assert summary["usage"]["completion_tokens"] == len(ANSWER.split()) and summary["usage"]["total_tokens"] > 0
    assert isinstance(summary["cost"], str) and float(summary["cost"]) > 0
    assert summary["fallback_reason"] is None and isinstance(summary["conversation_id"], int)
    assert summary["ttft_s"] is not None and summary["latency_s"] >= summary["ttft_s"]
    assert result.stderr == ""  # nothing for people in --json mode


def test_json_error_is_the_last_line_with_the_exit_code(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--json", "chat", "hi")
    assert_exit(result, 3)
    last = ndjson(result.stdout)[-1]
    assert last["type"] == "error" and last["error"] == "NoProviderError" and last["exit_code"] == 3


def test_json_repl_lines(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", "--json", input="hello\n/cost\n/exit\n")
    assert_exit(result, 0)
    events = ndjson(result.stdout)
    assert [e["type"] for e in events[-2:]] == ["summary", "cost"]  # /exit itself prints nothing
    assert events[-1]["answers"] == 1 and events[-1]["providers"]["modal"]["answers"] == 1


# -------------------------------------------------------------- errors and fallback


def test_no_provider_is_one_line_exit_3(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", input="hello\n/exit\n")
    assert_exit(result, 3)
    lines = result.stderr.strip().splitlines()
    assert lines[0] == "Error: no provider is configured" and lines[1].startswith("Hint: set MODAL_WEB_URL")
    assert len(lines) == 2


def test_fallback_is_said_on_stderr(cli, claude: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MODAL_WEB_URL", closed_port_url())
    use_claude(monkeypatch, claude)
    result = cli("chat", "hi")
    assert_exit(result, 0)
    assert result.stdout == "Claude answers instead.\n"
    assert result.stderr.splitlines()[0].startswith("anthropic · claude-haiku-4-5 · ")
    assert any(line.startswith("fell back from modal: ") for line in result.stderr.splitlines())


def test_all_failed_in_the_repl_keeps_going(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("MODAL_WEB_URL", closed_port_url())
    monkeypatch.setenv("GPUCTL_PRIORITY", "modal")
    result = cli("chat", input="hello\n/cost\n/exit\n")
    assert_exit(result, 0)
    assert "Error: no provider could answer: modal: " in result.stderr
    assert "Session spend: $0.00 (no answers yet)" in result.stdout


def test_broken_stream_is_reported_stored_partial_and_the_repl_goes_on(  # type: ignore[no-untyped-def]
        cli, vllm: FakeVLLM, gpuctl_home: Path) -> None:
    vllm.cut_after = 3  # role event + two text events, then the socket closes
    result = cli("chat", input="hello\n/cost\n/exit\n")
    assert_exit(result, 0)
    assert "broke off" in result.stderr and "not re-sent" in result.stderr and "/retry" in result.stderr
    assert result.stdout.startswith("Paged attention")
    assert "Session spend" in result.stdout
    assert len(chat_bodies(vllm)) == 1  # never silently re-sent
    answer = stored(gpuctl_home)[-1]
    assert answer.role == "assistant" and answer.partial and answer.content == "Paged attention"


def test_broken_stream_one_shot_exits_1(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    vllm.cut_after = 3
    result = cli("chat", "hello")
    assert_exit(result, 1)
    assert result.stderr.count("Error:") == 1 and "broke off" in result.stderr


# -------------------------------------------------------------- conversations


def test_continue_resumes_the_last_conversation(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("chat", "first question", "--system", "Be kind."), 0)
    assert_exit(cli("chat", "unrelated new chat"), 0)
    # the last conversation is the second one
    assert_exit(cli("chat", "--continue", "follow-up"), 0)
    messages = chat_bodies(vllm)[-1]["messages"]
    assert [m["content"] for m in messages[1:]] == ["unrelated new chat", ANSWER, "follow-up"]
    # --conversation picks the first, with its stored system prompt
    assert_exit(cli("chat", "--conversation", "1", "again"), 0)
    messages = chat_bodies(vllm)[-1]["messages"]
    assert messages == [
        {"role": "system", "content": "Be kind."},
        {"role": "user", "content": "first question"},
        {"role": "assistant", "content": ANSWER},
        {"role": "user", "content": "again"},
    ]


def test_continue_with_a_new_system_prompt_updates_it(cli, vllm: FakeVLLM, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("chat", "one"), 0)
    assert_exit(cli("chat", "-c", "--system", "Pirate voice.", "two"), 0)
    assert_exit(cli("chat", "-c", "three"), 0)
    assert chat_bodies(vllm)[-1]["messages"][0] == {"role": "system", "content": "Pirate voice."}
    assert len(stored(gpuctl_home)) == 6


def test_unknown_conversation_is_exit_2(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", "--conversation", "42", "hi")
    assert_exit(result, 2)
    assert result.stderr.startswith("Error: no conversation 42") and not chat_bodies(vllm)


def test_continue_with_nothing_to_continue_starts_fresh(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", "--continue", "hi")
    assert_exit(result, 0)
    assert "No earlier conversation" in result.stderr
    assert len(chat_bodies(vllm)[-1]["messages"]) == 2


# -------------------------------------------------------------- slash commands


def test_system_command_changes_the_system_prompt(cli, vllm: FakeVLLM, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", input="/system Answer in French.\nbonjour\n/system\n/exit\n")
    assert_exit(result, 0)
    assert chat_bodies(vllm)[-1]["messages"][0] == {"role": "system", "content": "Answer in French."}
    assert "System prompt: Answer in French." in result.stdout
    with open_state(gpuctl_home) as st:
        conv = st.last_conversation()
        assert conv is not None and conv.system_prompt == "Answer in French."


def test_provider_command_switches_and_validates(  # type: ignore[no-untyped-def]
        cli, vllm: FakeVLLM, claude: FakeAnthropic, monkeypatch: pytest.MonkeyPatch) -> None:
    use_claude(monkeypatch, claude)
    result = cli("chat", input="/provider anthropic\nq1\n/provider bogus\n/provider auto\nq2\n/provider\n/exit\n")
    assert_exit(result, 0)
    assert result.stdout.startswith("Claude answers instead.\n" + ANSWER + "\n")
    assert "Provider: auto" in result.stdout
    assert "unknown provider 'bogus'" in result.stderr
    assert claude.requests + claude.stream_requests >= 1 and len(chat_bodies(vllm)) == 1


def test_retry_replaces_the_last_answer(cli, vllm: FakeVLLM, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", input="q1\nq2\n/retry\n/exit\n")
    assert_exit(result, 0)
    bodies = chat_bodies(vllm)
    assert len(bodies) == 3
    assert bodies[2]["messages"] == bodies[1]["messages"]  # the same question, same context
    assert [m.content for m in stored(gpuctl_home)] == ["q1", ANSWER, "q2", ANSWER]


def test_retry_after_a_failure_asks_again(cli, vllm: FakeVLLM, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    vllm.fail(500, times=1, paths=["/v1/chat/completions"])
    result = cli("chat", input="/retry\nq1\n/retry\n/exit\n")
    assert_exit(result, 0)
    assert "nothing to retry yet" in result.stderr
    assert "Error: no provider could answer" in result.stderr
    assert result.stdout == ANSWER + "\n"
    assert [m.content for m in stored(gpuctl_home)] == ["q1", ANSWER]


def test_save_markdown_and_json(cli, vllm: FakeVLLM, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    md, js = tmp_path / "t.md", tmp_path / "t.json"
    md.write_text("old", encoding="utf-8")
    result = cli("chat", input=f"hello\n/save {md}\n/save! {md}\n/save {js}\n/save notes.txt\n/exit\n")
    assert_exit(result, 0)
    assert f"{md} already exists: not overwritten" in result.stderr and f"/save! {md}" in result.stderr
    text = md.read_text(encoding="utf-8")  # /save! replaced it whole
    assert text.startswith("# gpuctl chat — conversation 1")
    assert "## You\n\nhello" in text and f"## Assistant (modal · fake-model)\n\n{ANSWER}" in text
    doc = json.loads(js.read_text(encoding="utf-8"))
    assert doc["conversation_id"] == 1 and doc["system_prompt"] == "You are a helpful assistant."
    assert [(m["role"], m["content"], m["partial"]) for m in doc["messages"]] == [
        ("user", "hello", False), ("assistant", ANSWER, False)]
    assert "use a .md or .json file name" in result.stderr
    assert not list(tmp_path.glob(".t.*"))  # no temp files left behind


def test_reset_help_and_unknown_commands(cli, vllm: FakeVLLM, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", input="q1\n/reset\nq2\n/help\n/frobnicate\n/exit\n")
    assert_exit(result, 0)
    assert len(chat_bodies(vllm)[-1]["messages"]) == 2  # after /reset the model sees only q2
    assert "/retry" in result.stdout and "/save FILE" in result.stdout
    assert "Unknown command /frobnicate. Type /help for the list." in result.stderr
    with open_state(gpuctl_home) as st:
        assert st.get_conversation(1) is not None and len(st.messages(1)) == 2  # kept
        assert len(st.messages(2)) == 2


def test_cost_sums_answers_per_provider(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", "--json", input="a\nb\n/cost\n/exit\n")
    assert_exit(result, 0)
    events = ndjson(result.stdout)
    summaries = [e for e in events if e["type"] == "summary"]
    cost = events[-1]
    assert cost["type"] == "cost" and cost["answers"] == 2
    assert cost["providers"]["modal"]["completion_tokens"] == sum(s["usage"]["completion_tokens"] for s in summaries)
    from decimal import Decimal

    # Each amount is rounded to 7 places in --json: the total may differ by the rounding only.
    assert abs(Decimal(cost["cost"]) - sum(Decimal(s["cost"]) for s in summaries)) <= Decimal("1E-7")


def test_double_slash_sends_a_question_starting_with_slash(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("chat", input="//etc/hosts: what is it?\n/exit\n"), 0)
    assert chat_bodies(vllm)[-1]["messages"][-1]["content"] == "/etc/hosts: what is it?"


def test_a_pasted_line_that_looks_like_a_command_stays_in_one_prompt(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    text = "Review this shell session:\n$ ls\n/save output to a file\nwhy did it fail?\n"
    result = cli("chat", input=text)
    assert_exit(result, 0)
    assert vllm.hits("/v1/chat/completions") == 1  # one question, not three
    sent = vllm.requests[-1].json()["messages"][-1]["content"]
    assert "/save output to a file" in sent
