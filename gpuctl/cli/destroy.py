"""`gpuctl destroy`: stop the Modal app or destroy Vast.ai instances."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import typer

from gpuctl.cli.context import app_context
from gpuctl.cli.output import Output
from gpuctl.errors import UsageError

if TYPE_CHECKING:  # annotations inside function bodies only, never in the Typer signature
    from gpuctl.config import Settings


def destroy(
    ctx: typer.Context,
    target: str = typer.Argument("vastai", help="modal, vastai, a Vast.ai instance id, or a gpuctl label."),
    instance_id: str = typer.Argument(None, help="Vast.ai instance id."),
    all_: bool = typer.Option(False, "--all", help="Every instance gpuctl created."),
    force: bool = typer.Option(False, "--force", help="Destroy the named Vast.ai instance id even though gpuctl did "
                                                      "not create it (no gpuctl label)."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be destroyed."),
) -> None:
    """Destroy what gpuctl created: the Modal app, or Vast.ai instances.

    Example: gpuctl destroy --all --yes
    """

    actx = app_context(ctx)
    out = actx.out
    settings = actx.settings()
    if target == "modal":
        if force:
            raise UsageError("--force is for a Vast.ai instance id gpuctl did not create, not for modal")
        if instance_id is not None or all_:
            raise UsageError("`gpuctl destroy modal` takes no instance id and no --all: it stops the Modal app(s)",
                             hint="for Vast.ai: gpuctl destroy [vastai] [ID | --all]")
        _destroy_modal(out, settings, yes=yes, dry_run=dry_run)
        return
    _destroy_vastai(out, settings, target, instance_id, all_=all_, force=force, yes=yes, dry_run=dry_run)


def _destroy_modal(out: Output, settings: Settings, *, yes: bool, dry_run: bool) -> None:
    from gpuctl.cli.prompts import confirm
    from gpuctl.ops.deploy import apps_to_stop, destroy_modal

    names = apps_to_stop(settings)
    listed = ", ".join(names)
    if dry_run:
        out.result({"dry_run": True, "would_stop": names})
        if not out.json_mode:
            out.info(f"Would stop Modal app(s) {listed} and clear modal.web_url. Dry run: nothing changed.")
        return
    confirm(out, f"Stop Modal app(s) {listed}? Their endpoints stop answering.", yes=yes)
    with out.spinner(f"Stopping Modal app(s) {listed}…"):
        data = destroy_modal(settings)
    out.result(data)
    if not out.json_mode:
        for name, was_running in data["apps"].items():
            out.info(f"Stopped {name}." if was_running else f"{name} was not deployed; nothing to stop.")
        if data["note"]:
            out.warn(data["note"])


def _destroy_vastai(out: Output, settings: Settings, target: str, instance_id: str | None, *, all_: bool,
                    force: bool, yes: bool, dry_run: bool) -> None:
    from gpuctl.cli.prompts import confirm
    from gpuctl.config import ensure_home
    from gpuctl.state import open_state
    from gpuctl.vastai.instances import is_gpuctl_label, open_client
    from gpuctl.vastai.launch import LEGACY_NOTE

    label = None
    if target.isdigit() or is_gpuctl_label(target):  # `gpuctl destroy 12345` / `gpuctl destroy gpuctl:dev:1a2b…`
        if instance_id is not None or all_:
            raise UsageError(f"{target!r} names one instance: no other argument or --all",
                             hint="`gpuctl destroy [vastai] [ID | LABEL | --all] [--force]`")
        instance_id, label = (target, None) if target.isdigit() else (None, target)
    elif target.lower() not in ("vastai", "vast"):
        raise UsageError(f"unknown target {target!r}", hint="modal, vastai, a Vast.ai instance id, or a gpuctl label")
    if instance_id is not None and not instance_id.isdigit():
        raise UsageError(f"a Vast.ai instance id is a number, got {instance_id!r}")
    if label is None and (instance_id is None) == (not all_):
        raise UsageError("name one Vast.ai instance id, or pass --all (not both)",
                         hint="e.g. `gpuctl destroy 12345` or `gpuctl destroy --all --yes`")
    out.note(LEGACY_NOTE)
    from gpuctl.vastai.destroy import execute_destroy, plan_destroy
    from gpuctl.vastai.instances import ActionsFailed

    with open_client(settings) as client, open_state(ensure_home(settings.home)) as state:
        plan = plan_destroy(client, state, instance_id=int(instance_id) if instance_id else None, all_=all_,
                            label=label, force=force)
        if not out.json_mode:
            _show_targets(out, plan)
        plan.check_listed()  # an unreadable list is exit 1, even with nothing in the ledger
        if dry_run or not plan.targets:
            out.result({"dry_run": dry_run, **plan.as_dict()})
            if not out.json_mode:
                out.info("Dry run: nothing was destroyed." if dry_run else "Nothing to destroy.")
            return
        ids = ", ".join(str(t.instance_id or f"ledger row {t.row.id if t.row else '?'}") for t in plan.targets)
        if plan.targets[0].named:  # the user's word replaces a list that cannot prove anything
            confirm(out, f"No listed Vast.ai instance carries {label}. Mark {ids} as never created? Only if "
                         "https://console.vast.ai shows no such instance.", yes=yes)
        else:
            foreign = [t for t in plan.targets if t.foreign]
            warning = "".join(f" Instance {t.instance_id} ({t.label or 'no label'}) was not created by gpuctl."
                              for t in foreign)
            confirm(out, f"Destroy {len(plan.targets)} Vast.ai instance(s) ({ids})?{warning}", yes=yes)
        with out.spinner("Destroying…"):
            try:
                report = execute_destroy(client, state, plan, home=settings.home)
            except ActionsFailed as exc:  # exit 1, and --json still gets the per-instance results
                out.result(exc.data, status="error", exit_code=exc.exit_code, errors=[exc.envelope_error()])
                raise
    out.result(report.as_dict())
    if not out.json_mode:
        for o in report.outcomes:
            cost = f" (cost ${o.cost:.4f})" if o.cost is not None else ""
            out.info(f"{o.target.instance_id or 'ledger row'}: {o.result.replace('_', ' ')}{cost}")


def _show_targets(out: Output, plan: Any) -> None:
    if plan.list_error and plan.targets:
        out.warn(f"the instance list could not be read ({plan.list_error}); destroying what the ledger knows")
    rows = [[t.instance_id or "-", t.gpu or "?", t.dph or "?", t.as_dict()["status"] or "?", t.label or ""]
            for t in plan.targets]
    if rows:
        out.print(out.table(["instance", "GPU", "$/h", "status", "label"], rows))
