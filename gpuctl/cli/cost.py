"""`gpuctl cost estimate | report`: what it will cost, and what it did cost.

Thin: parse flags, call `gpuctl.ops.cost`, render its `CostView` (the tables are drawn by
`gpuctl.cli.cost_tables`). Numbers are taken as text so the cost math can say what is wrong with
them in one line (exit 2).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from gpuctl.cli.context import AppContext, app_context
from gpuctl.cli.group import new_app

if TYPE_CHECKING:  # annotations of helpers only, never of Typer signatures
    from gpuctl.ops.cost import CostView

app = new_app(help="Estimate and report costs.\n\nExample: [bold]gpuctl cost estimate[/bold]")

_PRICES_HELP = "A TOML file of price rows (shaped like configs/prices.toml) that override the catalog."


@app.command("estimate")
def estimate(
    ctx: typer.Context,
    provider: str = typer.Option(None, "--provider", metavar="NAME", help="modal, vastai or anthropic."),
    gpu: str = typer.Option(None, "--gpu", metavar="GPU", help='GPU to price, e.g. L4, A100-80GB, "RTX 3090" (default: the profile\'s).'),
    hours_per_day: str = typer.Option(None, "--hours-per-day", metavar="H", help="GPU hours a day (0–24), for --days days."),
    hours: str = typer.Option(None, "--hours", metavar="H", help="One-off GPU hours."),
    days: str = typer.Option(None, "--days", metavar="D", help="Days in the period (default 30)."),
    dph: str = typer.Option(None, "--dph", metavar="X", help="A live offer's $/hour (Vast.ai)."),
    requests_per_day: str = typer.Option(None, "--requests-per-day", metavar="N", help="Price this traffic on each provider."),
    tokens_per_request: str = typer.Option(None, "--tokens-per-request", metavar="T", help="Input + output tokens per request (split 3:1)."),
    bursts_per_day: str = typer.Option(None, "--bursts-per-day", metavar="B", help="Bursts the requests arrive in (default 8)."),
    from_usage: bool = typer.Option(False, "--from-usage", help="Replay the ledger's real requests on each provider."),
    since: str = typer.Option(None, "--since", metavar="WHEN", help="With --from-usage: 7d, 30d, 12h or a date (default 30d)."),
    prices: Path = typer.Option(None, "--prices", metavar="FILE", help=_PRICES_HELP),
) -> None:
    """Compare Modal, Vast.ai and Anthropic for your traffic (no credentials needed).

    Example: gpuctl cost estimate --provider modal --gpu L4 --hours-per-day 2
    """
    from gpuctl.ops.cost import EstimateRequest, cost_estimate

    actx = app_context(ctx)
    req = EstimateRequest(provider=provider, gpu=gpu, hours_per_day=hours_per_day, hours=hours, days=days,
                          dph=dph, requests_per_day=requests_per_day, tokens_per_request=tokens_per_request,
                          bursts_per_day=bursts_per_day, from_usage=from_usage, since=since, prices=prices)
    _render(actx, cost_estimate(actx.settings(), req))


@app.command("report")
def report(
    ctx: typer.Context,
    since: str = typer.Option("30d", "--since", metavar="WHEN", help="7d, 30d, 12h, or a date like 2026-11-01."),
    by: str = typer.Option("provider", "--by", metavar="GROUP", help="Group by provider, day, model, host, or key (gpuctl serve's client keys)."),
    prices: Path = typer.Option(None, "--prices", metavar="FILE", help=_PRICES_HELP),
) -> None:
    """Actual spend from the ledger, with the Vast.ai budgets and what is left.

    Example: gpuctl cost report --since 7d --by day
    """
    from gpuctl.ops.cost import cost_report

    actx = app_context(ctx)
    _render(actx, cost_report(actx.settings(), since=since, by=by, prices=prices))


def _render(actx: AppContext, view: CostView) -> None:
    """Warnings (stale prices) on stderr; then the JSON envelope, or the tables and notes."""
    from gpuctl.cli.cost_tables import tables

    out = actx.out
    for warning in view.warnings:
        out.warn(warning)
    out.result(view.data)
    if out.json_mode:
        return
    for i, table in enumerate(tables(view)):
        if i:
            out.print()
        out.print(out.table(table.columns, table.rows, title=table.title))
    for note in view.notes:
        out.print(note, highlight=False)
