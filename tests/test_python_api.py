"""The original package's Modal names work (its routing names: tests/routing/test_python_api.py)."""

from __future__ import annotations

import asyncio
import importlib
import sys

import pytest

from tests.fakes.vllm_server import FakeVLLM

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello!"}]


@pytest.fixture
def fresh_gpuctl():  # type: ignore[no-untyped-def]
    """`import gpuctl` anew so the lazily created singletons read this test's environment."""
    for name in [m for m in sys.modules if m == "gpuctl"]:
        del sys.modules[name]
    module = importlib.import_module("gpuctl")
    import gpuctl.modal.compat as mo

    mo._orchestrator = None
    yield module
    mo._orchestrator = None
    sys.modules.pop("gpuctl", None)
    importlib.import_module("gpuctl")


def test_modal_orchestrator_seed_names(fresh_gpuctl, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct") as vllm:
        monkeypatch.setenv("MODAL_WEB_URL", vllm.url)
        assert fresh_gpuctl.is_modal_configured()
        orchestrator = fresh_gpuctl.get_modal_orchestrator()

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


def test_not_configured(fresh_gpuctl) -> None:  # type: ignore[no-untyped-def]
    from gpuctl.errors import ConfigError

    assert fresh_gpuctl.is_modal_configured() is False
    with pytest.raises(ConfigError):
        fresh_gpuctl.get_modal_orchestrator()
