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
    from gpuctl.ops import cleanup as ops

    actx = app_context(ctx)
    out = actx.out
    ops.check_max_idle(max_idle)  # NaN or inf would keep idle instances forever
    settings = actx.settings()
    cleaned = ops.cleanup(settings, dry_run=dry_run, max_idle_minutes=max_idle)
    report = cleaned.report
    for app in cleaned.modal_warm:
        kept = f"{app['warm_containers']} container(s)" if app["warm_containers"] else "containers"
        out.warn(f"Modal app {app['app_name']} keeps {kept} warm: ${app['dollars_per_hour']}/h "
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
            held = (f" (plus ${report.held} held for creates of unknown outcome: not spent)"
                    if report.held else "")
            out.note(f"Vast.ai spend so far: ${report.spent} of ${report.budget_limit}{held}."
                     + (" Dry run: nothing was changed." if dry_run else ""))
    error = cleaned.error()  # exit 4 if some action was done, 1 if none was; --json gets the actions either way
    if error is not None:
        raise error
    out.result(cleaned.as_dict())
