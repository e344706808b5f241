"""The `gpuctl state` verbs: `info` (where the state is, its schema, its rows) and `migrate`
(copy this home's SQLite state into a shared PostgreSQL one).

Returns data for the CLI to render; the SQL is `gpuctl.state`'s (its `transfer` module does the
copy). Every URL in what it returns has its password masked.

Must not: print, prompt or exit.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from gpuctl.config import Settings
from gpuctl.errors import GpuctlError, UsageError


def info(settings: Settings) -> dict[str, Any]:
    """Backend, masked URL, schema version (and the one this gpuctl knows), row counts, and
    whether rows wait in the local spool."""
    from gpuctl.state import open_for

    with open_for(settings) as state:
        data = state.info().as_dict()
        data["host"] = state.host
    return data


def migrate(settings: Settings, *, to: str, merge: bool = False, dry_run: bool = False,
            source: Path | None = None) -> dict[str, Any]:
    """Copy the SQLite state (GPUCTL_HOME/state.db, or `source`) into the PostgreSQL database
    `to`. Idempotent (rows already there are not copied again); refuses a target that holds
    other rows unless `merge`."""
    from gpuctl.state import State, open_location, parse_location
    from gpuctl.state.transfer import CopyReport, copy_state

    target_at = parse_location(to, settings.home)
    if target_at.kind != "postgresql":
        raise UsageError(f"--to must be a postgresql:// URL (got {target_at.shown})",
                         hint="e.g. --to postgresql://gpuctl:PASSWORD@db.internal:5432/gpuctl")
    path = source or settings.home / "state.db"
    if not path.is_file():
        raise UsageError(f"there is no SQLite state at {path} to copy", hint="pass --from PATH to a state.db")

    def refuse(report: CopyReport) -> None:
        if report.other_rows and not merge:
            raise MergeRefused(f"{target_at.shown} already holds {report.other_rows} row(s) that are not from "
                               f"{path}; nothing was copied",
                               hint="add --merge to copy into it anyway (hosts sharing one state is what it is for)")

    with State(path) as src, open_location(target_at, settings.home, settings=settings) as dst:
        report = copy_state(src, dst, dry_run=dry_run, refuse=refuse)
        schema = dst.schema_version
    data = report.as_dict()
    copied = sum(t["copied"] for t in data["tables"].values())
    data.update({"source": str(path), "target": target_at.shown, "schema_version": schema, "copied": copied,
                 "next": "point every host at it: gpuctl profile set state.url URL (or GPUCTL_STATE_URL)"})
    return data


class MergeRefused(GpuctlError):
    """The target holds another state's rows, and --merge was not given: nothing was copied (exit 1)."""
