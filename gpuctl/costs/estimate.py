"""One provider's cost for one scenario (`Estimate`), and the estimate by GPU time.

Owns the `Estimate` result (exact money, the assumptions and price rows used, `as_dict` for
--json) and `estimate_gpu_time` (`--hours-per-day H` or `--hours H` at a catalog or given $/h).
Pure: the catalog is passed in; nothing printed; bad input raises `UsageError`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from typing import Any

from gpuctl.costs.catalog import (
    STALE_AFTER_DAYS,
    Catalog,
    PriceRow,
    VastPrice,
    resolve_provider,
    stale_rows,
)
from gpuctl.costs.money import (
    DAYS_PER_MONTH,
    RATIO_PLACES,
    SECONDS_PER_HOUR,
    Number,
    gpu_time_cost,
    money_str,
    monthly_gpu_cost,
    number,
    plain,
    price_str,
    tidy_money,
)
from gpuctl.errors import UsageError


@dataclass(frozen=True)
class Estimate:
    """One provider's cost for one scenario. Money is exact; round only to display."""

    provider: str
    key: str  # the GPU or model priced
    total: Decimal  # for the period (`days`, or the one-off hours)
    per_month: Decimal | None  # per 30 days; None for a one-off period
    days: Decimal | None  # the period in days; None for a one-off
    gpu_seconds: Decimal | None  # billed GPU time in the period; None when billed by tokens
    tokens: Decimal | None = None  # input + output tokens served in the period
    per_million_tokens: Decimal | None = None  # total / tokens × 10⁶, the same basis for everyone
    assumptions: Mapping[str, str] = field(default_factory=dict)
    prices: tuple[PriceRow, ...] = ()  # catalog rows used (for the stale warning)

    def stale_rows(self, today: date, max_age_days: int = STALE_AFTER_DAYS) -> list[PriceRow]:
        return stale_rows(self.prices, today, max_age_days)

    def as_dict(self) -> dict[str, Any]:
        """For --json: exact decimals as strings, plus the assumptions and prices used."""
        return {
            "provider": self.provider,
            "key": self.key,
            "total": money_str(self.total),
            "per_month": money_str(self.per_month),
            "days": plain(self.days),
            "gpu_seconds": plain(self.gpu_seconds),
            "gpu_hours": plain(None if self.gpu_seconds is None
                               else (self.gpu_seconds / SECONDS_PER_HOUR).quantize(RATIO_PLACES, ROUND_HALF_UP)),
            "tokens": plain(self.tokens),
            "per_million_tokens": money_str(self.per_million_tokens),
            "assumptions": dict(self.assumptions),
            "prices": [r.as_dict() for r in self.prices],
        }


def estimate_gpu_time(
    catalog: Catalog,
    *,
    provider: str,
    gpu: str,
    hours_per_day: Number | None = None,
    hours: Number | None = None,
    days: Number = DAYS_PER_MONTH,
    dollars_per_hour: Number | None = None,
) -> Estimate:
    """Cost of GPU time, stated in hours: either `hours_per_day` for `days` (a monthly
    estimate) or a one-off `hours`. Modal: its published $/h (see the module docstring: this
    is what makes 2 h/day × 30 = $48.00); Vast.ai: `dollars_per_hour` (a live offer, --dph) or
    the catalog's typical $/h (for a GPU it knows no price for, a tier's cap, said to be one). Anthropic bills tokens, not time → `UsageError`."""
    provider = resolve_provider(provider)
    if provider == "anthropic":
        raise UsageError("anthropic bills tokens, not GPU time",
                         hint="estimate it by traffic: --requests-per-day N --tokens-per-request T")
    if (hours_per_day is None) == (hours is None):
        raise UsageError("give either hours per day or one-off hours, not both" if hours is not None
                         else "give hours per day (or one-off hours) to estimate GPU time")
    live = None if dollars_per_hour is None else number(dollars_per_hour, "price per hour", positive=True)

    prices: tuple[PriceRow, ...] = ()
    assumptions: dict[str, str] = {}
    if provider == "modal":
        # "H100:2", as `gpuctl deploy modal --gpu` takes it: N GPUs bill N times the rate.
        name, _, count_text = gpu.partition(":")
        if count_text and not (count_text.isdigit() and 1 <= int(count_text) <= 8):
            raise UsageError(f"GPU count in {gpu!r} must be 1..8", hint="e.g. H100:2")
        count = int(count_text) if count_text else 1
        mp = catalog.modal_price(name)
        key = mp.gpu if count == 1 else f"{mp.gpu}:{count}"
        if live is None:
            rate = mp.dollars_per_hour * count
            prices = (mp.row,)
            assumptions["price"] = (f"{key} ${price_str(rate)}/h, Modal's published hourly rate"
                                    f"{f' ({count} × ${price_str(mp.dollars_per_hour)})' if count > 1 else ''} "
                                    f"(bills ${price_str(mp.dollars_per_second)}/s per GPU; {mp.row.provenance})")
            assumptions["rate_basis"] = ("published $/h: hour-based estimates match Modal's page and the "
                                         "original system's README arithmetic ($0.80 × 2 h × 30 = $48.00); "
                                         "per-second billing would be $/s × 3600 × hours")
        else:
            rate = live
            assumptions["price"] = f"{key} ${price_str(rate)}/h (given)"
    else:
        try:
            vp: VastPrice | None = catalog.vast_price(gpu, live=live)
        except UsageError:
            if live is None:
                raise
            vp = None  # a live offer for a GPU the catalog doesn't list: the name is a label
        key = vp.gpu if vp else gpu
        if live is None:
            assert vp is not None
            rate = vp.typical
            prices = (vp.row,)
            assumptions["price"] = _catalog_price_note(vp)
        else:
            rate = live
            assumptions["price"] = f"{key} ${price_str(rate)}/h {vp.given if vp else '(given)'}"
        assumptions["billing"] = "Vast.ai bills the whole time the instance exists"

    if hours is not None:
        h = number(hours, "hours")
        total = gpu_time_cost(dollars_per_hour=rate, hours=h)
        assumptions["hours"] = plain(h) or "0"
        return Estimate(provider, key, tidy_money(total), None, None, h * SECONDS_PER_HOUR,
                        assumptions=assumptions, prices=prices)

    assert hours_per_day is not None
    hpd = number(hours_per_day, "hours per day", maximum=24)
    d = number(days, "days", minimum=None, positive=True)
    total = monthly_gpu_cost(dollars_per_hour=rate, hours_per_day=hpd, days=d)
    per_month = monthly_gpu_cost(dollars_per_hour=rate, hours_per_day=hpd, days=DAYS_PER_MONTH)
    assumptions["hours_per_day"] = plain(hpd) or "0"
    assumptions["days"] = plain(d) or "0"
    return Estimate(provider, key, tidy_money(total), tidy_money(per_month), d, hpd * d * SECONDS_PER_HOUR,
                    assumptions=assumptions, prices=prices)


def _catalog_price_note(vp: VastPrice) -> str:
    """How an estimate at the catalog's Vast.ai price says what it is: typical, or a tier's cap."""
    if vp.upper_bound:
        return f"{vp.gpu} ${price_str(vp.typical)}/h {vp.bound}"
    return (f"{vp.gpu} ${price_str(vp.typical)}/h typical (range ${price_str(vp.low)}–${price_str(vp.high)}; "
            f"{vp.row.provenance}); the live offer is the truth: pass its $/h")
