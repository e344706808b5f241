"""`gpuctl profile ...`: list, show, create, use, set, unset, delete TOML profiles."""

from __future__ import annotations

from pathlib import Path

import typer

from gpuctl.cli.context import app_context
from gpuctl.cli.group import new_app

app = new_app(help="Manage TOML profiles (GPUCTL_HOME/profiles/NAME.toml).\n\nExample: [bold]gpuctl profile create dev[/bold]")


def _target(ctx: typer.Context, name: str | None = None) -> tuple[Path, str]:
    from gpuctl.config import gpuctl_home, target_profile

    home = gpuctl_home()
    return home, target_profile(home, name or app_context(ctx).profile_flag)


@app.command("list")
def list_(ctx: typer.Context) -> None:
    """List profiles; the active one is marked.

    Example: gpuctl profile list
    """
    from gpuctl.config import active_profile_name, gpuctl_home, list_profiles

    out = app_context(ctx).out
    home = gpuctl_home()
    names = list_profiles(home)
    active, source = active_profile_name(home, flag=app_context(ctx).profile_flag)
    data = {"profiles": [{"name": n, "active": n == active} for n in names], "active": active, "active_source": source, "home": str(home)}
    if out.json_mode:
        out.result(data)
        return
    if not names:
        out.info("No profiles yet: gpuctl works from the environment alone. Create one with `gpuctl profile create NAME`.")
        return
    for n in names:
        out.print(f"{'*' if n == active else ' '} {n}", highlight=False)


@app.command("show")
def show(
    ctx: typer.Context,
    name: str = typer.Argument(None, help="Profile to show (default: the active one)."),
    resolved: bool = typer.Option(False, "--resolved", help="Show every setting in force and where it comes from."),
) -> None:
    """Show a profile (secrets masked), or with --resolved every value in force and its source.

    Example: gpuctl profile show --resolved
    """
    from gpuctl.config import load_settings

    actx = app_context(ctx)
    out = actx.out
    if resolved:
        settings = load_settings(profile=name or actx.profile_flag)
        resolved_rows = settings.rows()
        data = {"profile": settings.profile, "file": settings.profile_file,
                "settings": {r["key"]: {"value": r["value"], "source": r["source"]} for r in resolved_rows}}
        if out.json_mode:
            out.result(data)
            return
        out.info(f"Profile: {settings.profile or '(none: environment and defaults)'}")
        out.print(out.table(["key", "value", "source"], [[r["key"], r["value"], r["source"]] for r in resolved_rows]))
        return
    from gpuctl.config import read_profile_masked

    home, target = _target(ctx, name)
    path, masked = read_profile_masked(home, target)
    if out.json_mode:
        out.result({"profile": target, "file": path, "values": masked})
        return
    out.info(f"Profile {target} ({path})")
    rows = [[f"{s}.{k}", v] for s, t in masked.items() for k, v in t.items()]
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
    from gpuctl.config import active_profile_name, create_profile, gpuctl_home, set_active_profile

    out = app_context(ctx).out
    home = gpuctl_home()
    none_active = active_profile_name(home, env={})[0] is None  # read config.toml before writing anything
    path = create_profile(home, name, from_file=from_file)
    activated = False
    if none_active:
        set_active_profile(home, name)
        activated = True
    out.result({"profile": name, "file": path, "active": activated})
    if not out.json_mode:
        out.info(f"Created profile {name} at {path}" + (" (now active)" if activated else f"; use it with `gpuctl profile use {name}`"))


@app.command("use")
def use(ctx: typer.Context, name: str = typer.Argument(..., help="Profile to make active.")) -> None:
    """Make a profile the active one.

    Example: gpuctl profile use dev
    """
    from gpuctl.config import gpuctl_home, set_active_profile

    out = app_context(ctx).out
    set_active_profile(gpuctl_home(), name)
    out.result({"active": name})
    if not out.json_mode:
        out.info(f"Active profile: {name}")


@app.command("set")
def set_(
    ctx: typer.Context,
    key: str = typer.Argument(..., help="Dotted key, e.g. modal.gpu."),
    value: str = typer.Argument(..., help="New value (lists: modal,anthropic)."),
) -> None:
    """Set one value in the active profile (or --profile NAME).

    Example: gpuctl profile set modal.gpu A100-80GB
    """
    from gpuctl.config import KEYS_BY_NAME, set_profile_value
    from gpuctl.redact import mask_secret, redact

    out = app_context(ctx).out
    home, target = _target(ctx)
    typed = set_profile_value(home, target, key, value)
    shown = mask_secret(typed) if KEYS_BY_NAME[key].secret and isinstance(typed, str) else typed
    if isinstance(shown, str):
        shown = redact(shown)  # a URL may carry user:password or ?api_key=
    out.result({"profile": target, "key": key, "value": shown})
    if not out.json_mode:
        out.info(f"{target}: {key} = {shown}")


@app.command("unset")
def unset(ctx: typer.Context, key: str = typer.Argument(..., help="Dotted key, e.g. modal.gpu.")) -> None:
    """Remove one value from the active profile so the default (or environment) applies.

    Example: gpuctl profile unset modal.gpu
    """
    from gpuctl.config import unset_profile_value

    out = app_context(ctx).out
    home, target = _target(ctx)
    removed = unset_profile_value(home, target, key)
    out.result({"profile": target, "key": key, "removed": removed})
    if not out.json_mode:
        out.info(f"{target}: {key} " + ("removed" if removed else "was not set"))


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
    from gpuctl.config import delete_profile, gpuctl_home

    actx = app_context(ctx)
    if dry_run:
        from gpuctl.config import read_profile_masked

        path, _ = read_profile_masked(gpuctl_home(), name)  # exists and is readable
        actx.out.result({"dry_run": True, "would_delete": path})
        if not actx.out.json_mode:
            actx.out.info(f"Would delete profile {name} ({path}). Dry run: nothing changed.")
        return
    confirm(actx.out, f"Delete profile {name!r} (its keys are lost)?", yes=yes)
    delete_profile(gpuctl_home(), name)
    actx.out.result({"deleted": name})
    if not actx.out.json_mode:
        actx.out.info(f"Deleted profile {name}")
