"""The Vast.ai names of the original vLLM multi-provider package, for Python users migrating to
gpuctl: `GPUOrchestrator` (and the `gpu_orchestrator` singleton `gpuctl/__init__.py` builds
from it). Deprecated with Vast.ai itself: Modal is recommended.

A thin facade over `plan`, `launch`, `destroy` and `cleanup` with the same safety rules as the
commands (budgets, ledger intent rows, destroy on failure). Its methods are synchronous and
block while an instance boots; from async code call them with `asyncio.to_thread`.
Must not print; nothing is read or opened until a method needs it.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from gpuctl.config import Settings, load_settings
from gpuctl.state import InstanceRow, State, open_for
from gpuctl.vastai.cleanup import CleanupReport, run_cleanup
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.container import find_vllm_key
from gpuctl.vastai.destroy import DestroyReport, execute_destroy, plan_destroy
from gpuctl.vastai.instances import PROVIDER, open_client
from gpuctl.vastai.launch import LaunchResult, launch
from gpuctl.vastai.plan import LaunchPlan, plan_launch
from gpuctl.vastai.watch import Probe


class GPUOrchestrator:
    """Launch, inspect, destroy and clean up gpuctl's Vast.ai instances (legacy provider)."""

    def __init__(self, settings: Settings | None = None, *, client: VastAIClient | None = None,
                 state: State | None = None, clock: Callable[[], float] = time.time,
                 sleep: Callable[[float], None] | None = None, probe: Probe | None = None) -> None:
        self._settings = settings
        self._client, self._own_client = client, client is None
        self._state, self._own_state = state, state is None
        self.clock, self.sleep, self.probe = clock, sleep, probe

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
        return self._settings

    @property
    def client(self) -> VastAIClient:
        if self._client is None:
            self._client = open_client(self.settings)
        return self._client

    @property
    def state(self) -> State:
        if self._state is None:
            self._state = open_for(self.settings, clock=self.clock)
        return self._state

    # -- the lifecycle -----------------------------------------------------------------------

    def plan(self, *, gpu: str | None = None, max_dph: float | Decimal | None = None) -> LaunchPlan:
        """Offers and budget verdict, without creating anything."""
        return plan_launch(self.settings, self.client, self.state, gpu=gpu, max_dph=max_dph, clock=self.clock)

    def launch(self, *, gpu: str | None = None, max_dph: float | Decimal | None = None, wait: bool = True,
               keep: bool = False, progress: Callable[[str], None] = lambda message: None) -> LaunchResult:
        """Rent the cheapest acceptable GPU and wait until vLLM answers (BudgetError if over budget).
        As the original system did (and `gpuctl launch --yes`), a box that fails is destroyed and
        the next offer tried, down the tiers, within the budgets and `max_dph`."""
        plan = self.plan(gpu=gpu, max_dph=max_dph)
        return launch(self.settings, plan, client=self.client, state=self.state, wait=wait, keep=keep,
                      escalate=True, progress=progress, clock=self.clock, sleep=self.sleep, probe=self.probe)

    def destroy(self, instance_id: int | None = None, *, force: bool = False) -> DestroyReport:
        """Destroy one instance, or (None) every instance gpuctl created. An id gpuctl did not
        create (no gpuctl label) is refused with UsageError unless `force`."""
        plan = plan_destroy(self.client, self.state, instance_id=instance_id, all_=instance_id is None, force=force)
        return execute_destroy(self.client, self.state, plan, home=self.settings.home, clock=self.clock)

    def cleanup(self, *, dry_run: bool = False, max_idle_minutes: float | None = None) -> CleanupReport:
        return run_cleanup(self.settings, client=self.client, state=self.state, dry_run=dry_run,
                           max_idle_minutes=max_idle_minutes, clock=self.clock, probe=self.probe)

    # -- inspection --------------------------------------------------------------------------

    def instances(self) -> list[InstanceRow]:
        """gpuctl's live Vast.ai instances, from the ledger."""
        return self.state.live_instances(PROVIDER)

    def ready_instance(self) -> InstanceRow | None:
        return next((r for r in reversed(self.instances()) if r.status == "ready" and r.endpoint), None)

    def get_endpoint(self) -> str | None:
        """The OpenAI base URL of the ready instance (what the router uses), or None."""
        row = self.ready_instance()
        return f"{row.endpoint}/v1" if row and row.endpoint else None

    async def get_status(self) -> dict[str, Any]:
        """`{"status": ready|unhealthy|unavailable, "endpoint", "provider": "vastai", ...}`."""
        row = self.ready_instance()
        if row is None or not row.endpoint:
            return {"status": "unavailable", "endpoint": None, "provider": PROVIDER,
                    "reason": "no ready Vast.ai instance: start one with `gpuctl launch`", "instance_id": None}
        from gpuctl.providers.openai_compat import VLLMEndpoint

        async with VLLMEndpoint(row.endpoint, provider=PROVIDER, api_key=find_vllm_key(self.settings, self.state),
                                model=self.settings["vastai.model"]) as client:
            health = await client.health()
        return {"status": health.status, "endpoint": health.endpoint, "provider": PROVIDER, "reason": health.detail,
                "instance_id": row.remote_id, "gpu": row.gpu, "dph": row.dph}

    def close(self) -> None:
        if self._own_client and self._client is not None:
            self._client.close()
            self._client = None
        if self._own_state and self._state is not None:
            self._state.close()
            self._state = None

    def __enter__(self) -> GPUOrchestrator:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
