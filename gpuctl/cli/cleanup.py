"""`gpuctl cleanup`: the cron job that guarantees nothing gpuctl created keeps billing."""

from __future__ import annotations

import typer

from gpuctl.cli.context import app_context
from gpuctl.errors import NotAvailableError


def cleanup(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be destroyed."),
    max_idle: float = typer.Option(None, "--max-idle", help="Minutes idle before destroying (default: vastai.keep_alive_minutes)."),
) -> None:
    """Destroy idle, stuck, failed, over-budget and orphaned instances (for cron).

    Example: gpuctl cleanup --dry-run
    """
    app_context(ctx)
    raise NotAvailableError("`gpuctl cleanup` is not available yet (issue 6)")
