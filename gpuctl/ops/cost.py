"""What `gpuctl cost estimate` and `gpuctl cost report` compute and show.

Owns turning the active profile and the command's flags into calls of the pure cost math
(`gpuctl.costs`), reading the ledger for `--from-usage` and `cost report` (through a
`gpuctl.state.State` the caller opens), and shaping the answer as a `CostView`: the --json data
(exact decimals as strings), the tables and notes for people, and the stale-price warnings.
It never prints or exits: bad input raises `UsageError` (exit 2). Time comes from `clock`
(tests replace it) or an explicit `now`.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpuctl.errors import UsageError

if TYPE_CHECKING:
    from gpuctl.config import Settings
    from gpuctl.costs import Catalog, Comparison, PriceRow
    from gpuctl.state import InstanceRow, State, UsageRecord

clock: Callable[[], float] = time.time  # the injectable "now" (tests set it)

PROVIDER_NAMES = {"modal": "Modal", "vastai": "Vast.ai", "anthropic": "Anthropic", "endpoint": "Endpoint"}
REPORT_BY = ("provider", "day", "model")
DAY_S = 86400


@dataclass(frozen=True)
class ViewTable:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]


@dataclass
class CostView:
    """A cost command's answer: `data` for --json, tables and notes for people, warnings for stderr."""

    data: dict[str, Any]
    tables: list[ViewTable] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)
    prices: list[PriceRow] = field(default_factory=list)  # catalog rows used (for the stale check)


# ------------------------------------------------------------------------------ shared


@dataclass(frozen=True)
class Since:
    ts: float  # epoch seconds
    label: str  # as given: "30d", "2026-11-01"
    days: Decimal  # the period's length up to now, for per-month scaling


def parse_since(text: str, now: float) -> Since:
    """`7d`, `30d`, `12h`, `90m`, or an ISO date/time (UTC when no zone). Bad → `UsageError`."""
    raw = text.strip()
    units = {"d": DAY_S, "h": 3600, "m": 60}
    if raw[-1:].lower() in units and raw[:-1].isdigit():
        seconds = int(raw[:-1]) * units[raw[-1].lower()]
        if seconds <= 0:
            raise UsageError(f"--since must be a positive period (got {text!r})")
        seconds = min(seconds, int(now))  # longer than the epoch: everything there is
        return Since(now - seconds, raw, Decimal(seconds) / DAY_S)
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(f"--since must be like 7d, 30d, 12h or a date like 2026-11-01 (got {text!r})") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ts = when.timestamp()
    if ts >= now:
        raise UsageError(f"--since {raw} is not in the past")
    return Since(ts, raw, Decimal(str(round(now - ts, 3))) / DAY_S)


def _today(now: float) -> date:
    return datetime.fromtimestamp(now, UTC).date()


def load_prices(settings: Settings, prices_file: Path | None) -> Catalog:
    """The shipped catalog, then the profile's [prices] rows, then --prices FILE."""
    from gpuctl import costs

    if prices_file is not None and not prices_file.is_file():
        raise UsageError(f"--prices {prices_file}: file not found")
    label = f"profile {settings.profile} [prices]" if settings.profile else "config [prices]"
    return costs.load_catalog(overrides=settings.extra.get("prices") or None, overrides_label=label,
                              prices_file=prices_file)


@dataclass(frozen=True)
class Profile:
    """The active profile's values that feed the cost models."""

    modal_gpu: str
    modal_gpu_count: int
    scaledown_window_s: Decimal
    keep_alive_s: Decimal
    model: str

    @classmethod
    def of(cls, settings: Settings) -> Profile:
        gpu, _, count = str(settings["modal.gpu"]).partition(":")  # "H100:2" = two per container
        return cls(gpu, int(count) if count.isdigit() else 1,
                   Decimal(str(settings["modal.scaledown_window_minutes"])) * 60,
                   Decimal(str(settings["vastai.keep_alive_minutes"])) * 60, str(settings["anthropic.model"]))


def _stale(rows: Iterable[PriceRow], today: date) -> tuple[list[str], list[dict[str, Any]]]:
    from gpuctl.costs import stale_rows, stale_warning

    found = stale_rows({(r.provider, r.key): r for r in rows}.values(), today)
    return [stale_warning(r, today) for r in found], [r.as_dict() for r in found]


def money(d: Decimal | None) -> str:
    """For people: cents (half-up), thousands separated; sub-cent amounts keep 4 places."""
    from gpuctl.costs import round_money

    if d is None:
        return "—"
    if d != 0 and abs(d) < Decimal("0.01"):
        return f"${round_money(d, 4)}"
    return f"${round_money(d):,}"


def per_million(d: Decimal | None) -> str:
    """$ per million tokens: a ratio, so to 1/100 of a cent ("$0.0636")."""
    from gpuctl.costs import money_str

    return "—" if d is None else f"${money_str(d)}"


def _count(d: Decimal | int | None) -> str:
    if d is None:
        return "—"
    d = Decimal(d)
    if d >= 1_000_000:
        return f"{d / 1_000_000:,.1f}M"
    return f"{d:,.0f}" if d == d.to_integral_value() or d >= 100 else f"{d:.2f}"


def _label(provider: str, key: str) -> str:
    return f"{PROVIDER_NAMES.get(provider, provider)} {key}"


# ------------------------------------------------------------------------------ estimate


@dataclass(frozen=True)
class EstimateRequest:
    """`cost estimate` flags, as typed (numbers are validated by the cost math)."""

    provider: str | None = None
    gpu: str | None = None
    hours_per_day: str | None = None
    hours: str | None = None
    days: str | None = None
    dph: str | None = None
    requests_per_day: str | None = None
    tokens_per_request: str | None = None
    bursts_per_day: str | None = None
    from_usage: bool = False
    since: str | None = None
    prices: Path | None = None


def cost_estimate(settings: Settings, req: EstimateRequest, *, open_state: Callable[[], State] | None = None,
                  now: float | None = None) -> CostView:
    """By GPU time (`--hours-per-day`/`--hours`), by traffic (`--requests-per-day`), by replay of
    the ledger (`--from-usage`), or — with no flags — Modal vs Vast.ai vs Anthropic at the
    seed's three traffic levels."""
    from gpuctl import costs

    now = clock() if now is None else now
    provider = None if req.provider is None else costs.resolve_provider(req.provider)
    by_time = req.hours_per_day is not None or req.hours is not None
    by_traffic = req.requests_per_day is not None
    modes = [m for m, on in (("--hours-per-day/--hours", by_time), ("--requests-per-day", by_traffic),
                             ("--from-usage", req.from_usage)) if on]
    if len(modes) > 1:
        raise UsageError(f"choose one of {' or '.join(modes)}")
    if not by_traffic and (req.tokens_per_request is not None or req.bursts_per_day is not None):
        raise UsageError("--tokens-per-request and --bursts-per-day describe traffic: add --requests-per-day N")
    if req.since is not None and not req.from_usage:
        raise UsageError("--since goes with --from-usage (or `gpuctl cost report --since`)")
    if req.days is not None and (req.from_usage or req.hours is not None):
        raise UsageError("--days does not apply here: " + ("the period is --since" if req.from_usage
                                                            else "--hours is a one-off"))
    catalog = load_prices(settings, req.prices)
    prof = Profile.of(settings)
    warnings = [] if prof.modal_gpu_count == 1 else [
        f"modal.gpu = {settings['modal.gpu']}: Modal figures are for one {prof.modal_gpu}; "
        f"multiply them by {prof.modal_gpu_count}"]
    if by_time:
        view = _by_time(catalog, req, provider, prof)
    else:
        models = _models(catalog, req, provider, prof)
        if by_traffic:
            traffic = costs.Traffic.build(requests_per_day=req.requests_per_day or "0",
                                          tokens_per_request=req.tokens_per_request,  # type: ignore[arg-type]
                                          bursts_per_day=req.bursts_per_day, days=req.days or costs.DAYS_PER_MONTH)
            result = costs.estimate_traffic(catalog, traffic, providers=[provider] if provider else None, **models)
        elif req.from_usage:
            result = _replay(catalog, req, provider, models, open_state, now)
        else:
            result = costs.compare(catalog, days=req.days or costs.DAYS_PER_MONTH, **models)
        view = _comparison_view(result)
    stale, stale_data = _stale(view.prices, _today(now))
    view.warnings = warnings + stale
    view.data["stale_prices"] = stale_data
    return view


def _models(catalog: Catalog, req: EstimateRequest, provider: str | None, prof: Profile) -> dict[str, Any]:
    """GPUs, model, windows and live $/h for the traffic models: the profile's, then flags.
    `--gpu` sets the GPU of `--provider`; without one, of whichever GPU provider knows the name."""
    from gpuctl import costs

    models: dict[str, Any] = {"modal_gpu": prof.modal_gpu, "vast_gpu": costs.DEFAULT_VAST_GPU, "model": prof.model,
                              "scaledown_window_s": prof.scaledown_window_s, "keep_alive_s": prof.keep_alive_s,
                              "vast_dollars_per_hour": req.dph}
    if req.gpu is not None:
        if provider == "anthropic":
            raise UsageError("anthropic bills tokens, not GPU time: --gpu does not apply")
        known = _providers_knowing(catalog, req.gpu)
        target = provider or (known[0] if known else "modal")  # unknown: Modal's did-you-mean
        models["modal_gpu" if target == "modal" else "vast_gpu"] = req.gpu
    if req.dph is not None and provider == "modal":
        raise UsageError("--dph is a live Vast.ai offer's $/h; Modal's price comes from the catalog (or --prices FILE)")
    return models


def _providers_knowing(catalog: Catalog, gpu: str) -> list[str]:
    from gpuctl import costs

    known = []
    for p in costs.GPU_PROVIDERS:
        try:
            costs.resolve_gpu(catalog, p, gpu)
        except UsageError:
            continue
        known.append(p)
    return known


def _by_time(catalog: Catalog, req: EstimateRequest, provider: str | None, prof: Profile) -> CostView:
    from gpuctl import costs

    if provider is None and req.gpu is not None and len(known := _providers_knowing(catalog, req.gpu)) == 1:
        provider = known[0]  # `--gpu L4` can only be Modal
    if provider is None:
        raise UsageError("--hours-per-day/--hours price GPU time: add --provider modal or --provider vastai")
    gpu = req.gpu or (prof.modal_gpu if provider == "modal" else costs.DEFAULT_VAST_GPU)
    est = costs.estimate_gpu_time(catalog, provider=provider, gpu=gpu, hours_per_day=req.hours_per_day,
                                  hours=req.hours, days=req.days or costs.DAYS_PER_MONTH,
                                  dollars_per_hour=req.dph)
    a = est.assumptions
    if est.per_month is None:
        span, cols = f"{a['hours']} h once", ["provider", "GPU", "time", "cost"]
        row = [PROVIDER_NAMES[provider], est.key, span, money(est.total)]
    else:
        span = f"{a['hours_per_day']} h/day × {a['days']} days"
        cols = ["provider", "GPU", "time", "total", "per month (30 days)"]
        row = [PROVIDER_NAMES[provider], est.key, span, money(est.total), money(est.per_month)]
    return CostView(
        data={"kind": "gpu_time", "total": est.as_dict()["total"], "per_month": est.as_dict()["per_month"],
              "estimate": est.as_dict()},
        tables=[ViewTable("GPU time", cols, [row]), _assumption_table({"": a})],
        prices=list(est.prices),
    )


def _replay(catalog: Catalog, req: EstimateRequest, provider: str | None, models: dict[str, Any],
            open_state: Callable[[], State] | None, now: float) -> Comparison:
    from gpuctl import costs

    if open_state is None:
        raise UsageError("--from-usage needs the ledger")
    since = parse_since(req.since or "30d", now)
    with open_state() as state:
        records = [r for r in state.usage_since(since.ts) if r.ts <= now]
    return costs.replay_usage(costs.events_from_ledger(records), catalog=catalog, period_days=since.days,
                              providers=[provider] if provider else None, **models)


def _comparison_view(result: Comparison) -> CostView:
    first = result.rows[0].estimates if result.rows else ()
    heads = [PROVIDER_NAMES[e.provider] for e in first]
    priced = ", ".join(_label(e.provider, e.key) for e in first)
    monthly: list[list[str]] = []
    per_m: list[list[str]] = []
    for row in result.rows:
        cheapest = row.cheapest
        monthly.append([row.label, _count(row.requests_per_day), _count(row.tokens_per_day),
                        *[money(e.per_month if e.per_month is not None else e.total) for e in row.estimates],
                        PROVIDER_NAMES.get(cheapest.provider, "") if cheapest else ""])
        per_m.append([row.label, *[per_million(e.per_million_tokens) for e in row.estimates]])
    what = {"levels": "at the seed's traffic levels", "traffic": "for your traffic",
            "replay": "for the ledger's real requests"}.get(result.kind, "")
    tables = [
        ViewTable(f"$ per month (30 days) {what}\n{priced}; the same requests and tokens on each",
                  ["traffic", "req/day", "tokens/day", *heads, "cheapest"], monthly),
        ViewTable("$ per million tokens, on the same basis", ["traffic", *heads], per_m),
    ]
    if result.kind == "replay" and result.rows:
        days = result.assumptions.get("period_days", "?")
        tables.insert(0, ViewTable(f"Replay of {result.assumptions.get('requests', '0')} requests from the ledger "
                                   f"(last {days} days)", ["provider", "priced as", "total for the period"],
                                   [[PROVIDER_NAMES[e.provider], e.key, money(e.total)] for e in first]))
    if result.break_even:
        tables.append(ViewTable(
            "Break-even: the volume from which a GPU is cheaper than the API",
            ["GPU", "versus", "cheaper from", "one GPU serves up to"],
            [[_label(b.provider, b.gpu), b.versus,
              "never (the API stays cheaper)" if b.requests_per_day is None
              else f"{_count(b.requests_per_day)} requests/day ({_count(b.tokens_per_day)} tokens/day)",
              f"{_count(b.capacity_requests_per_day)} requests/day"] for b in result.break_even]))
    shared = dict(result.assumptions)
    per_provider = {PROVIDER_NAMES[e.provider]: {k: v for k, v in e.assumptions.items() if k not in shared}
                    for e in first}
    tables.append(_assumption_table({"": shared, **per_provider}))
    notes = []
    if result.kind == "replay" and result.rows and not any(e.tokens for e in first):
        notes.append("The ledger has no answered requests in this period: nothing to replay.")
    return CostView(data=result.as_dict(), tables=tables, notes=notes, prices=list(result.prices))


# Per-level details that would mislead next to three levels (they are in --json, per estimate).
_SKIP = {"billed_seconds_per_day"}
_NAMES = {"model": "cost model", "scaledown_window_s": "scaledown window (s)", "keep_alive_s": "keep-alive (s)",
          "cost_per_request": "cost per request ($)", "seconds_per_request": "seconds per request"}


def _assumption_table(groups: Mapping[str, Mapping[str, str]]) -> ViewTable:
    rows = []
    for who, items in groups.items():
        for key, value in items.items():
            if key not in _SKIP:
                rows.append([f"{who} {_NAMES.get(key, key.replace('_', ' '))}".strip(), value])
    return ViewTable("Assumptions", ["", ""], rows)


# ------------------------------------------------------------------------------ report


@dataclass
class _Bucket:
    requests: int = 0
    failed: int = 0
    tokens: int = 0
    request_cost: Decimal = Decimal(0)  # the ledger's per-request estimates
    billed: Decimal = Decimal(0)  # best estimate of what was billed


def cost_report(settings: Settings, state: State, *, since: str = "30d", by: str = "provider",
                prices: Path | None = None, now: float | None = None) -> CostView:
    """Actual spend from the ledger since `since`, grouped `by` provider, day (UTC) or model,
    with the totals, the Vast.ai budgets and what is left of the total budget.

    Billed estimate per provider: Anthropic = the requests' token costs; Modal = container time
    replayed from the real request times (cold start + scaledown tail per period), which is
    more than the per-request sum; Vast.ai = each instance's $/h × its life inside the period
    (a live one up to now); anything else = its recorded per-request costs.
    """
    from gpuctl import costs

    now = clock() if now is None else now
    if by not in REPORT_BY:
        raise UsageError(f"--by must be one of: {', '.join(REPORT_BY)} (got {by!r})")
    period = parse_since(since, now)
    catalog = load_prices(settings, prices)
    prof = Profile.of(settings)
    records = [r for r in state.usage_since(period.ts) if r.ts <= now]
    used: list[PriceRow] = []
    notes: list[str] = []

    def key_of(provider: str, model: str | None, ts: float) -> str:
        if by == "provider":
            return provider
        if by == "day":
            return _today(ts).isoformat()
        return f"{provider} {model or '?'}"

    buckets: dict[str, _Bucket] = {}
    per_request: dict[str, Decimal] = {}
    for rec in records:
        b = buckets.setdefault(key_of(rec.provider, rec.model, rec.ts), _Bucket())
        b.requests += 1
        b.failed += 0 if rec.ok else 1
        b.tokens += (rec.prompt_tokens or 0) + (rec.completion_tokens or 0)
        c = _request_cost(rec, catalog, prof, used, notes)
        b.request_cost += c
        per_request[rec.provider] = per_request.get(rec.provider, Decimal(0)) + c
        if rec.provider != "modal":  # Modal bills container time (below), not requests
            b.billed += c

    modal_records = [r for r in records if r.provider == "modal"]
    modal_model: dict[str, Any] | None = None
    if modal_records:
        price = catalog.modal_price(prof.modal_gpu)
        used.append(price.row)
        events = costs.events_from_ledger(modal_records)
        startup = catalog.startup_for("modal").seconds
        model = next((r.model for r in modal_records if r.model), None)
        for up in costs.up_periods(events, window_s=prof.scaledown_window_s, startup_s=startup):
            key = key_of("modal", model, float(up.start))
            buckets.setdefault(key, _Bucket()).billed += up.billed_s * price.dollars_per_second
        replay = costs.replay_usage(events, catalog=catalog, modal_gpu=prof.modal_gpu, providers=["modal"],
                                    scaledown_window_s=prof.scaledown_window_s, period_days=period.days)
        modal_model = replay.rows[0].estimates[0].as_dict()

    # Vast.ai instances, priced the way the budget checks of `launch` and `cleanup` price them
    # (gpuctl.vast.budget): the recorded cost, else $/h × time alive, a live one up to now.
    from gpuctl.vastai import budget as vast_budget

    instances = state.instances(provider="vastai")
    vast_all = vast_budget.spent(instances, now)
    vast_period = Decimal(0)
    live: list[tuple[InstanceRow, Decimal]] = []
    unpriced = 0
    for inst in instances:
        whole = vast_budget.row_cost(inst, now)
        if inst.cost is None and inst.dph is None:
            unpriced += 1
        inside = _in_period(inst, whole, period.ts, now)
        vast_period += inside
        for key, amount in _split_instance(inst, period.ts, now, by, inside):
            buckets.setdefault(key, _Bucket()).billed += amount
        if inst.live:
            live.append((inst, whole))
    if unpriced:
        notes.append(f"{unpriced} Vast.ai instance(s) in the ledger have neither a cost nor a $/h: counted as $0")

    modal_container = Decimal(modal_model["total"]) if modal_model else Decimal(0)
    # Modal apps deployed with min_containers > 0 bill their warm GPUs every hour (ledger rows
    # of provider "modal", dph = the warm $/h). Requests land on the warm container first, so
    # Modal's bill is the larger of the warm time and the replayed container time, not the sum.
    modal_warm = Decimal(0)
    for dep in state.instances(provider="modal"):
        rate = Decimal(dep.dph) if dep.dph else Decimal(0)
        if rate > 0:
            end = min(dep.destroyed_at if dep.destroyed_at is not None else now, now)
            whole = rate * Decimal(str(round(max(0.0, end - dep.created_at), 3))) / Decimal(3600)
            modal_warm += _in_period(dep, whole, period.ts, now)
    if modal_warm:
        notes.append("Modal kept containers warm (min_containers > 0): they bill every hour, idle or not")
    modal_billed = max(modal_container, modal_warm)
    other = sum((v for p, v in per_request.items() if p not in ("anthropic", "modal", "vastai")), Decimal(0))
    totals = {
        "anthropic_tokens": per_request.get("anthropic", Decimal(0)),
        "modal_per_request": per_request.get("modal", Decimal(0)),
        "modal_modelled_container": modal_container,
        "modal_warm_containers": modal_warm,
        "vastai_instances": vast_period,
        "other": other,
    }
    totals["total"] = totals["anthropic_tokens"] + modal_billed + vast_period + other
    budget = Decimal(str(settings["vastai.budget_limit"]))
    session = Decimal(str(settings["vastai.session_budget_limit"]))
    stale, stale_data = _stale(used, _today(now))
    data: dict[str, Any] = {
        "since": _iso(period.ts), "until": _iso(now), "period_days": _plain(period.days), "by": by,
        "groups": [{"key": k, "requests": b.requests, "failed": b.failed, "tokens": b.tokens,
                    "request_cost": _m(b.request_cost), "billed": _m(b.billed)} for k, b in sorted(buckets.items())],
        "totals": {k: _m(v) for k, v in totals.items()},
        "budgets": {
            "vastai_budget_limit": _m(budget), "vastai_spent_all_time": _m(vast_all),
            "vastai_budget_left": _m(max(Decimal(0), budget - vast_all)),
            "vastai_over_budget_by": _m(max(Decimal(0), vast_all - budget)),
            "vastai_session_budget_limit": _m(session),
            "live_instances": [{"id": i.id, "remote_id": i.remote_id, "gpu": i.gpu, "dph": i.dph, "status": i.status,
                                "spent": _m(spent), "session_left": _m(max(Decimal(0), session - spent))}
                               for i, spent in live],
        },
        "modal_model": modal_model,
        "notes": notes,
        "stale_prices": stale_data,
    }
    return CostView(data=data, tables=_report_tables(data, buckets, by, period, prof), notes=notes,
                    warnings=stale, prices=used)


def _request_cost(rec: UsageRecord, catalog: Catalog, prof: Profile, used: list[PriceRow],
                  notes: list[str]) -> Decimal:
    """The ledger's per-request estimate; one the router could not write is priced now."""
    from gpuctl import costs

    if rec.cost is not None:
        return Decimal(rec.cost)
    if not rec.ok:
        return Decimal(0)
    try:
        if rec.provider == "anthropic" and rec.model:
            price = catalog.token_price(rec.model)
            used.append(price.row)
            return costs.token_cost(price, rec.prompt_tokens, rec.completion_tokens)
        if rec.provider == "modal" and rec.latency_s is not None:
            mp = catalog.modal_price(prof.modal_gpu)
            used.append(mp.row)
            return costs.modal_cost(mp.dollars_per_second, Decimal(str(rec.latency_s)))
    except UsageError as exc:
        note = f"not priced: {exc.message}"
        if note not in notes:
            notes.append(note)
    return Decimal(0)


def _iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _m(d: Decimal) -> str:
    from gpuctl.costs import money_str

    return money_str(d) or "0.00"


def _plain(d: Decimal) -> str:
    n = d.normalize()
    return format(n, "f") if n != 0 else "0"


def _in_period(inst: InstanceRow, whole: Decimal, start: float, now: float) -> Decimal:
    """The part of an instance's cost (`whole`) that falls in [start, now]: all of it when its
    life is inside the period, pro rata by time when the period cuts it."""
    begin = inst.created_at
    end = min(inst.destroyed_at if inst.destroyed_at is not None else now, now)
    if end <= start or not whole:
        return Decimal(0)
    if begin >= start or end <= begin:
        return whole
    return whole * Decimal(str(round(end - start, 3))) / Decimal(str(round(end - begin, 3)))


def _split_instance(inst: InstanceRow, start: float, now: float, by: str, amount: Decimal) -> list[tuple[str, Decimal]]:
    """An instance's spend in the period under the report's grouping (by day: pro rata per UTC day)."""
    if not amount:
        return []
    if by == "provider":
        return [("vastai", amount)]
    if by == "model":
        return [(f"vastai {inst.gpu or '?'} instances", amount)]
    begin = max(inst.created_at, start)
    end = min(inst.destroyed_at if inst.destroyed_at is not None else now, now)
    span = Decimal(str(end - begin))
    out = []
    day = datetime.fromtimestamp(begin, UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    while day.timestamp() < end:
        nxt = day + timedelta(days=1)
        lo, hi = max(begin, day.timestamp()), min(end, nxt.timestamp())
        out.append((day.date().isoformat(), amount * Decimal(str(hi - lo)) / span))
        day = nxt
    return out


def _report_tables(data: dict[str, Any], buckets: Mapping[str, _Bucket], by: str, period: Since,
                   prof: Profile) -> list[ViewTable]:
    first = {"provider": "provider", "day": "day (UTC)", "model": "provider / model"}[by]
    rows = [[k, _count(b.requests) if b.requests else "", _count(b.failed) if b.failed else "",
             _count(b.tokens) if b.tokens else "", money(b.request_cost) if b.requests else "",
             money(b.billed)] for k, b in sorted(buckets.items())]
    t = data["totals"]
    rows.append(["total", _count(sum(b.requests for b in buckets.values())), "", "", "", money(Decimal(t["total"]))])
    title = f"Spend since {data['since'][:16].replace('T', ' ')} UTC ({period.label})"
    tables = [ViewTable(title, [first, "requests", "failed", "tokens", "per-request est.", "billed est."], rows)]
    mm = data["modal_model"]
    modal_note = ("container time replayed from the real request times: "
                  f"{mm['assumptions']['container_periods']} cold start(s), "
                  f"{_plain(prof.scaledown_window_s)} s scaledown tail each" if mm else "no Modal requests")
    tables.append(ViewTable("Totals", ["", "amount", "what it is"], [
        ["Anthropic", money(Decimal(t["anthropic_tokens"])), "tokens × $/M (billed as such)"],
        ["Modal, per request", money(Decimal(t["modal_per_request"])),
         "request seconds × $/s: a lower bound, not counted in the total"],
        ["Modal, container (modelled)", money(Decimal(t["modal_modelled_container"])), modal_note],
        *([["Modal, kept warm", money(Decimal(t["modal_warm_containers"])),
            "min_containers × $/h while deployed; the total counts the larger of the two Modal lines"]]
          if Decimal(t["modal_warm_containers"]) else []),
        ["Vast.ai instances", money(Decimal(t["vastai_instances"])), "$/h × lifetime inside the period (live: up to now)"],
        *([["Other", money(Decimal(t["other"])), "other providers' recorded costs"]] if Decimal(t["other"]) else []),
        ["Total", money(Decimal(t["total"])), "Anthropic + Modal container + Vast.ai"],
    ]))
    bud = data["budgets"]
    over = Decimal(bud["vastai_over_budget_by"])
    brow = [["total budget (vastai.budget_limit)", money(Decimal(bud["vastai_budget_limit"])),
             f"spent {money(Decimal(bud['vastai_spent_all_time']))} on Vast.ai instances so far; "
             + (f"over by {money(over)}" if over else f"{money(Decimal(bud['vastai_budget_left']))} left")],
            ["session budget (vastai.session_budget_limit)", money(Decimal(bud["vastai_session_budget_limit"])),
             "per instance: `gpuctl cleanup` destroys one that has cost this much"]]
    for inst in bud["live_instances"]:
        brow.append([f"live instance #{inst['id']} ({inst['gpu'] or '?'} at ${inst['dph']}/h)",
                     money(Decimal(inst["spent"])), f"{money(Decimal(inst['session_left']))} left of the session budget"])
    tables.append(ViewTable("Vast.ai budgets", ["", "amount", ""], brow))
    return tables
