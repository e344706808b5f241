"""Money and numbers: the one place gpuctl turns values into exact `Decimal`s, multiplies a
rate by a time or a token count, and rounds or formats money.

Owns the units (`DAYS_PER_MONTH`, `SECONDS_PER_HOUR`); the one parser (`to_decimal`) and the
validators of user input built on it (`number`, `whole_number`); the formulas ($/h × time in
`hourly_cost` and `lifetime_cost`, $/s × seconds in `modal_cost`, tokens × $/M in `token_cost`);
and every way money is rounded or shown (`round_money`; `money_str`, the one formatter of money
in --json; the strings for people). Pure: no I/O, no clock, nothing printed; bad input raises a
one-line `UsageError`.
It imports nothing from the rest of `gpuctl.costs` (everything there builds on it).
"""

from __future__ import annotations

from decimal import ROUND_CEILING, ROUND_HALF_UP, Decimal, InvalidOperation, localcontext
from typing import Protocol

from gpuctl.errors import UsageError

DAYS_PER_MONTH = 30  # the monthly basis of the original system's README (2 h/day × 30 days)
SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86400

MILLION = Decimal(1_000_000)
# Money in --json is rounded to 7 places, the catalog's precision: its finest prices have 7
# (Modal CPU $0.0000131/s; one token at $0.10/M is $0.0000001). Exact products and quotients
# ($/h × seconds / 3600) would otherwise carry up to 28 digits into every JSON document.
JSON_PLACES = 7
RATIO_PLACES = Decimal("0.0001")  # $/M tokens and GPU-hours are derived ratios: to 1/100 of a cent
_CENT = Decimal("0.01")

# Nothing gpuctl prices (hours, $/h, tokens, requests) comes near 10^12: beyond it is a typo,
# not a plan, and it keeps money math well inside Decimal's 28 digits.
MAX_MAGNITUDE = Decimal(10) ** 12

Number = Decimal | int | str | float


class TokenRates(Protocol):
    """A token price (the catalog's `TokenPrice`): $ per million input and output tokens."""

    def rates_for(self, prompt_tokens: int) -> tuple[Decimal, Decimal]: ...


# ------------------------------------------------------------------------------ parsing


def to_decimal(value: object, *, max_magnitude: Decimal | None = None) -> Decimal | None:
    """The one parser: an exact Decimal, or None for None, a bool, text that is no number,
    NaN and ±infinity (and, with `max_magnitude`, anything that large). Floats go through
    their shortest repr, so 0.14 stays 0.14 and not its binary neighbour."""
    if value is None or isinstance(value, bool):
        return None
    try:
        if isinstance(value, Decimal):
            d = value
        elif isinstance(value, int):
            d = Decimal(value)
        elif isinstance(value, float):
            d = Decimal(repr(value))
        else:
            d = Decimal(str(value).strip())
    except (InvalidOperation, ValueError, TypeError):
        return None
    if not d.is_finite() or (max_magnitude is not None and abs(d) >= max_magnitude):
        return None
    return d


def number(value: Number, what: str, *, minimum: Decimal | int | None = 0,
           maximum: Decimal | int | None = None, positive: bool = False) -> Decimal:
    """A validated Decimal from user input; one-line `UsageError` otherwise."""
    d = to_decimal(value, max_magnitude=MAX_MAGNITUDE)
    if d is None:
        raise UsageError(f"{what} must be a number below 10^12 (got {value!r})")
    if positive and d <= 0:
        raise UsageError(f"{what} must be more than 0 (got {plain(d)})")
    if minimum is not None and d < minimum:
        raise UsageError(f"{what} must not be negative (got {plain(d)})" if minimum == 0
                         else f"{what} must be at least {minimum} (got {plain(d)})")
    if maximum is not None and d > maximum:
        raise UsageError(f"{what} must be at most {maximum} (got {plain(d)})")
    return d


def whole_number(value: int, what: str, *, minimum: int = 0) -> int:
    """A validated count (tokens, requests, concurrency); one-line `UsageError` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int):
        d = to_decimal(value, max_magnitude=MAX_MAGNITUDE)
        if d is None or d != d.to_integral_value():
            raise UsageError(f"{what} must be a whole number (got {value!r})")
        value = int(d)
    if value < minimum:
        raise UsageError(f"{what} must be at least {minimum} (got {value})")
    return value


def exact_seconds(value: float) -> Decimal:
    """A clock reading or a duration from the ledger, to the millisecond: its floats would
    otherwise carry binary noise ("354.990730451000026509") into exact decimal output."""
    return Decimal(str(round(value, 3)))


# ------------------------------------------------------------------------------ rounding and showing


def round_money(d: Decimal, places: int = 2) -> Decimal:
    """For display only: half-up to `places` (0.105 → 0.11, 0.3996 → 0.40)."""
    return d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def round_up(d: Decimal) -> Decimal:
    """The next whole number (GPUs needed, requests from which a GPU is cheaper)."""
    return d.to_integral_value(rounding=ROUND_CEILING)


def tidy_money(d: Decimal) -> Decimal:
    """The same value with no trailing zeros past the cents: 0.1050 → 0.105, 48 → 48.00."""
    n = d.normalize()
    exp = n.as_tuple().exponent
    if isinstance(exp, int) and exp > -2:
        return n.quantize(_CENT)
    return n


def money_str(d: Decimal | None) -> str | None:
    """The one formatter of money in --json: a string rounded half-up to the catalog's
    precision (`JSON_PLACES`), at least cents, no exponent: '48.00', '0.105', '0.0128738'.
    Every amount a --json document carries (cost, estimate, chat, launch, destroy, cleanup,
    status) goes through here."""
    if d is None:
        return None
    with localcontext() as ctx:
        ctx.prec = 60  # quantize must not fail on a large sum: 10^12 with 7 places needs 19 digits
        rounded = d.quantize(Decimal(1).scaleb(-JSON_PLACES), rounding=ROUND_HALF_UP)
    return format(tidy_money(rounded) if rounded else Decimal("0.00"), "f")  # never "-0.00"


def price_str(d: Decimal) -> str:
    """A price for people: at least cents, exact beyond ('0.30', '0.000222', '0.225')."""
    return money_str(d) or "0.00"


def plain(d: Decimal | None) -> str | None:
    """An exact decimal as a plain string without exponent or trailing zeros: '28800', '2.5'."""
    if d is None:
        return None
    n = d.normalize()
    return format(n, "f") if n != 0 else "0"


def money_cell(d: Decimal | None) -> str:
    """Money in a table: cents (half-up), thousands separated ('$1,234.50'); sub-cent amounts
    keep 4 places ('$0.0012')."""
    if d is None:
        return "—"
    if d != 0 and abs(d) < _CENT:
        return f"${round_money(d, 4)}"
    return f"${round_money(d):,}"


def money_text(d: Decimal | None) -> str:
    """Money in a sentence (budgets, launch offers): at least cents, a third place when it
    matters ('2.00', '0.105'), and the first digits of sub-cent amounts ('0.0012')."""
    if d is None:
        return "?"
    if d != 0 and abs(d) < _CENT:
        return format(d.quantize(Decimal("0.000001")).normalize(), "f")
    mills = d.quantize(Decimal("0.001"))
    cents = mills.quantize(_CENT)
    return format(cents if cents == mills else mills, "f")


def approx_money(value: Decimal | None) -> str:
    """An estimate after a chat answer: cents when it is that much, else two significant digits."""
    if value is None:
        return "cost n/a"
    if value == 0:
        return "$0.00"
    if value >= _CENT:
        return f"~${value:.2f}"
    if value < Decimal("0.000001"):
        return "<$0.000001"
    digits = -value.adjusted() + 1  # two significant digits
    return f"~${value:.{digits}f}"


# ------------------------------------------------------------------------------ formulas


def hourly_cost(dollars_per_hour: Decimal, seconds: Decimal) -> Decimal:
    """$/h × time: what a rate billed by the hour costs over `seconds` (exact, unrounded)."""
    return dollars_per_hour * seconds / SECONDS_PER_HOUR


def lifetime_cost(dph: Decimal, started_at: float, ended_at: float) -> Decimal:
    """$/h × hours alive (epoch seconds); never negative (a clock step backwards costs nothing)."""
    start, end = to_decimal(started_at), to_decimal(ended_at)
    assert start is not None and end is not None, "clock readings are finite numbers"
    return hourly_cost(dph, max(Decimal(0), end - start))


def modal_cost(dollars_per_second: Number, seconds: Number) -> Decimal:
    """Per-second billing: 1800 s × $0.000222 = $0.3996 (shown $0.40)."""
    return number(dollars_per_second, "price per second") * number(seconds, "seconds")


def gpu_time_cost(*, dollars_per_hour: Number, hours: Number) -> Decimal:
    """Hourly rate × hours: 0.75 h × $0.14 = $0.105."""
    return number(dollars_per_hour, "price per hour") * number(hours, "hours")


def monthly_gpu_cost(*, dollars_per_hour: Number, hours_per_day: Number, days: Number = DAYS_PER_MONTH) -> Decimal:
    """$/h × hours/day × days: $0.80 × 2 × 30 = $48.00."""
    return (number(dollars_per_hour, "price per hour")
            * number(hours_per_day, "hours per day", maximum=24)
            * number(days, "days", minimum=None, positive=True))


def token_cost(price: TokenRates, input_tokens: int, output_tokens: int, *, prompt_tokens: int | None = None) -> Decimal:
    """One request's token bill. `prompt_tokens` picks the price tier (default: input_tokens),
    so pass per-request counts for a model with prompt-size tiers."""
    inp = whole_number(input_tokens, "input tokens")
    out = whole_number(output_tokens, "output tokens")
    rate_in, rate_out = price.rates_for(inp if prompt_tokens is None else prompt_tokens)
    return (inp * rate_in + out * rate_out) / MILLION


def per_million_tokens(total: Decimal, tokens: Decimal | None) -> Decimal | None:
    """$ per million tokens served, the one basis every provider is compared on."""
    if not tokens:
        return None
    return (total * MILLION / tokens).quantize(RATIO_PLACES, rounding=ROUND_HALF_UP)


def instance_cost(*, dollars_per_hour: Number, started_at: Number, ended_at: Number) -> Decimal:
    """A Vast instance's bill for its lifetime (epoch seconds): it bills while it exists."""
    start = number(started_at, "start time", minimum=None)
    end = number(ended_at, "end time", minimum=None)
    if end < start:
        raise UsageError(f"end time {plain(end)} is before start time {plain(start)}")
    return hourly_cost(number(dollars_per_hour, "price per hour"), end - start)
