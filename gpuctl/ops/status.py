"""`gpuctl status`'s work: the status report, once or repeatedly for `--watch`.

Returns the typed `routing.status.StatusReport` (the decision itself is routing's: see that
module); `cli/status.py` renders it. Must not print.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable

from gpuctl.config import Settings
from gpuctl.routing.status import StatusReport


def collect_status(settings: Settings, *, deep: bool = False, wake: bool = False) -> StatusReport:
    """Every provider's row and which one would answer now (`as_dict()`: the original
    package's `{"status", "endpoint", "provider"}` plus the rows)."""
    from gpuctl.routing.manager import BackendManager

    async def run() -> StatusReport:
        async with BackendManager(settings) as manager:
            return await manager.status(deep=deep, wake=wake)

    return asyncio.run(run())


def watch_status(settings: Settings, *, deep: bool, render: Callable[[StatusReport], None], wake: bool = False,
                 sleep: Callable[[float], None] | None = None, rounds: int | None = None) -> None:
    """Refresh every `routing.health_interval_s` (60 s by default) until Ctrl-C (or `rounds`).
    `sleep` defaults to `time.sleep`, looked up when the watch starts (tests replace it)."""
    sleep = time.sleep if sleep is None else sleep
    done = 0
    while rounds is None or done < rounds:
        render(collect_status(settings, deep=deep, wake=wake))
        done += 1
        if rounds is None or done < rounds:
            sleep(float(settings["routing.health_interval_s"]))
