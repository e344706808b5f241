"""`gpuctl launch`: rent the cheapest acceptable Vast.ai GPU, start vLLM on it, and make sure
that whatever happens nothing is left billing unseen.

The order is the safety argument:
1. budgets are checked before any API write, and again before every attempt under the global
   launch lock, counting what is spent *and* what every live instance may still bill (a full
   keep-alive each), so concurrent launches see each other;
2. the vLLM API key is stored in the profile before the create (no endpoint without its key);
3. an *intent* row with a unique label is written to the ledger, and the launch lock taken,
   before the create call; the instance id is recorded the moment the create returns;
4. a create whose outcome is unknown (timeout, dropped connection, 5xx, a garbled reply) is
   never re-sent: its label is looked for in the instance list for up to `CREATE_LOOKUP_S`
   (a create in flight may be listed late); found, it is destroyed and the next offer tried;
   still unknown, the launch stops and the row stays live as `failed` for cleanup;
5. then we watch: `running` (status and `status_msg` shown), vLLM's /health and a 1-token
   completion; on CDI injection failure, loading past 10 minutes, a boot exit, or vLLM never
   answering, the instance is destroyed (its cost recorded), its machine excluded, and the
   next offer tried, up to `MAX_ATTEMPTS`; a retry never costs more than the user confirmed:
   only offers of the chosen tier (or an earlier one) at most the chosen $/h × 1.25 (or within
   an explicit --max-dph: `LaunchPlan.retry_max_dph`); when those run out the launch stops;
6. Ctrl-C (or any error) destroys what was created, unless `keep`; a process that dies outright
   leaves a ledger row, a label and a released lock, which `gpuctl cleanup` acts on.

An empty or partial instance list never proves that a create did not happen: a row is only
marked never-created when Vast refused the create outright (a 4xx, or `success: false`).

Ledger statuses (instances.status): intent → created → loading → running → ready (Vast's other
statuses are stored as `loading`); `unattended` when the launcher stopped watching before
ready (--no-wait, or --keep on Ctrl-C); `failed` when a destroy failed, or a create's outcome
is unknown, and cleanup must finish the job; `destroyed`.

Where each step lives: the plan and the first budget check in `plan.py`; one attempt (the
budget re-check under the lock, steps 2 to 4, and 6) in `attempt.py`; the watch (step 5) in
`watch.py`; this module retries over the offers and says why it stopped. Time is injectable (`clock`, `sleep`), the vLLM probe too. Must not print
or exit.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from gpuctl.config import Settings
from gpuctl.costs.money import money_str
from gpuctl.errors import BudgetError, ProviderError
from gpuctl.state import State
from gpuctl.vastai.attempt import (
    Attempt,
    Attempter,
    AttemptFailed,
    LaunchInterrupted,
    Settled,
    create_spec,
)
from gpuctl.vastai.budget import money
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.instances import PROVIDER
from gpuctl.vastai.offers import candidates_in_order
from gpuctl.vastai.plan import LaunchPlan, check_plan, excluded_machines
from gpuctl.vastai.watch import HEALTH_TIMEOUT_S, LOADING_TIMEOUT_S, Probe, WatchSetup

__all__ = ["LEGACY_NOTE", "Attempt", "LaunchInterrupted", "LaunchResult", "launch"]

LEGACY_NOTE = "Note: Vast.ai is gpuctl's legacy provider; Modal is recommended (`gpuctl deploy modal`)."
POLL_S = 5.0  # status polls and readiness probes, while watching (`watch.WatchSetup.poll_s`)
MAX_ATTEMPTS = 3
# A create with an unknown outcome may show up in the list only later (it is still in flight
# at Vast): look for its label this long (every `attempt.CREATE_LOOKUP_POLL_S`) before giving
# up on knowing.
CREATE_LOOKUP_S = 60.0


@dataclass(frozen=True)
class LaunchResult:
    instance_id: int
    row_id: int
    label: str
    profile: str | None
    tier: str
    gpu: str
    dph: str
    endpoint: str | None  # http://ip:port, None with --no-wait
    ready: bool
    waited_s: float
    attempts: tuple[Attempt, ...] = field(default=())

    @property
    def openai_base(self) -> str | None:
        return f"{self.endpoint}/v1" if self.endpoint else None

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "attempts"}
        d["openai_base"] = self.openai_base
        d["attempts"] = [a.__dict__.copy() for a in self.attempts]
        return d


def launch(
    settings: Settings,
    plan: LaunchPlan,
    *,
    client: VastAIClient,
    state: State,
    wait: bool = True,
    keep: bool = False,
    progress: Callable[[str], None] = lambda m: None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] | None = None,
    probe: Probe | None = None,
    max_attempts: int = MAX_ATTEMPTS,
    loading_timeout_s: float = LOADING_TIMEOUT_S,
    health_timeout_s: float = HEALTH_TIMEOUT_S,
    create_lookup_s: float | None = None,
) -> LaunchResult:
    """Create, watch and (on failure) replace instances until one serves; see the module doc."""
    check_plan(plan)
    spec = create_spec(settings)
    setup = WatchSetup(client, state, spec.port, spec.vllm_key, spec.model, clock=clock,
                       sleep=sleep or (lambda s: time.sleep(s)), progress=progress, probe=probe, poll_s=POLL_S,
                       loading_timeout_s=loading_timeout_s, health_timeout_s=health_timeout_s)
    attempter = Attempter(settings, spec, setup, wait=wait, keep=keep,
                          create_lookup_s=CREATE_LOOKUP_S if create_lookup_s is None else create_lookup_s)
    attempts: list[Attempt] = []
    cap = plan.retry_max_dph
    # Only the chosen tier and those before it: later tiers are never even searched.
    tiers = list(plan.retry_tiers)
    for cand in candidates_in_order(client, tiers, plan.search, disk_gb=spec.disk_gb,
                                    excluded=lambda: excluded_machines(state)):
        if cap is not None and cand.offer.dph_total > cap:
            continue  # dearer than what the user confirmed
        if len(attempts) >= max_attempts:
            break
        try:
            started = attempter.run(cand)
        except Settled as settled:
            raise settled.error from None
        except AttemptFailed as failed:
            attempts.append(failed.attempt)
            if failed.fatal is not None:
                raise failed.fatal from None
            progress(f"Attempt {len(attempts)} failed: {failed.attempt.reason}. Trying the next offer…")
            continue
        except BudgetError as err:
            if not attempts:
                raise
            raise BudgetError(f"{len(attempts)} attempt(s) failed ({reasons(attempts)}); the next offer: "
                              f"{err.message}", hint=err.hint) from None
        o = cand.offer
        done = Attempt(o.id, o.machine_id, o.gpu_name, money_str(o.dph_total) or "", started.instance_id,
                       "ready" if started.ready else "unattended")
        return LaunchResult(started.instance_id, started.row_id, started.label, spec.profile, cand.tier.name,
                            o.gpu_name, money_str(o.dph_total) or "", started.endpoint, started.ready,
                            clock() - attempter.started, (*attempts, done))
    if len(attempts) >= max_attempts:
        raise ProviderError(
            f"no Vast.ai instance came up after {len(attempts)} attempt(s): {reasons(attempts)}. "
            "Each was destroyed; nothing is left running.",
            provider=PROVIDER, kind="http", hint="see docs/providers/vastai.md (troubleshooting), or use Modal",
        )
    raise exhausted(plan, attempts)


def exhausted(plan: LaunchPlan, attempts: list[Attempt]) -> ProviderError:
    """Every offer within the confirmed price and tier was tried (or its machine excluded):
    stop rather than rent something dearer that nobody confirmed."""
    cap = plan.retry_max_dph
    tier = plan.search.tier.name if plan.search.tier else "chosen"
    if plan.max_dph is not None and cap is not None:
        within = f"at most ${money(cap)}/h (--max-dph)"
    elif cap is not None and plan.choice is not None:
        within = f"at most ${money(cap)}/h (the confirmed ${money(plan.choice.offer.dph_total)}/h + 25%)"
    else:
        within = "within the confirmed price"
    later = " and later tiers" if len(plan.tiers) > len(plan.retry_tiers) else ""
    tried = (f"no Vast.ai instance came up after {len(attempts)} attempt(s): {reasons(attempts)}. "
             "Each was destroyed; nothing is left running. " if attempts else "")
    return ProviderError(
        f"{tried}The {tier} tier's offers {within} are exhausted; dearer offers{later} are not rented "
        "without a new confirmation.",
        provider=PROVIDER, kind="not_found",
        hint="`gpuctl launch --dry-run` shows the rest; launch again to confirm one, or pass --max-dph")


def reasons(attempts: list[Attempt] | tuple[Attempt, ...]) -> str:
    return "; ".join(f"offer {a.offer_id}: {a.reason}" for a in attempts)
