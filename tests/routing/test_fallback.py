"""Priority and failover through the real providers against loopback fakes: the fallback
matrix, nothing configured, every provider failing, a provider asked for by name."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuctl.errors import AllProvidersFailedError, NoProviderError
from gpuctl.routing.manager import BackendManager
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import closed_port_url, settings_for
from tests.support.routing import ask, breaker_of, ledger, manager

NO_COLD_GATE = {"routing.fallback_on_cold": False}


def test_modal_answers_when_healthy(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    # a recent success means "warm": no cold probe before the request
    m = manager(gpuctl_home, modal_url=vllm.url, claude=claude)
    response = ask(m)
    assert response.provider == "modal" and response.text == "Hi from vLLM"
    assert response.usage.completion_tokens > 0 and response.fallback_reason is None
    assert response.fallback is None
    assert claude.requests == 0
    row = ledger(gpuctl_home)[-1]
    assert row.provider == "modal" and row.ok and row.completion_tokens == response.usage.completion_tokens


@pytest.mark.parametrize("fault", ["refused", "503", "500", "html502", "malformed", "timeout"])
def test_fallback_matrix(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic, fault: str) -> None:
    url = vllm.url
    if fault == "refused":
        url = closed_port_url()
    elif fault == "503":
        vllm.fail(503, paths=["/v1/chat/completions"])
    elif fault == "500":
        vllm.fail(500, body={"error": {"message": "engine dead", "type": "InternalServerError", "code": 500}},
                  paths=["/v1/chat/completions"])
    elif fault == "html502":
        vllm.fail_html(502, paths=["/v1/chat/completions"])
    elif fault == "malformed":
        vllm.malformed_json = True
    elif fault == "timeout":
        vllm.slow(2.0, paths=["/v1/chat/completions"])
    if fault == "timeout":
        m = manager(gpuctl_home, modal_url=url, claude=claude, GPUCTL_PRIORITY="modal,anthropic",
                    flags={"routing.first_byte_timeout_s": 0.3, **NO_COLD_GATE})
    else:
        m = manager(gpuctl_home, modal_url=url, claude=claude, flags=NO_COLD_GATE)
    response = ask(m)
    assert response.provider == "anthropic" and response.text == "Hi from Claude"
    assert response.fallback_reason and response.fallback_reason.startswith("modal:")
    assert [a.provider for a in response.fallback.attempts] == ["modal"]
    assert response.fallback.text == response.fallback_reason
    rows = ledger(gpuctl_home)
    assert [(r.provider, r.ok) for r in rows] == [("modal", False), ("anthropic", True)]
    assert rows[-1].fallback_reason == response.fallback_reason
    assert rows[-1].cost is not None  # tokens priced from the catalog


def test_no_provider_configured(gpuctl_home: Path) -> None:
    m = BackendManager(settings_for(gpuctl_home))
    with pytest.raises(NoProviderError) as info:
        ask(m)
    assert info.value.exit_code == 3 and "ANTHROPIC_API_KEY" in (info.value.hint or "")


def test_all_failed_lists_every_reason(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    claude.status = 529
    m = manager(gpuctl_home, modal_url=closed_port_url(), claude=claude, flags=NO_COLD_GATE)
    with pytest.raises(AllProvidersFailedError) as info:
        ask(m)
    assert info.value.reasons[0].startswith("modal:") and info.value.reasons[-1].startswith("anthropic:")


def test_forced_provider_not_configured_says_which(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    m = manager(gpuctl_home, modal_url=None, claude=claude)
    with pytest.raises(NoProviderError) as info:
        m.require_configured("vastai")
    assert info.value.message == "vastai is not configured" and "VASTAI_API_KEY" in (info.value.hint or "")
    with pytest.raises(NoProviderError, match="vastai is not configured"):
        ask(m, provider="vastai")
    assert claude.requests == 0


def test_a_refused_key_everywhere_is_a_credentials_error(gpuctl_home: Path) -> None:
    with FakeAnthropic(api_key="sk-ant-the-right-key") as claude:
        settings = settings_for(gpuctl_home, ANTHROPIC_API_KEY="sk-ant-a-wrong-key", ANTHROPIC_BASE_URL=claude.url)
        with pytest.raises(AllProvidersFailedError) as info:
            ask(BackendManager(settings))
    assert info.value.exit_code == 3 and "sk-ant-a-wrong-key" not in info.value.message


def _vast_ready(home: Path, url: str) -> dict[str, str]:
    """A ready Vast.ai instance in the ledger at `url`, and the env that configures it."""
    from gpuctl.state import open_state

    with open_state(home) as st:
        row = st.add_instance_intent(provider="vastai", label="gpuctl:test:0123456789ab", gpu="RTX 3090", dph="0.2")
        st.update_instance(row, remote_id="42", status="ready", endpoint=url)
    return {"VASTAI_API_KEY": "f" * 64, "GPUCTL_PRIORITY": "vastai,anthropic"}


def test_a_503_from_a_provider_that_does_not_scale_to_zero_opens_its_breaker(
        gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    """Review B, finding 13: a Vast.ai box answering 503 is down, not "a cold start or GPU quota":
    each 503 counts, and the breaker opens at the threshold."""
    vllm.fail(503, paths=["/v1/chat/completions"])
    env = _vast_ready(gpuctl_home, vllm.url)
    for _ in range(3):  # routing.failure_threshold
        response = ask(manager(gpuctl_home, modal_url=None, claude=claude, **env))
        assert response.provider == "anthropic"
    reason = response.fallback_reason or ""
    assert reason.startswith(f"vastai: unavailable (HTTP 503 from {vllm.url}") and "cold start" not in reason
    assert breaker_of(manager(gpuctl_home, modal_url=None, claude=claude, **env), "vastai").state == "open"
    rows = ledger(gpuctl_home)
    assert all((r.error or "").startswith("unavailable (HTTP 503") for r in rows if not r.ok)
    after = ask(manager(gpuctl_home, modal_url=None, claude=claude, **env))
    assert (after.fallback_reason or "").startswith("vastai: breaker open")


def test_a_503_from_the_only_provider_says_unavailable(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    vllm.fail(503, paths=["/v1/chat/completions"])
    env = {**_vast_ready(gpuctl_home, vllm.url), "GPUCTL_PRIORITY": "vastai"}
    with pytest.raises(AllProvidersFailedError) as info:
        ask(manager(gpuctl_home, modal_url=None, **env))
    assert info.value.exit_code == 1 and "vastai: unavailable (HTTP 503 from" in info.value.message
    assert "cold start" not in info.value.message and "`gpuctl status`" in (info.value.hint or "")


def test_a_503_from_modal_is_still_a_cold_start_that_does_not_count(gpuctl_home: Path, vllm: FakeVLLM,
                                                                   claude: FakeAnthropic) -> None:
    vllm.fail(503, paths=["/v1/chat/completions"])
    for _ in range(4):
        response = ask(manager(gpuctl_home, modal_url=vllm.url, claude=claude, flags=NO_COLD_GATE))
        assert response.provider == "anthropic" and "cold start or GPU quota" in (response.fallback_reason or "")
    assert breaker_of(manager(gpuctl_home, modal_url=vllm.url, claude=claude), "modal").state == "closed"
