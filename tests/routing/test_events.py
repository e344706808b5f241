"""Every provider writes the same structured events (issue 11, item 11): `<name>_chat_completion`
(and `_failed`, `_stopped`), `routing_fallback`, breaker transitions, to `logs/gpuctl.jsonl` and
to the `-v` log on stderr, with no secret in either."""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from gpuctl.config import load_settings
from gpuctl.routing.manager import BackendManager
from gpuctl.state import UsageRecord, open_state
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit, closed_port_url
from tests.support.fake_provider import FakeProvider, fake_slot
from tests.support.routing import KEY, MESSAGES

VLLM_KEY = "vllm-secret-key-0123456789"
VAST_KEY = "f" * 64
SAME_FIELDS = {"event", "timestamp", "provider", "model", "endpoint", "tokens", "prompt_tokens", "completion_tokens",
               "estimated", "latency_s", "cost", "total_requests", "fallback"}


def events(home: Path) -> list[dict[str, Any]]:
    path = home / "logs" / "gpuctl.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()] if path.exists() else []


@pytest.fixture
def qwen() -> Iterator[FakeVLLM]:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", answer="Hi from vLLM", api_key=VLLM_KEY) as fake:
        yield fake


def _env(provider: str, home: Path, qwen: FakeVLLM, claude: FakeAnthropic) -> dict[str, str]:
    if provider == "modal":
        return {"MODAL_WEB_URL": qwen.url, "GPUCTL_MODAL_API_KEY": VLLM_KEY}
    if provider == "endpoint":
        return {"GPUCTL_ENDPOINT_URL": qwen.url, "GPUCTL_ENDPOINT_API_KEY": VLLM_KEY}
    if provider == "vastai":
        with open_state(home) as st:
            row = st.add_instance_intent(provider="vastai", label="gpuctl:test", profile=None, gpu="RTX 3090",
                                         dph="0.2")
            st.update_instance(row, remote_id="42", status="ready", endpoint=qwen.url)
        return {"VASTAI_API_KEY": VAST_KEY, "GPUCTL_VASTAI_VLLM_API_KEY": VLLM_KEY}
    return {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": claude.url}


@pytest.mark.parametrize("provider", ["modal", "vastai", "anthropic", "endpoint"])
def test_every_provider_writes_the_same_chat_completion_event(cli, gpuctl_home: Path, qwen: FakeVLLM,  # type: ignore[no-untyped-def]
                                                              claude: FakeAnthropic, provider: str) -> None:
    env = {"GPUCTL_PRIORITY": provider, **_env(provider, gpuctl_home, qwen, claude)}
    result = cli("-v", "chat", "--no-stream", "hello", env=env)
    assert_exit(result, 0)
    (done,) = [e for e in events(gpuctl_home) if e["event"].endswith("_chat_completion")]
    assert done["event"] == f"{provider}_chat_completion" and set(done) == SAME_FIELDS
    assert done["provider"] == provider and done["tokens"] > 0 and done["total_requests"] == 1
    assert f"{provider}_chat_completion" in result.stderr  # the -v log says the same
    for secret in (KEY, VLLM_KEY, VAST_KEY):
        assert secret not in (gpuctl_home / "logs" / "gpuctl.jsonl").read_text() and secret not in result.stderr


def test_a_chat_completion_event_says_when_its_tokens_were_estimated(cli, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    """Review B, finding 18: a stream without usage is counted from the text, and the event says
    so (`estimated`), as the ledger row and the stats line do."""
    with FakeVLLM(model="llama-local", answer="Hello from endpoint", usage_in_stream=False) as bare:
        result = cli("chat", "hello", env={"GPUCTL_PRIORITY": "endpoint", "GPUCTL_ENDPOINT_URL": bare.url})
    assert_exit(result, 0)
    (done,) = [e for e in events(gpuctl_home) if e["event"] == "endpoint_chat_completion"]
    assert done["estimated"] is True and done["completion_tokens"] > 0
    with open_state(gpuctl_home) as st:
        (row,) = st.usage_since(0)
    assert row.tokens_estimated


def test_a_fallback_writes_the_failure_the_breaker_and_the_fallback(cli, gpuctl_home: Path,  # type: ignore[no-untyped-def]
                                                                    claude: FakeAnthropic) -> None:
    env = {"GPUCTL_PRIORITY": "modal,anthropic", "MODAL_WEB_URL": closed_port_url(), "ANTHROPIC_API_KEY": KEY,
           "ANTHROPIC_BASE_URL": claude.url}
    with open_state(gpuctl_home) as st:  # modal answered a minute ago: warm, so no cold probe first
        st.record_usage(UsageRecord(ts=time.time() - 60, provider="modal", endpoint=env["MODAL_WEB_URL"] + "/v1"))
    env_file = gpuctl_home / "config.toml"
    env_file.parent.mkdir(parents=True, exist_ok=True)
    env_file.write_text("[routing]\nfailure_threshold = 1\n")
    result = cli("-v", "chat", "--no-stream", "hello", env=env)
    assert_exit(result, 0)
    names = [e["event"] for e in events(gpuctl_home)]
    assert names[:4] == ["breaker_opened", "modal_chat_completion_failed", "anthropic_chat_completion",
                         "routing_fallback"], names
    opened, failed, answered, fallback = events(gpuctl_home)[:4]
    assert failed["provider"] == "modal" and "connection refused" in failed["error"]
    assert opened["provider"] == "modal" and opened["failures"] == 1
    assert fallback["provider"] == "anthropic" and fallback["passed_over"] == ["modal"]
    assert answered["fallback"] == fallback["reason"] and "modal: " in fallback["reason"]
    for name in ("modal_chat_completion_failed", "breaker_opened", "routing_fallback"):
        assert name in result.stderr
    assert KEY not in result.stderr and KEY not in (gpuctl_home / "logs" / "gpuctl.jsonl").read_text()


def test_breaker_transitions_are_events(gpuctl_home: Path, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.INFO, logger="gpuctl.events")
    now = [1_000_000.0]
    gpu, api = FakeProvider("gpu"), FakeProvider("api")
    settings = load_settings(env={}, home=gpuctl_home, flags={"routing.failure_threshold": 1, "routing.cooldown_s": 30.0})

    def ask() -> str:
        async def go() -> str:
            async with BackendManager(settings, slots=[fake_slot(gpu), fake_slot(api)], clock=lambda: now[0]) as m:
                return (await m.chat_completion(MESSAGES)).provider
        return asyncio.run(go())

    gpu.fail("connect")
    assert ask() == "api"
    gpu.heal()
    now[0] += 31  # cooldown over: the next request probes, answers, and closes it
    assert ask() == "gpu"
    seen = [(r.gpuctl_event, r.gpuctl_fields.get("provider")) for r in caplog.records  # type: ignore[attr-defined]
            if r.gpuctl_event.startswith("breaker_")]  # type: ignore[attr-defined]
    assert seen == [("breaker_opened", "gpu"), ("breaker_half_open", "gpu"), ("breaker_closed", "gpu")]
