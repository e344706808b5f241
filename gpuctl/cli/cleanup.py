"""`gpuctl cleanup`: the cron job that guarantees nothing gpuctl created keeps billing.

No legacy-provider note here: cron mails whatever reaches stderr, every ten minutes.
"""

from __future__ import annotations

import typer

from gpuctl.cli.context import app_context


def cleanup(
    ctx: typer.Context,
    dry_run: bool = typer.Option(False, "--dry-run", help="Show what would be destroyed."),
    max_idle: float = typer.Option(None, "--max-idle", help="Minutes idle before destroying (default: vastai.keep_alive_minutes)."),
) -> None:
    """Destroy idle, stuck, failed, over-budget and orphaned instances (for cron).

    Example: */10 * * * * gpuctl cleanup --json >> ~/.gpuctl-cleanup.log
    """
    from gpuctl.vastai.cleanup import check_max_idle, failure_error, run_cleanup
    from gpuctl.vastai.instances import ActionsFailed

    actx = app_context(ctx)
    out = actx.out
    check_max_idle(max_idle)  # NaN or inf would keep idle instances forever
    from gpuctl.ops.deploy import warm_deployments

    settings = actx.settings()
    report = run_cleanup(settings, dry_run=dry_run, max_idle_minutes=max_idle)
    data = report.as_dict()
    # Modal scales itself; only an always-warm app bills while idle. It is the user's choice, so
    # cleanup reports it rather than stopping a live endpoint.
    data["modal_warm"] = warm_deployments(settings)
    for app in data["modal_warm"]:
        out.warn(f"Modal app {app['app_name']} keeps {app['detail'].split(',')[0]} warm: ${app['dollars_per_hour']}/h "
                 "whatever the traffic. `gpuctl deploy modal --min-containers 0` scales it to zero.")
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
    error = failure_error(report, data)  # exit 4 if some action was done, 1 if none was
    if isinstance(error, ActionsFailed):  # --json still gets the per-instance results
        out.result(data, status="error", exit_code=error.exit_code, errors=[error.envelope_error()])
    if error is not None:
        raise error
    out.result(data)
