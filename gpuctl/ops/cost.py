"""The `gpuctl cost estimate` and `gpuctl cost report` verbs.

Owns turning the active profile and the command's flags into calls of the cost math
(`gpuctl.costs`), reading the ledger for `--from-usage` and `cost report` (the state opened with
`gpuctl.state.open_for(settings)`), and the answer as a `CostView`: the --json data (exact
decimals as strings), the result behind it (for `gpuctl.cli` to draw), notes and the stale-price
warnings. It never prints or exits: bad input raises `UsageError` (exit 2). Time comes from
`clock` (tests replace it) or an explicit `now`. The cost math is imported when a verb runs, so
that `gpuctl --help` never compiles it.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING, Any

from gpuctl.costs.money import SECONDS_PER_DAY, exact_seconds, to_decimal
from gpuctl.errors import ConfigError, UsageError

if TYPE_CHECKING:
    from gpuctl.config import Settings
    from gpuctl.costs import Catalog, Comparison, Estimate, PriceRow, Report
    from gpuctl.state import State

clock: Callable[[], float] = time.time  # the injectable "now" (tests set it)


@dataclass
class CostView:
    """A cost command's answer: `data` for --json, `result` (the `Estimate`, `Comparison` or
    `Report` behind it) for the tables, notes for people, warnings for stderr."""

    data: dict[str, Any]
    result: Estimate | Comparison | Report
    notes: list[str] = field(default_factory=list)
    warnings: list[str] = field(default_factory=list)


# ------------------------------------------------------------------------------ shared


@dataclass(frozen=True)
class Since:
    ts: float  # epoch seconds
    label: str  # as given: "30d", "2026-11-01"
    days: Decimal  # the period's length up to now, for per-month scaling


def parse_since(text: str, now: float) -> Since:
    """`7d`, `30d`, `12h`, `90m`, or an ISO date/time (UTC when no zone). Bad → `UsageError`."""
    raw = text.strip()
    units = {"d": SECONDS_PER_DAY, "h": 3600, "m": 60}
    if raw[-1:].lower() in units and raw[:-1].isdigit():
        seconds = int(raw[:-1]) * units[raw[-1].lower()]
        if seconds <= 0:
            raise UsageError(f"--since must be a positive period (got {text!r})")
        seconds = min(seconds, int(now))  # longer than the epoch: everything there is
        return Since(now - seconds, raw, Decimal(seconds) / SECONDS_PER_DAY)
    try:
        when = datetime.fromisoformat(raw)
    except ValueError:
        raise UsageError(f"--since must be like 7d, 30d, 12h or a date like 2026-11-01 (got {text!r})") from None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    ts = when.timestamp()
    if ts >= now:
        raise UsageError(f"--since {raw} is not in the past")
    return Since(ts, raw, exact_seconds(now - ts) / SECONDS_PER_DAY)


def _today(now: float) -> date:
    return datetime.fromtimestamp(now, UTC).date()


def _setting(settings: Settings, key: str) -> Decimal:
    """A numeric setting as an exact Decimal (settings are validated when they are resolved)."""
    d = to_decimal(settings[key])
    if d is None:
        raise ConfigError(f"{key} must be a number (got {settings[key]!r})")
    return d


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
                   _setting(settings, "modal.scaledown_window_minutes") * 60,
                   _setting(settings, "vastai.keep_alive_minutes") * 60, str(settings["anthropic.model"]))


def _stale(rows: Iterable[PriceRow], today: date) -> tuple[list[str], list[dict[str, Any]]]:
    from gpuctl.costs import stale_rows, stale_warning

    found = stale_rows({(r.provider, r.key): r for r in rows}.values(), today)
    return [stale_warning(r, today) for r in found], [r.as_dict() for r in found]


@contextlib.contextmanager
def _naming_settings(settings: Settings, catalog: Catalog) -> Iterator[None]:
    """A catalog error caused by a setting's value (a profile's `anthropic.model` the catalog
    does not price, say) names that setting and where it is set, instead of only the value."""
    try:
        yield
    except UsageError as exc:
        checks = {"anthropic.model": lambda v: catalog.token_price(v),
                  "modal.gpu": lambda v: catalog.modal_price(v.partition(":")[0])}
        for key, check in checks.items():
            value = str(settings[key])
            try:
                check(value)
            except UsageError as own:
                if own.message == exc.message:  # the same lookup of the same value failed
                    raise ConfigError(f"{key} = {value!r} (from {settings.source(key)}): {exc.message}",
                                      hint=exc.hint) from None
        raise


@contextlib.contextmanager
def _ledger(settings: Settings, state: State | None) -> Iterator[State]:
    """The caller's open state, or the one `open_for(settings)` opens (and closes) here."""
    if state is not None:
        yield state
        return
    from gpuctl.state import open_for

    with open_for(settings) as opened:
        yield opened


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


def _check_modes(req: EstimateRequest) -> None:
    """The flags of one way to estimate, never two."""
    by_time = req.hours_per_day is not None or req.hours is not None
    modes = [m for m, on in (("--hours-per-day/--hours", by_time), ("--requests-per-day", req.requests_per_day is not None),
                             ("--from-usage", req.from_usage)) if on]
    if len(modes) > 1:
        raise UsageError(f"choose one of {' or '.join(modes)}")
    if req.requests_per_day is None and (req.tokens_per_request is not None or req.bursts_per_day is not None):
        raise UsageError("--tokens-per-request and --bursts-per-day describe traffic: add --requests-per-day N")
    if req.since is not None and not req.from_usage:
        raise UsageError("--since goes with --from-usage (or `gpuctl cost report --since`)")
    if req.days is not None and (req.from_usage or req.hours is not None):
        raise UsageError("--days does not apply here: " + ("the period is --since" if req.from_usage
                                                            else "--hours is a one-off"))


def _checked_numbers(req: EstimateRequest) -> EstimateRequest:
    """The numeric flags checked here, so a bad one is named as typed (`--hours-per-day must be
    at most 24`); the cost math then gets exact decimals (the same bounds it would apply)."""
    import dataclasses

    from gpuctl.costs.money import number, plain, whole_number

    def dec(value: str | None, flag: str, **bounds: Any) -> str | None:
        return None if value is None else plain(number(value, flag, **bounds))

    tokens = req.tokens_per_request
    return dataclasses.replace(
        req, hours_per_day=dec(req.hours_per_day, "--hours-per-day", maximum=24), hours=dec(req.hours, "--hours"),
        days=dec(req.days, "--days", minimum=None, positive=True), dph=dec(req.dph, "--dph", positive=True),
        requests_per_day=dec(req.requests_per_day, "--requests-per-day"),
        tokens_per_request=None if tokens is None else str(whole_number(tokens, "--tokens-per-request", minimum=1)),  # type: ignore[arg-type]
        bursts_per_day=dec(req.bursts_per_day, "--bursts-per-day", positive=True))


def cost_estimate(settings: Settings, req: EstimateRequest, *, now: float | None = None) -> CostView:
    """By GPU time (`--hours-per-day`/`--hours`), by traffic (`--requests-per-day`), by replay of
    the ledger (`--from-usage`), or — with no flags — Modal vs Vast.ai vs Anthropic at the
    three traffic levels of the original system's README."""
    from gpuctl import costs

    now = clock() if now is None else now
    provider = None if req.provider is None else costs.resolve_provider(req.provider)
    _check_modes(req)
    req = _checked_numbers(req)
    catalog = _with_tier_caps(settings, load_prices(settings, req.prices), req, provider)
    prof = Profile.of(settings)
    warnings = [] if prof.modal_gpu_count == 1 else [
        f"modal.gpu = {settings['modal.gpu']}: Modal figures are for one {prof.modal_gpu}; "
        f"multiply them by {prof.modal_gpu_count}"]
    with _naming_settings(settings, catalog):
        view = _estimate(settings, catalog, req, provider, prof, now)
    for gpu, (cap, whose) in catalog.vast_caps.items():  # set only when this estimate prices one
        view.notes.append(f"Vast.ai {gpu} is priced at {whose}: ${cap}/h, an upper bound. The catalog knows no "
                          "typical price for it: pass --dph with a live offer's $/h for the real figure.")
        view.data["upper_bound"] = {"gpu": gpu, "max_dph": str(cap), "source": whose}
    stale, stale_data = _stale(view.result.prices, _today(now))
    view.warnings = warnings + stale
    view.data["stale_prices"] = stale_data
    return view


def _with_tier_caps(settings: Settings, catalog: Catalog, req: EstimateRequest, provider: str | None) -> Catalog:
    """A Vast.ai GPU the catalog knows no price for (A40, L40S…) is estimated without --dph at
    the most its tier may cost (`max_dph` of the tiers in force: `vastai.gpu_tiers`), labelled an
    upper bound. The tiers file is read only then, and a bad one is named by its setting."""
    from gpuctl import costs

    if req.dph is not None or req.gpu is None or provider not in (None, "vastai"):
        return catalog
    try:
        key = costs.resolve_gpu(catalog, "vastai", req.gpu)
    except UsageError:
        return catalog  # not a Vast.ai GPU: the estimate says so itself
    if key not in catalog.unpriced.get("vastai", {}):
        return catalog
    from gpuctl.vastai.tiers import default_tiers_file, load_tiers, tiers_file

    path = tiers_file(settings)
    try:
        tiers = load_tiers(settings)
    except ConfigError as exc:
        raise ConfigError(f"vastai.gpu_tiers = {str(path)!r} (from {settings.source('vastai.gpu_tiers')}): "
                          f"{exc.message}", hint=exc.hint) from None
    where = "configs/gpu_tiers.toml" if path == default_tiers_file() else str(path)
    caps = [(name, tier.max_dph, f"the {tier.name} tier's cap (max_dph in {where})")
            for tier in tiers for name in (tier.name, *tier.gpu_names)]
    return catalog.with_vast_caps(caps, only=key)


def _estimate(settings: Settings, catalog: Catalog, req: EstimateRequest, provider: str | None, prof: Profile,
              now: float) -> CostView:
    from gpuctl import costs

    if req.hours_per_day is not None or req.hours is not None:
        est = _by_time(catalog, req, provider, prof)
        view = CostView({"kind": "gpu_time", "total": est.as_dict()["total"], "per_month": est.as_dict()["per_month"],
                         "estimate": est.as_dict()}, est)
    else:
        models = _models(catalog, req, provider, prof)
        if req.requests_per_day is not None:
            traffic = costs.Traffic.build(requests_per_day=req.requests_per_day or "0",
                                          tokens_per_request=req.tokens_per_request,  # type: ignore[arg-type]
                                          bursts_per_day=req.bursts_per_day, days=req.days or costs.DAYS_PER_MONTH)
            result = costs.estimate_traffic(catalog, traffic, providers=[provider] if provider else None, **models)
        elif req.from_usage:
            result = _replay(settings, catalog, req, provider, models, now)
        else:
            result = costs.compare(catalog, days=req.days or costs.DAYS_PER_MONTH, **models)
        view = CostView(result.as_dict(), result, notes=_comparison_notes(result))
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


def _by_time(catalog: Catalog, req: EstimateRequest, provider: str | None, prof: Profile) -> Estimate:
    from gpuctl import costs

    if provider is None and req.gpu is not None and len(known := _providers_knowing(catalog, req.gpu)) == 1:
        provider = known[0]  # `--gpu L4` can only be Modal
    if provider is None:
        raise UsageError("--hours-per-day/--hours price GPU time: add --provider modal or --provider vastai")
    gpu = req.gpu or (prof.modal_gpu if provider == "modal" else costs.DEFAULT_VAST_GPU)
    return costs.estimate_gpu_time(catalog, provider=provider, gpu=gpu, hours_per_day=req.hours_per_day,
                                   hours=req.hours, days=req.days or costs.DAYS_PER_MONTH,
                                   dollars_per_hour=req.dph)


def _replay(settings: Settings, catalog: Catalog, req: EstimateRequest, provider: str | None,
            models: dict[str, Any], now: float) -> Comparison:
    from gpuctl import costs

    since = parse_since(req.since or "30d", now)
    opts: dict[str, Any] = {"catalog": catalog, "period_days": since.days,
                            "providers": [provider] if provider else None, **models}
    with _ledger(settings, None) as state:
        times = state.usage_times(since.ts, now, prompt_sizes=True)
        log = costs.LedgerLog.from_rows(times.rows, prompt_sizes=times.prompt_sizes)
        if log is not None:  # whole milliseconds, no object per request: the same figures
            with contextlib.suppress(costs.NotExact):
                return costs.replay_usage(log, **opts)
        records = [r for r in state.usage_since(since.ts) if r.ts <= now]  # request by request
    return costs.replay_usage(costs.events_from_ledger(records), **opts)


def _comparison_notes(result: Comparison) -> list[str]:
    first = result.rows[0].estimates if result.rows else ()
    if result.kind == "replay" and result.rows and not any(e.tokens for e in first):
        return ["The ledger has no answered requests in this period: nothing to replay."]
    return []


# ------------------------------------------------------------------------------ report


def cost_report(settings: Settings, state: State | None = None, *, since: str = "30d", by: str = "provider",
                prices: Path | None = None, now: float | None = None) -> CostView:
    """Actual spend from the ledger since `since`, grouped `by` provider, day (UTC), model, host or key,
    with the totals, the Vast.ai budgets and what is left of the total budget (see
    `gpuctl.costs.build_report`). `state`: an open state to read (default: `open_for(settings)`)."""
    from gpuctl import costs
    from gpuctl.vastai import budget as vast_budget

    now = clock() if now is None else now
    costs.check_by(by)
    period = parse_since(since, now)
    catalog = load_prices(settings, prices)
    prof = Profile.of(settings)
    with _ledger(settings, state) as st:
        usage = st.usage_summary(period.ts, now, by=by, priced_now=costs.PRICED_NOW, replay="modal")
        vast_rows = st.instances(provider="vastai")
        modal_rows = st.instances(provider="modal")
    # Vast.ai instances, priced the way the budget checks of `launch` and `cleanup` price them:
    # the recorded cost, else $/h × time alive, a live one up to now.
    vast = costs.VastLedger([(r, vast_budget.row_cost(r, now)) for r in vast_rows], vast_budget.spent(vast_rows, now),
                            _setting(settings, "vastai.budget_limit"), _setting(settings, "vastai.session_budget_limit"))
    with _naming_settings(settings, catalog):
        report = costs.build_report(usage, catalog=catalog, modal_gpu=prof.modal_gpu,
                                    scaledown_window_s=prof.scaledown_window_s, vast=vast, modal_deployments=modal_rows,
                                    start=period.ts, days=period.days, now=now, by=by, label=period.label)
    stale, stale_data = _stale(report.prices, _today(now))
    data = report.as_dict()
    data["stale_prices"] = stale_data
    return CostView(data, report, notes=report.notes, warnings=stale)
