"""Money and numbers: exact `Decimal` conversion and validation of input, display formatting,
and the basic cost formulas (per second, per hour, per month, per token, an instance's lifetime).

Owns the units (`DAYS_PER_MONTH`, `SECONDS_PER_HOUR`) and the one place money is rounded
(`round_money`, for display only). Pure: no I/O, no clock, nothing printed; bad input raises a
one-line `UsageError`. The underscored helpers are shared inside `gpuctl.costs` only.
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation
from typing import TYPE_CHECKING

from gpuctl.errors import UsageError

if TYPE_CHECKING:  # annotations only: the catalog imports this module
    from gpuctl.costs.catalog import TokenPrice

DAYS_PER_MONTH = 30  # the seed's monthly basis (2 h/day × 30 days)
SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86400

_MILLION = Decimal(1_000_000)
_CENT = Decimal("0.01")
_RATIO_PLACES = Decimal("0.0001")  # $/M tokens is a derived ratio: to 1/100 of a cent


# ------------------------------------------------------------------------------ numbers

Number = Decimal | int | str | float


MAX_MAGNITUDE = Decimal(10) ** 12


def _to_decimal(value: object) -> Decimal | None:
    """Exact conversion, or None. Floats go through repr so 0.14 stays 0.14."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, Decimal):
            d = value
        elif isinstance(value, int):
            d = Decimal(value)
        elif isinstance(value, float):
            d = Decimal(repr(value))
        elif isinstance(value, str):
            d = Decimal(value.strip())
        else:
            return None
    except InvalidOperation:
        return None
    # Finite, and of a size money math can carry at Decimal's 28 digits: nothing gpuctl prices
    # (hours, $/h, tokens, requests) comes near 10^12; beyond it is a typo, not a plan.
    return d if d.is_finite() and abs(d) < MAX_MAGNITUDE else None


def _num(value: Number, what: str, *, minimum: Decimal | int | None = 0,
         maximum: Decimal | int | None = None, positive: bool = False) -> Decimal:
    """A validated Decimal from user input; one-line `UsageError` otherwise."""
    d = _to_decimal(value)
    if d is None:
        raise UsageError(f"{what} must be a number below 10^12 (got {value!r})")
    if positive and d <= 0:
        raise UsageError(f"{what} must be more than 0 (got {_plain(d)})")
    if minimum is not None and d < minimum:
        raise UsageError(f"{what} must not be negative (got {_plain(d)})" if minimum == 0
                         else f"{what} must be at least {minimum} (got {_plain(d)})")
    if maximum is not None and d > maximum:
        raise UsageError(f"{what} must be at most {maximum} (got {_plain(d)})")
    return d


def _int(value: int, what: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        d = _to_decimal(value)
        if d is None or d != d.to_integral_value():
            raise UsageError(f"{what} must be a whole number (got {value!r})")
        value = int(d)
    if value < minimum:
        raise UsageError(f"{what} must be at least {minimum} (got {value})")
    return value


def round_money(d: Decimal, places: int = 2) -> Decimal:
    """For display only: half-up to `places` (0.105 → 0.11, 0.3996 → 0.40)."""
    return d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _tidy_money(d: Decimal) -> Decimal:
    """The same value with no trailing zeros past the cents: 0.1050 → 0.105, 48 → 48.00."""
    n = d.normalize()
    exp = n.as_tuple().exponent
    if isinstance(exp, int) and exp > -2:
        return n.quantize(_CENT)
    return n


def money_str(d: Decimal | None) -> str | None:
    """Exact money as a JSON string: '48.00', '0.105', '0.3996'."""
    return None if d is None else format(_tidy_money(d), "f")


def _usd(d: Decimal) -> str:
    """A price for people: at least cents, exact beyond ('0.30', '0.000222', '0.225')."""
    return money_str(d) or "0.00"


def _plain(d: Decimal | None) -> str | None:
    """An exact decimal as a plain string without exponent or trailing zeros: '28800', '2.5'."""
    if d is None:
        return None
    n = d.normalize()
    return format(n, "f") if n != 0 else "0"


def _ceil(d: Decimal) -> Decimal:
    return d.to_integral_value(rounding=ROUND_CEILING)



# ------------------------------------------------------------------------------ basic math


def modal_cost(dollars_per_second: Number, seconds: Number) -> Decimal:
    """Per-second billing: 1800 s × $0.000222 = $0.3996 (shown $0.40)."""
    return _num(dollars_per_second, "price per second") * _num(seconds, "seconds")


def gpu_time_cost(*, dollars_per_hour: Number, hours: Number) -> Decimal:
    """Hourly rate × hours: 0.75 h × $0.14 = $0.105."""
    return _num(dollars_per_hour, "price per hour") * _num(hours, "hours")


def monthly_gpu_cost(*, dollars_per_hour: Number, hours_per_day: Number, days: Number = DAYS_PER_MONTH) -> Decimal:
    """$/h × hours/day × days: $0.80 × 2 × 30 = $48.00."""
    return (_num(dollars_per_hour, "price per hour")
            * _num(hours_per_day, "hours per day", maximum=24)
            * _num(days, "days", minimum=None, positive=True))


def token_cost(price: TokenPrice, input_tokens: int, output_tokens: int, *, prompt_tokens: int | None = None) -> Decimal:
    """One request's token bill. `prompt_tokens` picks the price tier (default: input_tokens),
    so pass per-request counts for a model with prompt-size tiers."""
    inp = _int(input_tokens, "input tokens")
    out = _int(output_tokens, "output tokens")
    rate_in, rate_out = price.rates_for(inp if prompt_tokens is None else prompt_tokens)
    return (inp * rate_in + out * rate_out) / _MILLION


def instance_cost(*, dollars_per_hour: Number, started_at: Number, ended_at: Number) -> Decimal:
    """A Vast instance's bill for its lifetime (epoch seconds): it bills while it exists."""
    start = _num(started_at, "start time", minimum=None)
    end = _num(ended_at, "end time", minimum=None)
    if end < start:
        raise UsageError(f"end time {_plain(end)} is before start time {_plain(start)}")
    return _num(dollars_per_hour, "price per hour") * (end - start) / SECONDS_PER_HOUR

