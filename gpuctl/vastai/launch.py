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

Time is injectable (`clock`, `sleep`), the vLLM probe too. Must not print or exit.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gpuctl.config import Settings, new_api_key, set_profile_value, writable_profile
from gpuctl.errors import EXIT_INTERRUPTED, BudgetError, GpuctlError, ProviderError, UsageError
from gpuctl.events import log_event
from gpuctl.providers.base import Health
from gpuctl.providers.openai_compat import PROBE_TIMEOUT_S
from gpuctl.state import InstanceRow, State
from gpuctl.vastai import budget
from gpuctl.vastai.budget import BudgetCheck, dec, money
from gpuctl.vastai.client import Instance, VastAIClient
from gpuctl.vastai.instances import (
    PROVIDER,
    budget_lock,
    destroy_remote,
    launch_lock,
    make_label,
    mark_destroyed,
    record_live_price,
)
from gpuctl.vastai.offers import Candidate, Search, candidates_in_order, first_tier_with_offers
from gpuctl.vastai.tiers import Tier, load_tiers, select_tiers

LEGACY_NOTE = "Note: Vast.ai is gpuctl's legacy provider; Modal is recommended (`gpuctl deploy modal`)."
POLL_S = 5.0
LOADING_TIMEOUT_S = 10 * 60  # the seed: "stuck in loading for 10+ minutes" means a bad host
HEALTH_TIMEOUT_S = 20 * 60  # after `running`: weights download + load (seed: 7-15 min cold start)
MAX_ATTEMPTS = 3

_MAX_SHOW_ERRORS = 3  # consecutive failed status polls before the attempt is given up
CDI_MARKER = "failed to inject cdi devices"
# A create with an unknown outcome may show up in the list only later (it is still in flight
# at Vast): look for its label this long, this often, before giving up on knowing.
CREATE_LOOKUP_S = 60.0
CREATE_LOOKUP_POLL_S = 10.0
# A retry may cost at most this much more per hour than the offer the user confirmed (unless
# --max-dph said how much they accept): a failed RTX 3090 at $0.18/h never turns into an H100
# at $2.40/h without a second question.
RETRY_PRICE_FACTOR = Decimal("1.25")

# (endpoint, vLLM API key, model) → Health; raises ProviderError(kind="auth") when vLLM refuses
# the key (the one answer that waiting will not change).
Probe = Callable[[str, str | None, str | None], Health]


class LaunchInterrupted(GpuctlError):
    """Ctrl-C during a launch; the message says what became of the instance."""

    exit_code = EXIT_INTERRUPTED


def probe_vllm(endpoint: str, api_key: str | None, model: str | None, *, timeout: float = PROBE_TIMEOUT_S) -> Health:
    """The shared vLLM readiness probe (`providers.openai_compat.probe_vllm`) for a Vast.ai box."""
    from gpuctl.providers.openai_compat import probe_vllm as probe

    return probe(endpoint, api_key, model, provider=PROVIDER, timeout=timeout)


def ledger_status(actual_status: str | None) -> str:
    """Vast's `actual_status` as a ledger status cleanup knows: created, loading or running
    (Vast has more, e.g. `scheduling`, `offline`; `exited` is acted on before it is stored)."""
    if actual_status == "running":
        return "running"
    if actual_status in (None, "created"):
        return "created"
    return "loading"


# -- plan ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class LaunchPlan:
    tiers: tuple[Tier, ...]
    search: Search
    budget: BudgetCheck | None  # for the choice
    spent: Decimal
    live: tuple[InstanceRow, ...]  # gpuctl's Vast.ai instances that are live now
    excluded: frozenset[int]
    reserved: Decimal = Decimal(0)  # what the live instances may still bill (a keep-alive each)
    max_dph: Decimal | None = None  # --max-dph, when the user gave one

    @property
    def choice(self) -> Candidate | None:
        return self.search.choice

    @property
    def retry_max_dph(self) -> Decimal | None:
        """The most $/h any attempt may cost: what the user asked for with --max-dph, else the
        confirmed offer's price plus 25%. None without a choice."""
        if self.max_dph is not None:
            return self.max_dph
        return self.choice.offer.dph_total * RETRY_PRICE_FACTOR if self.choice else None

    @property
    def retry_tiers(self) -> tuple[Tier, ...]:
        """The tiers an attempt may rent from: the chosen one and those before it in the ladder
        (never a later, dearer-class tier the user was not asked about)."""
        if self.search.tier is None:
            return ()
        names = [t.name for t in self.tiers]
        return self.tiers[: names.index(self.search.tier.name) + 1]

    def as_dict(self) -> dict[str, Any]:
        return {
            "tiers_checked": [{"tier": name, "offers": n} for name, n in self.search.checked],
            "tier": self.search.tier.name if self.search.tier else None,
            "candidates": [c.as_dict() for c in self.search.candidates],
            "choice": self.choice.as_dict() if self.choice else None,
            "budget": self.budget.as_dict() if self.budget else None,
            "spent": str(self.spent),
            "reserved": str(self.reserved),
            "live_instances": [r.remote_id or f"intent:{r.id}" for r in self.live],
            "excluded_machines": sorted(self.excluded),
            "retry_max_dph": None if self.retry_max_dph is None else format(self.retry_max_dph.normalize(), "f"),
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

    The total budget is checked before the first search: with nothing left, no API call.
    `launch` checks it again under the global launch lock before each create."""
    cap = check_max_dph(max_dph)
    tiers = select_tiers(load_tiers(settings), gpu=gpu, max_dph=cap)
    rows = state.instances(PROVIDER)
    live = tuple(r for r in rows if r.live)
    spent = budget.spent(rows, clock())
    held = budget.reserved(live, settings["vastai.keep_alive_minutes"])
    total = dec(settings["vastai.budget_limit"]) or Decimal(0)
    if spent + held >= total:
        used = (f"${money(spent)} spent and ${money(held)} held for {len(live)} live instance(s) (each may bill a "
                f"full keep-alive more), of ${money(total)}" if held else f"${money(spent)} of ${money(total)}")
        raise BudgetError(
            f"the Vast.ai budget is spent: {used}; nothing was created.",
            hint="raise vastai.budget_limit (VASTAI_BUDGET_LIMIT) to launch again"
                 + (", or destroy a live instance (`gpuctl destroy --all --yes`)" if held else ""),
        )
    excluded = excluded_machines(state)
    search = first_tier_with_offers(client, tiers, disk_gb=settings["vastai.disk_gb"], excluded=excluded,
                                    progress=progress)
    check = None
    if search.choice is not None:
        check = budget.check(search.choice.offer.dph_total, spent_so_far=spent, reserved_for_live=held,
                             **_limits(settings))
    return LaunchPlan(tuple(tiers), search, check, spent, live, frozenset(excluded), held, cap)


def check_max_dph(max_dph: float | Decimal | None) -> Decimal | None:
    """--max-dph as a Decimal; NaN, infinity, zero or less is a usage error (NaN compares
    false with everything, so it would silently cap nothing)."""
    if max_dph is None:
        return None
    cap = dec(max_dph)
    if cap is None or cap <= 0:
        raise UsageError(f"--max-dph must be a finite number of dollars per hour above 0 (got {max_dph})")
    return cap


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
    key = new_api_key()
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
    create_lookup_s: float | None = None,
) -> LaunchResult:
    """Create, watch and (on failure) replace instances until one serves; see the module doc."""
    check_plan(plan)
    run = _Launch(settings, client, state, wait=wait, keep=keep, progress=progress, clock=clock,
                  sleep=sleep or (lambda s: time.sleep(s)), probe=probe or probe_vllm,
                  loading_timeout_s=loading_timeout_s, health_timeout_s=health_timeout_s,
                  create_lookup_s=CREATE_LOOKUP_S if create_lookup_s is None else create_lookup_s)
    return run.run(plan, max_attempts)


class _Launch:
    def __init__(self, settings: Settings, client: VastAIClient, state: State, *, wait: bool, keep: bool,
                 progress: Callable[[str], None], clock: Callable[[], float], sleep: Callable[[float], None],
                 probe: Probe, loading_timeout_s: float, health_timeout_s: float, create_lookup_s: float) -> None:
        from gpuctl.bundle import render_vllm_args, vast_container_settings

        self.settings, self.client, self.state = settings, client, state
        self.wait, self.keep, self.progress, self.clock, self.sleep, self.probe = wait, keep, progress, clock, sleep, probe
        self.loading_timeout_s, self.health_timeout_s = loading_timeout_s, health_timeout_s
        self.create_lookup_s = create_lookup_s
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
        cap = plan.retry_max_dph
        # Only the chosen tier and those before it: later tiers are never even searched.
        tiers = list(plan.retry_tiers)
        for cand in candidates_in_order(self.client, tiers, plan.search, disk_gb=self.disk_gb, excluded=self.excluded):
            if cap is not None and cand.offer.dph_total > cap:
                continue  # dearer than what the user confirmed
            if len(attempts) >= max_attempts:
                break
            try:
                return self.attempt(cand, tuple(attempts))
            except _Handled as handled:
                raise handled.error from None
            except _AttemptFailed as failed:
                attempts.append(failed.attempt)
                if failed.fatal is not None:
                    raise failed.fatal from None
                self.progress(f"Attempt {len(attempts)} failed: {failed.attempt.reason}. Trying the next offer…")
        if len(attempts) >= max_attempts:
            raise ProviderError(
                f"no Vast.ai instance came up after {len(attempts)} attempt(s): {_reasons(attempts)}. "
                "Each was destroyed; nothing is left running.",
                provider=PROVIDER, kind="http", hint="see docs/providers/vastai.md (troubleshooting), or use Modal",
            )
        raise self.exhausted(plan, attempts)

    def exhausted(self, plan: LaunchPlan, attempts: list[Attempt]) -> ProviderError:
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
        tried = (f"no Vast.ai instance came up after {len(attempts)} attempt(s): {_reasons(attempts)}. "
                 "Each was destroyed; nothing is left running. " if attempts else "")
        return ProviderError(
            f"{tried}The {tier} tier's offers {within} are exhausted; dearer offers{later} are not rented "
            "without a new confirmation.",
            provider=PROVIDER, kind="not_found",
            hint="`gpuctl launch --dry-run` shows the rest; launch again to confirm one, or pass --max-dph")

    # -- one offer -------------------------------------------------------------------------

    def reserve(self, cand: Candidate, label: str, earlier: tuple[Attempt, ...]) -> int:
        """Under the global launch lock: check both budgets against what is spent and what the
        live rows may still bill, then write the intent row (which the next launch counts)."""
        offer = cand.offer
        with budget_lock(self.settings.home):
            rows = self.state.instances(PROVIDER)
            check = budget.check(offer.dph_total, spent_so_far=budget.spent(rows, self.clock()),
                                 reserved_for_live=budget.reserved(rows, self.settings["vastai.keep_alive_minutes"]),
                                 **_limits(self.settings))
            if not check.ok:
                err = check.error(offer.gpu_name)
                if earlier:
                    raise BudgetError(f"{len(earlier)} attempt(s) failed ({_reasons(earlier)}); the next offer: "
                                      f"{err.message}", hint=err.hint)
                raise err
            return self.state.add_instance_intent(
                provider=PROVIDER, label=label, profile=self.profile, gpu=offer.gpu_name, dph=str(offer.dph_total),
                offer_id=str(offer.id), machine_id=str(offer.machine_id),
            )

    def attempt(self, cand: Candidate, earlier: tuple[Attempt, ...]) -> LaunchResult:
        offer = cand.offer
        label = make_label(self.profile)
        with launch_lock(self.settings.home, label):
            row_id = self.reserve(cand, label, earlier)
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
        """The create failed. Unless Vast refused it outright, it may still have created an
        instance (maybe listed only later): look for our label before concluding anything."""
        o = cand.offer
        reason = f"create from offer {o.id} failed: {exc.message}"
        # A refused key fails every offer alike: stop after settling this one.
        fatal = exc if exc.kind == "auth" else None
        if create_refused(exc):
            row = self.state.get_instance(row_id)
            assert row is not None
            mark_destroyed(self.state, row, self.clock(), note=reason, never_created=True)
            log_event("vastai_launch_attempt_failed", offer_id=o.id, machine_id=o.machine_id, reason=reason)
            return _AttemptFailed(Attempt(o.id, o.machine_id, o.gpu_name, str(o.dph_total), None, "failed", reason, "0"),
                                  fatal=fatal)
        found, list_error = self.look_for(label)
        if found is not None:
            self.state.set_instance_remote_id(row_id, str(found.id))
            return self.fail(cand, row_id, found.id, reason + " (yet it was created)", exclude=False, fatal=fatal)
        why = (f"the instance list could not be read ({list_error})" if list_error
               else f"no instance labelled {label} was listed within {self.create_lookup_s:g}s")
        self.state.update_instance(row_id, status="failed", status_msg=f"{reason}; outcome unknown: {why}"[:500])
        log_event("vastai_create_outcome_unknown", offer_id=o.id, label=label, ledger_row=row_id, reason=reason)
        return _Handled(ProviderError(
            f"creating from offer {o.id} failed ({exc.message}), and it may have created an instance all the same: "
            f"{why}. The launch stops here rather than risk a second billing instance; ledger row {row_id} stays "
            "live and counts against the budget.",
            provider=PROVIDER, kind=exc.kind, status=exc.status,
            hint="run `gpuctl cleanup` in a few minutes: it destroys the instance if it appears, and clears the "
                 "row once the list has shown it never existed"))

    def look_for(self, label: str) -> tuple[Instance | None, str | None]:
        """Our label in the instance list, polled for up to `create_lookup_s`: a create still in
        flight at Vast may be listed late. Returns (instance or None, the last list error)."""
        deadline = self.clock() + self.create_lookup_s
        while True:
            list_error = None
            try:
                found = self.find_by_label(label)
            except ProviderError as exc:
                found, list_error = None, exc.message
            if found is not None or self.clock() >= deadline:
                return found, list_error
            self.progress(f"The create's outcome is unknown: looking for {label} in the instance list…")
            self.sleep(CREATE_LOOKUP_POLL_S)

    def find_by_label(self, label: str) -> Instance | None:
        """One look. None only means "not listed now", never "not created"."""
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
        """Interrupted or crashed mid-launch: destroy what was created (unless --keep on Ctrl-C).

        Returns what to raise: LaunchInterrupted on Ctrl-C; the original error once everything is
        cleaned up; else a ProviderError that says what may still bill (the caller chains it)."""
        interrupted = isinstance(exc, KeyboardInterrupt)
        if interrupted and self.keep:
            self.state.update_instance(row_id, status="unattended", status_msg="kept after Ctrl-C (--keep)")
            what = f"instance {instance_id}" if instance_id is not None else f"the instance labelled {label} (if created)"
            return LaunchInterrupted(f"interrupted: kept {what}; it bills until destroyed.",
                                     hint=f"`gpuctl destroy {instance_id or '--all'} --yes`; `gpuctl cleanup` destroys it if it never becomes ready")
        row = self.state.get_instance(row_id)
        assert row is not None
        note = "launch interrupted" if interrupted else f"launch failed: {_describe(exc)}"[:200]
        try:
            if instance_id is None:
                found = self.find_by_label(label)  # one look: someone is waiting for us to stop
                if found is None:
                    # Not listed (yet) proves nothing: keep the row live, counted, for cleanup.
                    self.state.update_instance(row_id, status="failed",
                                               status_msg=f"{note}; whether the create went through is unknown"[:500])
                    log_event("vastai_launch_aborted", instance_id=None, interrupted=interrupted, outcome="unknown")
                    what = (f"whether an instance was created is unknown (none labelled {label} is listed yet); "
                            f"ledger row {row_id} stays live and counts against the budget")
                    return self._abort_error(exc, what, "run `gpuctl cleanup` in a few minutes: it destroys the "
                                                        "instance if it appears")
                instance_id = found.id
                self.state.set_instance_remote_id(row_id, str(instance_id))
            destroy_remote(self.client, instance_id)
            cost = mark_destroyed(self.state, row, self.clock(), note=note)
            log_event("vastai_launch_aborted", instance_id=instance_id, interrupted=interrupted,
                      cost=None if cost is None else str(cost))
        except (ProviderError, OSError) as cleanup_exc:
            detail = cleanup_exc.message if isinstance(cleanup_exc, ProviderError) else str(cleanup_exc)
            self.state.update_instance(row_id, status="failed", status_msg=f"{note}; abort cleanup failed: {detail}"[:500])
            if instance_id is not None:
                return self._abort_error(exc, f"destroying instance {instance_id} failed ({detail}); it may still "
                                              f"bill: run `gpuctl destroy {instance_id} --yes`",
                                         f"`gpuctl destroy {instance_id} --yes`, or `gpuctl cleanup` (cron) finishes the job")
            return self._abort_error(exc, f"whether an instance was created could not be checked ({detail}); ledger "
                                          f"row {row_id} stays live", "run `gpuctl cleanup` once the Vast.ai API answers")
        if interrupted:
            return LaunchInterrupted(f"interrupted: destroyed instance {instance_id}.")
        return exc

    def _abort_error(self, exc: BaseException, what: str, hint: str) -> GpuctlError:
        if isinstance(exc, KeyboardInterrupt):
            return LaunchInterrupted(f"interrupted: {what}.", hint=hint)
        return ProviderError(f"the launch failed ({_describe(exc)}) and {what}.", provider=PROVIDER,
                             kind=exc.kind if isinstance(exc, ProviderError) else "http", hint=hint)

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
                # Believe "gone" only after a destroy: it is idempotent, and a show that answers
                # null by mistake must not leave a billing instance marked destroyed.
                raise self.fail(cand, row_id, instance_id, "the instance disappeared from the account", exclude=False)
            if inst.dph_total is not None:  # a host can raise the price: budgets charge the higher
                row = self.state.get_instance(row_id)
                assert row is not None
                record_live_price(self.state, row, inst.dph_total)
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
                # Only statuses cleanup knows go in the ledger; Vast's own word goes in the note.
                note = msg if ledger_status(status) == (status or "created") else f"Vast status {status}: {msg or ''}"
                self.state.update_instance(row_id, status=ledger_status(status), status_msg=note)
                last = (status, msg)
            self.check_boot(cand, row_id, inst)
            endpoint = inst.endpoint(self.port) if status == "running" else None
            if endpoint:
                break
            waited = self.clock() - created
            if waited > self.loading_timeout_s:
                raise self.fail(cand, row_id, instance_id, f"stuck in {status or 'created'} for over "
                                f"{self.loading_timeout_s / 60:g} minutes ({msg or 'no message'})", exclude=True)
            # the spinner shows the elapsed time itself
            self.progress(f"Instance {instance_id}: {status or 'created'} — {msg or 'waiting for the host'}")
            self.sleep(POLL_S)
        self.state.update_instance(row_id, status="running", endpoint=endpoint)
        running = self.clock()
        while True:
            try:
                health = self.probe(endpoint, self.vllm_key, self.model)
            except ProviderError as exc:
                if exc.kind != "auth":  # anything else may pass: keep waiting, within the deadline
                    health = Health(provider=PROVIDER, status="unhealthy", endpoint=endpoint, detail=exc.message)
                else:
                    fatal = ProviderError(f"vLLM on instance {instance_id} refused gpuctl's API key ({exc.message})",
                                          provider=PROVIDER, kind="auth",
                                          hint="unset vastai.vllm_api_key and launch again to generate a fresh key")
                    raise self.fail(cand, row_id, instance_id, "vLLM refused gpuctl's API key", exclude=False,
                                    fatal=fatal) from None
            if health.status == "ready":
                return endpoint
            detail = health.detail or health.status
            waited = self.clock() - running
            if waited > self.health_timeout_s:
                raise self.fail(cand, row_id, instance_id, f"vLLM did not answer within "
                                f"{self.health_timeout_s / 60:g} minutes of the container starting ({detail})", exclude=True)
            self.progress(f"Instance {instance_id}: running; waiting for vLLM to load {self.model} ({detail})")
            self.sleep(POLL_S)
            self.check_boot(cand, row_id, self.show(cand, row_id, instance_id, errors))


def create_refused(exc: ProviderError) -> bool:
    """Vast answered the create and said no (a 4xx, or 200 with `success: false`): nothing was
    created. Everything else (5xx, a timeout, a dropped connection, a garbled reply, a 408 a
    proxy may send after forwarding) leaves the outcome unknown."""
    if exc.status is None:
        return False
    if exc.status == 200:
        return exc.kind == "http"  # success false; "malformed" (no new_contract) may have created one
    return 400 <= exc.status < 500 and exc.status != 408


def _describe(exc: BaseException) -> str:
    if isinstance(exc, GpuctlError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__


def _reasons(attempts: list[Attempt] | tuple[Attempt, ...]) -> str:
    return "; ".join(f"offer {a.offer_id}: {a.reason}" for a in attempts)

