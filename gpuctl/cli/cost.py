"""`gpuctl cost estimate | report`: what it will cost, and what it did cost."""

from __future__ import annotations

import typer

from gpuctl.cli.context import app_context
from gpuctl.cli.group import new_app
from gpuctl.errors import NotAvailableError

app = new_app(help="Estimate and report costs.\n\nExample: [bold]gpuctl cost estimate[/bold]")


@app.command("estimate")
def estimate(ctx: typer.Context) -> None:
    """Compare Modal, Vast.ai and Anthropic for your traffic.

    Example: gpuctl cost estimate --provider modal --gpu L4 --hours-per-day 2
    """
    app_context(ctx)
    raise NotAvailableError("`gpuctl cost estimate` is not available yet (issue 7)")


@app.command("report")
def report(ctx: typer.Context) -> None:
    """Actual spend from the ledger.

    Example: gpuctl cost report --since 7d
    """
    app_context(ctx)
    raise NotAvailableError("`gpuctl cost report` is not available yet (issue 7)")
