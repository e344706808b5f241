"""One gateway process's state: the backend manager, the health monitor, the admin API's
launches, metrics, the access log, and the bookkeeping every request shares (client keys, the
in-flight bound, which manager a request uses).

A reload (SIGHUP, or after a launch or destroy changed what is available) reads the settings
again and swaps in a new `BackendManager` (what `BackendManager.reload()` does, without
closing providers under requests still in flight: the old manager closes when its last
request ends). The state database is opened once and shared by every manager; usage rows go
through the ledger writer's thread (`ledger_writer`).

Must not: translate HTTP (that is `chat`, `admin` and `app`), or route (that is `routing`).
"""

from __future__ import annotations

import asyncio
import logging
import math
import os
import time
from collections.abc import Callable, Sequence
from typing import Any

from gpuctl.config import Settings, load_settings
from gpuctl.errors import GpuctlError
from gpuctl.routing import breaker
from gpuctl.routing.manager import BackendManager
from gpuctl.routing.outcomes import Attempt, ReasonKind
from gpuctl.routing.policy import WAKE_GRACE_S
from gpuctl.routing.status import StatusReport
from gpuctl.serve.accesslog import FLUSH_S, AccessLog
from gpuctl.serve.asgi import Scope, bearer
from gpuctl.serve.errors import ApiError
from gpuctl.serve.launches import Launches
from gpuctl.serve.ledger_writer import LedgerWriter
from gpuctl.serve.metrics import Metrics, Snapshot, dph_sum
from gpuctl.serve.monitor import Readiness
from gpuctl.serve.options import ServeOptions, options_from_flags
from gpuctl.state import BreakerRecord, State, open_for

logger = logging.getLogger("gpuctl.serve")
WWW_AUTHENTICATE = (b"www-authenticate", b'Bearer realm="gpuctl"')

OnReady = Callable[["Gateway", StatusReport | None, GpuctlError | None], None]


class Gateway:
    """Everything one worker serves from. `startup()` before the first request, `shutdown()`
    after the last (the ASGI lifespan does both)."""

    def __init__(self, settings: Settings, options: ServeOptions, *, on_ready: OnReady | None = None,
                 access_log: AccessLog | None = None, clock: Callable[[], float] = time.time) -> None:
        self.settings = settings
        self.options = options
        self.on_ready = on_ready
        self.clock = clock
        self.access = access_log if access_log is not None else AccessLog(options.access_log)
        self.state: State | None = None
        self.writer: LedgerWriter | None = None
        self.manager: BackendManager | None = None
        self.users: dict[BackendManager, int] = {}
        self.retired: set[BackendManager] = set()
        self.closing_managers: set[asyncio.Future[None]] = set()
        self.inflight = 0
        self.metrics = Metrics(self.snapshot)
        self.readiness = Readiness(self.status, interval_s=options.health_interval_s, on_first=self._first_report)
        self.launches = Launches(settings.home, lambda: self.settings, self._changed_from_thread)
        self.loop: asyncio.AbstractEventLoop | None = None
        self.started_at = clock()
        self.closing = False
        self._reloading: asyncio.Task[None] | None = None
        self._flusher: asyncio.Future[None] | None = None

    # ---------------------------------------------------------------- lifecycle

    async def startup(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.state = open_for(self.settings)
        settings = self.settings
        self.writer = LedgerWriter(lambda: open_for(settings), lambda: self._state())
        self.manager = self._new_manager(self.settings)
        self.readiness.start()
        self._flusher = asyncio.ensure_future(self._flush_access_log())

    async def shutdown(self) -> None:
        """After the server drained: stop the monitor and any launch (it destroys what it
        created), close providers, flush the ledger (the state's last writes) and close it."""
        self.closing = True
        if self._flusher is not None:
            self._flusher.cancel()
        await self.readiness.stop()
        await asyncio.to_thread(self.launches.shutdown, max(self.options.drain_s, 15.0))
        for manager in [*self.retired, *([self.manager] if self.manager else [])]:
            await manager.aclose()
        self.retired.clear()
        self.manager = None
        if self.writer is not None:
            await asyncio.to_thread(self.writer.close)  # flush the ledger
        if self.state is not None:
            self.state.close()
            self.state = None
        self.access.close()
        Metrics.worker_exited(os.getpid())

    def _new_manager(self, settings: Settings) -> BackendManager:
        assert self.state is not None
        # Not `require_configured()`: a gateway with only a Vast.ai key starts with nothing to
        # route to, and its admin API launches the instance.
        manager = BackendManager(settings, state=self.state, clock=self.clock)
        assert self.writer is not None
        manager.router.ledger.sink = self.writer.put  # rows are stored off the event loop
        manager.prefetch()  # Anthropic's SDK takes ~1 s to import: not on the first fallback
        return manager

    async def reload(self) -> None:
        """Read the profile again and route new requests by it (SIGHUP)."""
        settings = load_settings(profile=self.options.profile)
        options = options_from_flags(settings, self.options.flags())
        manager = self._new_manager(settings)
        old, self.manager = self.manager, manager
        self.settings, self.options = settings, options
        if old is not None:
            if self.users.get(old):
                self.retired.add(old)  # closed by the last request that uses it
            else:
                await old.aclose()
        await self.readiness.refresh()
        logger.info("reloaded the settings (profile %s)", settings.profile or "none")

    def schedule_reload(self) -> None:
        """Reload soon, once (several changes in a row make one reload)."""
        if self.closing or (self._reloading is not None and not self._reloading.done()):
            return
        self._reloading = asyncio.ensure_future(self._reload_logged())

    async def _reload_logged(self) -> None:
        try:
            await self.reload()
        except GpuctlError as exc:  # a broken profile: keep serving with what was loaded
            logger.error("reload failed, still serving the previous settings: %s", exc.message)

    async def _flush_access_log(self) -> None:
        while True:
            await asyncio.sleep(FLUSH_S)
            self.access.flush()

    def _changed_from_thread(self) -> None:
        if self.loop is not None and not self.loop.is_closed():
            self.loop.call_soon_threadsafe(self.schedule_reload)

    # ---------------------------------------------------------------- per request

    def authorize(self, scope: Scope) -> str | None:
        """The client key's name (None when the gateway has no keys); 401 otherwise."""
        keys = self.options.keys
        if not keys:
            return None
        token = bearer(scope)
        name = scope["gpuctl.key"] = keys.match(token)  # for the access log of a refused request
        if name is None:
            message = ("You didn't provide an API key: send Authorization: Bearer KEY" if token is None
                       else "Incorrect API key provided")
            raise ApiError(401, message, "invalid_request_error", "invalid_api_key", headers=[WWW_AUTHENTICATE])
        return name

    def acquire(self) -> BackendManager:
        """A manager for one request, within the in-flight bound (429 past it: no queue)."""
        if self.inflight >= self.options.max_inflight or self.manager is None:
            retry = str(self.options.retry_after_s).encode()
            raise ApiError(429, f"the gateway is answering {self.inflight} requests, its limit "
                                "(serve.max_inflight): retry shortly", "rate_limit_exceeded", "overloaded",
                           headers=[(b"retry-after", retry)])
        manager = self.manager
        self.inflight += 1
        self.users[manager] = self.users.get(manager, 0) + 1
        self.metrics.inflight.inc()
        return manager

    def release(self, manager: BackendManager) -> None:
        self.inflight -= 1
        self.metrics.inflight.dec()
        left = self.users[manager] = self.users[manager] - 1
        if not left:
            del self.users[manager]
            if manager in self.retired:
                self.retired.discard(manager)
                self.closing_managers.add(closing := asyncio.ensure_future(manager.aclose()))
                closing.add_done_callback(self.closing_managers.discard)

    def retry_after(self, attempts: Sequence[Any]) -> int:
        """Seconds until a provider may answer again: the earliest breaker to half-open, or a
        waking GPU's grace; at least 1."""
        assert self.state is not None
        now = self.clock()
        waits = []
        for attempt in attempts:
            if not isinstance(attempt, Attempt):
                continue
            if attempt.reason.kind is ReasonKind.BREAKER_OPEN:
                # The breaker of the provider as it is set up now (its endpoint, key and model).
                record = self.manager.breaker(attempt.provider) if self.manager is not None else None
                until = record.open_until if record is not None else None
                if until is not None:
                    waits.append(until - now)
            elif attempt.reason.kind in (ReasonKind.WAKING, ReasonKind.STILL_WAKING):
                waits.append(WAKE_GRACE_S / 3)
        return max(1, math.ceil(min(waits))) if waits else 5

    # ---------------------------------------------------------------- health, readiness, metrics

    async def status(self) -> StatusReport:
        if self.manager is None:
            raise GpuctlError("the gateway is not started")
        return await self.manager.status()

    async def ready(self) -> tuple[bool, dict[str, Any]]:
        """Whether a provider can answer now: the monitor's report (the rules of `gpuctl
        status`), with the breakers read again now."""
        report, error = await self.readiness.current()
        if report is None:
            return False, {"status": "unavailable", "provider": None, "reason": error.message if error else "starting"}
        data = report.as_dict()
        now = self.clock()
        assert self.state is not None
        able = [p.name for p in report.providers if p.configured and p.status in ("ready", "cold")
                and breaker.check(self._breaker(p.name), now)[0]]
        data["can_answer"] = able
        return bool(able) and report.current is not None, data

    def snapshot(self) -> Snapshot | None:
        state, manager = self.state, self.manager
        if state is None or manager is None:
            return None
        router = manager.router
        breakers = {slot.name: router.breaker(slot).state for slot in manager.slots() if slot.configured}
        live = state.live_instances("vastai")
        return Snapshot(breakers, len(live), dph_sum(row.dph for row in live))

    def _breaker(self, name: str) -> BreakerRecord:
        """A provider's breaker as the router reads it (under its current setting's key: endpoint,
        key hash, model), never by the provider's name alone."""
        manager = self.manager
        slot = manager.router.slot(name) if manager is not None else None
        if manager is None or slot is None:
            return BreakerRecord(provider=name)  # a provider the router does not route to: closed
        return manager.router.breaker(slot)

    def _state(self) -> State:
        assert self.state is not None
        return self.state

    def _first_report(self, report: StatusReport | None, error: GpuctlError | None) -> None:
        if self.on_ready is not None:
            self.on_ready(self, report, error)
