"""The health monitor: the status report every `routing.health_interval_s` (60 s, the original
system's interval), and `/ready` from it.

The report is `routing.status.build_report`, the one `gpuctl status` shows, so it keeps the
breaker fresh by the same rules and never wakes an idle, scaled-to-zero Modal (a probe would
start a GPU and bill its scaledown window). `/ready` reads the latest report (waiting for the
first one), so probes never come more often than the interval however often `/ready` is
asked; the gateway re-checks the breakers on it live. Concurrent refreshes share one.

Must not: probe more often than asked, or let a failing check end the loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable

from gpuctl.errors import GpuctlError
from gpuctl.routing.status import StatusReport

logger = logging.getLogger("gpuctl.serve")


class Readiness:
    """The latest status report (or the error that stopped one), refreshed in the background."""

    def __init__(self, build: Callable[[], Awaitable[StatusReport]], *, interval_s: float,
                 max_age_s: float | None = None, clock: Callable[[], float] = time.monotonic,
                 on_first: Callable[[StatusReport | None, GpuctlError | None], None] | None = None) -> None:
        self.build = build
        self.interval_s = interval_s
        self.max_age_s = interval_s if max_age_s is None else max_age_s
        self.clock = clock
        self.on_first = on_first
        self.report: StatusReport | None = None
        self.error: GpuctlError | None = None
        self.at: float | None = None
        self._refreshing: asyncio.Task[None] | None = None
        self._loop: asyncio.Task[None] | None = None

    def start(self) -> None:
        self._loop = asyncio.ensure_future(self._run())

    async def stop(self) -> None:
        for task in (self._loop, self._refreshing):
            if task is not None and not task.done():
                task.cancel()
                # Stopping: what it was doing no longer matters.
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task

    async def _run(self) -> None:
        while True:
            await self.refresh()
            if self.on_first is not None:
                on_first, self.on_first = self.on_first, None
                on_first(self.report, self.error)
            await asyncio.sleep(self.interval_s)

    async def refresh(self) -> None:
        """Build a new report (sharing one already being built)."""
        if self._refreshing is None or self._refreshing.done():
            self._refreshing = asyncio.ensure_future(self._build())
        await asyncio.shield(self._refreshing)

    async def _build(self) -> None:
        try:
            report = await self.build()
        except GpuctlError as exc:  # nothing configured, a broken state: not ready, and why
            self.report, self.error = None, exc
        except Exception:  # a bug must not stop the monitor; it says so in the log
            logger.exception("health check failed")
            self.report = None
            self.error = GpuctlError("the health check failed (see the gateway's log)")
        else:
            self.report, self.error = report, None
        self.at = self.clock()

    async def current(self) -> tuple[StatusReport | None, GpuctlError | None]:
        """A report at most `max_age_s` old (refreshed if older)."""
        if self.at is None or self.clock() - self.at > self.max_age_s:
            await self.refresh()
        return self.report, self.error
