"""Traffic models: what a day of requests costs on Modal, Vast.ai and Anthropic, side by side.

Owns the burst model (`Traffic`, `burst_day`), each provider's traffic cost (Modal: cold start
+ generation + scaledown tail per burst; Vast.ai: boot + generation + keep-alive; Anthropic:
tokens), the break-even volume against the API, and the comparisons (`estimate_traffic`, and
`compare` at the seed's three traffic levels). Pure: catalog and assumptions are passed in;
nothing printed; bad input raises `UsageError`.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date
from decimal import ROUND_FLOOR, ROUND_HALF_UP, Decimal
from typing import Any

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
from gpuctl.costs.estimate import Estimate, _per_million, _price_note
from gpuctl.costs.money import (
    DAYS_PER_MONTH,
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    Number,
    _ceil,
    _int,
    _num,
    _plain,
    _tidy_money,
    _usd,
    money_str,
    round_money,
    token_cost,
)
from gpuctl.errors import UsageError

# Defaults from the seed README; the CLI passes the active profile's values instead.
DEFAULT_SCALEDOWN_WINDOW_S = 300  # MODAL_SCALEDOWN_WINDOW_MINUTES=5
DEFAULT_KEEP_ALIVE_S = 2700  # the seed's Vast example: "45 minutes keep-alive"
DEFAULT_MODAL_GPU = "L4"
DEFAULT_VAST_GPU = "RTX 3090"
DEFAULT_MODEL = "claude-haiku-4-5"
# Assumptions (not from the seed), shown in every estimate: a support-chat turn carries the
# conversation as prompt, so input outweighs output about 3:1; traffic comes in a working day's
# worth of bursts (one an hour for 8 hours).
DEFAULT_INPUT_TOKENS = 1050
DEFAULT_OUTPUT_TOKENS = 350
DEFAULT_BURSTS_PER_DAY = 8
# A single --tokens-per-request total is split input:output by this share of output tokens.
OUTPUT_SHARE = Decimal("0.25")


# ------------------------------------------------------------------------------ traffic models


@dataclass(frozen=True)
class Traffic:
    """A day's traffic: `requests_per_day` in `bursts_per_day` bursts. The requests of a burst
    arrive together and share one GPU, `concurrency` at a time (None: the GPU's max)."""

    requests_per_day: Decimal
    input_tokens: int  # per request
    output_tokens: int  # per request
    bursts_per_day: Decimal = Decimal(DEFAULT_BURSTS_PER_DAY)
    concurrency: int | None = None
    days: Decimal = Decimal(DAYS_PER_MONTH)

    @classmethod
    def build(
        cls,
        *,
        requests_per_day: Number,
        tokens_per_request: int | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        bursts_per_day: Number | None = None,
        concurrency: int | None = None,
        days: Number = DAYS_PER_MONTH,
    ) -> Traffic:
        """Validated traffic from CLI-shaped values. A single `tokens_per_request` total is
        split input:output 3:1 (OUTPUT_SHARE); give input/output tokens to set both."""
        r = _num(requests_per_day, "requests per day")
        if tokens_per_request is not None:
            if input_tokens is not None or output_tokens is not None:
                raise UsageError("give tokens per request, or input and output tokens, not both")
            total = _int(tokens_per_request, "tokens per request", minimum=1)
            out = int((total * OUTPUT_SHARE).to_integral_value(rounding=ROUND_HALF_UP))
            out = min(max(out, 1), total)
            inp = total - out
        else:
            inp = DEFAULT_INPUT_TOKENS if input_tokens is None else _int(input_tokens, "input tokens")
            out = DEFAULT_OUTPUT_TOKENS if output_tokens is None else _int(output_tokens, "output tokens", minimum=1)
        b = (Decimal(DEFAULT_BURSTS_PER_DAY) if bursts_per_day is None
             else _num(bursts_per_day, "bursts per day", positive=True))
        c = None if concurrency is None else _int(concurrency, "concurrency", minimum=1)
        d = _num(days, "days", minimum=None, positive=True)
        return cls(r, inp, out, b, c, d)

    def __post_init__(self) -> None:
        if self.requests_per_day < 0:
            raise UsageError(f"requests per day must not be negative (got {_plain(self.requests_per_day)})")
        if self.input_tokens < 0:
            raise UsageError(f"input tokens must not be negative (got {self.input_tokens})")
        if self.output_tokens < 1:
            # Generation time is output tokens / speed: a request must generate something.
            raise UsageError(f"output tokens must be at least 1 (got {self.output_tokens})")
        if self.bursts_per_day <= 0:
            raise UsageError(f"bursts per day must be more than 0 (got {_plain(self.bursts_per_day)})")
        if self.days <= 0:
            raise UsageError(f"days must be more than 0 (got {_plain(self.days)})")
        if self.concurrency is not None and self.concurrency < 1:
            raise UsageError(f"concurrency must be at least 1 (got {self.concurrency})")

    @property
    def tokens_per_request(self) -> int:
        return self.input_tokens + self.output_tokens

    def describe(self) -> dict[str, str]:
        return {
            "requests_per_day": _plain(self.requests_per_day) or "0",
            "input_tokens_per_request": str(self.input_tokens),
            "output_tokens_per_request": str(self.output_tokens),
            "bursts_per_day": _plain(self.bursts_per_day) or "0",
            "days": _plain(self.days) or "0",
        }


@dataclass(frozen=True)
class BurstDay:
    """One day of the burst model on one GPU (seconds)."""

    bursts: Decimal  # bursts that actually happen: min(bursts/day, requests/day)
    requests_per_burst: Decimal
    waves: Decimal  # request-times a burst keeps the GPU busy: max(1, requests_per_burst / concurrency)
    active_s: Decimal  # generating
    billed_s: Decimal  # billed: per burst start-up + active + tail, at most the whole day per GPU
    gpus: int = 1  # GPUs (Modal containers, Vast.ai instances) needed to serve it


def burst_day(*, requests_per_day: Decimal, bursts_per_day: Decimal, concurrency: int,
              seconds_per_request: Decimal, overhead_s: Decimal) -> BurstDay:
    """The burst model. A burst of n requests runs `concurrency` at a time, so it keeps the GPU
    generating for max(1, n / concurrency) request-times (a fluid count of waves: the cost grows
    smoothly with traffic); each burst also pays `overhead_s` (start-up + idle tail). Bursts are
    spread over the day, so when they would overlap the GPU simply stays up: billed time is
    capped at 24 h/day."""
    r = requests_per_day
    if r <= 0:
        return BurstDay(Decimal(0), Decimal(0), Decimal(0), Decimal(0), Decimal(0))
    bursts = min(bursts_per_day, r)
    n = r / bursts
    waves = max(Decimal(1), n / concurrency)
    active = bursts * waves * seconds_per_request
    # More generation than one GPU has hours for: spread it over as many GPUs as it takes (Modal
    # max_containers, several Vast.ai instances). Each pays its own start-up and tail.
    gpus = max(1, int(_ceil(active / SECONDS_PER_DAY)))
    billed = min(Decimal(SECONDS_PER_DAY) * gpus, bursts * (overhead_s * gpus + waves * seconds_per_request))
    return BurstDay(bursts, n, waves, active, billed, gpus)


def _seconds_per_request(traffic: Traffic, throughput: Throughput) -> Decimal:
    # Decode time only: prompt processing is much faster than generation and not modelled.
    return Decimal(traffic.output_tokens) / throughput.tokens_per_second


def _concurrency(traffic: Traffic, throughput: Throughput) -> int:
    return min(traffic.concurrency or throughput.max_concurrency, throughput.max_concurrency)


MAX_GPUS = 64  # beyond this the estimate is not a sensible question for gpuctl


def _check_capacity(day: BurstDay, provider: str, gpu: str) -> None:
    if day.gpus > MAX_GPUS:
        raise UsageError(
            f"this traffic needs {_plain(round_money(day.active_s / SECONDS_PER_HOUR, 1))} GPU-hours of generation "
            f"a day: more than {MAX_GPUS} {provider} {gpu} GPUs",
            hint="lower the requests per day, or raise the concurrency if the GPU allows it",
        )


def _throughput_notes(throughput: Throughput, startup: StartupTime, conc: int, t: Decimal) -> dict[str, str]:
    return {
        "throughput": (f"{_plain(throughput.tokens_per_second)} output tok/s per stream "
                       f"(range {_plain(throughput.tokens_per_second_low)}–{_plain(throughput.tokens_per_second_high)}), "
                       f"up to {throughput.max_concurrency} streams; {throughput.source}"),
        "concurrency": str(conc),
        "seconds_per_request": _plain(t) or "0",
        "startup": (f"{_plain(startup.seconds)} s {startup.what} "
                    f"(range {_plain(startup.seconds_low)}–{_plain(startup.seconds_high)} s); {startup.source}"),
    }


def modal_traffic_cost(
    traffic: Traffic,
    *,
    price: ModalPrice,
    throughput: Throughput,
    startup: StartupTime,
    scaledown_window_s: Number = DEFAULT_SCALEDOWN_WINDOW_S,
) -> Estimate:
    """Modal bills each burst's container time per second: cold start + generation + the
    scaledown-window tail after the last request. Requests of a burst share one container
    (max_containers=1) up to the concurrency."""
    window = _num(scaledown_window_s, "scaledown window")
    t = _seconds_per_request(traffic, throughput)
    conc = _concurrency(traffic, throughput)
    day = burst_day(requests_per_day=traffic.requests_per_day, bursts_per_day=traffic.bursts_per_day,
                    concurrency=conc, seconds_per_request=t, overhead_s=startup.seconds + window)
    _check_capacity(day, "modal", price.gpu)
    total = day.billed_s * traffic.days * price.dollars_per_second
    per_month = day.billed_s * DAYS_PER_MONTH * price.dollars_per_second
    tokens = traffic.requests_per_day * traffic.tokens_per_request * traffic.days
    assumptions = {
        "price": f"{price.gpu} ${_usd(price.dollars_per_second)}/s, billed per second of container time "
                 f"({_price_note(price.row)})",
        **traffic.describe(),
        **_throughput_notes(throughput, startup, conc, t),
        "scaledown_window_s": _plain(window) or "0",
        "model": "per burst: cold start + generation + scaledown-window tail; "
                 "capped at 24 h/day per container; CPU and memory not included",
        "containers": f"{day.gpus} (set max_containers to at least this)" if day.gpus > 1 else "1",
        "billed_seconds_per_day": _plain(day.billed_s) or "0",
    }
    return Estimate("modal", price.gpu, _tidy_money(total), _tidy_money(per_month), traffic.days,
                    day.billed_s * traffic.days, tokens, _per_million(total, tokens), assumptions, (price.row,))


def vast_traffic_cost(
    traffic: Traffic,
    *,
    price: VastPrice,
    throughput: Throughput,
    startup: StartupTime,
    keep_alive_s: Number = DEFAULT_KEEP_ALIVE_S,
    dollars_per_hour: Number | None = None,
) -> Estimate:
    """Vast.ai bills the whole time an instance is kept: per burst, boot + generation +
    keep-alive after the last request (then it is destroyed), capped at 24 h/day (a box kept
    between every burst is simply up all day). Price: `dollars_per_hour` (a live offer) or the
    catalog's typical $/h."""
    keep = _num(keep_alive_s, "keep-alive")
    live = None if dollars_per_hour is None else _num(dollars_per_hour, "price per hour", positive=True)
    rate = price.typical if live is None else live
    t = _seconds_per_request(traffic, throughput)
    conc = _concurrency(traffic, throughput)
    day = burst_day(requests_per_day=traffic.requests_per_day, bursts_per_day=traffic.bursts_per_day,
                    concurrency=conc, seconds_per_request=t, overhead_s=startup.seconds + keep)
    _check_capacity(day, "vastai", price.gpu)
    total = day.billed_s * traffic.days * rate / SECONDS_PER_HOUR
    per_month = day.billed_s * DAYS_PER_MONTH * rate / SECONDS_PER_HOUR
    tokens = traffic.requests_per_day * traffic.tokens_per_request * traffic.days
    price_note = (f"{price.gpu} ${_usd(rate)}/h (given)" if live is not None else
                  f"{price.gpu} ${_usd(rate)}/h typical (range ${_usd(price.low)}–${_usd(price.high)}; "
                  f"{_price_note(price.row)})")
    assumptions = {
        "price": price_note,
        **traffic.describe(),
        **_throughput_notes(throughput, startup, conc, t),
        "keep_alive_s": _plain(keep) or "0",
        "model": "per burst: boot + generation + keep-alive after the last request, then destroyed; "
                 "capped at 24 h/day per instance; storage while stopped not included",
        "instances": str(day.gpus),
        "billed_seconds_per_day": _plain(day.billed_s) or "0",
    }
    return Estimate("vastai", price.gpu, _tidy_money(total), _tidy_money(per_month), traffic.days,
                    day.billed_s * traffic.days, tokens, _per_million(total, tokens), assumptions,
                    (price.row,) if live is None else ())


def anthropic_traffic_cost(traffic: Traffic, *, price: TokenPrice) -> Estimate:
    """Anthropic bills tokens: input and output per million, per request (prompt-size tiers
    are applied per request)."""
    per_request = token_cost(price, traffic.input_tokens, traffic.output_tokens)
    total = per_request * traffic.requests_per_day * traffic.days
    per_month = per_request * traffic.requests_per_day * DAYS_PER_MONTH
    tokens = traffic.requests_per_day * traffic.tokens_per_request * traffic.days
    rate_in, rate_out = price.rates_for(traffic.input_tokens)
    assumptions = {
        "price": f"{price.model} ${_usd(rate_in)}/M input, ${_usd(rate_out)}/M output ({_price_note(price.row)})",
        **traffic.describe(),
        "cost_per_request": money_str(per_request) or "0",
        "model": "tokens only; no batch discount, no prompt caching",
    }
    return Estimate("anthropic", price.model, _tidy_money(total), _tidy_money(per_month), traffic.days,
                    None, tokens, _per_million(total, tokens), assumptions, (price.row,))


# ------------------------------------------------------------------------------ break-even


@dataclass(frozen=True)
class BreakEven:
    """The traffic from which a GPU provider is cheaper than the API (and stays cheaper up to
    what one GPU can serve), for a given request shape and burst pattern."""

    provider: str
    gpu: str
    versus: str  # the Anthropic model
    requests_per_day: Decimal | None  # None: the API stays cheaper up to capacity
    tokens_per_day: Decimal | None
    capacity_requests_per_day: Decimal  # what one GPU can serve under these assumptions
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "gpu": self.gpu,
            "versus": self.versus,
            "requests_per_day": _plain(self.requests_per_day),
            "tokens_per_day": _plain(self.tokens_per_day),
            "capacity_requests_per_day": _plain(self.capacity_requests_per_day),
            "note": self.note,
        }


def break_even(
    *,
    provider: str,
    gpu: str,
    versus: str,
    api_cost_per_request: Decimal,
    gpu_cost_per_second: Decimal,
    tokens_per_request: int,
    bursts_per_day: Decimal,
    concurrency: int,
    seconds_per_request: Decimal,
    overhead_s: Decimal,
) -> BreakEven:
    """Solve the burst model for the requests/day where GPU cost ≤ API cost from there on.

    Both daily costs are piecewise linear in requests/day R: the API is a × R; the GPU's
    billed seconds are R × (o + t) while R ≤ bursts (one request per burst), flat B × (o + t)
    until a burst fills the concurrency, then B × o + R × t / c, capped at a day. Between the
    breakpoints the difference is linear, so scanning the pieces from one GPU's capacity
    downwards finds the last crossing exactly.
    """
    a, rate, b, c, t, o = api_cost_per_request, gpu_cost_per_second, bursts_per_day, concurrency, seconds_per_request, overhead_s
    day_s = Decimal(SECONDS_PER_DAY)

    def gpu_cost(r: Decimal) -> Decimal:
        return rate * burst_day(requests_per_day=r, bursts_per_day=b, concurrency=c,
                                seconds_per_request=t, overhead_s=o).billed_s

    def diff(r: Decimal) -> Decimal:  # > 0: the GPU is cheaper
        return a * r - gpu_cost(r)

    # Capacity: generation time within a day.
    capacity = day_s / t if b * t > day_s else day_s * c / t
    points = {Decimal(0), b, b * c, capacity}
    # Where billed time reaches a whole day (a kink of the cap).
    if o + t > 0:
        points.add(day_s / (o + t))
    if b * (o + t) < day_s:
        points.add((day_s - b * o) * c / t)
    grid = sorted(p for p in points if 0 <= p <= capacity)

    cap_requests = capacity.to_integral_value(rounding=ROUND_FLOOR)

    def result(r: Decimal | None, note: str) -> BreakEven:
        return BreakEven(provider, gpu, versus, r, None if r is None else r * tokens_per_request, cap_requests, note)

    never = f"the API stays cheaper up to one {gpu}'s capacity ({_plain(cap_requests)} requests/day)"
    if diff(capacity) < 0:
        return result(None, never)
    crossing, piece_lo = Decimal(0), Decimal(0)
    for lo, hi in zip(reversed(grid[:-1]), reversed(grid[1:]), strict=True):
        d_lo, d_hi = diff(lo), diff(hi)
        if d_lo >= 0:
            continue
        crossing, piece_lo = lo + (-d_lo) * (hi - lo) / (d_hi - d_lo), lo
        break
    r = max(Decimal(1), _ceil(crossing))
    # The division can be off in its last digit: settle on the smallest whole R that holds.
    if r - 1 >= max(Decimal(1), piece_lo) and diff(r - 1) >= 0:
        r -= 1
    while diff(r) < 0 and r <= cap_requests:
        r += 1
    if r > cap_requests:
        return result(None, never)
    return result(r, f"from {_plain(r)} requests/day (in {_plain(b)} bursts) {provider} {gpu} costs less than {versus}")


def _api_per_request(price: TokenPrice, traffic: Traffic) -> Decimal:
    return token_cost(price, traffic.input_tokens, traffic.output_tokens)


# ------------------------------------------------------------------------------ comparisons


@dataclass(frozen=True)
class TrafficLevel:
    label: str
    low_hours: Decimal  # GPU-hours of generation a day
    high_hours: Decimal

    @property
    def hours(self) -> Decimal:
        """The level's midpoint, which the comparison prices."""
        return (self.low_hours + self.high_hours) / 2


# The seed's traffic levels ("2-3 / 4-5 / 7-8 hours actual GPU time per day"). We price the
# midpoint of each and compute the cost; the seed's own $ column contradicts its formula.
SEED_LEVELS: tuple[TrafficLevel, ...] = (
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

    @property
    def cheapest(self) -> Estimate | None:
        if not self.estimates:
            return None
        return min(self.estimates, key=lambda e: e.per_month if e.per_month is not None else e.total)

    def as_dict(self) -> dict[str, Any]:
        cheapest = self.cheapest
        return {
            "label": self.label,
            "gpu_hours_per_day": _plain(self.gpu_hours_per_day),
            "level_range": None if self.level_range is None else [_plain(x) for x in self.level_range],
            "requests_per_day": _plain(self.requests_per_day),
            "tokens_per_day": _plain(self.tokens_per_day),
            "cheapest": cheapest.provider if cheapest else None,
            "estimates": [e.as_dict() for e in self.estimates],
        }


@dataclass(frozen=True)
class Comparison:
    """Providers side by side: at the seed's levels (`compare`), for one traffic
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
class _Setup:
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


def _setup(catalog: Catalog, *, modal_gpu: str, vast_gpu: str, model: str, scaledown_window_s: Number,
           keep_alive_s: Number, vast_dollars_per_hour: Number | None, need_throughput: bool = True) -> _Setup:
    modal = catalog.modal_price(modal_gpu)
    vast = catalog.vast_price(vast_gpu)
    return _Setup(
        modal=modal,
        modal_start=catalog.startup_for("modal"),
        vast=vast,
        vast_start=catalog.startup_for("vastai"),
        api=catalog.token_price(model),
        window=_num(scaledown_window_s, "scaledown window"),
        keep=_num(keep_alive_s, "keep-alive"),
        vast_dph=None if vast_dollars_per_hour is None else _num(vast_dollars_per_hour, "price per hour", positive=True),
        modal_tp=catalog.throughput_for("modal", modal.gpu) if need_throughput else None,
        vast_tp=catalog.throughput_for("vastai", vast.gpu) if need_throughput else None,
    )


def _tp(tp: Throughput | None) -> Throughput:
    assert tp is not None, "throughput is resolved for every traffic model"
    return tp


def _estimates(s: _Setup, traffic: Traffic, providers: Sequence[str]) -> tuple[Estimate, ...]:
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


def _break_evens(s: _Setup, traffic: Traffic, providers: Sequence[str]) -> tuple[BreakEven, ...]:
    if "anthropic" not in providers:
        return ()
    a = _api_per_request(s.api, traffic)
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
            concurrency=_concurrency(traffic, tp), seconds_per_request=_seconds_per_request(traffic, tp),
            overhead_s=overhead))
    return tuple(out)


def _providers(providers: Sequence[str] | None) -> tuple[str, ...]:
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
    provs = _providers(providers)
    s = _setup(catalog, modal_gpu=modal_gpu, vast_gpu=vast_gpu, model=model, scaledown_window_s=scaledown_window_s,
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
    levels: Sequence[TrafficLevel] = SEED_LEVELS,
    days: Number = DAYS_PER_MONTH,
) -> Comparison:
    """`cost estimate` with no flags: Modal vs Vast.ai vs Anthropic at the seed's traffic levels.

    A level is GPU-hours of generation a day on the Modal GPU (the seed's "actual GPU time"),
    priced at its midpoint (2.5, 4.5, 7.5). It is turned into requests/day under the burst
    model (`requests_for_generation_hours`) and that same traffic — same requests, same
    tokens — is priced on all three providers, so $ per million tokens is on one basis.
    The break-even is the requests/day (and tokens/day) from which each GPU beats the API.
    """
    base = Traffic.build(requests_per_day=0, input_tokens=input_tokens, output_tokens=output_tokens,
                         bursts_per_day=bursts_per_day, concurrency=concurrency, days=days)
    s = _setup(catalog, modal_gpu=modal_gpu, vast_gpu=vast_gpu, model=model, scaledown_window_s=scaledown_window_s,
               keep_alive_s=keep_alive_s, vast_dollars_per_hour=vast_dollars_per_hour)
    t = _seconds_per_request(base, _tp(s.modal_tp))
    conc = _concurrency(base, _tp(s.modal_tp))
    rows: list[ComparisonRow] = []
    for level in levels:
        hours = _num(level.hours, "GPU-hours per day", maximum=24)
        r = requests_for_generation_hours(hours, bursts_per_day=base.bursts_per_day, concurrency=conc,
                                          seconds_per_request=t)
        traffic = Traffic(r, base.input_tokens, base.output_tokens, base.bursts_per_day, base.concurrency, base.days)
        rows.append(ComparisonRow(
            f"{level.label} ({_plain(level.low_hours)}–{_plain(level.high_hours)} GPU-h/day)",
            _estimates(s, traffic, PROVIDERS), hours, (level.low_hours, level.high_hours),
            r, r * base.tokens_per_request))
    assumptions = {
        **{k: v for k, v in base.describe().items() if k != "requests_per_day"},
        "levels": "GPU-hours/day of generation on the Modal GPU, priced at each level's midpoint; the same "
                  "requests and tokens are then priced on every provider",
        "concurrency": str(conc),
    }
    return Comparison("levels", tuple(rows), _break_evens(s, base, PROVIDERS), assumptions)

