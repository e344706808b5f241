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
    """Destroy what gpuctl created: the Modal app, or Vast.ai instances.

    Example: gpuctl destroy --all --yes
    """
    from gpuctl.cli.prompts import confirm

    actx = app_context(ctx)
    out = actx.out
    settings = actx.settings()
    if target == "modal":
        app_name = settings["modal.app_name"]
        if dry_run:
            out.result({"dry_run": True, "would_stop": app_name})
            if not out.json_mode:
                out.info(f"Would stop Modal app {app_name} and clear modal.web_url. Dry run: nothing changed.")
            return
        confirm(out, f"Stop Modal app {app_name!r}? Its endpoint stops answering.", yes=yes)
        from gpuctl.ops.modal_deploy import destroy_modal

        with out.spinner(f"Stopping Modal app {app_name}…"):
            data = destroy_modal(settings)
        out.result(data)
        if not out.json_mode:
            out.info(f"Stopped {app_name}." if data["stopped"] else f"{app_name} was not deployed; nothing to stop.")
            if data["note"]:
                out.warn(data["note"])
        return
    raise NotAvailableError("`gpuctl destroy vastai` is not available yet (issue 6)")
