"""Traffic models: what a day of requests costs on Modal, Vast.ai and Anthropic.

Owns the burst model (`Traffic`, `burst_day`) and each provider's traffic cost (Modal: cold
start + generation + scaledown tail per burst; Vast.ai: boot + generation + keep-alive;
Anthropic: tokens), each an `Estimate`. Pure: prices and assumptions are passed in; nothing
printed; bad input raises `UsageError`. Break-even and side-by-side comparisons build on it
(`gpuctl.costs.breakeven`, `gpuctl.costs.comparison`).
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_HALF_UP, Decimal

from gpuctl.costs.catalog import ModalPrice, StartupTime, Throughput, TokenPrice, VastPrice
from gpuctl.costs.estimate import Estimate
from gpuctl.costs.money import (
    DAYS_PER_MONTH,
    SECONDS_PER_DAY,
    SECONDS_PER_HOUR,
    Number,
    hourly_cost,
    money_str,
    number,
    per_million_tokens,
    plain,
    price_str,
    round_money,
    round_up,
    tidy_money,
    token_cost,
    whole_number,
)
from gpuctl.errors import UsageError

# Defaults from the original system's README; the CLI passes the active profile's values instead.
DEFAULT_SCALEDOWN_WINDOW_S = 300  # MODAL_SCALEDOWN_WINDOW_MINUTES=5
DEFAULT_KEEP_ALIVE_S = 2700  # the Vast example of the original system's README: "45 minutes keep-alive"
DEFAULT_MODAL_GPU = "L4"
DEFAULT_VAST_GPU = "RTX 3090"
DEFAULT_MODEL = "claude-haiku-4-5"
# Assumptions (not from the original system), shown in every estimate: a support-chat turn carries the
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
        r = number(requests_per_day, "requests per day")
        if tokens_per_request is not None:
            if input_tokens is not None or output_tokens is not None:
                raise UsageError("give tokens per request, or input and output tokens, not both")
            total = whole_number(tokens_per_request, "tokens per request", minimum=1)
            out = int((total * OUTPUT_SHARE).to_integral_value(rounding=ROUND_HALF_UP))
            out = min(max(out, 1), total)
            inp = total - out
        else:
            inp = DEFAULT_INPUT_TOKENS if input_tokens is None else whole_number(input_tokens, "input tokens")
            out = DEFAULT_OUTPUT_TOKENS if output_tokens is None else whole_number(output_tokens, "output tokens", minimum=1)
        b = (Decimal(DEFAULT_BURSTS_PER_DAY) if bursts_per_day is None
             else number(bursts_per_day, "bursts per day", positive=True))
        c = None if concurrency is None else whole_number(concurrency, "concurrency", minimum=1)
        d = number(days, "days", minimum=None, positive=True)
        return cls(r, inp, out, b, c, d)

    def __post_init__(self) -> None:
        if self.requests_per_day < 0:
            raise UsageError(f"requests per day must not be negative (got {plain(self.requests_per_day)})")
        if self.input_tokens < 0:
            raise UsageError(f"input tokens must not be negative (got {self.input_tokens})")
        if self.output_tokens < 1:
            # Generation time is output tokens / speed: a request must generate something.
            raise UsageError(f"output tokens must be at least 1 (got {self.output_tokens})")
        if self.bursts_per_day <= 0:
            raise UsageError(f"bursts per day must be more than 0 (got {plain(self.bursts_per_day)})")
        if self.days <= 0:
            raise UsageError(f"days must be more than 0 (got {plain(self.days)})")
        if self.concurrency is not None and self.concurrency < 1:
            raise UsageError(f"concurrency must be at least 1 (got {self.concurrency})")

    @property
    def tokens_per_request(self) -> int:
        return self.input_tokens + self.output_tokens

    def seconds_per_request(self, throughput: Throughput) -> Decimal:
        """Generation time of one request on this GPU."""
        # Decode time only: prompt processing is much faster than generation and not modelled.
        return Decimal(self.output_tokens) / throughput.tokens_per_second

    def concurrency_on(self, throughput: Throughput) -> int:
        """Requests one GPU serves at once: the asked concurrency, at most the GPU's."""
        return min(self.concurrency or throughput.max_concurrency, throughput.max_concurrency)

    def describe(self) -> dict[str, str]:
        return {
            "requests_per_day": plain(self.requests_per_day) or "0",
            "input_tokens_per_request": str(self.input_tokens),
            "output_tokens_per_request": str(self.output_tokens),
            "bursts_per_day": plain(self.bursts_per_day) or "0",
            "days": plain(self.days) or "0",
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
    gpus = max(1, int(round_up(active / SECONDS_PER_DAY)))
    billed = min(Decimal(SECONDS_PER_DAY) * gpus, bursts * (overhead_s * gpus + waves * seconds_per_request))
    return BurstDay(bursts, n, waves, active, billed, gpus)


MAX_GPUS = 64  # beyond this the estimate is not a sensible question for gpuctl


def _check_capacity(day: BurstDay, provider: str, gpu: str) -> None:
    if day.gpus > MAX_GPUS:
        raise UsageError(
            f"this traffic needs {plain(round_money(day.active_s / SECONDS_PER_HOUR, 1))} GPU-hours of generation "
            f"a day: more than {MAX_GPUS} {provider} {gpu} GPUs",
            hint="lower the requests per day, or raise the concurrency if the GPU allows it",
        )


def _throughput_notes(throughput: Throughput, startup: StartupTime, conc: int, t: Decimal) -> dict[str, str]:
    return {
        "throughput": (f"{plain(throughput.tokens_per_second)} output tok/s per stream "
                       f"(range {plain(throughput.tokens_per_second_low)}–{plain(throughput.tokens_per_second_high)}), "
                       f"up to {throughput.max_concurrency} streams; {throughput.source}"),
        "concurrency": str(conc),
        "seconds_per_request": plain(t) or "0",
        "startup": (f"{plain(startup.seconds)} s {startup.what} "
                    f"(range {plain(startup.seconds_low)}–{plain(startup.seconds_high)} s); {startup.source}"),
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
    window = number(scaledown_window_s, "scaledown window")
    t = traffic.seconds_per_request(throughput)
    conc = traffic.concurrency_on(throughput)
    day = burst_day(requests_per_day=traffic.requests_per_day, bursts_per_day=traffic.bursts_per_day,
                    concurrency=conc, seconds_per_request=t, overhead_s=startup.seconds + window)
    _check_capacity(day, "modal", price.gpu)
    total = day.billed_s * traffic.days * price.dollars_per_second
    per_month = day.billed_s * DAYS_PER_MONTH * price.dollars_per_second
    tokens = traffic.requests_per_day * traffic.tokens_per_request * traffic.days
    assumptions = {
        "price": f"{price.gpu} ${price_str(price.dollars_per_second)}/s, billed per second of container time "
                 f"({price.row.provenance})",
        **traffic.describe(),
        **_throughput_notes(throughput, startup, conc, t),
        "scaledown_window_s": plain(window) or "0",
        "model": "per burst: cold start + generation + scaledown-window tail; "
                 "capped at 24 h/day per container; CPU and memory not included",
        "containers": f"{day.gpus} (set max_containers to at least this)" if day.gpus > 1 else "1",
        "billed_seconds_per_day": plain(day.billed_s) or "0",
    }
    return Estimate("modal", price.gpu, tidy_money(total), tidy_money(per_month), traffic.days,
                    day.billed_s * traffic.days, tokens, per_million_tokens(total, tokens), assumptions, (price.row,))


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
    keep = number(keep_alive_s, "keep-alive")
    live = None if dollars_per_hour is None else number(dollars_per_hour, "price per hour", positive=True)
    rate = price.typical if live is None else live
    t = traffic.seconds_per_request(throughput)
    conc = traffic.concurrency_on(throughput)
    day = burst_day(requests_per_day=traffic.requests_per_day, bursts_per_day=traffic.bursts_per_day,
                    concurrency=conc, seconds_per_request=t, overhead_s=startup.seconds + keep)
    _check_capacity(day, "vastai", price.gpu)
    total = hourly_cost(rate, day.billed_s * traffic.days)
    per_month = hourly_cost(rate, day.billed_s * DAYS_PER_MONTH)
    tokens = traffic.requests_per_day * traffic.tokens_per_request * traffic.days
    price_note = (f"{price.gpu} ${price_str(rate)}/h {price.given}" if live is not None else
                  f"{price.gpu} ${price_str(rate)}/h {price.bound}" if price.upper_bound else
                  f"{price.gpu} ${price_str(rate)}/h typical (range ${price_str(price.low)}–${price_str(price.high)}; "
                  f"{price.row.provenance})")
    assumptions = {
        "price": price_note,
        **traffic.describe(),
        **_throughput_notes(throughput, startup, conc, t),
        "keep_alive_s": plain(keep) or "0",
        "model": "per burst: boot + generation + keep-alive after the last request, then destroyed; "
                 "capped at 24 h/day per instance; storage while stopped not included",
        "instances": str(day.gpus),
        "billed_seconds_per_day": plain(day.billed_s) or "0",
    }
    return Estimate("vastai", price.gpu, tidy_money(total), tidy_money(per_month), traffic.days,
                    day.billed_s * traffic.days, tokens, per_million_tokens(total, tokens), assumptions,
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
        "price": f"{price.model} ${price_str(rate_in)}/M input, ${price_str(rate_out)}/M output ({price.row.provenance})",
        **traffic.describe(),
        "cost_per_request": money_str(per_request) or "0",
        "model": "tokens only; no batch discount, no prompt caching",
    }
    return Estimate("anthropic", price.model, tidy_money(total), tidy_money(per_month), traffic.days,
                    None, tokens, per_million_tokens(total, tokens), assumptions, (price.row,))
