"""`gpuctl cleanup`: the cron job that guarantees nothing gpuctl created keeps billing.

No legacy-provider note here: cron mails whatever reaches stderr, every ten minutes.
"""

from __future__ import annotations

import typer

from gpuctl.cli.context import app_context
from gpuctl.errors import PartialError, UsageError


def cleanup(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be destroyed."),
    max_idle: float = typer.Option(None, "--max-idle", help="Minutes idle before destroying (default: vastai.keep_alive_minutes)."),
) -> None:
    """Destroy idle, stuck, failed, over-budget and orphaned instances (for cron).

    Example: */10 * * * * gpuctl cleanup --json >> ~/.gpuctl-cleanup.log
    """
    from gpuctl.vast.cleanup import run_cleanup

    actx = app_context(ctx)
    out = actx.out
    if max_idle is not None and max_idle < 0:
        raise UsageError(f"--max-idle must not be negative (got {max_idle:g})")
    from gpuctl.ops.modal_deploy import warm_deployments

    settings = actx.settings()
    report = run_cleanup(settings, dry_run=dry_run, max_idle_minutes=max_idle)
    data = report.as_dict()
    # Modal scales itself; only an always-warm app bills while idle. It is the user's choice, so
    # cleanup reports it rather than stopping a live endpoint.
    data["modal_warm"] = warm_deployments(settings)
    for app in data["modal_warm"]:
        out.warn(f"Modal app {app['app_name']} keeps {app['detail'].split(',')[0]} warm: ${app['dollars_per_hour']}/h "
                 "whatever the traffic. `gpuctl deploy modal --min-containers 0` scales it to zero.")
    failed = report.failed
    if not out.json_mode:
        if report.message:
            out.info(report.message + ".")
        rows = [[a.instance_id or "-", a.gpu or "?", a.remote_status or "-", a.result.replace("_", " "),
                 a.reason + (f": {a.error}" if a.error else ""), a.cost or ""] for a in report.actions]
        if rows:
            out.print(out.table(["instance", "GPU", "status", "result", "why", "cost $"], rows))
        elif not report.skipped and not report.message:
            out.info("No gpuctl instances on Vast.ai: nothing to do.")
        if report.spent is not None:
            out.note(f"Vast.ai spend so far: ${report.spent} of ${report.budget_limit}."
                     + (" Dry run: nothing was changed." if dry_run else ""))
    if failed:
        ids = ", ".join(str(a.instance_id) for a in failed)
        raise PartialError(f"{len(failed)} of {len(report.actions)} cleanup action(s) failed (instances {ids})",
                           hint="they may still bill: run `gpuctl cleanup` again, or destroy them at https://console.vast.ai",
                           data=data)
    out.result(data)
