"""Replay of the ledger's real requests: what exactly this traffic cost, or would have cost, on
each provider (`cost estimate --from-usage`, and Modal's modelled container time in `cost report`).

Owns turning ledger rows into `UsageEvent`s, merging them into the periods a scale-to-zero GPU
would be up (`up_periods`: the scaledown window or keep-alive after each request, a start-up per
period), and pricing them (`replay_usage`). Pure: the caller reads the ledger (through
gpuctl.state) and passes the rows in; nothing here opens the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gpuctl.costs.catalog import Catalog
from gpuctl.costs.comparison import Comparison, ComparisonRow, chosen_providers, resolve_setup
from gpuctl.costs.estimate import Estimate
from gpuctl.costs.money import (
    DAYS_PER_MONTH,
    Number,
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
    count = 0
    for ev in sorted(events, key=lambda e: e.started_at):
        if count and ev.started_at <= up_until:
            up_until = max(up_until, ev.ended_at + window)
            count += 1
            continue
        if count:
            periods.append(UpPeriod(start, up_until, count, startup))
        start, up_until, count = ev.started_at, ev.ended_at + window, 1
    if count:
        periods.append(UpPeriod(start, up_until, count, startup))
    return periods


def replay_usage(
    events: Sequence[UsageEvent],
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
    generation times. `period_days` (e.g. 30 for --since 30d) scales totals to per_month."""
    provs = chosen_providers(providers)
    s = resolve_setup(catalog, modal_gpu=modal_gpu, vast_gpu=vast_gpu, model=model, scaledown_window_s=scaledown_window_s,
                      keep_alive_s=keep_alive_s, vast_dollars_per_hour=vast_dollars_per_hour, need_throughput=False)
    days = None if period_days is None else number(period_days, "period in days", minimum=None, positive=True)
    tokens = Decimal(sum(e.input_tokens + e.output_tokens for e in events))

    def per_month(total: Decimal) -> Decimal | None:
        return None if days is None else tidy_money(total * DAYS_PER_MONTH / days)

    common = {"requests": str(len(events)), "period_days": plain(days) or "unknown",
              "generation_time": "the recorded latency of each request"}
    estimates: list[Estimate] = []
    for p in provs:
        if p == "modal":
            periods = up_periods(events, window_s=s.window, startup_s=s.modal_start.seconds)
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
            periods = up_periods(events, window_s=s.keep, startup_s=s.vast_start.seconds)
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
            total = sum((token_cost(s.api, e.input_tokens, e.output_tokens) for e in events), Decimal(0))
            estimates.append(Estimate("anthropic", s.api.model, tidy_money(total), per_month(total), days, None,
                                      tokens, per_million_tokens(total, tokens), {
                                          **common,
                                          "price": f"{s.api.model} ${price_str(s.api.input)}/M input, "
                                                   f"${price_str(s.api.output)}/M output ({s.api.row.provenance})",
                                      }, (s.api.row,)))
    row = ComparisonRow(f"replay of {len(events)} requests", tuple(estimates),
                        requests_per_day=None if days is None else Decimal(len(events)) / days,
                        tokens_per_day=None if days is None else tokens / days)
    return Comparison("replay", (row,), (), common)
