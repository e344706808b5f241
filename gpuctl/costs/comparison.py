"""Providers side by side: the same traffic priced on Modal, Vast.ai and Anthropic.

Owns `Comparison` (rows of `Estimate`s, the break-evens, the assumptions, `as_dict` for
--json), resolving the three providers' prices once (`Setup`, shared with the ledger replay),
and the two comparisons of `cost estimate`: `estimate_traffic` (your traffic) and `compare`
(the three traffic levels of the original system's README). Pure: the catalog is passed in.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from typing import Any

from gpuctl.costs.breakeven import BreakEven, break_even
from gpuctl.costs.catalog import (
    PROVIDERS,
    STALE_AFTER_DAYS,
    Catalog,
    ModalPrice,
    PriceRow,
    StartupTime,
    Throughput,
    TokenPrice,
    VastPrice,
    resolve_provider,
    stale_rows,
)
from gpuctl.costs.estimate import Estimate
from gpuctl.costs.money import DAYS_PER_MONTH, SECONDS_PER_HOUR, Number, number, plain, token_cost
from gpuctl.costs.traffic import (
    DEFAULT_BURSTS_PER_DAY,
    DEFAULT_INPUT_TOKENS,
    DEFAULT_KEEP_ALIVE_S,
    DEFAULT_MODAL_GPU,
    DEFAULT_MODEL,
    DEFAULT_OUTPUT_TOKENS,
    DEFAULT_SCALEDOWN_WINDOW_S,
    DEFAULT_VAST_GPU,
    Traffic,
    anthropic_traffic_cost,
    modal_traffic_cost,
    vast_traffic_cost,
)


@dataclass(frozen=True)
class TrafficLevel:
    label: str
    low_hours: Decimal  # GPU-hours of generation a day
    high_hours: Decimal

    @property
    def hours(self) -> Decimal:
        """The level's midpoint, which the comparison prices."""
        return (self.low_hours + self.high_hours) / 2


# The traffic levels of the original system's README ("2-3 / 4-5 / 7-8 hours actual GPU time per
# day"). We price the midpoint of each and compute the cost; the README's own $ column
# contradicts its formula.
DEFAULT_LEVELS: tuple[TrafficLevel, ...] = (
    TrafficLevel("low", Decimal(2), Decimal(3)),
    TrafficLevel("medium", Decimal(4), Decimal(5)),
    TrafficLevel("high", Decimal(7), Decimal(8)),
)


@dataclass(frozen=True)
class ComparisonRow:
    label: str
    estimates: tuple[Estimate, ...]
    gpu_hours_per_day: Decimal | None = None  # the level's generation hours (levels only)
    level_range: tuple[Decimal, Decimal] | None = None
    requests_per_day: Decimal | None = None
    tokens_per_day: Decimal | None = None
    level: str | None = None  # the level's name alone ("medium"), for a narrow table

    @property
    def cheapest(self) -> Estimate | None:
        if not self.estimates:
            return None
        return min(self.estimates, key=lambda e: e.per_month if e.per_month is not None else e.total)

    def as_dict(self) -> dict[str, Any]:
        cheapest = self.cheapest
        return {
            "label": self.label,
            "gpu_hours_per_day": plain(self.gpu_hours_per_day),
            "level_range": None if self.level_range is None else [plain(x) for x in self.level_range],
            "requests_per_day": plain(self.requests_per_day),
            "tokens_per_day": plain(self.tokens_per_day),
            "cheapest": cheapest.provider if cheapest else None,
            "estimates": [e.as_dict() for e in self.estimates],
        }


@dataclass(frozen=True)
class Comparison:
    """Providers side by side: at the original system's levels (`compare`), for one traffic
    (`estimate_traffic`) or for the ledger's real requests (`replay_usage`)."""

    kind: str  # "levels" | "traffic" | "replay"
    rows: tuple[ComparisonRow, ...]
    break_even: tuple[BreakEven, ...] = ()
    assumptions: Mapping[str, str] = field(default_factory=dict)

    @property
    def prices(self) -> tuple[PriceRow, ...]:
        seen: dict[tuple[str, str], PriceRow] = {}
        for row in self.rows:
            for est in row.estimates:
                for p in est.prices:
                    seen.setdefault((p.provider, p.key), p)
        return tuple(seen.values())

    def stale_rows(self, today: date, max_age_days: int = STALE_AFTER_DAYS) -> list[PriceRow]:
        return stale_rows(self.prices, today, max_age_days)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "assumptions": dict(self.assumptions),
            "rows": [r.as_dict() for r in self.rows],
            "break_even": [b.as_dict() for b in self.break_even],
            "prices": [p.as_dict() for p in self.prices],
        }


@dataclass(frozen=True)
class Setup:
    """The three providers' prices and assumptions, resolved once."""

    modal: ModalPrice
    modal_start: StartupTime
    vast: VastPrice
    vast_start: StartupTime
    api: TokenPrice
    window: Decimal
    keep: Decimal
    vast_dph: Decimal | None
    modal_tp: Throughput | None  # None when replaying (recorded latencies replace throughput)
    vast_tp: Throughput | None

    @property
    def vast_rate_per_hour(self) -> Decimal:
        return self.vast_dph if self.vast_dph is not None else self.vast.typical


def resolve_setup(catalog: Catalog, *, modal_gpu: str, vast_gpu: str, model: str, scaledown_window_s: Number,
                  keep_alive_s: Number, vast_dollars_per_hour: Number | None, need_throughput: bool = True) -> Setup:
    """Each provider's price, start-up and (unless replaying) throughput, and the windows, checked."""
    modal = catalog.modal_price(modal_gpu)
    vast_dph = None if vast_dollars_per_hour is None else number(vast_dollars_per_hour, "price per hour", positive=True)
    vast = catalog.vast_price(vast_gpu, live=vast_dph)  # a GPU listed without a price needs the live one
    return Setup(
        modal=modal,
        modal_start=catalog.startup_for("modal"),
        vast=vast,
        vast_start=catalog.startup_for("vastai"),
        api=catalog.token_price(model),
        window=number(scaledown_window_s, "scaledown window"),
        keep=number(keep_alive_s, "keep-alive"),
        vast_dph=vast_dph,
        modal_tp=catalog.throughput_for("modal", modal.gpu) if need_throughput else None,
        vast_tp=catalog.throughput_for("vastai", vast.gpu) if need_throughput else None,
    )


def _tp(tp: Throughput | None) -> Throughput:
    assert tp is not None, "throughput is resolved for every traffic model"
    return tp


def _estimates(s: Setup, traffic: Traffic, providers: Sequence[str]) -> tuple[Estimate, ...]:
    out: list[Estimate] = []
    for p in providers:
        if p == "modal":
            out.append(modal_traffic_cost(traffic, price=s.modal, throughput=_tp(s.modal_tp), startup=s.modal_start,
                                          scaledown_window_s=s.window))
        elif p == "vastai":
            out.append(vast_traffic_cost(traffic, price=s.vast, throughput=_tp(s.vast_tp), startup=s.vast_start,
                                         keep_alive_s=s.keep, dollars_per_hour=s.vast_dph))
        else:
            out.append(anthropic_traffic_cost(traffic, price=s.api))
    return tuple(out)


def _break_evens(s: Setup, traffic: Traffic, providers: Sequence[str]) -> tuple[BreakEven, ...]:
    if "anthropic" not in providers:
        return ()
    a = token_cost(s.api, traffic.input_tokens, traffic.output_tokens)
    out: list[BreakEven] = []
    for p in providers:
        if p == "modal":
            tp, rate, overhead, gpu = _tp(s.modal_tp), s.modal.dollars_per_second, s.modal_start.seconds + s.window, s.modal.gpu
        elif p == "vastai":
            tp, overhead, gpu = _tp(s.vast_tp), s.vast_start.seconds + s.keep, s.vast.gpu
            rate = s.vast_rate_per_hour / SECONDS_PER_HOUR
        else:
            continue
        out.append(break_even(
            provider=p, gpu=gpu, versus=s.api.model, api_cost_per_request=a, gpu_cost_per_second=rate,
            tokens_per_request=traffic.tokens_per_request, bursts_per_day=traffic.bursts_per_day,
            concurrency=traffic.concurrency_on(tp), seconds_per_request=traffic.seconds_per_request(tp),
            overhead_s=overhead))
    return tuple(out)


def chosen_providers(providers: Sequence[str] | None) -> tuple[str, ...]:
    """The providers to price, resolved and without repeats (default: every priced provider)."""
    if not providers:
        return PROVIDERS
    return tuple(dict.fromkeys(resolve_provider(p) for p in providers))


def estimate_traffic(
    catalog: Catalog,
    traffic: Traffic,
    *,
    modal_gpu: str = DEFAULT_MODAL_GPU,
    vast_gpu: str = DEFAULT_VAST_GPU,
    model: str = DEFAULT_MODEL,
    scaledown_window_s: Number = DEFAULT_SCALEDOWN_WINDOW_S,
    keep_alive_s: Number = DEFAULT_KEEP_ALIVE_S,
    vast_dollars_per_hour: Number | None = None,
    providers: Sequence[str] | None = None,
) -> Comparison:
    """`cost estimate --requests-per-day N --tokens-per-request T`: each provider's traffic
    model for this traffic, plus the break-even volume of each GPU against the API."""
    provs = chosen_providers(providers)
    s = resolve_setup(catalog, modal_gpu=modal_gpu, vast_gpu=vast_gpu, model=model, scaledown_window_s=scaledown_window_s,
                      keep_alive_s=keep_alive_s, vast_dollars_per_hour=vast_dollars_per_hour)
    row = ComparisonRow("your traffic", _estimates(s, traffic, provs),
                        requests_per_day=traffic.requests_per_day,
                        tokens_per_day=traffic.requests_per_day * traffic.tokens_per_request)
    return Comparison("traffic", (row,), _break_evens(s, traffic, provs), traffic.describe())


def requests_for_generation_hours(hours: Decimal, *, bursts_per_day: Decimal, concurrency: int,
                                  seconds_per_request: Decimal) -> Decimal:
    """The requests/day that keep one GPU generating `hours` a day under the burst model
    (the inverse of `burst_day`'s active time)."""
    active = hours * SECONDS_PER_HOUR
    if active >= bursts_per_day * seconds_per_request:
        return active * concurrency / seconds_per_request
    return active / seconds_per_request  # fewer requests than bursts: one per burst


def compare(
    catalog: Catalog,
    *,
    modal_gpu: str = DEFAULT_MODAL_GPU,
    vast_gpu: str = DEFAULT_VAST_GPU,
    model: str = DEFAULT_MODEL,
    input_tokens: int = DEFAULT_INPUT_TOKENS,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    bursts_per_day: Number = DEFAULT_BURSTS_PER_DAY,
    concurrency: int | None = None,
    scaledown_window_s: Number = DEFAULT_SCALEDOWN_WINDOW_S,
    keep_alive_s: Number = DEFAULT_KEEP_ALIVE_S,
    vast_dollars_per_hour: Number | None = None,
    levels: Sequence[TrafficLevel] = DEFAULT_LEVELS,
    days: Number = DAYS_PER_MONTH,
) -> Comparison:
    """`cost estimate` with no flags: Modal vs Vast.ai vs Anthropic at the original system's
    traffic levels.

    A level is GPU-hours of generation a day on the Modal GPU (the original README's "actual GPU time"),
    priced at its midpoint (2.5, 4.5, 7.5). It is turned into requests/day under the burst
    model (`requests_for_generation_hours`) and that same traffic — same requests, same
    tokens — is priced on all three providers, so $ per million tokens is on one basis.
    The break-even is the requests/day (and tokens/day) from which each GPU beats the API.
    """
    base = Traffic.build(requests_per_day=0, input_tokens=input_tokens, output_tokens=output_tokens,
                         bursts_per_day=bursts_per_day, concurrency=concurrency, days=days)
    s = resolve_setup(catalog, modal_gpu=modal_gpu, vast_gpu=vast_gpu, model=model, scaledown_window_s=scaledown_window_s,
                      keep_alive_s=keep_alive_s, vast_dollars_per_hour=vast_dollars_per_hour)
    t = base.seconds_per_request(_tp(s.modal_tp))
    conc = base.concurrency_on(_tp(s.modal_tp))
    rows: list[ComparisonRow] = []
    for level in levels:
        hours = number(level.hours, "GPU-hours per day", maximum=24)
        r = requests_for_generation_hours(hours, bursts_per_day=base.bursts_per_day, concurrency=conc,
                                          seconds_per_request=t)
        traffic = Traffic(r, base.input_tokens, base.output_tokens, base.bursts_per_day, base.concurrency, base.days)
        rows.append(ComparisonRow(
            f"{level.label} ({plain(level.low_hours)}–{plain(level.high_hours)} GPU-h/day)",
            _estimates(s, traffic, PROVIDERS), hours, (level.low_hours, level.high_hours),
            r, r * base.tokens_per_request, level.label))
    assumptions = {
        **{k: v for k, v in base.describe().items() if k != "requests_per_day"},
        "levels": "GPU-hours/day of generation on the Modal GPU, priced at each level's midpoint; the same "
                  "requests and tokens are then priced on every provider",
        "concurrency": str(conc),
    }
    return Comparison("levels", tuple(rows), _break_evens(s, base, PROVIDERS), assumptions)
