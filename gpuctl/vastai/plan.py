"""What a launch would rent, and whether the budgets allow it: the tiers, the first tier's
offers, the choice, the budget verdict, and the price and tiers every retry must stay within.

The total budget is checked before the first search (with nothing left, no API call); the
launch checks it again under the global launch lock before each create (`attempt.py`).
Must not: create anything, write the ledger, print or exit. `gpuctl launch --dry-run` shows a
plan and stops.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gpuctl.config import Settings
from gpuctl.costs.money import money_str
from gpuctl.errors import BudgetError, ProviderError, UsageError
from gpuctl.state import InstanceRow, State
from gpuctl.vastai import budget
from gpuctl.vastai.budget import BudgetCheck, dec, money
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.instances import PROVIDER
from gpuctl.vastai.offers import Candidate, Search, first_tier_with_offers
from gpuctl.vastai.tiers import Tier, load_tiers, select_tiers

# A retry may cost at most this much more per hour than the offer the user confirmed (unless
# --max-dph said how much they accept): a failed RTX 3090 at $0.18/h never turns into an H100
# at $2.40/h without a second question.
RETRY_PRICE_FACTOR = Decimal("1.25")
# A machine that failed a launch is skipped for this long (a host's fault is often fixed within
# a day; a user's own setting that looked like one must not ban healthy machines for good).
EXCLUDE_FOR_S = 24 * 3600
FORGET_HINT = "`gpuctl launch --forget-excluded` tries them again"


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
    forget_excluded: bool = False  # --forget-excluded: the launch clears the exclusions first

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
            "spent": money_str(self.spent),
            "reserved": money_str(self.reserved),
            "live_instances": [r.remote_id or f"intent:{r.id}" for r in self.live],
            "excluded_machines": sorted(self.excluded),
            "forget_excluded": self.forget_excluded,
            "retry_max_dph": money_str(self.retry_max_dph),
        }

    @property
    def excluded_note(self) -> str | None:
        """How many machines the search skipped, and how to try them again (None: none)."""
        if not self.excluded:
            return None
        return (f"{len(self.excluded)} machine(s) that failed a launch in the last {EXCLUDE_FOR_S // 3600} h are "
                f"excluded; {FORGET_HINT}")


def budget_check(settings: Settings, dph: Decimal, *, spent: Decimal, reserved: Decimal) -> BudgetCheck:
    """One launch at `dph` against the session and total budgets the settings give."""
    return budget.check(dph, spent_so_far=spent, reserved_for_live=reserved,
                        session_limit=settings["vastai.session_budget_limit"],
                        total_limit=settings["vastai.budget_limit"],
                        keep_alive_minutes=settings["vastai.keep_alive_minutes"])


def excluded_machines(state: State, now: float) -> set[int]:
    """Machines that failed a launch (CDI, a boot exit, stuck loading) in the last
    `EXCLUDE_FOR_S`: not rented again until then, or until `--forget-excluded`."""
    return {int(m) for m in state.excluded_machines(PROVIDER, since=now - EXCLUDE_FOR_S) if m.isdigit()}


def plan_launch(settings: Settings, client: VastAIClient, state: State, *, gpu: str | None = None,
                max_dph: float | Decimal | None = None, clock: Callable[[], float] = time.time,
                progress: Callable[[str], None] = lambda m: None, forget_excluded: bool = False) -> LaunchPlan:
    """Tiers, the first tier's offers, the choice and its budget verdict. Reads only (with
    `forget_excluded` it searches as if no machine were excluded; the launch forgets them)."""
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
    excluded = set() if forget_excluded else excluded_machines(state, clock())
    search = first_tier_with_offers(client, tiers, disk_gb=settings["vastai.disk_gb"], excluded=excluded,
                                    progress=progress)
    check = None
    if search.choice is not None:
        check = budget_check(settings, search.choice.offer.dph_total, spent=spent, reserved=held)
    return LaunchPlan(tuple(tiers), search, check, spent, live, frozenset(excluded), held, cap, forget_excluded)


def check_max_dph(max_dph: float | Decimal | None) -> Decimal | None:
    """--max-dph as a Decimal; NaN, infinity, zero or less is a usage error (NaN compares
    false with everything, so it would silently cap nothing)."""
    if max_dph is None:
        return None
    cap = dec(max_dph)
    if cap is None or cap <= 0:
        raise UsageError(f"--max-dph must be a finite number of dollars per hour above 0 (got {max_dph})")
    return cap


class NoAcceptableOffer(ProviderError):
    """No tier has an acceptable offer; `data` (the plan, for a dry run's --json) if given."""

    def __init__(self, message: str, *, hint: str | None = None, data: object = None) -> None:
        super().__init__(message, provider=PROVIDER, kind="not_found", hint=hint)
        self.data = data


class PlanOverBudget(BudgetError):
    """The plan's choice would pass a budget; `data` (the plan, for a dry run's --json) if given."""

    def __init__(self, message: str, *, hint: str | None = None, data: object = None) -> None:
        super().__init__(message, hint=hint)
        self.data = data


def check_plan(plan: LaunchPlan, *, data: object = None) -> None:
    """Refuse a plan with no offer, or one over budget (the error says what is left, and carries
    `data`: a dry run that would not proceed is an error too)."""
    if plan.choice is None:
        checked = ", ".join(f"{name}: none" for name, _ in plan.search.checked) or "no tiers"
        excluded = f" {plan.excluded_note}." if plan.excluded_note else ""
        raise NoAcceptableOffer(f"no acceptable Vast.ai offer in any tier ({checked}).{excluded}", data=data,
                                hint="raise --max-dph, try --gpu with another tier, or edit vastai.gpu_tiers"
                                     + ("; `gpuctl launch --forget-excluded`" if excluded else ""))
    if plan.budget is not None and not plan.budget.ok:
        err = plan.budget.error(f"{plan.choice.offer.gpu_name}")
        raise PlanOverBudget(err.message, hint=err.hint, data=data)
