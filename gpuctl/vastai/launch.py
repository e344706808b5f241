"""`gpuctl launch`: rent the cheapest acceptable Vast.ai GPU, start vLLM on it, and make sure
that whatever happens nothing is left billing unseen; when a box fails, go on down the tiers.

The order is the safety argument:
1. budgets are checked before any API write, and again before every attempt under the global
   launch lock, counting what is spent *and* what every live instance may still bill (a full
   keep-alive each, never less than the boot allowance), so concurrent launches see each
   other; a `--yes` launch sends no create at all while the account already holds
   `MAX_UNCONFIRMED` creates of unknown outcome;
2. the vLLM API key is saved (active profile, else the state database) before the create: no
   endpoint without its key (`container.py`);
3. an *intent* row with a unique label is written to the ledger, and the launch lock taken,
   before the create call; the instance id is recorded the moment the create returns;
4. a create whose outcome is unknown (timeout, dropped connection, 5xx, a garbled reply) is
   never re-sent: its label is looked for in the instance list for up to `CREATE_LOOKUP_S`
   (a create in flight may be listed late); found, it is destroyed; still unknown, its row
   stays live as `unconfirmed` (held against the budget, which must hold it *and* the next
   offer; watched by cleanup) and the next offer is tried; later looks destroy it if it shows up
   (the walk stops instead when the list cannot be read either, or once `MAX_UNCONFIRMED` are
   held on the account);
5. then we watch: `running` (status and `status_msg` shown), vLLM's /health and a 1-token
   completion; on CDI injection failure, loading past 10 minutes, a boot exit, or vLLM never
   answering, the instance is destroyed (its cost recorded) and its machine excluded for
   `plan.EXCLUDE_FOR_S`. A live price above what this attempt may cost (its tier's cap and
   --max-dph; without leave to go further, the confirmed $/h + 25%), or one whose projection
   breaks a budget, fails the attempt too (nothing excluded). The same container exit on two
   machines is the configuration's fault: the walk stops (exit 3 when the message names the
   model, a gated repo or a token), and neither machine is excluded. An instance that
   `gpuctl destroy` (or cleanup) takes while it is watched ends the launch: never replaced;
6. after a failure (5) or a definite refusal of the create (a 4xx such as the offer being
   taken) the next offer is tried: the rest of the tier, then the later tiers (searched only
   when reached), at most `MAX_ATTEMPTS_PER_TIER` attempts a tier, each within the budget and
   any --max-dph, until a vLLM generates or every tier has been tried. What the user confirmed
   bounds it (`escalate`): `--yes` (and code, e.g. the admin API) confirmed anything within
   the budget; an interactive launch confirmed the chosen tier at its $/h + 25% (or
   --max-dph) and is asked *once* before anything dearer; `False` stops there;
7. one handler is around the whole walk: Ctrl-C (or any error) at any moment, inside an
   attempt or between them (the last look for a create of unknown outcome after a box came up,
   the search of the next tier), destroys every instance this launch created and has not
   handed over, unless `keep`, and the message names each one and its state (from the ledger);
   a process that dies outright leaves ledger rows, labels and released locks, which
   `gpuctl cleanup` acts on.

An empty or partial instance list never proves that a create did not happen: a row is only
marked never-created when Vast refused the create outright (a 4xx, or `success: false`).

Ledger statuses (instances.status): intent → created → loading → running → ready (Vast's other
statuses are stored as `loading`); `unattended` when the launcher stopped watching before
ready (--no-wait, or --keep on Ctrl-C); `unconfirmed` when a create's outcome is unknown and
no instance carries its label (yet); `failed` when a destroy failed and cleanup must finish
the job; `destroyed`.

Where each step lives: the plan and the first budget check in `plan.py`; one attempt (the
budget re-check under the lock, steps 2 to 4, and 7 within it) in `attempt.py`; the watch (step
5) in `watch.py`, what its evidence means in `verdict.py`; this module walks the offers and
tiers (step 6) and holds the handler of step 7; the words for how it ended in
`launch_errors.py`. Time is injectable (`clock`, `sleep`), the vLLM probe too. Must not print
or exit; `progress` gets one line per step (raise from it to abort: what was created is
destroyed).
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from gpuctl.config import Settings
from gpuctl.errors import BudgetError, GpuctlError, Kind, ProviderError
from gpuctl.events import log_event
from gpuctl.state import State
from gpuctl.vastai.attempt import (
    UNCONFIRMED,
    Attempt,
    Attempter,
    AttemptFailed,
    LaunchInterrupted,
    Settled,
)
from gpuctl.vastai.budget import money
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.container import create_spec
from gpuctl.vastai.instances import PROVIDER
from gpuctl.vastai.interrupt import stopped
from gpuctl.vastai.launch_errors import (
    CLEANUP_HINT,
    LaunchFailed,
    LaunchMisconfigured,
    LaunchOverBudget,
    attempts_data,
    exhausted,
    held_on_account,
    left_behind,
    over_budget,
    tried_text,
)
from gpuctl.vastai.offers import Candidate, candidates_in_order
from gpuctl.vastai.plan import LaunchPlan, check_plan, excluded_machines
from gpuctl.vastai.tiers import Tier
from gpuctl.vastai.watch import HEALTH_TIMEOUT_S, LOADING_TIMEOUT_S, Probe, WatchSetup

__all__ = ["LEGACY_NOTE", "Attempt", "Escalation", "LaunchFailed", "LaunchInterrupted", "LaunchMisconfigured",
           "LaunchOverBudget", "LaunchResult", "launch", "legacy_note_due"]

LEGACY_NOTE = "Note: Vast.ai is gpuctl's legacy provider; Modal is recommended (`gpuctl deploy modal`)."
LEGACY_NOTE_EVERY_S = 24 * 3600  # a reminder, not a nag: once a day at most
LEGACY_NOTE_FILE = "legacy-note-shown"  # in GPUCTL_HOME: when the note was last shown (epoch seconds)
POLL_S = 5.0  # status polls and readiness probes, while watching (`watch.WatchSetup.poll_s`)
# Bad hosts cluster (one provider's fleet, one driver): after this many failures in one tier the
# walk moves on to the next tier rather than spending the whole budget on one GPU model.
MAX_ATTEMPTS_PER_TIER = 3
# A create with an unknown outcome may show up in the list only later (it is still in flight
# at Vast): look for its label this long (every `attempt.CREATE_LOOKUP_POLL_S`) before holding
# it as unconfirmed.
CREATE_LOOKUP_S = 60.0
# Creates of unknown outcome the account may hold (this launch's and earlier ones', until cleanup
# settles them): a third in a row means the API is failing, and every further create could be
# another box billing unseen. A `--yes` launch sends none once this many are held.
MAX_UNCONFIRMED = 2


def legacy_note_due(home: Path, now: float) -> str | None:
    """`LEGACY_NOTE` if it was not shown in the last day, remembering that it is shown now;
    else None. A home that cannot be written shows it every time rather than never."""
    path = home / LEGACY_NOTE_FILE
    try:
        last: float | None = float(path.read_text(encoding="utf-8").strip())
    except (OSError, ValueError):
        last = None
    if last is not None and 0 <= now - last < LEGACY_NOTE_EVERY_S:
        return None
    try:
        home.mkdir(parents=True, exist_ok=True, mode=0o700)
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(f"{now}\n", encoding="utf-8")
        os.replace(tmp, path)
    except OSError:
        pass
    return LEGACY_NOTE


@dataclass(frozen=True)
class Escalation:
    """The one question of an interactive launch: the offers it confirmed are used up; may it go
    on to `next` and everything after it (dearer offers, later tiers), within the budgets?"""

    attempts: tuple[Attempt, ...]
    next: Candidate
    confirmed_dph: Decimal | None  # the most $/h the user confirmed
    confirmed_tier: str


# True: go on (as `--yes`); False: stop at what was confirmed; a callable: ask it once.
Escalate = bool | Callable[[Escalation], bool]


@dataclass(frozen=True)
class LaunchResult:
    instance_id: int
    row_id: int
    label: str
    profile: str | None
    tier: str
    gpu: str
    dph: str  # what it bills: the ledger's $/h (the live price, if the host raised it)
    endpoint: str | None  # http://ip:port, None with --no-wait
    ready: bool
    waited_s: float
    attempts: tuple[Attempt, ...] = field(default=())
    vllm_key_where: str = ""  # where the vLLM API key lives (never the key)

    @property
    def openai_base(self) -> str | None:
        return f"{self.endpoint}/v1" if self.endpoint else None

    @property
    def unconfirmed(self) -> tuple[Attempt, ...]:
        """Creates of unknown outcome still held against the budget (cleanup settles them)."""
        return tuple(a for a in self.attempts if a.outcome == UNCONFIRMED)

    def as_dict(self) -> dict[str, Any]:
        d = {k: getattr(self, k) for k in self.__dataclass_fields__ if k != "attempts"}
        d["openai_base"] = self.openai_base
        d["attempts"] = attempts_data(self.attempts)
        return d


def launch(
    settings: Settings,
    plan: LaunchPlan,
    *,
    client: VastAIClient,
    state: State,
    wait: bool = True,
    keep: bool = False,
    escalate: Escalate = False,
    progress: Callable[[str], None] = lambda m: None,
    clock: Callable[[], float] = time.time,
    sleep: Callable[[float], None] | None = None,
    probe: Probe | None = None,
    max_attempts: int | None = None,
    max_attempts_per_tier: int = MAX_ATTEMPTS_PER_TIER,
    loading_timeout_s: float = LOADING_TIMEOUT_S,
    health_timeout_s: float = HEALTH_TIMEOUT_S,
    create_lookup_s: float | None = None,
) -> LaunchResult:
    """Create, watch and (on failure) replace instances until one serves; see the module doc.
    `max_attempts` bounds the whole walk (None: only the per-tier bound and the budgets)."""
    check_plan(plan)
    held = [r for r in state.live_instances(PROVIDER) if r.status == UNCONFIRMED]
    if escalate is True and len(held) >= MAX_UNCONFIRMED:
        raise held_on_account(held, MAX_UNCONFIRMED)
    if plan.forget_excluded:
        forgotten = state.forget_excluded_machines(PROVIDER)
        log_event("vastai_exclusions_forgotten", machines=forgotten)
    spec = create_spec(settings, state)
    setup = WatchSetup(client, state, spec.port, spec.vllm_key, spec.model, clock=clock,
                       sleep=sleep or (lambda s: time.sleep(s)), progress=progress, probe=probe, poll_s=POLL_S,
                       loading_timeout_s=loading_timeout_s, health_timeout_s=health_timeout_s)
    attempter = Attempter(settings, spec, setup, wait=wait, keep=keep,
                          create_lookup_s=CREATE_LOOKUP_S if create_lookup_s is None else create_lookup_s)
    return Fallback(plan, attempter, escalate, max_attempts, max_attempts_per_tier, held_before=len(held)).run()


class Fallback:
    """The walk over offers and tiers for one launch (step 6 of the module doc), and the one
    handler around it (step 7)."""

    def __init__(self, plan: LaunchPlan, attempter: Attempter, escalate: Escalate, max_attempts: int | None,
                 per_tier: int, *, held_before: int = 0) -> None:
        self.plan, self.attempter, self.escalate = plan, attempter, escalate
        self.max_attempts, self.per_tier, self.held_before = max_attempts, per_tier, held_before
        self.attempts: list[Attempt] = []
        self.tried: Counter[str] = Counter()  # attempts per tier
        self.over_budget: BudgetError | None = None  # the first refusal
        self.refused_dph: Decimal | None = None  # the cheapest $/h a budget refused (dearer ones are too)
        self.granted = escalate is True
        self.stopped_at: Candidate | None = None  # the first offer beyond what was confirmed, not tried
        self.halt: str | None = None  # why the walk stopped early, with offers left
        self.pending: int | None = None  # the ledger row of an instance that came up, not handed over yet

    def tiers(self) -> Sequence[Tier]:
        # Without leave to go further, later tiers are never even searched.
        return self.plan.tiers if self.escalate is not False else self.plan.retry_tiers

    def confirmed(self, cand: Candidate) -> bool:
        cap = self.plan.retry_max_dph
        return (cand.tier.name in {t.name for t in self.plan.retry_tiers}
                and (cap is None or cand.offer.dph_total <= cap))

    def allowed(self, cand: Candidate) -> bool:
        """Within what the user confirmed, or leave was given (asked once)."""
        if self.confirmed(cand):
            return True
        if self.stopped_at is None:
            self.stopped_at = cand
            plan = self.plan
            tier = plan.search.tier.name if plan.search.tier else ""
            if callable(self.escalate):
                self.granted = bool(self.escalate(Escalation(tuple(self.attempts), cand, plan.retry_max_dph, tier)))
            if self.granted:
                self.attempter.progress(
                    f"Past the {tier} tier's offers at ${money(plan.retry_max_dph or cand.offer.dph_total)}/h: going "
                    f"on to {cand.offer.gpu_name} at ${money(cand.offer.dph_total)}/h (tier {cand.tier.name}), "
                    "within the budgets")
        return self.granted

    def price_limit(self, cand: Candidate) -> tuple[Decimal, str]:
        """The most $/h this attempt may bill once it runs (a host may raise its price), and whose
        limit that is: its tier's cap (with --max-dph), and without leave to go further the
        confirmed $/h + 25% as well."""
        plan, cap = self.plan, cand.tier.max_dph
        why = "--max-dph" if plan.max_dph is not None and cap == plan.max_dph else f"the {cand.tier.name} tier's cap"
        confirmed = plan.retry_max_dph
        if not self.granted and confirmed is not None and confirmed < cap:
            cap, why = confirmed, "the confirmed $/h + 25%"
        return cap, why

    def run(self) -> LaunchResult:
        try:
            return self.walk()
        except BaseException as exc:
            stopped = self.stop(exc)
            if stopped is exc:
                raise
            raise stopped from exc

    def walk(self) -> LaunchResult:
        plan, at = self.plan, self.attempter
        offers = candidates_in_order(at.client, self.tiers(), plan.search, disk_gb=at.spec.disk_gb,
                                     excluded=lambda: excluded_machines(at.state, at.clock()))
        for cand in offers:
            if self.max_attempts is not None and len(self.attempts) >= self.max_attempts:
                break
            if self.tried[cand.tier.name] >= self.per_tier:
                continue  # this tier had its chances: on to the next
            if self.refused_dph is not None and cand.offer.dph_total >= self.refused_dph:
                continue  # a budget refused a cheaper one
            if not self.allowed(cand):
                if self.escalate is False:
                    continue  # dearer than confirmed: never rented without a new confirmation
                break  # declined
            limit, why = self.price_limit(cand)
            try:
                started = at.run(cand, limit=limit, limit_why=why)
            except Settled as settled:
                raise settled.error from None
            except AttemptFailed as failed:
                self.attempts.append(failed.attempt)
                self.tried[cand.tier.name] += 1
                if failed.misconfigured is not None or failed.fatal is not None:
                    self.settle_late()
                    raise self.fatal(failed) from None
                held = sum(a.outcome == UNCONFIRMED for a in self.attempts) + self.held_before
                before = f" ({self.held_before} of them from before this launch)" if self.held_before else ""
                self.halt = failed.halt or (f"{held} creates of unknown outcome: the Vast.ai API is failing, and "
                                            f"each further create could be another box billing unseen{before}"
                                            if held >= MAX_UNCONFIRMED else None)
                if self.halt is not None:
                    break
                at.progress(f"Attempt {len(self.attempts)} failed: {failed.attempt.reason}. Trying the next offer…")
                if failed.attempt.outcome != UNCONFIRMED:  # (its own lookup has just looked)
                    self.settle_late()
                continue
            except BudgetError as err:
                self.over_budget = self.over_budget or err
                self.refused_dph = cand.offer.dph_total
                continue
            self.pending = started.row_id  # came up: destroyed by `stop` unless handed over below
            self.settle_late()
            done = at.attempt(cand, started.instance_id, "ready" if started.ready else "unattended",
                              row_id=started.row_id)
            result = LaunchResult(started.instance_id, started.row_id, started.label, at.spec.profile,
                                  cand.tier.name, cand.offer.gpu_name, done.dph, started.endpoint, started.ready,
                                  at.clock() - at.started, (*self.attempts, done), at.spec.key.where)
            self.pending = None  # handed over
            return result
        self.settle_late()
        raise self.failure()

    def settle_late(self) -> None:
        """Creates of unknown outcome that are listed now are destroyed (`HeldCreates.recheck`)."""
        for row_id, instance_id, cost in self.attempter.held.recheck():
            self.attempts = [dataclasses.replace(a, outcome="failed", instance_id=instance_id, cost=cost,
                                                 reason=f"{a.reason}; listed late, destroyed")
                             if a.ledger_row == row_id else a for a in self.attempts]

    def fatal(self, failed: AttemptFailed) -> GpuctlError:
        """An attempt that ends the walk (a refused key, the user's destroy, the same exit on two
        machines), with every attempt and what they left."""
        attempts, left = self.attempts, left_behind(self.attempts)
        if failed.misconfigured is not None:
            message = f"{failed.attempt.reason}. {left}"
            hint = ("fix the setting, then `gpuctl launch` again (`gpuctl profile show` says where each value "
                    "comes from)")
            if failed.misconfigured:
                return LaunchMisconfigured(message, attempts=attempts, hint=hint)
            return LaunchFailed(message, attempts=attempts, hint=hint)
        assert failed.fatal is not None
        fatal = failed.fatal
        return LaunchFailed(f"{fatal.message.rstrip('.')}. {left}", attempts=attempts, kind=fatal.kind,
                            hint=fatal.hint)

    def failure(self) -> ProviderError | BudgetError:
        """Why the walk ended without an instance that serves."""
        attempts = self.attempts
        tried = tried_text(attempts)
        if self.halt is not None:
            return LaunchFailed(f"{tried}The launch stops: {self.halt}.", attempts=attempts, hint=CLEANUP_HINT)
        if self.max_attempts is not None and len(attempts) >= self.max_attempts:
            return LaunchFailed(tried.strip(), attempts=attempts,
                                hint="see docs/providers/vastai.md (troubleshooting), or use Modal")
        if self.over_budget is None and (self.escalate is False or (self.stopped_at is not None and not self.granted)):
            return exhausted(self.plan, attempts, tried)
        if self.over_budget is not None:
            return over_budget(self.over_budget, attempts)
        names = [t.name for t in self.tiers()]
        every = (f"every acceptable offer of the {len(names)} tier(s) tried ({', '.join(names)}; at most "
                 f"{self.per_tier} attempt(s) a tier)")
        excluded = f" ({self.plan.excluded_note})" if self.plan.excluded_note else ""
        return LaunchFailed(f"{tried}{every[0].upper()}{every[1:]}: none is left{excluded}.", attempts=attempts,
                            kind=Kind.NOT_FOUND if not attempts else Kind.HTTP,
                            hint="`gpuctl launch --dry-run` shows what is on offer now; widen vastai.gpu_tiers, "
                                 "raise --max-dph, or use Modal (`gpuctl deploy modal`)")

    def stop(self, exc: BaseException) -> BaseException:
        """The one handler (step 7, `interrupt.stopped`); the walk's own endings (every box
        already settled) pass through unchanged."""
        return stopped(self.attempter, exc, pending=self.pending is not None)
