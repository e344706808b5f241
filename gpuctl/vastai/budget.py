"""Vast.ai money, pure Decimal: what instances cost, what has been spent, what a launch would
cost over the keep-alive, and what is left.

Vast bills every second an instance exists (storage even while stopped), whatever the
traffic: an instance's cost is its $/h × its lifetime, at the higher of the price recorded at
launch and the live price (hosts can raise it at contract renewal; cleanup records it). Budgets:
the session budget bounds one launch's projection ($/h × keep-alive); the total budget bounds
everything spent so far, plus what the live instances may still bill (each one a full
keep-alive more: `reserved`), plus that projection.

The projection never covers less than `BOOT_ALLOWANCE_MINUTES`: whatever the keep-alive (even
0), a launch watches a new box for up to the loading and health deadlines before it gives up
on it, and every one of those minutes bills. Must not: read the clock, the ledger or settings
itself (callers pass them in).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gpuctl.costs.money import hourly_cost, lifetime_cost, money_str, money_text, to_decimal
from gpuctl.errors import BudgetError
from gpuctl.state import InstanceRow

# The money helpers live in gpuctl.costs.money (the one place for $/h × time and for parsing and
# showing money); these names stay for the many callers in gpuctl.vastai.
dec = to_decimal
money = money_text


def row_cost(row: InstanceRow, now: float) -> Decimal:
    """What one ledger row has cost: the recorded cost once destroyed, else $/h × time alive so
    far (an intent whose create may have gone through counts too: better to over-count)."""
    recorded = dec(row.cost)
    if recorded is not None:
        return recorded
    dph = dec(row.dph)
    if dph is None:
        return Decimal(0)
    end = row.destroyed_at if row.destroyed_at is not None else now
    return lifetime_cost(dph, row.created_at, end)


def spent(rows: Iterable[InstanceRow], now: float) -> Decimal:
    """Everything gpuctl's Vast.ai instances have cost, the live ones up to `now`."""
    return sum((row_cost(r, now) for r in rows), Decimal(0))


# The most one attempt can bill before the launch gives up on it: loading (10 min) + vLLM's
# health (20 min), `watch.LOADING_TIMEOUT_S + watch.HEALTH_TIMEOUT_S` (a test keeps them equal).
BOOT_ALLOWANCE_MINUTES = 30


def projection_minutes(keep_alive_minutes: float) -> Decimal:
    """The minutes a projection covers: the keep-alive, but never less than the boot allowance."""
    return max(dec(keep_alive_minutes) or Decimal(0), Decimal(BOOT_ALLOWANCE_MINUTES))


def projection(dph: Decimal, keep_alive_minutes: float) -> Decimal:
    """One session: $/h × the keep-alive (the original system's README: $0.14/h × 45 min = $0.105),
    at least the boot allowance ($2.40/h with a keep-alive of 0 still projects $1.20)."""
    return hourly_cost(dph, projection_minutes(keep_alive_minutes) * 60)


def higher_dph(recorded: object, live: object) -> Decimal | None:
    """The price to charge: the higher of the one recorded and the one Vast reports now."""
    prices = [p for p in (dec(recorded), dec(live)) if p is not None]
    return max(prices) if prices else None


def reserved(rows: Iterable[InstanceRow], keep_alive_minutes: float) -> Decimal:
    """What the live rows may still bill: each a full keep-alive at its $/h, at least the boot
    allowance (cleanup destroys an idle instance only once the keep-alive has passed, so none of
    it is already spent). Rows whose create may or may not have happened count too."""
    return sum((projection(dec(r.dph) or Decimal(0), keep_alive_minutes) for r in rows if r.live), Decimal(0))


@dataclass(frozen=True)
class BudgetCheck:
    """The verdict on one launch at `dph`."""

    dph: Decimal
    keep_alive_minutes: float
    projection: Decimal
    session_limit: Decimal
    total_limit: Decimal
    spent: Decimal
    reserved: Decimal = Decimal(0)  # what the live instances may still bill

    @property
    def committed(self) -> Decimal:
        return self.spent + self.reserved

    @property
    def left(self) -> Decimal:
        return max(Decimal(0), self.total_limit - self.committed)

    @property
    def session_ok(self) -> bool:
        return self.projection <= self.session_limit

    @property
    def total_ok(self) -> bool:
        return self.committed + self.projection <= self.total_limit

    @property
    def ok(self) -> bool:
        return self.session_ok and self.total_ok

    @property
    def minutes(self) -> Decimal:
        """What the projection covers: the keep-alive, at least the boot allowance."""
        return projection_minutes(self.keep_alive_minutes)

    @property
    def floored(self) -> bool:
        """The keep-alive is shorter than the boot allowance, which the projection covers instead."""
        return self.minutes > (dec(self.keep_alive_minutes) or Decimal(0))

    @property
    def window(self) -> str:
        """The projection's span in words: "45-minute keep-alive", or the boot allowance."""
        if self.floored:
            return (f"{float(self.minutes):g}-minute boot allowance (the keep-alive, {self.keep_alive_minutes:g} "
                    "min, is shorter than the loading and health deadlines a launch waits)")
        return f"{self.keep_alive_minutes:g}-minute keep-alive"

    @property
    def max_affordable_dph(self) -> Decimal | None:
        """The highest $/h both budgets allow for one projection."""
        hours = self.minutes / Decimal(60)
        if hours <= 0:
            return None
        return min(self.session_limit, self.left) / hours

    def as_dict(self) -> dict[str, Any]:
        return {"dph": money_str(self.dph), "keep_alive_minutes": self.keep_alive_minutes,
                "projection_minutes": float(self.minutes), "projection": money_str(self.projection),
                "session_limit": money_str(self.session_limit),
                "total_limit": money_str(self.total_limit), "spent": money_str(self.spent),
                "reserved": money_str(self.reserved), "left": money_str(self.left),
                "session_ok": self.session_ok, "total_ok": self.total_ok, "ok": self.ok}

    def _used(self) -> str:
        held = f", ${money(self.reserved)} held for live instances" if self.reserved else ""
        return f"${money(self.spent)} spent{held}"

    def summary(self) -> str:
        span = (f"{float(self.minutes):g} min boot allowance (keep-alive {self.keep_alive_minutes:g} min)"
                if self.floored else f"{self.keep_alive_minutes:g} min keep-alive")
        return (f"${money(self.dph)}/h × {span} = ${money(self.projection)} "
                f"(session budget ${money(self.session_limit)}; ${money(self.left)} left of "
                f"${money(self.total_limit)}, {self._used()})")

    def error(self, what: str) -> BudgetError:
        """Why this launch is refused, with what is left; nothing has been spent."""
        if not self.session_ok:
            message = (f"{what} at ${money(self.dph)}/h would cost ${money(self.projection)} over the "
                       f"{self.window}, more than the session budget of ${money(self.session_limit)}")
        else:
            message = (f"{what} at ${money(self.dph)}/h would cost ${money(self.projection)} over the "
                       f"{self.window}, but only ${money(self.left)} is left "
                       f"of the ${money(self.total_limit)} Vast.ai budget ({self._used()})")
        cap = self.max_affordable_dph
        hint = "raise vastai.budget_limit / vastai.session_budget_limit (VASTAI_BUDGET_LIMIT, VASTAI_SESSION_BUDGET_LIMIT)"
        if cap is not None and cap > 0:
            hint = f"pass --max-dph {money(cap.quantize(Decimal('0.001')))} or less, or " + hint
        return BudgetError(message + "; nothing was created.", hint=hint)


def check(dph: Decimal, *, spent_so_far: Decimal, session_limit: object, total_limit: object,
          keep_alive_minutes: float, reserved_for_live: Decimal = Decimal(0)) -> BudgetCheck:
    return BudgetCheck(dph=dph, keep_alive_minutes=float(keep_alive_minutes),
                       projection=projection(dph, keep_alive_minutes),
                       session_limit=dec(session_limit) or Decimal(0), total_limit=dec(total_limit) or Decimal(0),
                       spent=spent_so_far, reserved=reserved_for_live)
