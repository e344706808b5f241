"""`gpuctl destroy`: stop the Modal app or destroy Vast.ai instances."""

from __future__ import annotations

import typer

from gpuctl.cli.context import app_context
from gpuctl.errors import NotAvailableError


def destroy(
    ctx: typer.Context,
    target: str = typer.Argument("vastai", help="modal, vastai, or a Vast.ai instance id."),
    instance_id: str = typer.Argument(None, help="Vast.ai instance id."),
    all_: bool = typer.Option(False, "--all", help="Every instance gpuctl created."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be destroyed."),
) -> None:
    """Destroy what gpuctl created.

    Example: gpuctl destroy --all --yes
    """
    app_context(ctx)
    raise NotAvailableError("`gpuctl destroy` is not available yet (issues 3 and 6)")
