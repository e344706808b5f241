"""`gpuctl cost report`'s arithmetic: the ledger's rows for a period, grouped and priced.

Owns the aggregation: each request's estimate (the ledger's, or priced now when the router could
not), Modal's container time replayed from the real request times, the Vast.ai instances' spend
inside the period (pro rata when the period cuts an instance's life, per UTC day with --by day; a live row with no
instance id, a create of unknown outcome, is held by the budget but never charged here),
Modal apps kept warm, the totals and the budgets. Pure: the caller reads the ledger (through
`gpuctl.state`) and the clock, prices each Vast.ai instance the way the budget checks do
(`gpuctl.vastai.budget.row_cost`), and passes it all in; nothing here opens the database.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gpuctl.costs.catalog import Catalog, PriceRow
from gpuctl.costs.money import (
    exact_seconds,
    hourly_cost,
    modal_cost,
    money_str,
    plain,
    to_decimal,
    token_cost,
)
from gpuctl.costs.replay import EventLog, LedgerLog, RequestLog, UsageEvent, replay_usage
from gpuctl.errors import UsageError

if TYPE_CHECKING:
    from gpuctl.state import InstanceRow, UsageRecord, UsageSummary, UsageTimes

REPORT_BY = ("provider", "day", "model", "host", "key")
# With --by key: requests group by the `gpuctl serve` client key's name; what no key asked for
# (gpuctl chat, the Python API) and what bills by time rather than per request get these.
NO_KEY = "(no key)"
MODAL_CONTAINERS = "(modal container time)"
VAST_INSTANCES = "(vastai instances)"
PRICED_NOW = ("anthropic", "modal")  # rows without a cost that `_request_cost` can still price


def check_by(by: str) -> str:
    if by not in REPORT_BY:
        raise UsageError(f"--by must be one of: {', '.join(REPORT_BY)} (got {by!r})")
    return by


@dataclass
class Group:
    """One line of the report: a provider, a UTC day, a provider's model, a host or a client key."""

    requests: int = 0
    failed: int = 0
    tokens: int = 0
    request_cost: Decimal = Decimal(0)  # the ledger's per-request estimates
    billed: Decimal = Decimal(0)  # best estimate of what was billed


@dataclass(frozen=True)
class VastLedger:
    """The Vast.ai side of the ledger, priced by the caller."""

    instances: Sequence[tuple[InstanceRow, Decimal]]  # every instance and its whole cost so far
    spent_all_time: Decimal
    budget_limit: Decimal
    session_limit: Decimal


@dataclass
class Report:
    """Actual spend in [start, until], grouped `by`; `as_dict` is the --json data."""

    by: str
    label: str  # the period as given: "30d", "2026-11-01"
    start: float
    until: float
    days: Decimal
    vast: VastLedger
    scaledown_window_s: Decimal
    groups: dict[str, Group] = field(default_factory=dict)
    totals: dict[str, Decimal] = field(default_factory=dict)
    live: list[tuple[InstanceRow, Decimal]] = field(default_factory=list)
    unconfirmed: list[tuple[InstanceRow, Decimal]] = field(default_factory=list)  # held, not charged
    modal_model: dict[str, Any] | None = None
    notes: list[str] = field(default_factory=list)
    prices: list[PriceRow] = field(default_factory=list)  # catalog rows used (for the stale check)

    @property
    def vast_held(self) -> Decimal:
        """What the budget holds for creates of unknown outcome (not spend: see `unconfirmed`)."""
        return sum((cost for _, cost in self.unconfirmed), Decimal(0))

    @property
    def vast_spent(self) -> Decimal:
        """All-time Vast.ai spend on instances known to exist (the budget also holds `vast_held`)."""
        return self.vast.spent_all_time - self.vast_held

    def group(self, key: str) -> Group:
        return self.groups.setdefault(key, Group())

    def key_of(self, provider: str, model: str | None, ts: float, host: str | None = None,
               key_name: str | None = None) -> str:
        if self.by == "provider":
            return provider
        if self.by == "day":
            return utc_day(ts)
        if self.by == "host":
            return host or "unknown host"  # rows written before hosts were recorded
        if self.by == "key":
            return key_name or NO_KEY
        return f"{provider} {model or '?'}"

    def as_dict(self) -> dict[str, Any]:
        session = self.vast.session_limit
        # The budget holds an unconfirmed create at $/h × its age (better to over-count), but
        # nothing says it ever billed: it is not spend.
        held, budget, spent = self.vast_held, self.vast.budget_limit, self.vast_spent
        return {
            "since": iso(self.start), "until": iso(self.until), "period_days": plain(self.days), "by": self.by,
            "groups": [{"key": k, "requests": g.requests, "failed": g.failed, "tokens": g.tokens,
                        "request_cost": _m(g.request_cost), "billed": _m(g.billed)}
                       for k, g in sorted(self.groups.items())],
            "totals": {k: _m(v) for k, v in self.totals.items()},
            "budgets": {
                "vastai_budget_limit": _m(budget), "vastai_spent_all_time": _m(spent),
                "vastai_budget_left": _m(max(Decimal(0), budget - spent - held)),
                "vastai_over_budget_by": _m(max(Decimal(0), spent - budget)),
                "vastai_session_budget_limit": _m(session),
                "live_instances": [{"id": i.id, "remote_id": i.remote_id, "gpu": i.gpu, "dph": money_str(to_decimal(i.dph)),
                                    "status": i.status, "spent": _m(cost),
                                    "session_left": _m(max(Decimal(0), session - cost))} for i, cost in self.live],
                "vastai_held_unconfirmed": _m(held),
                "unconfirmed_creates": [{"ledger_row": i.id, "label": i.label, "gpu": i.gpu, "dph": i.dph,
                                         "status": i.status, "held": _m(cost)} for i, cost in self.unconfirmed],
            },
            "modal_model": self.modal_model,
            "notes": self.notes,
        }


def build_report(usage: UsageSummary, *, catalog: Catalog, modal_gpu: str, scaledown_window_s: Decimal,
                 vast: VastLedger, modal_deployments: Iterable[InstanceRow], start: float, days: Decimal,
                 now: float, by: str, label: str) -> Report:
    """Spend from `usage` (the ledger's requests in [start, now], summed by the database:
    `State.usage_summary` with `priced_now=PRICED_NOW, replay="modal"`) and the instances,
    grouped `by` provider, day (UTC), model, host, or the client key of `gpuctl serve` (time-billed
    spend in groups of its own).

    Billed estimate per provider: Anthropic = the requests' token costs; Modal = container time
    replayed from the real request times (cold start + scaledown tail per period), which is
    more than the per-request sum; Vast.ai = each instance's $/h × its life inside the period
    (a live one up to now); anything else = its recorded per-request costs.
    """
    rep = Report(check_by(by), label, start, now, days, vast, scaledown_window_s)
    per_request = _requests(rep, usage, catalog, modal_gpu)
    modal_container = _modal_container(rep, usage.replayed, catalog, modal_gpu)
    vast_period = _vast_instances(rep)
    modal_warm = _modal_warm(rep, modal_deployments)
    # Requests land on the warm container first, so Modal's bill is the larger of the warm time
    # and the replayed container time, not the sum.
    modal_billed = max(modal_container, modal_warm)
    other = sum((v for p, v in per_request.items() if p not in ("anthropic", "modal", "vastai")), Decimal(0))
    rep.totals = {
        "anthropic_tokens": per_request.get("anthropic", Decimal(0)),
        "modal_per_request": per_request.get("modal", Decimal(0)),
        "modal_modelled_container": modal_container,
        "modal_warm_containers": modal_warm,
        "vastai_instances": vast_period,
        "other": other,
    }
    rep.totals["total"] = rep.totals["anthropic_tokens"] + modal_billed + vast_period + other
    return rep


def _requests(rep: Report, usage: UsageSummary, catalog: Catalog, modal_gpu: str) -> dict[str, Decimal]:
    """Count and price each request into its group; the per-request sum per provider."""
    per_request: dict[str, Decimal] = {}

    def add(g: Group, provider: str, cost: Decimal) -> None:
        g.request_cost += cost
        per_request[provider] = per_request.get(provider, Decimal(0)) + cost
        if provider != "modal":  # Modal bills container time (see _modal_container), not requests
            g.billed += cost

    for grp in usage.groups:
        g = rep.group(rep.key_of(grp.provider, grp.model, (grp.day or 0) * 86400.0, grp.host, grp.key_name))
        g.requests += grp.requests
        g.failed += grp.failed
        g.tokens += grp.tokens
        add(g, grp.provider, grp.cost)
    for rec in usage.unpriced:  # counted above; the router could not price them: priced now
        add(rep.group(rep.key_of(rec.provider, rec.model, rec.ts, rec.host, rec.key_name)), rec.provider,
            _request_cost(rep, rec, catalog, modal_gpu))
    return per_request


def _request_cost(rep: Report, rec: UsageRecord, catalog: Catalog, modal_gpu: str) -> Decimal:
    """The ledger's per-request estimate; one the router could not write is priced now."""
    recorded = to_decimal(rec.cost)
    if recorded is not None:
        return recorded
    if not rec.ok:
        return Decimal(0)
    try:
        if rec.provider == "anthropic" and rec.model:
            price = catalog.token_price(rec.model)
            rep.prices.append(price.row)
            return token_cost(price, rec.prompt_tokens, rec.completion_tokens)
        if rec.provider == "modal" and rec.latency_s is not None:
            mp = catalog.modal_price(modal_gpu)
            rep.prices.append(mp.row)
            return modal_cost(mp.dollars_per_second, rec.latency_s)
    except UsageError as exc:
        note = f"not priced: {exc.message}"
        if note not in rep.notes:
            rep.notes.append(note)
    return Decimal(0)


def _modal_container(rep: Report, times: UsageTimes, catalog: Catalog, modal_gpu: str) -> Decimal:
    """Modal's container time replayed from the real requests, billed to the groups (by host:
    the host whose request started the period); its total."""
    rows = times.rows
    if not rows:
        return Decimal(0)
    price = catalog.modal_price(modal_gpu)
    rep.prices.append(price.row)
    # A million rows: whole milliseconds, merged as integers (the same figures as Decimals).
    # Rows read back from the ledger are numbers already: no per-row checks either way.
    log: RequestLog | None = LedgerLog.from_rows(rows)
    if log is None:
        log = EventLog([UsageEvent(exact_seconds(r[0]), Decimal(0) if r[1] is None else exact_seconds(r[1]),
                                   r[2] or 0, 0) for r in rows])
    startup = catalog.startup_for("modal").seconds
    for up in log.up_periods(rep.scaledown_window_s, startup):
        host = rows[up.first][3] if rep.by == "host" else None
        key = MODAL_CONTAINERS if rep.by == "key" else rep.key_of("modal", times.model, float(up.start), host)
        rep.group(key).billed += up.billed_s * price.dollars_per_second
    replay = replay_usage(log, catalog=catalog, modal_gpu=modal_gpu, providers=["modal"],  # the same periods
                          scaledown_window_s=rep.scaledown_window_s, period_days=rep.days)
    rep.modal_model = replay.rows[0].estimates[0].as_dict()
    return Decimal(rep.modal_model["total"])


def _vast_instances(rep: Report) -> Decimal:
    """Each Vast.ai instance's spend inside the period, billed to the groups; their total."""
    in_period_total = Decimal(0)
    unpriced = 0
    for inst, whole in rep.vast.instances:
        if inst.live and inst.remote_id is None:
            rep.unconfirmed.append((inst, whole))  # no instance is known to exist: never charged
            continue
        if inst.cost is None and inst.dph is None:
            unpriced += 1
        inside = in_period(inst, whole, rep.start, rep.until)
        in_period_total += inside
        for key, amount in split_instance(inst, rep.start, rep.until, rep.by, inside):
            rep.group(key).billed += amount
        if inst.live:
            rep.live.append((inst, whole))
    if unpriced:
        rep.notes.append(f"{unpriced} Vast.ai instance(s) in the ledger have neither a cost nor a $/h: counted as $0")
    if rep.unconfirmed:
        rows = ", ".join(str(i.id) for i, _ in rep.unconfirmed)
        rep.notes.append(f"{len(rep.unconfirmed)} Vast.ai create(s) of unknown outcome (ledger row(s) {rows}) are held "
                         "against the budget but not charged: no instance is known to exist; `gpuctl cleanup` "
                         "settles them")
    return in_period_total


def _modal_warm(rep: Report, deployments: Iterable[InstanceRow]) -> Decimal:
    """Modal apps deployed with min_containers > 0 bill their warm GPUs every hour (ledger rows
    of provider "modal", dph = the warm $/h), idle or not."""
    warm = Decimal(0)
    for dep in deployments:
        rate = to_decimal(dep.dph) or Decimal(0)
        if rate > 0:
            end = min(dep.destroyed_at if dep.destroyed_at is not None else rep.until, rep.until)
            whole = hourly_cost(rate, exact_seconds(max(0.0, end - dep.created_at)))
            warm += in_period(dep, whole, rep.start, rep.until)
    if warm:
        rep.notes.append("Modal kept containers warm (min_containers > 0): they bill every hour, idle or not")
    return warm


def in_period(inst: InstanceRow, whole: Decimal, start: float, now: float) -> Decimal:
    """The part of an instance's cost (`whole`) that falls in [start, now]: all of it when its
    life is inside the period, pro rata by time when the period cuts it."""
    begin = inst.created_at
    end = min(inst.destroyed_at if inst.destroyed_at is not None else now, now)
    if end <= start or not whole:
        return Decimal(0)
    if begin >= start or end <= begin:
        return whole
    return whole * exact_seconds(end - start) / exact_seconds(end - begin)


def split_instance(inst: InstanceRow, start: float, now: float, by: str, amount: Decimal) -> list[tuple[str, Decimal]]:
    """An instance's spend in the period under the report's grouping (by day: pro rata per UTC day)."""
    if not amount:
        return []
    if by == "provider":
        return [("vastai", amount)]
    if by == "model":
        return [(f"vastai {inst.gpu or '?'} instances", amount)]
    if by == "host":
        return [(inst.host or "unknown host", amount)]
    if by == "key":
        return [(VAST_INSTANCES, amount)]
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


def utc_day(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).date().isoformat()


def iso(ts: float) -> str:
    return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")


def _m(d: Decimal) -> str:
    return money_str(d) or "0.00"
