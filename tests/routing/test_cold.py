"""Scale-to-zero through the real VLLMEndpoint: a cold Modal is waking up, not down; the next
provider answers meanwhile, and a cold start that never ends is a failure."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gpuctl.config import load_settings
from gpuctl.errors import AllProvidersFailedError
from gpuctl.routing.manager import BackendManager
from gpuctl.state import open_state
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support.routing import MESSAGES, ask, breaker_key, manager, status_of


def test_cold_modal_falls_back_without_counting_a_failure(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    vllm.slow(2.0, paths=["/health"])
    m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, flags={"routing.cold_probe_timeout_s": 0.2})
    response = ask(m)
    assert response.provider == "anthropic"
    assert "waking up" in (response.fallback_reason or "")
    assert vllm.hits("/v1/chat/completions") == 0
    with open_state(gpuctl_home) as st:
        assert st.get_breaker(breaker_key(gpuctl_home, "modal", MODAL_WEB_URL=vllm.url)).failures == 0


def test_waking_modal_is_probed_once_per_grace_period(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    vllm.slow(2.0, paths=["/health"])
    now = [1_000_000.0]

    def one() -> str:
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now,
                    flags={"routing.cold_probe_timeout_s": 0.2})
        response = ask(m)
        return f"{response.provider}|{response.fallback_reason}"

    first = one()
    assert first.startswith("anthropic|") and "waking up" in first
    assert vllm.hits("/health") == 1
    now[0] += 10
    second = one()
    assert "still waking up (cold start began 10s ago)" in second
    assert vllm.hits("/health") == 1  # no second probe within the grace period
    vllm.reset_faults()
    now[0] += 60
    assert one().startswith("modal|")  # probed again after the grace: warm now
    assert vllm.hits("/health") == 2


def test_modal_alone_timing_out_cold_does_not_open_the_breaker(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    vllm.slow(2.0, paths=["/v1/chat/completions"])
    settings = load_settings(env={"MODAL_WEB_URL": vllm.url, "GPUCTL_PRIORITY": "modal"}, home=gpuctl_home,
                             flags={"routing.first_byte_timeout_s": 0.2})
    for _ in range(4):
        with pytest.raises(AllProvidersFailedError):
            ask(BackendManager(settings))
    with open_state(gpuctl_home) as st:
        key = breaker_key(gpuctl_home, "modal", MODAL_WEB_URL=vllm.url)
        assert st.get_breaker(key).failures == 0  # idle past its window: waking up, not down


@pytest.mark.parametrize("streaming", [False, True])
def test_a_waking_modal_answers_when_the_fallback_fails(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic,
                                                        streaming: bool) -> None:
    vllm.slow(1.0, paths=["/health"])  # waking: the short probe gets no answer
    claude.status = 529  # and the fallback is overloaded
    m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, flags={"routing.cold_probe_timeout_s": 0.2})

    async def go() -> tuple[str, str, str | None]:
        try:
            if streaming:
                stream = await m.chat_completion(MESSAGES, stream=True, max_tokens=64)
                text = "".join([c.text async for c in stream])
                return stream.provider or "", text, stream.fallback_reason
            response = await m.chat_completion(MESSAGES, max_tokens=64)
            return response.provider, response.text, response.fallback_reason
        finally:
            await m.aclose()

    provider, text, reason = asyncio.run(go())
    assert (provider, text) == ("modal", "Hi from vLLM")  # waited for the cold GPU instead of failing
    assert reason and "waking up" in reason and "anthropic" in reason


def test_a_503_that_never_ends_is_a_failure_not_a_cold_start(gpuctl_home: Path, vllm: FakeVLLM,
                                                            claude: FakeAnthropic) -> None:
    vllm.fail(503)
    now = [1_000_000.0]

    def one() -> str | None:
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now)
        return ask(m).fallback_reason

    assert "waking up" in (one() or "")
    now[0] += 20 * 60  # far past any cold start
    assert "still not answering" in (one() or "")
    with open_state(gpuctl_home) as st:
        assert st.get_breaker(breaker_key(gpuctl_home, "modal", MODAL_WEB_URL=vllm.url)).failures == 1


def test_status_names_the_fallback_while_modal_wakes(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    vllm.slow(3.0, paths=["/health"])  # beyond the health budget (0.2 s + 1 s of slack)
    m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, flags={"routing.health_timeout_s": 0.2})

    status = status_of(m)
    assert status["provider"] == "anthropic" and "modal: waking up" in status["reason"]
