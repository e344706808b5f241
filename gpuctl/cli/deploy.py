"""`gpuctl deploy modal`: deploy the bundled vLLM app to Modal."""

from __future__ import annotations

import typer

from gpuctl.cli.context import app_context
from gpuctl.cli.group import new_app
from gpuctl.errors import NotAvailableError

app = new_app(help="Deploy a vLLM endpoint.\n\nExample: [bold]gpuctl deploy modal --dry-run[/bold]")


@app.command("modal")
def modal(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", help="Hugging Face model id (default: modal.model)."),
    gpu: str = typer.Option(None, "--gpu", help="Modal GPU, e.g. L4, A100-80GB, H100 (default: modal.gpu)."),
    scaledown_window: float = typer.Option(None, "--scaledown-window", help="Minutes a container stays up after the last request (2 s–60 min)."),
    min_containers: int = typer.Option(None, "--min-containers", help="0 scales to zero; 1 keeps a GPU warm (billed)."),
    max_containers: int = typer.Option(None, "--max-containers", help="How far traffic may scale out."),
    app_name: str = typer.Option(None, "--app-name", help="Modal app name."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and its price; spend nothing."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Do not wait for the first healthy answer."),
) -> None:
    """Deploy vLLM on Modal and save the endpoint URL in the profile.

    Example: gpuctl deploy modal --gpu L4 --dry-run
    """
    app_context(ctx)
    raise NotAvailableError("`gpuctl deploy modal` is not available yet (issue 3)")
