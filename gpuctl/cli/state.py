"""`gpuctl state info` and `gpuctl state migrate --to postgresql://...`: where the state lives,
and moving it to a shared PostgreSQL.

Thin: parse flags, call `gpuctl.ops.state`, render. URLs arrive with their password masked.
"""

from __future__ import annotations

from pathlib import Path

import typer

from gpuctl.cli.context import app_context
from gpuctl.cli.group import new_app

app = new_app(help="Where gpuctl's state lives, and moving it to a shared PostgreSQL.\n\n"
                   "Example: [bold]gpuctl state info[/bold]")


@app.command("info")
def info(ctx: typer.Context) -> None:
    """The backend, the (masked) URL, the schema version and the row counts.

    Example: gpuctl state info --json
    """
    from gpuctl.ops import state as ops

    actx = app_context(ctx)
    out = actx.out
    data = ops.info(actx.settings())
    if out.json_mode:
        out.result(data)
        return
    out.print(f"{data['backend']}: {data['url']}", highlight=False)
    out.print(f"schema version {data['schema_version']} (this gpuctl knows {data['known_schema_version']}); "
              f"this host writes as {data['host']!r}", highlight=False)
    out.print(out.table(["table", "rows"], [[name, count] for name, count in data["rows"].items()]))
    if data["spool_pending"]:
        out.warn("usage rows are waiting in the local spool: the shared state was unreachable; they are written "
                 "as soon as it answers")


@app.command("migrate")
def migrate(
    ctx: typer.Context,
    to: str = typer.Option(..., "--to", metavar="URL", help="The PostgreSQL database: postgresql://user:pass@host/db."),
    merge: bool = typer.Option(False, "--merge", help="Copy into a database that already holds other rows."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Count what would be copied; write nothing."),
    source: Path = typer.Option(None, "--from", metavar="PATH", help="The SQLite file (default: GPUCTL_HOME/state.db)."),
) -> None:
    """Copy this machine's SQLite state into a shared PostgreSQL (safe to run again).

    Example: gpuctl state migrate --to postgresql://gpuctl:PASSWORD@db.internal:5432/gpuctl
    """
    from gpuctl.ops import state as ops

    actx = app_context(ctx)
    out = actx.out
    with out.spinner(f"Copying the state into {_masked(to)}…"):
        data = ops.migrate(actx.settings(), to=to, merge=merge, dry_run=dry_run, source=source)
    if out.json_mode:
        out.result(data)
        return
    rows = [[name, t["source"], t["already"], t["copied"]] for name, t in data["tables"].items()]
    out.print(out.table(["table", "rows here", "already there", "would copy" if dry_run else "copied"], rows))
    if dry_run:
        out.note(f"Dry run: nothing was written to {data['target']}.")
    else:
        out.info(f"Copied {data['copied']} row(s) into {data['target']} (schema version {data['schema_version']}).")
        out.note("Next, " + data["next"] + ".")


def _masked(url: str) -> str:
    from gpuctl.redact import mask_url

    return mask_url(url)
