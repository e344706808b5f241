"""How a Vast.ai launch that did not hand over an instance says so: the errors it raises (each
carrying every attempt as `data`, for --json), and the words for what it left behind: which
boxes were destroyed, which creates of unknown outcome stay held, what may still bill.

Kept apart from `launch.py` (the walk) so the walk reads as the safety argument. Must not:
create, destroy or decide anything (the walk and its interruption handler do), print or exit.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from typing import Any

from gpuctl.errors import BudgetError, ConfigError, Kind, ProviderError
from gpuctl.state import InstanceRow
from gpuctl.vastai.attempt import UNCONFIRMED, Attempt
from gpuctl.vastai.budget import dec, money
from gpuctl.vastai.instances import PROVIDER
from gpuctl.vastai.plan import LaunchPlan

CLEANUP_HINT = ("`gpuctl status` shows what bills; `gpuctl cleanup` (in a few minutes) destroys an instance that "
                "appears and settles the held rows")


def attempts_data(attempts: Sequence[Attempt]) -> list[dict[str, Any]]:
    return [dict(a.__dict__) for a in attempts]


class LaunchFailed(ProviderError):
    """No offer came up (or the walk had to stop); `data` lists every attempt, for --json."""

    def __init__(self, message: str, *, attempts: Sequence[Attempt], kind: Kind | str = Kind.HTTP,
                 hint: str | None = None) -> None:
        super().__init__(message, provider=PROVIDER, kind=kind, hint=hint)
        self.data = {"attempts": attempts_data(attempts)}


class LaunchOverBudget(BudgetError):
    """The offers left would pass a budget; `data` lists the attempts made before, for --json."""

    def __init__(self, message: str, *, attempts: Sequence[Attempt], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.data = {"attempts": attempts_data(attempts)}


class LaunchMisconfigured(ConfigError):
    """The same container exit on two machines names a setting (the model, a gated repo, a
    token): exit 3, the walk stops; `data` lists every attempt."""

    def __init__(self, message: str, *, attempts: Sequence[Attempt], hint: str | None = None) -> None:
        super().__init__(message, hint=hint)
        self.data = {"attempts": attempts_data(attempts)}


def reasons(attempts: Sequence[Attempt]) -> str:
    return "; ".join(f"offer {a.offer_id} ({a.gpu}, ${money(dec(a.dph) or Decimal(0))}/h): {a.reason}"
                     for a in attempts)


def held_rows(attempts: Sequence[Attempt]) -> list[Attempt]:
    return [a for a in attempts if a.outcome == UNCONFIRMED]


def left_behind(attempts: Sequence[Attempt]) -> str:
    """What the failed attempts left: their boxes destroyed, and the rows still held."""
    held = held_rows(attempts)
    # Only when a box was made and failed: a refused create made none (nothing to destroy).
    if any(a.outcome == "failed" and a.instance_id is not None for a in attempts):
        destroyed = "Each failed instance was destroyed. "
    elif not any(a.instance_id is not None for a in attempts):
        destroyed = "No create succeeded, so no instance was made. "
    else:
        destroyed = ""
    if held:
        rows = ", ".join(str(a.ledger_row) for a in held)
        return (f"{destroyed}{len(held)} create(s) of unknown outcome (ledger row(s) {rows}) stay held against the "
                "budget until `gpuctl cleanup` settles them.")
    return f"{destroyed}Nothing is left running."


def tried_text(attempts: Sequence[Attempt]) -> str:
    return (f"no Vast.ai instance came up after {len(attempts)} attempt(s): {reasons(attempts)}. "
            f"{left_behind(attempts)} " if attempts else "")


def over_budget(err: BudgetError, attempts: Sequence[Attempt]) -> LaunchOverBudget:
    """The next offer would pass a budget. With attempts made before, the message says what they
    left (never "nothing was created" while a create of unknown outcome is held)."""
    if not attempts:
        return LaunchOverBudget(err.message, attempts=(), hint=err.hint)
    refusal = err.message.removesuffix("; nothing was created.")
    return LaunchOverBudget(f"{len(attempts)} attempt(s) failed ({reasons(attempts)}); the next offer: {refusal}, so "
                            f"it was not rented. {left_behind(attempts)}", attempts=attempts,
                            hint=f"{err.hint}; {CLEANUP_HINT}" if held_rows(attempts) else err.hint)


def exhausted(plan: LaunchPlan, attempts: Sequence[Attempt], tried: str) -> LaunchFailed:
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
    return LaunchFailed(
        f"{tried}The {tier} tier's offers {within} are exhausted; dearer offers{later} are not rented "
        "without a new confirmation.", attempts=attempts, kind=Kind.NOT_FOUND,
        hint="`gpuctl launch --dry-run` shows the rest; `gpuctl launch --yes` goes on down the tiers within the "
             "budget, or pass --max-dph")


def held_on_account(rows: Sequence[InstanceRow], cap: int) -> LaunchFailed:
    """A `--yes` launch refused before any create: the account already holds `cap` creates of
    unknown outcome (an outage each launch would add to)."""
    names = ", ".join(f"ledger row {r.id} ({r.label})" for r in rows)
    return LaunchFailed(
        f"{len(rows)} create(s) of unknown outcome are already held on this account ({names}): the Vast.ai API has "
        f"been failing, and each further create could be another box billing unseen (at most {cap} are held). "
        "Nothing was created.", attempts=(),
        hint="`gpuctl cleanup` destroys such an instance once it is listed and settles the rows (`gpuctl status` "
             "lists them); launch again once it has")


def ledger_story(rows: Sequence[InstanceRow], *, not_swept: Sequence[int] = ()) -> tuple[list[str], list[str]]:
    """What became of each ledger row a launch wrote, from the ledger itself: the parts of the
    message, and the hints for what may still bill."""
    parts: list[str] = []
    hints: list[str] = []
    for row in rows:
        if not row.live:
            if row.remote_id:
                parts.append(f"destroyed instance {row.remote_id}")
        elif row.remote_id is None:
            parts.append(f"ledger row {row.id}: whether an instance was created is unknown (none labelled {row.label} "
                         "is listed yet); it stays live and counts against the budget")
            hints.append("run `gpuctl cleanup` in a few minutes: it destroys the instance if it appears")
        elif row.id in not_swept:
            parts.append(f"instance {row.remote_id} ({row.status}): not destroyed, still billing")
            hints.append(f"`gpuctl destroy {row.remote_id} --yes`")
        elif row.status == "failed":
            parts.append(f"instance {row.remote_id}: {row.status_msg or 'destroying it failed'}; it may still bill")
            hints.append(f"`gpuctl destroy {row.remote_id} --yes`, or `gpuctl cleanup` (cron) finishes the job")
        else:
            parts.append(f"kept instance {row.remote_id} ({row.status}); it bills until destroyed")
            hints.append(f"`gpuctl destroy {row.remote_id} --yes`; `gpuctl cleanup` destroys it if it never becomes "
                         "ready")
    return parts, list(dict.fromkeys(hints))
