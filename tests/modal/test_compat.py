"""The original package's Modal names (gpuctl/modal/compat.py), against a loopback vLLM server."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

import gpuctl
from gpuctl.errors import ConfigError
from gpuctl.state import open_state
from tests.fakes.vllm_server import FakeVLLM

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello!"}]


def test_modal_orchestrator_original_names(no_orchestrator, monkeypatch, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct") as vllm:
        monkeypatch.setenv("MODAL_WEB_URL", vllm.url)
        assert gpuctl.is_modal_configured()
        orchestrator = gpuctl.get_modal_orchestrator()
        assert gpuctl.get_modal_orchestrator() is orchestrator  # one global, created on first use

        async def go():  # type: ignore[no-untyped-def]
            try:
                health = await orchestrator.client.health_check()
                status = await orchestrator.get_status()
                answer = await orchestrator.chat_completion(messages=MESSAGES, temperature=0.7, max_tokens=64)
                return health, status, answer
            finally:
                await orchestrator.aclose()

        health, status, answer = asyncio.run(go())
        assert orchestrator.get_endpoint() == vllm.url + "/v1"
    assert health["healthy"] is True
    assert status["status"] == "ready" and status["provider"] == "modal"
    assert answer.text and answer.usage.completion_tokens > 0
    # The metrics live in the state of the settings' GPUCTL_HOME (state.open_for).
    with open_state(gpuctl_home) as st:
        stored = st.metrics("modal")
    assert stored["total_requests"] == 1 and stored["last_health"]["status"] == "ready"


def test_not_configured(no_orchestrator) -> None:  # type: ignore[no-untyped-def]
    assert gpuctl.is_modal_configured() is False
    assert gpuctl.init_modal_orchestrator() is None
    with pytest.raises(ConfigError, match="Modal is not configured"):
        gpuctl.get_modal_orchestrator()
    with pytest.raises(ConfigError, match="Modal is not configured"):
        gpuctl.ModalOrchestrator()
