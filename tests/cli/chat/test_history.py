"""`gpuctl chat --list` (issue 11, item 19): the stored conversations with their id, date, first
line, provider and tokens, so `--conversation ID` can be used; `--json` too."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuctl.state import open_state
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit


@pytest.fixture
def vllm(monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVLLM]:
    with FakeVLLM(model="fake-model", answer="Four words of answer.") as fake:
        monkeypatch.setenv("MODAL_WEB_URL", fake.url)
        monkeypatch.setenv("MODAL_MODEL", "fake-model")
        yield fake


def test_list_shows_what_resume_needs(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("chat", "What is vLLM?\nAnd what is Modal?"), 0)
    assert_exit(cli("chat", input="first question\nsecond question\n/exit\n"), 0)
    result = cli("chat", "--list")
    assert_exit(result, 0)
    rows = result.stdout.splitlines()
    assert rows[0].split() == ["id", "last", "active", "messages", "provider", "tokens", "first", "line"]
    newest, oldest = rows[1].split(), rows[2].split()
    assert newest[0] == "2" and newest[3:5] == ["4", "modal"] and newest[-2:] == ["first", "question"]
    assert oldest[0] == "1" and oldest[3:5] == ["2", "modal"] and oldest[-3:] == ["What", "is", "vLLM?"]  # line 1
    assert int(newest[5].replace(",", "")) > int(oldest[5].replace(",", "")) > 0  # the second carried history
    assert "gpuctl chat --conversation ID" in result.stderr


def test_list_json_and_resume_by_its_id(cli, vllm: FakeVLLM, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("chat", "remember the word teal"), 0)
    doc = json.loads(cli("--json", "chat", "--list").stdout)
    assert doc["command"] == "chat" and doc["data"]["total"] == 1
    (conv,) = doc["data"]["conversations"]
    assert conv["first_line"] == "remember the word teal" and conv["provider"] == "modal" and conv["messages"] == 2
    assert conv["tokens"] > 0 and conv["updated_at"].endswith("+00:00")
    assert_exit(cli("chat", "--conversation", str(conv["id"]), "which word?"), 0)
    with open_state(gpuctl_home) as st:
        assert [m.content for m in st.messages(conv["id"])][:1] == ["remember the word teal"]
        assert len(st.messages(conv["id"])) == 4
        answer = st.messages(conv["id"])[1]
        assert answer.completion_tokens == 4 and answer.prompt_tokens  # the tokens each answer used


def test_list_limit_says_how_many_more(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    for q in ("one", "two", "three"):
        assert_exit(cli("chat", q), 0)
    result = cli("chat", "--list", "--limit", "2")
    assert [line.split()[0] for line in result.stdout.splitlines()[1:]] == ["3", "2"]
    assert "1 older: --list --limit 0 shows all." in result.stderr
    assert len(json.loads(cli("--json", "chat", "--list", "--limit", "0").stdout)["data"]["conversations"]) == 3


def test_list_when_there_is_nothing_and_wrong_combinations(cli) -> None:  # type: ignore[no-untyped-def]
    empty = cli("chat", "--list")
    assert_exit(empty, 0)
    assert empty.stdout == "" and "No stored conversations yet" in empty.stderr
    assert_exit(cli("chat", "--list", "a prompt"), 2)
    assert_exit(cli("chat", "--list", "--limit", "-1"), 2)
