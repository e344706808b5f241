"""`gpuctl profile ...`: list, show, create, use, set, unset, delete TOML profiles.

Each command parses, calls one `gpuctl.ops.profile` function and renders what it returns.
Values are shown as TOML spells them (`true`, `["modal", "anthropic"]`): what a profile file
holds and what `profile set` accepts, never a Python repr. `--json` keeps the typed values.
"""

from __future__ import annotations

from pathlib import Path

import typer

from gpuctl.cli.context import app_context
from gpuctl.cli.group import new_app
from gpuctl.cli.output import show_value

app = new_app(help="Manage TOML profiles (GPUCTL_HOME/profiles/NAME.toml).\n\nExample: [bold]gpuctl profile create dev[/bold]")


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List profiles; the active one is marked.

    Example: gpuctl profile list
    """
    from gpuctl.ops import profile as profiles

    actx = app_context(ctx)
    out = actx.out
    data = profiles.list_all(flag=actx.profile_flag)
    if out.json_mode:
        out.result(data)
        return
    if not data["profiles"]:
        out.info("No profiles yet: gpuctl works from the environment alone. Create one with `gpuctl profile create NAME`.")
        return
    for p in data["profiles"]:
        out.print(f"{'*' if p['active'] else ' '} {p['name']}", highlight=False)


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="Profile to show (default: the active one)."),
    resolved: bool = typer.Option(False, "--resolved", help="Show every setting in force and where it comes from."),
) -> None:
    """Show a profile (secrets masked), or with --resolved every value in force and its source.

    Example: gpuctl profile show --resolved
    """
    from gpuctl.ops import profile as profiles

    actx = app_context(ctx)
    out = actx.out
    data = profiles.show_resolved(name or actx.profile_flag) if resolved else profiles.show(name or actx.profile_flag)
    if out.json_mode:
        out.result(data)
        return
    if resolved:
        out.info(f"Profile: {data['profile'] or '(none: environment and defaults)'}")
        rows = [[key, item["value"], item["source"]] for key, item in data["settings"].items()]
        out.print(out.table(["key", "value", "source"], rows))
        return
    out.info(f"Profile {data['profile']} ({data['file']})")
    rows = [[f"{s}.{k}", v] for s, t in data["values"].items() for k, v in t.items()]
    if rows:
        out.print(out.table(["key", "value"], rows))
    else:
        out.info("(empty: defaults and environment apply)")


@app.command("create")
def create(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Profile name."),
    from_file: Path = typer.Option(None, "--from", help="Copy settings from this TOML file (validated)."),
) -> None:
    """Create a profile; it becomes active if none is.

    Example: gpuctl profile create dev --from configs/profiles/modal-only.toml
    """
    from gpuctl.ops import profile as profiles

    out = app_context(ctx).out
    data = profiles.create(name, from_file=from_file)
    out.result(data)
    if not out.json_mode:
        out.info(f"Created profile {name} at {data['file']}"
                 + (" (now active)" if data["active"] else f"; use it with `gpuctl profile use {name}`"))


@app.command("use")
def use(ctx: typer.Context, name: str = typer.Argument(..., help="Profile to make active.")) -> None:
    """Make a profile the active one.

    Example: gpuctl profile use dev
    """
    from gpuctl.ops import profile as profiles

    out = app_context(ctx).out
    out.result(profiles.use(name))
    if not out.json_mode:
        out.info(f"Active profile: {name}")


@app.command("set")
def set_(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="Dotted key, e.g. modal.gpu."),
    value: str = typer.Argument(..., help="New value (lists: modal,anthropic; a value starting with - needs -- first)."),
) -> None:
    """Set one value in the active profile (or --profile NAME).

    Example: gpuctl profile set modal.gpu A100-80GB

    \b
    Lists:    gpuctl profile set routing.priority modal,anthropic
    A value starting with "-": gpuctl profile set -- KEY -10   (-- ends the options)
    """
    from gpuctl.ops import profile as profiles

    actx = app_context(ctx)
    out = actx.out
    data = profiles.set_value(key, value, profile=actx.profile_flag)
    out.result(data)
    if not out.json_mode:
        out.info(f"{data['profile']}: {key} = {show_value(data['value'])}")


@app.command("unset")
def unset(ctx: typer.Context, key: str = typer.Argument(..., help="Dotted key, e.g. modal.gpu.")) -> None:
    """Remove one value from the active profile so the default (or environment) applies.

    Example: gpuctl profile unset modal.gpu
    """
    from gpuctl.ops import profile as profiles

    actx = app_context(ctx)
    out = actx.out
    data = profiles.unset_value(key, profile=actx.profile_flag)
    out.result(data)
    if not out.json_mode:
        out.info(f"{data['profile']}: {key} " + ("removed" if data["removed"] else "was not set"))


@app.command("delete")
def delete(
    ctx: typer.Context,
    name: str = typer.Argument(..., help="Profile to delete."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Say what would be deleted; delete nothing."),
) -> None:
    """Delete a profile file.

    Example: gpuctl profile delete dev --yes
    """
    from gpuctl.cli.prompts import confirm
    from gpuctl.ops import profile as profiles

    out = app_context(ctx).out
    if dry_run:
        data = profiles.plan_delete(name)
        out.result(data)
        if not out.json_mode:
            out.info(f"Would delete profile {name} ({data['would_delete']}). Dry run: nothing changed.")
        return
    confirm(out, f"Delete profile {name!r} (its keys are lost)?", yes=yes)
    out.result(profiles.delete(name))
    if not out.json_mode:
        out.info(f"Deleted profile {name}")
