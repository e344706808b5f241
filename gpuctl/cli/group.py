"""The Typer group class every gpuctl command group uses: known errors → one line + exit code.

Kept apart from `main.py` so command modules can build their sub-apps without importing the root.
"""

from __future__ import annotations

import sys
from typing import Any

import typer
from typer.core import TyperGroup

from gpuctl.cli.context import AppContext
from gpuctl.cli.output import Output
from gpuctl.errors import EXIT_INTERRUPTED, GpuctlError, PartialError


def _click_errors() -> tuple[type[Exception], ...]:
    """Click's exception base: Typer ≥ 0.16 vendors click as `typer._click`; older uses `click`."""
    import importlib

    for module in ("typer._click.exceptions", "click.exceptions"):  # the first that exists
        try:
            return (importlib.import_module(module).ClickException,)
        except (ImportError, AttributeError):
            continue
    return ()


_CLICK_ERRORS = _click_errors()

# Global options may also be written after the subcommand (`gpuctl status --json`).
_GLOBAL_FLAGS = frozenset({"--json", "--debug", "-v", "-vv", "-vvv", "--verbose"})
_GLOBAL_WITH_VALUE = frozenset({"--profile", "-p"})


def hoist_global_options(args: list[str]) -> list[str]:
    """Move global options found after the subcommand to the front, up to a `--`."""
    front: list[str] = []
    rest: list[str] = []
    i = 0
    while i < len(args):
        arg = args[i]
        if arg == "--":
            rest.extend(args[i:])
            break
        if arg in _GLOBAL_FLAGS:
            front.append(arg)
        elif arg in _GLOBAL_WITH_VALUE and i + 1 < len(args):
            front.extend(args[i:i + 2])
            i += 1
        elif arg.startswith("--profile="):
            front.append(arg)
        else:
            rest.append(arg)
        i += 1
    return front + rest


class GpuctlGroup(TyperGroup):
    """Catches gpuctl's known errors once, for the console script and CliRunner alike.

    Contexts are typed `Any`: typer vendors its own click, whose Context is private API."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if ctx.parent is None:
            args = hoist_global_options(list(args))
            # Known before the root callback runs, for errors raised while resolving a command.
            ctx.meta["gpuctl.json"] = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
        return super().parse_args(ctx, args)

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, cmd, rest = super().resolve_command(ctx, args)
        root = ctx.find_root()
        path = root.meta.setdefault("gpuctl.command", [])
        if name:
            path.append(name)
        return name, cmd, rest

    def invoke(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except GpuctlError as exc:
            code = report_error(ctx, exc)
            ctx.exit(code)
        except _CLICK_ERRORS as exc:  # bad flags / values: still one JSON document with --json
            message = getattr(exc, "format_message", exc.__str__)()
            _output(ctx).fail("UsageError", message, exit_code=int(getattr(exc, "exit_code", 2)))
            raise  # Typer prints the usage message on stderr and exits 2
        except KeyboardInterrupt:
            out = _output(ctx)
            out.fail("Interrupted", "interrupted", exit_code=EXIT_INTERRUPTED)
            out.error("interrupted")
            ctx.exit(EXIT_INTERRUPTED)


def _output(ctx: Any) -> Output:
    root = ctx.find_root()
    obj = root.obj
    if isinstance(obj, AppContext):
        out = obj.out
    else:
        out = Output(json_mode=bool(root.meta.get("gpuctl.json")), command_parts=root.meta.get("gpuctl.command", []))
    return out


def report_error(ctx: Any, exc: GpuctlError) -> int:
    """One `Error: ...` line plus the hint on stderr (and the envelope with --json)."""
    out = _output(ctx)
    code = exc.exit_code
    if out.debug:
        import traceback

        traceback.print_exception(exc, file=sys.stderr)
    out.fail(type(exc).__name__, exc.message, hint=exc.hint, exit_code=code,
             status="partial" if isinstance(exc, PartialError) else "error",
             data=getattr(exc, "data", None))  # PartialError and other errors that carry their results
    out.error(exc.message, exc.hint)
    return code


def new_app(**kwargs: Any) -> typer.Typer:
    """Every Typer (root and groups) shares the error handling and never shows locals."""
    kwargs.setdefault("no_args_is_help", True)
    return typer.Typer(
        cls=GpuctlGroup,
        pretty_exceptions_show_locals=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        rich_markup_mode="rich",
        **kwargs,
    )
