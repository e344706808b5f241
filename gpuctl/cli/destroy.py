"""`gpuctl destroy`: stop the Modal app or destroy Vast.ai instances."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from gpuctl.cli.context import AppContext, app_context
from gpuctl.cli.output import Output
from gpuctl.errors import UsageError

if TYPE_CHECKING:  # annotations inside function bodies only, never in the Typer signature
    from gpuctl.config import Settings
    from gpuctl.vastai.destroy import DestroyPlan


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
    _destroy_vastai(out, actx, settings, target, instance_id, all_=all_, force=force, yes=yes, dry_run=dry_run)


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


def _destroy_vastai(out: Output, actx: AppContext, settings: Settings, target: str, instance_id: str | None, *,
                    all_: bool, force: bool, yes: bool, dry_run: bool) -> None:
    from gpuctl.cli.launch import sigterm_as_ctrl_c
    from gpuctl.cli.prompts import confirm
    from gpuctl.ops import destroy as ops

    asked = ops.request(target, instance_id, all_=all_, force=force)
    note = ops.legacy_note(settings)  # once a day, not on every command
    if note:
        out.note(note)
    with ops.session(settings) as vast, actx.state() as state:
        plan = vast.plan(state, asked)
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
            confirm(out, f"No listed Vast.ai instance carries {asked.label}. Mark {ids} as never created? Only if "
                         "https://console.vast.ai shows no such instance.", yes=yes)
        else:
            foreign = [t for t in plan.targets if t.foreign]
            warning = "".join(f" Instance {t.instance_id} ({t.label or 'no label'}) was not created by gpuctl."
                              for t in foreign)
            confirm(out, f"Destroy {len(plan.targets)} Vast.ai instance(s) ({ids})?{warning}", yes=yes)
        # ActionsFailed, PartialError and DestroyInterrupted (Ctrl-C or SIGTERM: it says what state
        # each instance is in) carry the per-instance results: the error handler puts them in the
        # --json envelope.
        with sigterm_as_ctrl_c(), out.spinner("Destroying…"):
            report = vast.execute(state, plan)
    out.result(report.as_dict())
    if not out.json_mode:
        for o in report.outcomes:
            cost = f" (cost ${o.cost:.4f})" if o.cost is not None else ""
            note = f"; {o.note}" if o.note else ""  # e.g. a launch was still watching it
            out.info(f"{o.target.instance_id or 'ledger row'}: {o.result.replace('_', ' ')}{cost}{note}")


def _show_targets(out: Output, plan: DestroyPlan) -> None:
    if plan.list_error and plan.targets:
        out.warn(f"the instance list could not be read ({plan.list_error}); destroying what the ledger knows")
    if plan.ledger_error:
        out.warn(f"the ledger is unreachable ({plan.ledger_error}): these are the gpuctl-labelled instances "
                 "on the account; `gpuctl cleanup` records their end once it answers")
    rows = [[t.instance_id or "-", t.gpu or "?", t.dph or "?", t.as_dict()["status"] or "?", t.label or ""]
            for t in plan.targets]
    if rows:
        out.print(out.table(["instance", "GPU", "$/h", "status", "label"], rows))
