"""The Typer classes every gpuctl command and group uses: known errors → one line + exit code,
and `--json` → one JSON document on stdout, whatever happens.

Kept apart from `main.py` so command modules can build their sub-apps without importing the
root. What is caught here, once, for the console script and CliRunner alike:
  - gpuctl's error tree (one `Error:` line and its hint, or the envelope) and Ctrl-C (130);
  - Click's usage errors, in gpuctl's words: `Error: ...` plus a hint (a negative number
    given without `--`, `gpuctl X --help`), exit 2, and the envelope with `--json`;
  - with `--json`: `--help` (the help as data), a group without its command;
  - a closed stdout (`| head -1`): not an error, exit 0, nothing on stderr.
It also tidies the help: flags show no metavar (`--json`, not `--json <bool>`), `-v` counts
without a `<int>`, arguments are written `KEY VALUE`, and the root lists commands in the order
a user meets them (`GpuctlGroup.order`).
"""

from __future__ import annotations

import re
import sys
from collections.abc import Sequence
from typing import Any

import typer
from typer.core import TyperCommand, TyperGroup

from gpuctl.cli.context import AppContext
from gpuctl.cli.output import Output, silence_stdout
from gpuctl.errors import (
    EXIT_INTERRUPTED,
    EXIT_OK,
    EXIT_USAGE,
    GpuctlError,
    PartialError,
    UsageError,
)


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
_NEGATIVE = re.compile(r"^-\d")  # "-10", "-0.5": a value that Click reads as an option


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


def json_requested(ctx: Any) -> bool:
    """Was `--json` given (known before the root callback runs)?"""
    return bool(ctx.find_root().meta.get("gpuctl.json"))


def tidy_params(params: Sequence[Any]) -> None:
    """Help without noise: a flag or a counter takes no value, so it shows no `<bool>`/`<int>`
    (nor `[default: 0]`); an argument is written in capitals (`KEY`), as usage lines are."""
    for param in params:
        if getattr(param, "param_type_name", "") == "argument":
            if param.metavar is None and param.name:
                param.metavar = param.name.upper()
        elif getattr(param, "is_flag", False) or getattr(param, "count", False):
            param.metavar = ""
            if getattr(param, "count", False):
                param.show_default = False


class _Help:
    """Tidy help (`tidy_params`), and `--help` as data with `--json`: the same facts the page
    shows, in one envelope."""

    def get_params(self, ctx: Any) -> list[Any]:
        params = super().get_params(ctx)  # type: ignore[misc]
        tidy_params(params)  # here, not in __init__: the help and completion options come later
        return list(params)

    def get_help_option(self, ctx: Any) -> Any:
        option = super().get_help_option(ctx)  # type: ignore[misc]
        if option is not None and not getattr(option, "gpuctl_json", False):
            shown = option.callback

            def show_help(ctx: Any, param: Any, value: bool) -> Any:
                if value and not ctx.resilient_parsing and json_requested(ctx):
                    _output(ctx).print_json(_output(ctx).document(help_data(ctx)))
                    ctx.exit(EXIT_OK)
                return shown(ctx, param, value)

            option.callback = show_help
            option.gpuctl_json = True
        return option


def help_data(ctx: Any) -> dict[str, Any]:
    """What `gpuctl ... --help --json` prints as `data`: usage, text, arguments, options, commands."""
    command = ctx.command
    params = [p for p in command.get_params(ctx) if not getattr(p, "hidden", False)]
    from rich.text import Text

    text = Text.from_markup((command.help or "").replace("\b\n", "").strip()).plain  # no [bold]
    data: dict[str, Any] = {
        "usage": " ".join(["gpuctl", *_path(ctx), *command.collect_usage_pieces(ctx)]),
        "summary": text.split("\n", 1)[0],
        "help": text,
        "arguments": [{"name": p.metavar or p.name.upper(), "required": p.required, "help": getattr(p, "help", None)}
                      for p in params if p.param_type_name == "argument"],
        "options": [{"names": [*p.opts, *p.secondary_opts], "takes_value": not (p.is_flag or p.count),
                     "metavar": p.metavar or None, "help": p.help}
                    for p in params if p.param_type_name == "option"],
    }
    if isinstance(command, TyperGroup):
        data["commands"] = [{"name": name, "summary": command.commands[name].get_short_help_str(limit=120)}
                            for name in command.list_commands(ctx)]
    return data


def _path(ctx: Any) -> list[str]:
    """The command's words after `gpuctl` ("cost", "estimate"), whatever the program was called."""
    words = []
    while ctx.parent is not None:
        words.append(ctx.info_name)
        ctx = ctx.parent
    return [w for w in reversed(words) if w]


class GpuctlCommand(_Help, TyperCommand):
    """Every gpuctl command (the leaves): tidy help, `--help --json`."""


class GpuctlGroup(_Help, TyperGroup):
    """Catches gpuctl's known errors once, for the console script and CliRunner alike.

    Contexts are typed `Any`: typer vendors its own click, whose Context is private API.
    `order` lists the commands in the order `--help` shows them (the rest follow, as added)."""

    order: tuple[str, ...] = ()

    def list_commands(self, ctx: Any) -> list[str]:
        names = super().list_commands(ctx)
        rank = {name: i for i, name in enumerate(self.order)}
        return sorted(names, key=lambda name: rank.get(name, len(rank)))  # stable: unlisted keep their order

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if ctx.parent is not None:
            if not args and self.no_args_is_help and not ctx.resilient_parsing and json_requested(ctx):
                # `gpuctl --json cost`: the help page is for people; scripts get a usage error.
                path = " ".join(["gpuctl", *_path(ctx)])
                raise UsageError(f"`{path}` needs a command: {', '.join(self.list_commands(ctx))}",
                                 hint=f"see `{path} --help`")
            return super().parse_args(ctx, args)
        args = hoist_global_options(list(args))
        # Known before the root callback runs, for errors raised while resolving a command.
        ctx.meta["gpuctl.json"] = "--json" in args[: args.index("--")] if "--" in args else "--json" in args
        try:
            return super().parse_args(ctx, args)
        except BrokenPipeError:  # `gpuctl --help | head -1`
            silence_stdout()
            ctx.exit(EXIT_OK)
        except _CLICK_ERRORS as exc:  # `gpuctl --bogus`: no command has run yet
            if _is_help_page(exc):
                raise
            ctx.exit(report_usage_error(ctx, exc))
        raise AssertionError("unreachable")  # every branch above returns or exits

    def resolve_command(self, ctx: Any, args: list[str]) -> Any:
        name, cmd, rest = super().resolve_command(ctx, args)
        root = ctx.find_root()
        path = root.meta.setdefault("gpuctl.command", [])
        if name:
            path.append(name)
        return name, cmd, rest

    def invoke(self, ctx: Any) -> Any:
        if ctx.parent is not None:
            return super().invoke(ctx)  # the root, around everything, catches once
        try:
            return self._invoke_root(ctx)
        except BrokenPipeError:  # the reader went away (| head): not an error
            silence_stdout()
            ctx.exit(EXIT_OK)

    def _invoke_root(self, ctx: Any) -> Any:
        try:
            return super().invoke(ctx)
        except GpuctlError as exc:
            ctx.exit(report_error(ctx, exc))
        except _CLICK_ERRORS as exc:  # bad flags / values: gpuctl's one line, and the envelope with --json
            if _is_help_page(exc):
                raise  # `gpuctl cost` (people): Typer shows the group's help page, exit 2
            ctx.exit(report_usage_error(ctx, exc))
        except (KeyboardInterrupt, typer.Abort):  # Ctrl-C (Abort: at a confirmation prompt)
            out = _output(ctx)
            out.fail("Interrupted", "interrupted", exit_code=EXIT_INTERRUPTED)
            out.error("interrupted")
            ctx.exit(EXIT_INTERRUPTED)


def _is_help_page(exc: Exception) -> bool:
    """A group run without its command shows its help (Click's NoArgsIsHelpError): no error line."""
    return type(exc).__name__ == "NoArgsIsHelpError"


def _output(ctx: Any) -> Output:
    root = ctx.find_root()
    obj = root.obj
    if isinstance(obj, AppContext):
        return obj.out
    out = root.meta.get("gpuctl.output")
    if not isinstance(out, Output):  # before the root callback ran (a bad global option, --help)
        out = root.meta["gpuctl.output"] = Output(json_mode=bool(root.meta.get("gpuctl.json")),
                                                  command_parts=root.meta.setdefault("gpuctl.command", []))
    return out


def report_error(ctx: Any, exc: GpuctlError) -> int:
    """One `Error: ...` line plus the hint on stderr (and the envelope with --json)."""
    out = _output(ctx)
    code = exc.exit_code
    if out.debug:
        import traceback

        from gpuctl.redact import redact

        # Redacted as every other line: a chained error (a driver's) may quote a credential.
        sys.stderr.write(redact("".join(traceback.format_exception(exc))))
    out.fail(type(exc).__name__, exc.message, hint=exc.hint, exit_code=code,
             status="partial" if isinstance(exc, PartialError) else "error",
             data=getattr(exc, "data", None))  # PartialError and other errors that carry their results
    out.error(exc.message, exc.hint)
    return code


def report_usage_error(ctx: Any, exc: Exception) -> int:
    """A Click error (bad flag, missing argument) as gpuctl says errors: the usage line, one
    `Error:` line and a hint on stderr; the envelope with --json. Exit 2 (usage)."""
    out = _output(ctx)
    code = int(getattr(exc, "exit_code", EXIT_USAGE))
    message = getattr(exc, "format_message", exc.__str__)()
    where = getattr(exc, "ctx", None) or ctx
    path = " ".join(["gpuctl", *_path(where)])
    hint = f"see `{path} --help`"
    option = getattr(exc, "option_name", None)
    if isinstance(option, str) and _NEGATIVE.match(option):
        # `gpuctl profile set KEY -10`: Click reads -10 as an option; after `--` it is a value.
        values = " ".join(p.metavar or p.name.upper() for p in where.command.get_params(where)
                          if p.param_type_name == "argument") if getattr(where, "command", None) else "VALUE"
        hint = f"a negative number is read as an option: put `--` before the values, `{path} -- {values}`"
    out.fail("UsageError", message, hint=hint, exit_code=code)
    if not out.json_mode:
        pieces = where.command.collect_usage_pieces(where) if getattr(where, "command", None) else []
        out.info(" ".join(["Usage:", path, *pieces]))
    out.error(message, hint)
    return code


class GpuctlTyper(typer.Typer):
    """A Typer whose commands are `GpuctlCommand`s unless told otherwise."""

    def command(self, name: str | None = None, *, cls: type[TyperCommand] | None = None, **kwargs: Any) -> Any:
        return super().command(name, cls=cls or GpuctlCommand, **kwargs)


def new_app(*, cls: type[GpuctlGroup] = GpuctlGroup, **kwargs: Any) -> typer.Typer:
    """Every Typer (root and groups) shares the error handling and never shows locals."""
    kwargs.setdefault("no_args_is_help", True)
    return GpuctlTyper(
        cls=cls,
        pretty_exceptions_show_locals=False,
        context_settings={"help_option_names": ["-h", "--help"]},
        rich_markup_mode="rich",
        **kwargs,
    )
