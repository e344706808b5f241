"""`gpuctl status`: every provider's health and which one would answer now, and why."""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from gpuctl.cli.context import app_context
from gpuctl.cli.output import Output

if TYPE_CHECKING:
    from gpuctl.routing.status import ProviderStatus, StatusReport


def status(
    ctx: typer.Context,
    deep: bool = typer.Option(False, "--deep", help="Also send a 1-token completion (readiness = can generate)."),
    watch: bool = typer.Option(False, "--watch", help="Refresh every routing.health_interval_s."),
    wake: bool = typer.Option(False, "--wake", help="Probe a scaled-to-zero Modal too (starts a GPU: bills its scaledown window)."),
) -> None:
    """Show each provider's health, breaker and which one would answer now.

    Example: gpuctl status --json
    """
    from gpuctl.ops.status import collect_status, watch_status

    actx = app_context(ctx)
    out = actx.out
    settings = actx.settings()
    if watch:
        try:
            watch_status(settings, deep=deep, wake=wake, render=lambda report: _render(out, report, clear=True))
        except KeyboardInterrupt:  # Ctrl-C is how a watch ends: not an error
            return
        return
    with out.spinner("Checking providers…"):
        report = collect_status(settings, deep=deep, wake=wake)
    if report.current is None:
        # Nothing can answer: an error for scripts and monitors (exit 1), with the full report.
        if out.json_mode:
            out.result(report.as_dict(), status="error", exit_code=1,
                       errors=[{"type": "AllProvidersFailedError", "message": report.reason, "hint": None}])
        else:
            _render(out, report)
            out.error(report.reason, "see each provider's line above")
        raise typer.Exit(1)
    _render(out, report)


def _render(out: Output, report: StatusReport, *, clear: bool = False) -> None:
    if out.json_mode:
        if clear:
            out.print_json(report.as_dict())  # --watch --json: one document per refresh (NDJSON)
        else:
            out.result(report.as_dict())
        return
    if clear and out.stdout.is_terminal:
        out.stdout.clear()
    rows = []
    for p in report.providers:
        marker = "→" if p.name == report.current else " "
        latency = "" if p.latency_ms is None else f"{p.latency_ms:.0f} ms"
        # the table shows the breaker's label; why it is open goes in the detail lines below
        rows.append([marker, p.name, p.status, latency, p.breaker.label, p.endpoint or ""])
    out.print(out.table(["", "provider", "health", "latency", "breaker", "endpoint"], rows, wrap=[]))
    out.print("")
    for p in report.providers:
        why = p.breaker.why or p.detail
        if why:
            out.print(f"[bold]{p.name}[/bold]: {escape(why)}", highlight=False)
    for p in report.providers:
        _render_rentals(out, p)
    out.print(f"\nAnswering now: [bold]{report.current or 'nobody'}[/bold] — {escape(report.reason)}", highlight=False)


def _render_rentals(out: Output, p: ProviderStatus) -> None:
    """What a provider rents now (each bills whatever the traffic): never hidden."""
    if p.rentals_error:
        shown = "; showing what the ledger knows" if p.rentals else ""
        out.print(f"[bold]{p.name}[/bold]: {escape(p.rentals_error)}{shown}", highlight=False)
    if not p.rentals:
        return
    rows = [[r.id, r.state, r.dph or "?", "" if r.age_s is None else _age(r.age_s), r.endpoint or "-", r.detail]
            for r in p.rentals]
    out.print("")
    out.print(out.table(["instance", "state", "$/h", "age", "endpoint", "note"], rows,
                        title=f"{p.name}: billing now", wrap=["endpoint", "note"]))


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
