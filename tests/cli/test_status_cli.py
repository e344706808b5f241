"""`gpuctl status` through the real app against loopback fakes (issue 4's done-when)."""

from __future__ import annotations

import json
from collections.abc import Iterator

import pytest

from gpuctl.ops.status import watch_status
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit, closed_port_url, settings_for

KEY = "sk-ant-fake-key"


@pytest.fixture
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY) as fake:
        yield fake


def test_status_modal_down_anthropic_answers(cli, claude: FakeAnthropic) -> None:
    env = {"MODAL_WEB_URL": closed_port_url(), "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": claude.url}
    result = cli("status", "--json", env=env)
    assert_exit(result, 0)
    doc = json.loads(result.stdout)
    data = doc["data"]
    assert data["provider"] == "anthropic" and data["status"] == "ready"
    rows = {p["provider"]: p for p in data["providers"]}
    assert rows["modal"]["status"] == "unhealthy"
    assert "modal" in data["reason"]
    assert KEY not in result.stdout and KEY not in result.stderr


def test_status_modal_ready_shows_endpoint_and_model(cli) -> None:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct") as vllm:
        url = vllm.url
        result = cli("status", "--json", "--deep", env={"MODAL_WEB_URL": url})
    assert_exit(result, 0)
    data = json.loads(result.stdout)["data"]
    assert data["provider"] == "modal" and data["status"] == "ready"
    assert data["endpoint"] == url + "/v1"
    modal = data["providers"][0]
    assert "Qwen/Qwen2.5-7B-Instruct" in modal["models"]


def test_status_human_table(cli, claude: FakeAnthropic) -> None:
    env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": claude.url}
    result = cli("status", env=env)
    assert_exit(result, 0)
    assert "anthropic" in result.stdout and "Answering now" in result.stdout


def test_status_no_provider_exit_3(cli) -> None:
    result = cli("status")
    assert_exit(result, 3)
    assert "no provider is configured" in result.stderr and "ANTHROPIC_API_KEY" in result.stderr


def test_watch_refreshes_on_the_interval(gpuctl_home, claude: FakeAnthropic) -> None:
    settings = settings_for(gpuctl_home, ANTHROPIC_API_KEY=KEY, ANTHROPIC_BASE_URL=claude.url)
    seen, slept = [], []
    watch_status(settings, deep=False, render=seen.append, sleep=slept.append, rounds=3)
    assert len(seen) == 3 and slept == [60.0, 60.0]
    assert all(r.as_dict()["provider"] == "anthropic" for r in seen)  # typed reports, rendered by cli/


def test_status_does_not_keep_an_idle_modal_awake(cli) -> None:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct") as vllm:
        env = {"MODAL_WEB_URL": vllm.url}
        first = json.loads(cli("status", "--json", env=env).stdout)["data"]
        assert first["providers"][0]["status"] == "ready" and vllm.hits("/health") == 1  # once, to know
        again = json.loads(cli("status", "--json", env=env).stdout)["data"]
        assert vllm.hits("/health") == 1  # not re-probed: a probe would keep the GPU billing
        assert again["providers"][0]["status"] == "ready" and "not re-probed" in again["providers"][0]["detail"]
        assert again["providers"][0]["models"] == ["Qwen/Qwen2.5-7B-Instruct"]
        woken = json.loads(cli("status", "--json", "--wake", env=env).stdout)["data"]
        assert vllm.hits("/health") == 2 and woken["providers"][0]["status"] == "ready"


def test_status_exits_1_when_nothing_can_answer(cli) -> None:
    result = cli("status", "--json", env={"MODAL_WEB_URL": closed_port_url()})
    assert_exit(result, 1)
    doc = json.loads(result.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 1 and doc["data"]["provider"] is None
    again = cli("status", env={"MODAL_WEB_URL": closed_port_url()})
    assert_exit(again, 1)  # a dead endpoint is probed again (it starts no GPU), not shown as "cold"
    assert "unhealthy" in again.stdout


def test_an_open_breaker_shows_its_label_in_the_table_and_why_below(cli, gpuctl_home, claude: FakeAnthropic) -> None:
    import time

    from gpuctl.state import BreakerRecord, open_state
    from tests.support.routing import breaker_key

    now = time.time()
    env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": claude.url}
    with open_state(gpuctl_home) as st:
        st.put_breaker(BreakerRecord(breaker_key(gpuctl_home, "anthropic", **env), "open", 3, now - 10, now + 600,
                                     "overloaded (529)"))
    result = cli("status", env=env)
    assert_exit(result, 1)  # nothing else can answer
    cells = next(line.split() for line in result.stdout.splitlines() if line.split()[:2] == ["anthropic", "ready"])
    assert cells[2] == "open" and "until" not in cells  # the table says "open"; why is below
    assert "anthropic: breaker open until" in result.stdout and "after 3 failures (overloaded (529))" in result.stdout
    doc = json.loads(cli("status", "--json", env=env).stdout)
    assert doc["data"]["providers"][2]["breaker"].startswith("open: breaker open until ")


def test_chat_and_status_agree_that_an_open_breaker_is_not_a_refused_key(cli, gpuctl_home) -> None:  # type: ignore[no-untyped-def]
    """Review B, finding 16: modal's breaker open (it was down) and a wrong Anthropic key: chat
    said "the key was refused: modal: breaker open…" (exit 3) where status said 1. One rule now:
    exit 3 only when each provider that cannot answer refused its key."""
    import time

    from gpuctl.state import BreakerRecord, open_state
    from tests.support.routing import breaker_key

    now = time.time()
    with FakeAnthropic(api_key="sk-ant-the-right-key") as claude:
        env = {"MODAL_WEB_URL": closed_port_url(), "ANTHROPIC_API_KEY": "sk-ant-a-wrong-key",
               "ANTHROPIC_BASE_URL": claude.url, "GPUCTL_PRIORITY": "modal,anthropic"}
        with open_state(gpuctl_home) as st:
            st.put_breaker(BreakerRecord(breaker_key(gpuctl_home, "modal", **env), "open", 3, now - 10, now + 600,
                                         "connection refused"))
        chat = cli("chat", "--no-stream", "hello", env=env)
        status = cli("status", "--deep", env=env)
        alone = cli("chat", "--no-stream", "hello", env={**env, "GPUCTL_PRIORITY": "anthropic"})
    assert_exit(chat, 1)
    assert "no provider could answer: modal: breaker open" in chat.stderr and "the key was refused" not in chat.stderr
    assert "profile.;" not in chat.stderr and "profile. A breaker closes" in chat.stderr
    assert_exit(status, 1)
    assert_exit(alone, 3)  # the one provider tried refused its key: a setting to fix
    assert "the key was refused" in alone.stderr
