"""How `gpuctl cost estimate | report` look in a terminal: the tables drawn from a `CostView`.

Owns the people's side of the cost answers: column choices, titles, money in cells (through
`gpuctl.costs.money`, the one place money is rounded), the assumption table. It computes
nothing: every figure comes from the `Estimate`, `Comparison` or `Report` the verb returned.
Imported only when a cost command runs.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal
from typing import TYPE_CHECKING

from gpuctl.costs.money import money_cell as money
from gpuctl.costs.money import money_str, money_text, plain, to_decimal

if TYPE_CHECKING:
    from gpuctl.costs import Comparison, Estimate, Report
    from gpuctl.costs.comparison import ComparisonRow
    from gpuctl.ops.cost import CostView

PROVIDER_NAMES = {"modal": "Modal", "vastai": "Vast.ai", "anthropic": "Anthropic", "endpoint": "Endpoint"}


@dataclass(frozen=True)
class ViewTable:
    title: str
    columns: Sequence[str]
    rows: Sequence[Sequence[str]]


def tables(view: CostView) -> list[ViewTable]:
    """The tables of one answer, in order."""
    # Imported in this order so that an answer never loads the modules of another kind (the
    # GPU-time estimate does not need the comparisons, nor an estimate the report).
    from gpuctl.costs.estimate import Estimate

    if isinstance(view.result, Estimate):
        return _gpu_time(view.result)
    from gpuctl.costs.comparison import Comparison

    if isinstance(view.result, Comparison):
        return _comparison(view.result)
    return _report(view.result)


def per_million(d: Decimal | None) -> str:
    """$ per million tokens: a ratio, so to 1/100 of a cent ("$0.0636")."""
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


def _gpu_time(est: Estimate) -> list[ViewTable]:
    a = est.assumptions
    if est.per_month is None:
        span, cols = f"{a['hours']} h once", ["provider", "GPU", "time", "cost"]
        row = [PROVIDER_NAMES[est.provider], est.key, span, money(est.total)]
    else:
        span = f"{a['hours_per_day']} h/day × {a['days']} days"
        cols = ["provider", "GPU", "time", "total", "per month (30 days)"]
        row = [PROVIDER_NAMES[est.provider], est.key, span, money(est.total), money(est.per_month)]
    return [ViewTable("GPU time", cols, [row]), _assumption_table({"": a})]


def _levels(row: ComparisonRow) -> list[str]:
    """A traffic level as two short cells ("medium", "4–5"), so its row fits 80 columns."""
    if row.level is None or row.level_range is None:
        return [row.label]
    low, high = row.level_range
    return [row.level, f"{plain(low)}–{plain(high)}"]


def _comparison(result: Comparison) -> list[ViewTable]:
    first = result.rows[0].estimates if result.rows else ()
    heads = [PROVIDER_NAMES[e.provider] for e in first]
    priced = ", ".join(_label(e.provider, e.key) for e in first)
    levels = bool(result.rows) and all(r.level is not None and r.level_range is not None for r in result.rows)
    labels = ["traffic", "GPU-h/day"] if levels else ["traffic"]
    monthly: list[list[str]] = []
    per_m: list[list[str]] = []
    for row in result.rows:
        cheapest = row.cheapest
        label = _levels(row) if levels else [row.label]
        monthly.append([*label, _count(row.requests_per_day), _count(row.tokens_per_day),
                        *[money(e.per_month if e.per_month is not None else e.total) for e in row.estimates],
                        PROVIDER_NAMES.get(cheapest.provider, "") if cheapest else ""])
        per_m.append([*label, *[per_million(e.per_million_tokens) for e in row.estimates]])
    what = {"levels": "at the original system's traffic levels", "traffic": "for your traffic",
            "replay": "for the ledger's real requests"}.get(result.kind, "")
    out = [
        ViewTable(f"$ per month (30 days) {what}\n{priced}; the same requests and tokens on each",
                  [*labels, "req/day", "tokens/day", *heads, "cheapest"], monthly),
        ViewTable("$ per million tokens, on the same basis", [*labels, *heads], per_m),
    ]
    if result.kind == "replay" and result.rows:
        days = result.assumptions.get("period_days", "?")
        out.insert(0, ViewTable(f"Replay of {result.assumptions.get('requests', '0')} requests from the ledger "
                                f"(last {days} days)", ["provider", "priced as", "total for the period"],
                                [[PROVIDER_NAMES[e.provider], e.key, money(e.total)] for e in first]))
    if result.break_even:
        out.append(ViewTable(
            "Break-even: the volume from which a GPU is cheaper than the API",
            ["GPU", "versus", "cheaper from", "one GPU serves up to"],
            [[_label(b.provider, b.gpu), b.versus,
              "never (the API stays cheaper)" if b.requests_per_day is None
              else f"{_count(b.requests_per_day)} requests/day ({_count(b.tokens_per_day)} tokens/day)",
              f"{_count(b.capacity_requests_per_day)} requests/day"] for b in result.break_even]))
    shared = dict(result.assumptions)
    per_provider = {PROVIDER_NAMES[e.provider]: {k: v for k, v in e.assumptions.items() if k not in shared}
                    for e in first}
    out.append(_assumption_table({"": shared, **per_provider}))
    return out


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


def _report(rep: Report) -> list[ViewTable]:
    from gpuctl.costs.report import iso

    first = {"provider": "provider", "day": "day (UTC)", "model": "provider / model", "key": "client key"}[rep.by]
    groups = sorted(rep.groups.items())
    rows = [[k, _count(g.requests) if g.requests else "", _count(g.failed) if g.failed else "",
             _count(g.tokens) if g.tokens else "", money(g.request_cost) if g.requests else "",
             money(g.billed)] for k, g in groups]
    t = rep.totals
    rows.append(["total", _count(sum(g.requests for _, g in groups)), "", "", "", money(t["total"])])
    title = f"Spend since {iso(rep.start)[:16].replace('T', ' ')} UTC ({rep.label})"
    out = [ViewTable(title, [first, "requests", "failed", "tokens", "per-request est.", "billed est."], rows)]
    mm = rep.modal_model
    modal_note = ("container time replayed from the real request times: "
                  f"{mm['assumptions']['container_periods']} cold start(s), "
                  f"{plain(rep.scaledown_window_s)} s scaledown tail each" if mm else "no Modal requests")
    out.append(ViewTable("Totals", ["", "amount", "what it is"], [
        ["Anthropic", money(t["anthropic_tokens"]), "tokens × $/M (billed as such)"],
        ["Modal, per request", money(t["modal_per_request"]),
         "request seconds × $/s: a lower bound, not counted in the total"],
        ["Modal, container (modelled)", money(t["modal_modelled_container"]), modal_note],
        *([["Modal, kept warm", money(t["modal_warm_containers"]),
            "min_containers × $/h while deployed; the total counts the larger of the two Modal lines"]]
          if t["modal_warm_containers"] else []),
        ["Vast.ai instances", money(t["vastai_instances"]), "$/h × lifetime inside the period (live: up to now)"],
        *([["Other", money(t["other"]), "other providers' recorded costs"]] if t["other"] else []),
        ["Total", money(t["total"]), "Anthropic + Modal container + Vast.ai"],
    ]))
    out.append(_budgets(rep))
    return out


def _budgets(rep: Report) -> ViewTable:
    vast = rep.vast
    left = max(Decimal(0), vast.budget_limit - rep.vast_spent - rep.vast_held)
    over = max(Decimal(0), rep.vast_spent - vast.budget_limit)
    held = f" ({money(rep.vast_held)} held for creates of unknown outcome)" if rep.vast_held else ""
    # Short labels (the setting is named in the explanation), so no label wraps at 80 columns.
    rows = [["total budget", money(vast.budget_limit),
             f"vastai.budget_limit: spent {money(rep.vast_spent)} on Vast.ai instances so far; "
             + (f"over by {money(over)}" if over else f"{money(left)} left{held}")],
            ["session budget", money(vast.session_limit),
             "vastai.session_budget_limit, per instance: `gpuctl cleanup` destroys one that has cost this much"]]
    for inst, spent in rep.live:
        rows.append([f"instance #{inst.id}", money(spent),
                     f"live, {inst.gpu or '?'} at ${money_text(to_decimal(inst.dph))}/h: "
                     f"{money(max(Decimal(0), vast.session_limit - spent))} left of the session budget"])
    return ViewTable("Vast.ai budgets", ["", "amount", ""], rows)
