"""`gpuctl launch`: start vLLM on the cheapest acceptable Vast.ai GPU (legacy provider)."""

from __future__ import annotations

import typer

from gpuctl.cli.context import app_context
from gpuctl.errors import NotAvailableError


def launch(
    ctx: typer.Context,
    provider: str = typer.Argument("vastai", help="Only vastai launches instances (Modal scales itself)."),
    gpu: str = typer.Option(None, "--gpu", help="Only this GPU (e.g. 'RTX 3090')."),
    max_dph: float = typer.Option(None, "--max-dph", help="Highest $/h to accept."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show candidates and the choice; spend nothing."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once created; do not wait for vLLM."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    keep: bool = typer.Option(False, "--keep", help="On Ctrl-C, keep what was created."),
) -> None:
    """Launch vLLM on a Vast.ai GPU within budget.

    Example: gpuctl launch --dry-run
    """
    app_context(ctx)
    raise NotAvailableError("`gpuctl launch` is not available yet (issue 6)")
