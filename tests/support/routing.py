"""Helpers for the router tests against loopback fakes (tests/fakes/): build a manager from
environment and flags, ask once, read the status, read the ledger."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from gpuctl.config import load_settings
from gpuctl.routing.manager import BackendManager
from gpuctl.routing.registry import BUILDERS
from gpuctl.state import BreakerRecord, UsageRecord, open_state
from tests.fakes.anthropic_server import FakeAnthropic

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
KEY = "sk-ant-fake-key"


def manager(home: Path, *, modal_url: str | None, claude: FakeAnthropic | None = None,
            clock: list[float] | None = None, flags: dict[str, Any] | None = None, **env: str) -> BackendManager:
    """A manager over modal, vastai, anthropic (GPUCTL_PRIORITY may say otherwise); `flags` are
    settings as if given on the command line ("routing.fallback_on_cold": False)."""
    env = {"GPUCTL_PRIORITY": "modal,vastai,anthropic", **env}
    if modal_url:
        env["MODAL_WEB_URL"] = modal_url
    if claude is not None:
        env["ANTHROPIC_API_KEY"] = KEY
        env["ANTHROPIC_BASE_URL"] = claude.url
    settings = load_settings(env=env, home=home, flags=flags)
    now = clock if clock is not None else [1_000_000.0]
    return BackendManager(settings, clock=lambda: now[0])


def ask(m: BackendManager, **kw: Any) -> Any:
    """One `chat_completion` of MESSAGES, closing the manager after."""
    async def go() -> Any:
        try:
            return await m.chat_completion(MESSAGES, max_tokens=64, **kw)
        finally:
            await m.aclose()
    return asyncio.run(go())


def status_of(m: BackendManager) -> dict[str, Any]:
    """`get_vllm_status()` once, closing the manager after."""
    async def go() -> dict[str, Any]:
        try:
            return await m.get_vllm_status()
        finally:
            await m.aclose()
    return asyncio.run(go())


def ledger(home: Path) -> list[UsageRecord]:
    with open_state(home) as st:
        return st.usage_since()


def breaker_of(m: BackendManager, name: str) -> BreakerRecord:
    """The breaker `m` uses for provider `name` now (under its endpoint, key and model), closing
    the manager after."""
    try:
        record = m.breaker(name)
        assert record is not None, f"{name} is not one of the manager's providers"
        return record
    finally:
        asyncio.run(m.aclose())


def breaker_key(home: Path, name: str, **env: str) -> str:
    """The state key of provider `name`'s breaker for these environment settings."""
    with open_state(home) as st:
        return BUILDERS[name](load_settings(env=env, home=home), st).breaker_key
