"""The original package's routing names work: `backend_manager`, `BackendManager`, reload."""

from __future__ import annotations

import asyncio
import os

from gpuctl.state import open_state
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import closed_port_url
from tests.support.routing import KEY, breaker_key

MESSAGES = [{"role": "system", "content": "You are a helpful assistant."}, {"role": "user", "content": "Hello!"}]


def test_backend_manager_chat_through_modal(fresh_gpuctl, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", answer="Hello from Qwen") as vllm:
        monkeypatch.setenv("MODAL_WEB_URL", vllm.url)
        from gpuctl import backend_manager

        async def go():  # type: ignore[no-untyped-def]
            try:
                assert backend_manager.get_current_provider() == "modal"
                status = await backend_manager.get_vllm_status()
                response = await backend_manager.chat_completion(messages=MESSAGES, temperature=0.7, max_tokens=2048)
                return status, response
            finally:
                await backend_manager.aclose()

        status, response = asyncio.run(go())
    assert status["status"] == "ready" and status["provider"] == "modal" and status["endpoint"].endswith("/v1")
    assert response.text == "Hello from Qwen" and response.provider == "modal"
    assert response.usage.prompt_tokens > 0 and response.usage.completion_tokens > 0


def test_python_api_falls_back_and_stops_touching_a_dead_port(fresh_gpuctl, monkeypatch, gpuctl_home) -> None:  # type: ignore[no-untyped-def]
    with FakeAnthropic(api_key=KEY, reply_text="Claude here") as claude:
        monkeypatch.setenv("MODAL_WEB_URL", closed_port_url())
        monkeypatch.setenv("ANTHROPIC_API_KEY", KEY)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        BackendManager = fresh_gpuctl.BackendManager

        async def one() -> str:
            async with BackendManager() as manager:
                return (await manager.chat_completion(messages=MESSAGES)).provider

        providers = [asyncio.run(one()) for _ in range(4)]
    assert providers == ["anthropic"] * 4
    with open_state(gpuctl_home) as st:
        breaker = st.get_breaker(breaker_key(gpuctl_home, "modal", MODAL_WEB_URL=os.environ["MODAL_WEB_URL"]))
        rows = st.usage_since()
    assert breaker.state == "open" and breaker.failures == 3  # the 4th call skipped modal entirely
    assert all(r.provider == "anthropic" for r in rows) and "modal" in (rows[-1].fallback_reason or "")


def test_reload_picks_up_a_new_endpoint(fresh_gpuctl, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", answer="from the new endpoint") as vllm:
        manager = fresh_gpuctl.BackendManager()

        async def go():  # type: ignore[no-untyped-def]
            try:
                before = manager.get_current_provider()
                monkeypatch.setenv("MODAL_WEB_URL", vllm.url)  # e.g. `gpuctl deploy modal` ran meanwhile
                await manager.reload()
                return before, manager.get_current_provider(), (await manager.chat_completion(messages=MESSAGES)).text
            finally:
                await manager.aclose()

        assert asyncio.run(go()) == (None, "modal", "from the new endpoint")
