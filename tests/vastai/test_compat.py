"""The original package's Python names for Vast.ai (`gpuctl.GPUOrchestrator`, `gpu_orchestrator`,
`gpuctl.VastAIClient`) work end to end against the fakes."""

from __future__ import annotations

from pathlib import Path

from gpuctl.config import load_settings
from gpuctl.state import State
from gpuctl.vastai.client import VastAIClient
from tests.fakes.vastai_server import FakeClock, FakeVast
from tests.fakes.vllm_server import FakeVLLM
from tests.support.vast import KEY


def test_python_api_names(gpuctl_home: Path, vast: FakeVast, clock: FakeClock, vllm: FakeVLLM, state: State) -> None:
    import gpuctl
    from gpuctl.vastai.compat import GPUOrchestrator

    assert gpuctl.GPUOrchestrator is GPUOrchestrator and gpuctl.VastAIClient is VastAIClient
    try:  # the `gpu_orchestrator` singleton is built lazily and reads nothing until used
        assert isinstance(gpuctl.gpu_orchestrator, GPUOrchestrator)
    finally:
        vars(gpuctl).pop("gpu_orchestrator", None)
    settings = load_settings(env={"VAST_URL": vast.url, "VASTAI_API_KEY": KEY}, home=gpuctl_home)
    with GPUOrchestrator(settings, state=state, clock=clock, sleep=clock.advance) as orch:
        assert orch.get_endpoint() is None
        result = orch.launch()
        assert result.ready and orch.get_endpoint() == f"http://127.0.0.1:{vllm.port}/v1"
        orch.destroy()
        assert vast.live_ids() == set() and orch.instances() == []
        assert orch.cleanup().actions == ()
