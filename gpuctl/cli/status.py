"""`gpuctl status`: every provider's health and which one would answer now, and why."""

from __future__ import annotations

import typer

from gpuctl.cli.context import app_context
from gpuctl.errors import NotAvailableError


def status(
    ctx: typer.Context,
    deep: bool = typer.Option(False, "--deep", help="Also send a 1-token completion (readiness = can generate)."),
    watch: bool = typer.Option(False, "--watch", help="Refresh every routing.health_interval_s."),
) -> None:
    """Show each provider's health, breaker and which one would answer now.

    Example: gpuctl status --json
    """
    app_context(ctx)
    raise NotAvailableError("`gpuctl status` is not available yet (issue 4)")
