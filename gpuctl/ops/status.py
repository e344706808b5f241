"""Collect the status report (once, or repeatedly for `--watch`)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from typing import Any

from gpuctl.config import Settings


def collect_status(settings: Settings, *, deep: bool = False, wake: bool = False) -> dict[str, Any]:
    """The seed's `{"status", "endpoint", "provider"}` plus one row per provider."""
    from gpuctl.routing.manager import BackendManager

    async def run() -> dict[str, Any]:
        async with BackendManager(settings) as manager:
            return await manager.get_vllm_status(deep=deep, wake=wake)

    return asyncio.run(run())


def watch_status(settings: Settings, *, deep: bool, render: Callable[[dict[str, Any]], None], wake: bool = False,
                 sleep: Callable[[float], None] = time.sleep, rounds: int | None = None) -> None:
    """Refresh every `routing.health_interval_s` (seed: 60 s) until Ctrl-C (or `rounds`)."""
    done = 0
    while rounds is None or done < rounds:
        render(collect_status(settings, deep=deep, wake=wake))
        done += 1
        if rounds is None or done < rounds:
            sleep(float(settings["routing.health_interval_s"]))
