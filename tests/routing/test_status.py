"""The status report through the real providers: who answers now and why, with no key shown."""

from __future__ import annotations

import json
from pathlib import Path

from gpuctl.state import open_state
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import closed_port_url
from tests.support.routing import KEY, breaker_of, manager, status_of


def test_status_done_when(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    m = manager(gpuctl_home, modal_url=closed_port_url(), claude=claude)

    status = status_of(m)
    assert status["provider"] == "anthropic" and status["status"] == "ready"
    rows = {p["provider"]: p for p in status["providers"]}
    assert rows["modal"]["status"] == "unhealthy" and rows["anthropic"]["status"] == "ready"
    assert rows["vastai"]["configured"] is False
    assert KEY not in json.dumps(status)


def test_a_503_health_check_from_a_box_that_does_not_scale_to_zero_is_unhealthy(gpuctl_home: Path,
                                                                               vllm: FakeVLLM) -> None:
    """Review B, finding 13: a Vast.ai instance answering 503 is not "waking up" (only a slot that
    scales to zero wakes): status says it is unhealthy, and the failure counts on its breaker."""
    with open_state(gpuctl_home) as st:
        row = st.add_instance_intent(provider="vastai", label="gpuctl:test:0123456789ab", gpu="RTX 3090", dph="0.2")
        st.update_instance(row, remote_id="42", status="ready", endpoint=vllm.url)
    vllm.fail(503, paths=["/health"])
    env = {"VASTAI_API_KEY": "f" * 64, "GPUCTL_PRIORITY": "vastai", "VAST_URL": closed_port_url()}
    status = status_of(manager(gpuctl_home, modal_url=None, **env))
    (vast,) = [p for p in status["providers"] if p["provider"] == "vastai"]
    assert vast["status"] == "unhealthy" and vast["error_kind"] == "http"
    assert vast["detail"].startswith(f"unavailable (HTTP 503 from {vllm.url}") and "cold start" not in vast["detail"]
    assert status["provider"] is None  # nobody waits for it as for a waking GPU
    assert breaker_of(manager(gpuctl_home, modal_url=None, **env), "vastai").failures == 1


def test_a_503_health_check_from_modal_is_still_cold(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    vllm.fail(503, paths=["/health"])
    status = status_of(manager(gpuctl_home, modal_url=vllm.url, GPUCTL_PRIORITY="modal"))
    assert status["providers"][0]["status"] == "cold" and status["provider"] == "modal"
