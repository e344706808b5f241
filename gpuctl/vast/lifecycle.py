"""`gpuctl launch`: rent the cheapest acceptable Vast.ai GPU, start vLLM on it, and make sure
that whatever happens nothing is left billing unseen.

The order is the safety argument:
1. budgets are checked before any API write (and again before every retry);
2. the vLLM API key is stored in the profile before the create (no endpoint without its key);
3. an *intent* row with a unique label is written to the ledger, and the launch lock taken,
   before the create call; the instance id is recorded the moment the create returns;
4. then we watch: `running` (status and `status_msg` shown), vLLM's /health and a 1-token
   completion; on CDI injection failure, loading past 10 minutes, a boot exit, or vLLM never
   answering, the instance is destroyed (its cost recorded), its machine excluded, and the
   next offer tried, up to `MAX_ATTEMPTS`;
5. Ctrl-C (or any error) destroys what was created, unless `keep`; a process that dies outright
   leaves a ledger row, a label and a released lock, which `gpuctl cleanup` acts on.

Ledger statuses (instances.status): intent → created → loading/running → ready; `unattended`
when the launcher stopped watching before ready (--no-wait, or --keep on Ctrl-C); `failed`
when a destroy failed and cleanup must finish the job; `destroyed`.

Time is injectable (`clock`, `sleep`), the vLLM probe too. Must not print or exit.
"""

from __future__ import annotations

import asyncio
import re
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gpuctl.config import Settings, set_profile_value, writable_profile
from gpuctl.errors import EXIT_INTERRUPTED, BudgetError, GpuctlError, ProviderError
from gpuctl.events import log_event
from gpuctl.providers.base import Health
from gpuctl.providers.vastai import Instance, VastAIClient
from gpuctl.state import InstanceRow, State
from gpuctl.vast import budget
from gpuctl.vast.budget import BudgetCheck, dec, money
from gpuctl.vast.instances import (
    PROVIDER,
    destroy_remote,
    launch_lock,
    make_label,
    mark_destroyed,
)
from gpuctl.vast.offers import Candidate, Search, candidates_in_order, first_tier_with_offers
from gpuctl.vast.tiers import Tier, load_tiers, select_tiers

LEGACY_NOTE = "Note: Vast.ai is gpuctl's legacy provider; Modal is recommended (`gpuctl deploy modal`)."
POLL_S = 5.0
LOADING_TIMEOUT_S = 10 * 60  # the seed: "stuck in loading for 10+ minutes" means a bad host
HEALTH_TIMEOUT_S = 20 * 60  # after `running`: weights download + load (seed: 7-15 min cold start)
MAX_ATTEMPTS = 3
PROBE_TIMEOUT_S = 30.0
_MAX_SHOW_ERRORS = 3  # consecutive failed status polls before the attempt is given up
CDI_MARKER = "failed to inject cdi devices"

Probe = Callable[[str, str | None, str | None], Health]


class LaunchInterrupted(GpuctlError):
    """Ctrl-C during a launch; the message says what became of the instance."""

    exit_code = EXIT_INTERRUPTED


def probe_vllm(endpoint: str, api_key: str | None, model: str | None, *, timeout: float = PROBE_TIMEOUT_S) -> Health:
    """/health plus a 1-token completion: `running` only means the container started."""
    from gpuctl.providers.openai_compat import VLLMEndpoint

    async def go() -> Health:
        async with VLLMEndpoint(endpoint, provider=PROVIDER, api_key=api_key, model=model) as client:
            return await client.health(deep=True, timeout=timeout)

    return asyncio.run(go())


# -- plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchPlan:
    tiers: tuple[Tier, ...]
    search: Search
    budget: BudgetCheck | None  # for the choice
    spent: Decimal
    live: tuple[InstanceRow, ...]  # gpuctl's Vast.ai instances that are live now
    excluded: frozenset[int]

    @property
    def choice(self) -> Candidate | None:
        return self.search.choice

    def as_dict(self) -> dict[str, Any]:
        return {
            "tiers_checked": [{"tier": name, "offers": n} for name, n in self.search.checked],
            "tier": self.search.tier.name if self.search.tier else None,
            "candidates": [c.as_dict() for c in self.search.candidates],
            "choice": self.choice.as_dict() if self.choice else None,
            "budget": self.budget.as_dict() if self.budget else None,
            "spent": str(self.spent),
            "live_instances": [r.remote_id or f"intent:{r.id}" for r in self.live],
            "excluded_machines": sorted(self.excluded),
        }


def _limits(settings: Settings) -> dict[str, Any]:
    return {"session_limit": settings["vastai.session_budget_limit"], "total_limit": settings["vastai.budget_limit"],
            "keep_alive_minutes": settings["vastai.keep_alive_minutes"]}


def excluded_machines(state: State) -> set[int]:
    return {int(m) for m in state.excluded_machines(PROVIDER) if m.isdigit()}


def plan_launch(settings: Settings, client: VastAIClient, state: State, *, gpu: str | None = None,
                max_dph: float | Decimal | None = None, clock: Callable[[], float] = time.time,
                progress: Callable[[str], None] = lambda m: None) -> LaunchPlan:
    """Tiers, the first tier's offers, the choice and its budget verdict. Reads only.

    The total budget is checked before the first search: with nothing left, no API call."""
    tiers = select_tiers(load_tiers(settings), gpu=gpu, max_dph=dec(max_dph) if max_dph is not None else None)
    spent = budget.spent(state.instances(PROVIDER), clock())
    total = dec(settings["vastai.budget_limit"]) or Decimal(0)
    if spent >= total:
        raise BudgetError(
            f"the Vast.ai budget is spent: ${money(spent)} of ${money(total)}; nothing was created.",
            hint="raise vastai.budget_limit (VASTAI_BUDGET_LIMIT) to launch again",
        )
    excluded = excluded_machines(state)
    search = first_tier_with_offers(client, tiers, disk_gb=settings["vastai.disk_gb"], excluded=excluded,
                                    progress=progress)
    check = None
    if search.choice is not None:
        check = budget.check(search.choice.offer.dph_total, spent_so_far=spent, **_limits(settings))
    return LaunchPlan(tuple(tiers), search, check, spent, tuple(state.live_instances(PROVIDER)), frozenset(excluded))


# -- launch ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Attempt:
    offer_id: int
    machine_id: int
    gpu: str
    dph: str
    instance_id: int | None
    outcome: str  # ready | unattended | failed
    reason: str = ""
    cost: str | None = None


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


class _AttemptFailed(Exception):
    """This offer did not work out; its instance (if any) is destroyed and its row settled."""

    def __init__(self, attempt: Attempt, *, fatal: ProviderError | None = None) -> None:
        super().__init__(attempt.reason)
        self.attempt = attempt
        self.fatal = fatal  # stop trying further offers, and raise this


class _Handled(Exception):
    """An error whose ledger row is already settled: raise `error` without another cleanup."""

    def __init__(self, error: GpuctlError) -> None:
        super().__init__(error.message)
        self.error = error


def check_plan(plan: LaunchPlan) -> None:
    """Refuse a plan with no offer, or one over budget (BudgetError says what is left)."""
    if plan.choice is None:
        checked = ", ".join(f"{name}: none" for name, _ in plan.search.checked) or "no tiers"
        raise ProviderError(f"no acceptable Vast.ai offer in any tier ({checked}).", provider=PROVIDER,
                            kind="not_found", hint="raise --max-dph, try --gpu with another tier, or edit vastai.gpu_tiers")
    if plan.budget is not None and not plan.budget.ok:
        raise plan.budget.error(f"{plan.choice.offer.gpu_name}")


def ensure_vllm_key(settings: Settings) -> tuple[str, str | None]:
    """The launched vLLM's API key and the profile it lives in; generated and saved (0600)
    before any instance exists, so there is never an endpoint whose key nobody has."""
    key = settings.get("vastai.vllm_api_key")
    if key:
        return str(key), settings.profile
    profile = writable_profile(settings)
    key = secrets.token_urlsafe(32)
    set_profile_value(settings.home, profile, "vastai.vllm_api_key", key)
    return key, profile


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
) -> LaunchResult:
    """Create, watch and (on failure) replace instances until one serves; see the module doc."""
    check_plan(plan)
    run = _Launch(settings, client, state, wait=wait, keep=keep, progress=progress, clock=clock,
                  sleep=sleep or (lambda s: time.sleep(s)), probe=probe or probe_vllm,
                  loading_timeout_s=loading_timeout_s, health_timeout_s=health_timeout_s)
    return run.run(plan, max_attempts)


class _Launch:
    def __init__(self, settings: Settings, client: VastAIClient, state: State, *, wait: bool, keep: bool,
                 progress: Callable[[str], None], clock: Callable[[], float], sleep: Callable[[float], None],
                 probe: Probe, loading_timeout_s: float, health_timeout_s: float) -> None:
        from gpuctl.deploy_assets import render_vllm_args, vast_container_settings

        self.settings, self.client, self.state = settings, client, state
        self.wait, self.keep, self.progress, self.clock, self.sleep, self.probe = wait, keep, progress, clock, sleep, probe
        self.loading_timeout_s, self.health_timeout_s = loading_timeout_s, health_timeout_s
        container = vast_container_settings()
        self.model = settings["vastai.model"]
        self.port = int(container["vllm"]["port"])
        self.image = settings.get("vastai.image") or container["image"]
        self.disk_gb = float(settings["vastai.disk_gb"])
        self.vllm_key, self.profile = ensure_vllm_key(settings)
        # Vast takes docker options as env keys ({"-p 8000:8000": "1"}), as its own client sends them.
        self.env: dict[str, str] = {f"-p {m}": "1" for m in re.findall(r"-p\s+(\S+)", str(container["docker_options"]))}
        if settings.get("vastai.hf_token"):
            self.env["HF_TOKEN"] = settings["vastai.hf_token"]
        self.args = render_vllm_args(container, model=self.model, api_key=self.vllm_key)
        self.started = clock()

    def excluded(self) -> set[int]:
        return excluded_machines(self.state)

    def run(self, plan: LaunchPlan, max_attempts: int) -> LaunchResult:
        attempts: list[Attempt] = []
        tiers = list(plan.tiers)
        for cand in candidates_in_order(self.client, tiers, plan.search, disk_gb=self.disk_gb, excluded=self.excluded):
            if len(attempts) >= max_attempts:
                break
            spent = budget.spent(self.state.instances(PROVIDER), self.clock())
            check = budget.check(cand.offer.dph_total, spent_so_far=spent, **_limits(self.settings))
            if not check.ok:
                err = check.error(cand.offer.gpu_name)
                if attempts:
                    raise BudgetError(f"{len(attempts)} attempt(s) failed ({_reasons(attempts)}); the next offer: "
                                      f"{err.message}", hint=err.hint)
                raise err
            try:
                return self.attempt(cand, tuple(attempts))
            except _Handled as handled:
                raise handled.error from None
            except _AttemptFailed as failed:
                attempts.append(failed.attempt)
                if failed.fatal is not None:
                    raise failed.fatal from None
                self.progress(f"Attempt {len(attempts)} failed: {failed.attempt.reason}. Trying the next offer…")
        if not attempts:
            raise ProviderError("no acceptable Vast.ai offer is left to try.", provider=PROVIDER, kind="not_found",
                                hint="raise --max-dph or try another tier with --gpu")
        raise ProviderError(
            f"no Vast.ai instance came up after {len(attempts)} attempt(s): {_reasons(attempts)}. "
            "Each was destroyed; nothing is left running.",
            provider=PROVIDER, kind="http", hint="see docs/providers/vastai.md (troubleshooting), or use Modal",
        )

    # -- one offer -------------------------------------------------------------------------

    def attempt(self, cand: Candidate, earlier: tuple[Attempt, ...]) -> LaunchResult:
        offer = cand.offer
        label = make_label(self.profile)
        with launch_lock(self.settings.home, label):
            row_id = self.state.add_instance_intent(
                provider=PROVIDER, label=label, profile=self.profile, gpu=offer.gpu_name, dph=str(offer.dph_total),
                offer_id=str(offer.id), machine_id=str(offer.machine_id),
            )
            instance_id: int | None = None
            try:
                self.progress(f"Creating an instance from offer {offer.id}: {offer.gpu_name} "
                              f"(${money(offer.dph_total)}/h, {offer.geolocation or 'unknown location'})…")
                try:
                    instance_id = self.client.create_instance(offer.id, image=self.image, env=self.env, args=self.args,
                                                              disk_gb=self.disk_gb, label=label)
                except ProviderError as exc:
                    raise self.create_failed(row_id, label, cand, exc) from None
                self.state.set_instance_remote_id(row_id, str(instance_id))  # at once: this id bills
                log_event("vastai_instance_created", instance_id=instance_id, offer_id=offer.id, gpu=offer.gpu_name,
                          dph=str(offer.dph_total), label=label, machine_id=offer.machine_id)
                if not self.wait:
                    self.state.update_instance(row_id, status="unattended", status_msg="launched with --no-wait")
                    return self.result(cand, row_id, label, instance_id, None, False, earlier)
                endpoint = self.watch(cand, row_id, instance_id)
                self.state.update_instance(row_id, status="ready", endpoint=endpoint, ready_at=self.clock(),
                                           status_msg="vLLM answered a 1-token completion")
                log_event("vastai_instance_ready", instance_id=instance_id, endpoint=endpoint, gpu=offer.gpu_name,
                          waited_s=round(self.clock() - self.started, 1))
                return self.result(cand, row_id, label, instance_id, endpoint, True, earlier)
            except (_AttemptFailed, _Handled):
                raise
            except BaseException as exc:  # Ctrl-C, or anything unexpected: never leave it billing
                replacement = self.abort(row_id, label, instance_id, exc)
                if replacement is exc:
                    raise
                raise replacement from exc

    def result(self, cand: Candidate, row_id: int, label: str, instance_id: int, endpoint: str | None,
               ready: bool, earlier: tuple[Attempt, ...]) -> LaunchResult:
        o = cand.offer
        done = Attempt(o.id, o.machine_id, o.gpu_name, str(o.dph_total), instance_id, "ready" if ready else "unattended")
        return LaunchResult(instance_id, row_id, label, self.profile, cand.tier.name, o.gpu_name, str(o.dph_total),
                            endpoint, ready, self.clock() - self.started, (*earlier, done))

    def create_failed(self, row_id: int, label: str, cand: Candidate, exc: ProviderError) -> _AttemptFailed | _Handled:
        """The create failed. A 500 or a timeout may still have created it: look for our label."""
        o = cand.offer
        try:
            found = self.find_by_label(label)
        except ProviderError as list_exc:
            self.state.update_instance(row_id, status="failed", status_msg=f"create failed: {exc.message}")
            return _Handled(ProviderError(
                f"creating from offer {o.id} failed ({exc.message}), and the instance list could not be read to "
                f"check that nothing was created ({list_exc.message}). Run `gpuctl cleanup` once the API answers.",
                provider=PROVIDER, kind=exc.kind, status=exc.status, hint=exc.hint))
        row = self.state.get_instance(row_id)
        assert row is not None
        reason = f"create from offer {o.id} failed: {exc.message}"
        # A refused key fails every offer alike: stop after settling this one.
        fatal = exc if exc.kind == "auth" else None
        if found is not None:
            self.state.set_instance_remote_id(row_id, str(found.id))
            return self.fail(cand, row_id, found.id, reason + " (yet it was created)", exclude=False, fatal=fatal)
        mark_destroyed(self.state, row, self.clock(), note=reason, never_created=True)
        log_event("vastai_launch_attempt_failed", offer_id=o.id, machine_id=o.machine_id, reason=reason)
        return _AttemptFailed(Attempt(o.id, o.machine_id, o.gpu_name, str(o.dph_total), None, "failed", reason, "0"),
                              fatal=fatal)

    def find_by_label(self, label: str) -> Instance | None:
        return next((i for i in self.client.list_instances() if i.label == label), None)

    def fail(self, cand: Candidate, row_id: int, instance_id: int, reason: str, *, exclude: bool,
             fatal: ProviderError | None = None) -> _AttemptFailed:
        """Destroy this attempt's instance, record its cost, maybe exclude its machine."""
        o = cand.offer
        row = self.state.get_instance(row_id)
        assert row is not None
        self.progress(f"Destroying instance {instance_id}: {reason}")
        try:
            destroy_remote(self.client, instance_id)
        except ProviderError as exc:
            self.state.update_instance(row_id, status="failed", status_msg=f"{reason}; destroy failed: {exc.message}")
            raise _Handled(ProviderError(
                f"instance {instance_id} failed ({reason}) and destroying it failed too: {exc.message}. "
                f"It may still bill: run `gpuctl destroy {instance_id} --yes` or `gpuctl cleanup`.",
                provider=PROVIDER, kind=exc.kind, status=exc.status)) from None
        cost = mark_destroyed(self.state, row, self.clock(), note=reason)
        if exclude:
            self.state.exclude_machine(PROVIDER, str(o.machine_id), reason[:300])
            log_event("vastai_machine_excluded", machine_id=o.machine_id, reason=reason)
        log_event("vastai_launch_attempt_failed", instance_id=instance_id, offer_id=o.id, machine_id=o.machine_id,
                  reason=reason, cost=None if cost is None else str(cost))
        attempt = Attempt(o.id, o.machine_id, o.gpu_name, str(o.dph_total), instance_id, "failed", reason,
                          None if cost is None else str(cost))
        return _AttemptFailed(attempt, fatal=fatal)

    def abort(self, row_id: int, label: str, instance_id: int | None, exc: BaseException) -> BaseException:
        """Interrupted or crashed mid-launch: destroy what was created (unless --keep on Ctrl-C)."""
        interrupted = isinstance(exc, KeyboardInterrupt)
        if interrupted and self.keep:
            self.state.update_instance(row_id, status="unattended", status_msg="kept after Ctrl-C (--keep)")
            what = f"instance {instance_id}" if instance_id is not None else f"the instance labelled {label} (if created)"
            return LaunchInterrupted(f"interrupted: kept {what}; it bills until destroyed.",
                                     hint=f"`gpuctl destroy {instance_id or '--all'} --yes`; `gpuctl cleanup` destroys it if it never becomes ready")
        row = self.state.get_instance(row_id)
        assert row is not None
        outcome = "nothing had been created"
        try:
            if instance_id is None:
                found = self.find_by_label(label)
                instance_id = found.id if found is not None else None
            if instance_id is not None:
                destroy_remote(self.client, instance_id)
                outcome = f"destroyed instance {instance_id}"
            note = "launch interrupted" if interrupted else f"launch failed: {exc!r}"[:200]
            cost = mark_destroyed(self.state, row, self.clock(), note=note, never_created=instance_id is None)
            log_event("vastai_launch_aborted", instance_id=instance_id, interrupted=interrupted,
                      cost=None if cost is None else str(cost))
        except (ProviderError, OSError) as cleanup_exc:
            self.state.update_instance(row_id, status="failed", status_msg=f"abort cleanup failed: {cleanup_exc}"[:500])
            outcome = (f"could not destroy {'instance ' + str(instance_id) if instance_id else 'it'} "
                       f"({cleanup_exc}); run `gpuctl cleanup`")
        if interrupted:
            return LaunchInterrupted(f"interrupted: {outcome}.")
        return exc

    # -- watching --------------------------------------------------------------------------

    def show(self, cand: Candidate, row_id: int, instance_id: int, errors: list[str]) -> Instance:
        """One status poll; a few transient API errors in a row are tolerated."""
        while True:
            try:
                inst = self.client.get_instance(instance_id)
            except ProviderError as exc:
                if exc.kind == "auth":
                    raise
                errors.append(exc.message)
                if len(errors) >= _MAX_SHOW_ERRORS:
                    raise self.fail(cand, row_id, instance_id, f"its status could not be read ({exc.message})",
                                    exclude=False) from None
                self.sleep(POLL_S)
                continue
            errors.clear()
            if inst is None:
                row = self.state.get_instance(row_id)
                assert row is not None
                reason = "the instance disappeared from the account"
                cost = mark_destroyed(self.state, row, self.clock(), note=reason)
                o = cand.offer
                raise _AttemptFailed(Attempt(o.id, o.machine_id, o.gpu_name, str(o.dph_total), instance_id, "failed",
                                             reason, None if cost is None else str(cost)))
            return inst

    def check_boot(self, cand: Candidate, row_id: int, inst: Instance) -> None:
        msg = inst.status_msg or ""
        if CDI_MARKER in msg.lower():
            raise self.fail(cand, row_id, inst.id, f"CDI injection failure on machine {cand.offer.machine_id} "
                                                   "(a bad host)", exclude=True)
        if inst.actual_status == "exited" or inst.intended_status == "stopped":
            raise self.fail(cand, row_id, inst.id, f"the container exited ({msg or 'no message'})", exclude=True)

    def watch(self, cand: Candidate, row_id: int, instance_id: int) -> str:
        """Until vLLM answers: returns the endpoint, or raises _AttemptFailed after cleaning up."""
        created = self.clock()
        errors: list[str] = []
        last: tuple[str | None, str | None] = ("created", None)
        while True:
            inst = self.show(cand, row_id, instance_id, errors)
            status, msg = inst.actual_status, inst.status_msg
            if (status, msg) != last:
                self.state.update_instance(row_id, status=status or "created", status_msg=msg)
                last = (status, msg)
            self.check_boot(cand, row_id, inst)
            endpoint = inst.endpoint(self.port) if status == "running" else None
            if endpoint:
                break
            waited = self.clock() - created
            if waited > self.loading_timeout_s:
                raise self.fail(cand, row_id, instance_id, f"stuck in {status or 'created'} for over "
                                f"{self.loading_timeout_s / 60:g} minutes ({msg or 'no message'})", exclude=True)
            self.progress(f"Instance {instance_id}: {status or 'created'} — {msg or 'waiting for the host'} ({waited:.0f}s)")
            self.sleep(POLL_S)
        self.state.update_instance(row_id, status="running", endpoint=endpoint)
        running = self.clock()
        while True:
            health = self.probe(endpoint, self.vllm_key, self.model)
            if health.status == "ready":
                return endpoint
            detail = health.detail or health.status
            if health.status == "unhealthy" and "401" in detail:
                fatal = ProviderError(f"vLLM on instance {instance_id} refused gpuctl's API key ({detail})",
                                      provider=PROVIDER, kind="auth",
                                      hint="unset vastai.vllm_api_key and launch again to generate a fresh key")
                raise self.fail(cand, row_id, instance_id, "vLLM refused gpuctl's API key", exclude=False, fatal=fatal)
            waited = self.clock() - running
            if waited > self.health_timeout_s:
                raise self.fail(cand, row_id, instance_id, f"vLLM did not answer within "
                                f"{self.health_timeout_s / 60:g} minutes of the container starting ({detail})", exclude=True)
            self.progress(f"Instance {instance_id}: running; waiting for vLLM to load {self.model} ({waited:.0f}s: {detail})")
            self.sleep(POLL_S)
            self.check_boot(cand, row_id, self.show(cand, row_id, instance_id, errors))


def _reasons(attempts: list[Attempt] | tuple[Attempt, ...]) -> str:
    return "; ".join(f"offer {a.offer_id}: {a.reason}" for a in attempts)

