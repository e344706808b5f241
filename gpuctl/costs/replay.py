"""Replay of the ledger's real requests: what exactly this traffic cost, or would have cost, on
each provider (`cost estimate --from-usage`, and Modal's modelled container time in `cost report`).

Owns turning ledger rows into `UsageEvent`s, merging them into the periods a scale-to-zero GPU
would be up (`up_periods`: the scaledown window or keep-alive after each request, a start-up per
period), and pricing them (`replay_usage`). A replay of the ledger itself (a million rows) goes
through `LedgerLog`: each time once to whole milliseconds (what `exact_seconds` makes of it, so
the figures are the same to the last digit), merged as integers, Decimals once per period.
Pure: the caller reads the ledger (through gpuctl.state) and passes the rows in; nothing here
opens the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal, Inexact, localcontext
from typing import Any

from gpuctl.costs.catalog import Catalog
from gpuctl.costs.comparison import Comparison, ComparisonRow, chosen_providers, resolve_setup
from gpuctl.costs.estimate import Estimate
from gpuctl.costs.money import (
    DAYS_PER_MONTH,
    MILLION,
    Number,
    TokenRates,
    exact_seconds,
    hourly_cost,
    number,
    per_million_tokens,
    plain,
    price_str,
    tidy_money,
    token_cost,
    whole_number,
)
from gpuctl.costs.traffic import (
    DEFAULT_KEEP_ALIVE_S,
    DEFAULT_MODAL_GPU,
    DEFAULT_MODEL,
    DEFAULT_SCALEDOWN_WINDOW_S,
    DEFAULT_VAST_GPU,
)


@dataclass(frozen=True)
class UsageEvent:
    """One real request from the ledger."""

    started_at: Decimal  # epoch seconds
    latency_s: Decimal
    input_tokens: int
    output_tokens: int

    @classmethod
    def build(cls, *, started_at: Number, latency_s: Number | None, input_tokens: int, output_tokens: int) -> UsageEvent:
        return cls(number(started_at, "request time", minimum=None),
                   Decimal(0) if latency_s is None else number(latency_s, "latency"),
                   whole_number(input_tokens, "input tokens"), whole_number(output_tokens, "output tokens"))

    @property
    def ended_at(self) -> Decimal:
        return self.started_at + self.latency_s


def events_from_ledger(records: Iterable[Any]) -> list[UsageEvent]:
    """UsageEvents from ledger rows (anything with ts, latency_s, prompt_tokens,
    completion_tokens and ok, like state.UsageRecord). Failed attempts are skipped. `ts` is
    taken as the time the request started."""
    out: list[UsageEvent] = []
    for rec in records:
        if not getattr(rec, "ok", True):
            continue
        latency = getattr(rec, "latency_s", None)
        out.append(UsageEvent.build(started_at=exact_seconds(rec.ts),
                                    latency_s=None if latency is None else exact_seconds(latency),
                                    input_tokens=getattr(rec, "prompt_tokens", 0) or 0,
                                    output_tokens=getattr(rec, "completion_tokens", 0) or 0))
    return out


@dataclass(frozen=True)
class UpPeriod:
    """One stretch a GPU would have been up: from the first request to the last request's
    end + the idle window, plus one start-up."""

    start: Decimal
    end: Decimal  # last request end + window
    requests: int
    startup_s: Decimal
    first: int = 0  # the request that opened it (its index in the requests as given)

    @property
    def billed_s(self) -> Decimal:
        return self.startup_s + (self.end - self.start)


def up_periods(events: Sequence[UsageEvent], *, window_s: Number, startup_s: Number) -> list[UpPeriod]:
    """Merge requests into the periods a scale-to-zero GPU would be up. Each request keeps it
    up until its end + `window_s`; a request arriving after that finds it gone and pays
    `startup_s` again (Modal: scaledown window and cold start; Vast: keep-alive, then destroyed
    and relaunched, and boot). Start-up time is added to the period; request times are not
    shifted by it."""
    window = number(window_s, "window")
    startup = number(startup_s, "start-up time")
    periods: list[UpPeriod] = []
    start = up_until = Decimal(0)
    count = first = 0
    for i in sorted(range(len(events)), key=lambda i: events[i].started_at):
        ev = events[i]
        if count and ev.started_at <= up_until:
            up_until = max(up_until, ev.ended_at + window)
            count += 1
            continue
        if count:
            periods.append(UpPeriod(start, up_until, count, startup, first))
        start, up_until, count, first = ev.started_at, ev.ended_at + window, 1, i
    if count:
        periods.append(UpPeriod(start, up_until, count, startup, first))
    return periods


class NotExact(ArithmeticError):
    """A grouped sum of the ledger would round where the per-request one might not: replay the
    requests one by one instead (`events_from_ledger`)."""


class RequestLog:
    """The requests a replay prices: how many, their tokens, the periods a GPU would be up (each
    window and start-up merged once, however often asked) and their token bill."""

    requests: int
    tokens: int

    def __init__(self) -> None:
        self._periods: dict[tuple[Decimal, Decimal], list[UpPeriod]] = {}

    def up_periods(self, window_s: Number, startup_s: Number) -> list[UpPeriod]:
        key = (number(window_s, "window"), number(startup_s, "start-up time"))
        if key not in self._periods:
            self._periods[key] = self._merge(*key)
        return self._periods[key]

    def _merge(self, window: Decimal, startup: Decimal) -> list[UpPeriod]:
        raise NotImplementedError

    def token_cost(self, price: TokenRates) -> Decimal:
        raise NotImplementedError


class EventLog(RequestLog):
    """`UsageEvent`s, of any precision: `up_periods` and the token bill request by request."""

    def __init__(self, events: Sequence[UsageEvent]) -> None:
        super().__init__()
        self.events = events
        self.requests = len(events)
        self.tokens = sum(e.input_tokens + e.output_tokens for e in events)

    def _merge(self, window: Decimal, startup: Decimal) -> list[UpPeriod]:
        return up_periods(self.events, window_s=window, startup_s=startup)

    def token_cost(self, price: TokenRates) -> Decimal:
        return sum((token_cost(price, e.input_tokens, e.output_tokens) for e in self.events), Decimal(0))


# Below 8e12 ms (< 2^43; in seconds, the year 2223) a float times 1000 is within 2^-10 ms of the
# exact product: when that product is more than 0.01 ms from a half, its nearest integer is the
# value's exact rounding to the millisecond (what `exact_seconds` gives), and 13 digits print
# back as themselves. Nearer a half, `exact_seconds` itself decides.
_MS_LIMIT = 8e12
_NEAR_HALF = 0.49


def _exact_ms(value: float) -> int:
    return int(exact_seconds(value).scaleb(3))


def _count(value: Any) -> int | None:
    """A token count the database summed (PostgreSQL sums to NUMERIC): a whole number ≥ 0, or None."""
    if isinstance(value, int) and not isinstance(value, bool):
        return value if value >= 0 else None
    if isinstance(value, Decimal) and value.is_finite() and value == value.to_integral_value() and value >= 0:
        return int(value)
    return None


class LedgerLog(RequestLog):
    """The ledger's answered requests as whole milliseconds, in start order (`from_rows`):
    exactly the times `exact_seconds` gives them, so all priced from them is what `UsageEvent`s
    give, without an object or a Decimal per request."""

    def __init__(self, starts: list[int], ends: list[int], tokens: int,
                 prompt_sizes: Sequence[tuple[int, int, int]] | None = None) -> None:
        super().__init__()
        self.starts, self.ends, self.tokens = starts, ends, tokens
        self.requests = len(starts)
        self.prompt_sizes = prompt_sizes  # (prompt_tokens, requests, completion_tokens summed)

    @classmethod
    def from_rows(cls, rows: Iterable[Sequence[Any]], *,
                  prompt_sizes: Iterable[Sequence[Any]] | None = None) -> LedgerLog | None:
        """From (ts, latency_s, tokens, ...) rows in time order (latency None: 0) and, for the
        token bill, the requests per prompt size: (prompt_tokens, requests, completion_tokens
        summed, the fewest completion_tokens). None when something is outside what whole
        milliseconds and counts hold exactly (no finite number, a time past the year 2223, a
        negative latency or count, rows out of order): replay `UsageEvent`s then."""
        sizes: list[tuple[int, int, int]] | None = None
        if prompt_sizes is not None:
            sizes = []
            for size in prompt_sizes:
                prompt, requests, completion, fewest = (_count(v) for v in size)
                if prompt is None or requests is None or completion is None or fewest is None:
                    return None  # a negative or fractional count: `UsageEvent.build` says which
                sizes.append((prompt, requests, completion))
        starts: list[int] = []
        ends: list[int] = []
        tokens = 0
        add_start, add_end = starts.append, ends.append
        last = None
        try:
            for row in rows:
                ts, latency = row[0], row[1]
                tokens += row[2]
                p = ts * 1000.0
                if not -_MS_LIMIT < p < _MS_LIMIT:
                    return None
                s = round(p)
                if not -_NEAR_HALF < p - s < _NEAR_HALF:
                    s = _exact_ms(ts)
                d = 0
                if latency is not None:
                    q = latency * 1000.0
                    if not 0 <= q < _MS_LIMIT:
                        return None
                    d = round(q)
                    if not -_NEAR_HALF < q - d < _NEAR_HALF:
                        d = _exact_ms(latency)
                if last is not None and s < last:
                    return None
                last = s
                add_start(s)
                add_end(s + d)
        except TypeError:  # text where a number belongs
            return None
        return cls(starts, ends, tokens, sizes)

    def _merge(self, window: Decimal, startup: Decimal) -> list[UpPeriod]:
        gap = window.scaleb(3)
        if gap != gap.to_integral_value():  # finer than a millisecond: Decimals, request by request
            events = [UsageEvent(Decimal(s).scaleb(-3), Decimal(e - s).scaleb(-3), 0, 0)
                      for s, e in zip(self.starts, self.ends, strict=True)]
            return up_periods(events, window_s=window, startup_s=startup)
        starts, ends, most = self.starts, self.ends, int(gap)
        periods: list[UpPeriod] = []
        if not starts:
            return periods

        def period(first: int, after: int, last_end: int) -> UpPeriod:
            return UpPeriod(Decimal(starts[first]).scaleb(-3), Decimal(last_end).scaleb(-3) + window, after - first,
                            startup, first)

        first, last_end = 0, ends[0]
        for i in range(1, len(starts)):
            if starts[i] - last_end > most:  # gone before this request arrived
                periods.append(period(first, i, last_end))
                first, last_end = i, ends[i]
            elif ends[i] > last_end:
                last_end = ends[i]
        periods.append(period(first, len(starts), last_end))
        return periods

    def token_cost(self, price: TokenRates) -> Decimal:
        """The token bill summed per prompt size: the same as request by request whenever that
        sum is exact (with the catalog's prices it always is); `NotExact` when it would round."""
        if self.prompt_sizes is None:
            raise ValueError("this LedgerLog was read without its prompt sizes")
        total = Decimal(0)
        with localcontext() as ctx:
            ctx.traps[Inexact] = True
            try:
                for prompt, requests, completion in self.prompt_sizes:
                    rate_in, rate_out = price.rates_for(prompt)
                    total += (prompt * requests * rate_in + completion * rate_out) / MILLION
            except Inexact:
                raise NotExact("the token bill needs more than 28 digits") from None
        return total


def replay_usage(
    events: Sequence[UsageEvent] | RequestLog,
    *,
    catalog: Catalog,
    modal_gpu: str = DEFAULT_MODAL_GPU,
    vast_gpu: str = DEFAULT_VAST_GPU,
    model: str = DEFAULT_MODEL,
    scaledown_window_s: Number = DEFAULT_SCALEDOWN_WINDOW_S,
    keep_alive_s: Number = DEFAULT_KEEP_ALIVE_S,
    vast_dollars_per_hour: Number | None = None,
    period_days: Number | None = None,
    providers: Sequence[str] | None = None,
) -> Comparison:
    """`cost estimate --from-usage`: what exactly this traffic would have cost on Modal (this
    scaledown window, per-second billing, a cold start per period), on a kept Vast.ai box
    (up from a request until the last + keep-alive; destroyed and relaunched, with a boot, after
    a longer gap) and on Anthropic (tokens, per request). The recorded latencies are the
    generation times. `period_days` (e.g. 30 for --since 30d) scales totals to per_month.
    `events` may be a `RequestLog` (the ledger's, `LedgerLog`): its periods are merged once."""
    log = events if isinstance(events, RequestLog) else EventLog(events)
    provs = chosen_providers(providers)
    s = resolve_setup(catalog, modal_gpu=modal_gpu, vast_gpu=vast_gpu, model=model, scaledown_window_s=scaledown_window_s,
                      keep_alive_s=keep_alive_s, vast_dollars_per_hour=vast_dollars_per_hour, need_throughput=False)
    days = None if period_days is None else number(period_days, "period in days", minimum=None, positive=True)
    tokens = Decimal(log.tokens)

    def per_month(total: Decimal) -> Decimal | None:
        return None if days is None else tidy_money(total * DAYS_PER_MONTH / days)

    common = {"requests": str(log.requests), "period_days": plain(days) or "unknown",
              "generation_time": "the recorded latency of each request"}
    estimates: list[Estimate] = []
    for p in provs:
        if p == "modal":
            periods = log.up_periods(s.window, s.modal_start.seconds)
            billed = sum((x.billed_s for x in periods), Decimal(0))
            total = billed * s.modal.dollars_per_second
            estimates.append(Estimate("modal", s.modal.gpu, tidy_money(total), per_month(total), days, billed,
                                      tokens, per_million_tokens(total, tokens), {
                                          **common,
                                          "price": f"{s.modal.gpu} ${price_str(s.modal.dollars_per_second)}/s "
                                                   f"({s.modal.row.provenance})",
                                          "scaledown_window_s": plain(s.window) or "0",
                                          "startup": f"{plain(s.modal_start.seconds)} s cold start per period; "
                                                     f"{s.modal_start.source}",
                                          "container_periods": str(len(periods)),
                                      }, (s.modal.row,)))
        elif p == "vastai":
            periods = log.up_periods(s.keep, s.vast_start.seconds)
            billed = sum((x.billed_s for x in periods), Decimal(0))
            rate = s.vast_rate_per_hour
            total = hourly_cost(rate, billed)
            estimates.append(Estimate("vastai", s.vast.gpu, tidy_money(total), per_month(total), days, billed,
                                      tokens, per_million_tokens(total, tokens), {
                                          **common,
                                          "price": f"{s.vast.gpu} ${price_str(rate)}/h "
                                                   + ("(given)" if s.vast_dph is not None else s.vast.bound
                                                      if s.vast.upper_bound else f"typical ({s.vast.row.provenance})"),
                                          "keep_alive_s": plain(s.keep) or "0",
                                          "startup": f"{plain(s.vast_start.seconds)} s boot per launch; "
                                                     f"{s.vast_start.source}",
                                          "launches": str(len(periods)),
                                      }, (s.vast.row,) if s.vast_dph is None else ()))
        else:
            total = log.token_cost(s.api)
            estimates.append(Estimate("anthropic", s.api.model, tidy_money(total), per_month(total), days, None,
                                      tokens, per_million_tokens(total, tokens), {
                                          **common,
                                          "price": f"{s.api.model} ${price_str(s.api.input)}/M input, "
                                                   f"${price_str(s.api.output)}/M output ({s.api.row.provenance})",
                                      }, (s.api.row,)))
    row = ComparisonRow(f"replay of {log.requests} requests", tuple(estimates),
                        requests_per_day=None if days is None else Decimal(log.requests) / days,
                        tokens_per_day=None if days is None else tokens / days)
    return Comparison("replay", (row,), (), common)
