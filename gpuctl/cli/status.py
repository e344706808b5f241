"""`gpuctl status`: every provider's health and which one would answer now, and why.

Exit codes: 0 when someone can answer; 1 when nobody can; 3 when nobody can because every
provider that is down refused its key (a credentials problem; chat's rule, `outcomes.keys_refused`:
one kept out by its open breaker is an outage, so that is 1). `--watch --json`
prints one envelope per refresh, one per line, each with its own status and exit code.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer
from rich.markup import escape

from gpuctl.cli.context import app_context
from gpuctl.cli.output import Output
from gpuctl.errors import EXIT_CONFIG, EXIT_FAILURE, EXIT_OK

if TYPE_CHECKING:
    from gpuctl.routing.status import ProviderStatus, StatusReport

COLUMNS = ["", "provider", "health", "latency", "breaker", "endpoint"]


def status(
    ctx: typer.Context,
    deep: bool = typer.Option(False, "--deep", help="Also send a 1-token completion (readiness = can generate)."),
    watch: bool = typer.Option(False, "--watch", help="Refresh every routing.health_interval_s (Ctrl-C ends it)."),
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
        out.streaming = True  # one envelope per refresh; an error is one more line
        try:
            watch_status(settings, deep=deep, wake=wake, render=lambda report: _render(out, report, clear=True))
        except KeyboardInterrupt:  # Ctrl-C is how a watch ends: not an error
            return
        return
    with out.spinner("Checking providers…"):
        report = collect_status(settings, deep=deep, wake=wake)
    _render(out, report)
    code = exit_code(report)
    if code != EXIT_OK:
        if not out.json_mode:
            hint = "fix the key named above" if code == EXIT_CONFIG else "see each provider's line above"
            out.error(report.reason, hint)
        raise typer.Exit(code)


def exit_code(report: StatusReport) -> int:
    """0 someone answers; 3 nobody, because the keys were refused; 1 nobody, otherwise."""
    if report.current is not None:
        return EXIT_OK
    return EXIT_CONFIG if report.keys_refused else EXIT_FAILURE


def _render(out: Output, report: StatusReport, *, clear: bool = False) -> None:
    if out.json_mode:
        code = exit_code(report)
        errors = [] if code == EXIT_OK else [{
            "type": "CredentialsError" if code == EXIT_CONFIG else "AllProvidersFailedError",
            "message": report.reason, "hint": None}]
        # A watch prints this once per refresh (NDJSON); otherwise it is the run's one document.
        out.print_json(out.document(report.as_dict(), status="success" if code == EXIT_OK else "error",
                                    exit_code=code, errors=errors))
        return
    if clear and out.stdout.is_terminal:
        out.stdout.clear()
    rows = []
    for p in report.providers:
        marker = "→" if p.name == report.current else " "
        latency = "" if p.latency_ms is None else f"{p.latency_ms:.0f} ms"
        # the table shows the breaker's label; why it is open goes in the detail lines below
        rows.append([marker, p.name, p.status, latency, p.breaker.label, p.endpoint or ""])
    # Only the endpoint may wrap (it folds: a URL is never cut to "…"), the labels never do.
    out.print(out.table(COLUMNS, rows, fixed=range(len(COLUMNS) - 1), fold=[len(COLUMNS) - 1]))
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
                        title=f"{p.name}: billing now", fold=(4,)))  # the endpoint folds, never "…"


def _age(seconds: float) -> str:
    if seconds < 3600:
        return f"{seconds / 60:.0f} min"
    return f"{seconds / 3600:.1f} h"
