"""The root Typer app: global options, command registration, and errors → exit codes in one place.

Commands live in sibling modules and stay thin; they import their ops lazily so that
`gpuctl --help` pays for Typer and nothing else (tests/test_startup.py keeps that true).
`COMMANDS` is the one list of commands, in the order a user meets them: `--help` lists them
so, and a new command (`serve`, `state`) is one more line there.
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from gpuctl import __version__
from gpuctl.cli.context import AppContext
from gpuctl.cli.group import GpuctlGroup, new_app
from gpuctl.cli.output import Output, no_color, raise_broken_pipe

# (name, "module:attribute"): a Typer sub-app (a group) or a command function, in help order.
COMMANDS: tuple[tuple[str, str], ...] = (
    ("deploy", "deploy:app"),
    ("status", "status:status"),
    ("chat", "chat:chat"),
    ("launch", "launch:launch"),
    ("destroy", "destroy:destroy"),
    ("cleanup", "cleanup:cleanup"),
    ("cost", "cost:app"),
    ("profile", "profile:app"),
    ("serve", "serve:serve"),
    ("state", "state:app"),
)


class RootGroup(GpuctlGroup):
    order = tuple(name for name, _ in COMMANDS)


app = new_app(
    cls=RootGroup,
    help="Run your own open-weight LLM endpoint cheaply: Modal first, Vast.ai when cheaper, "
    "Anthropic as the fallback that always answers.\n\n"
    "Example: [bold]gpuctl cost estimate[/bold]",
)


def _version(ctx: typer.Context, value: bool) -> None:
    if value and not ctx.resilient_parsing:
        if ctx.meta.get("gpuctl.json"):  # `gpuctl --json --version`: one document, like every --json
            out = Output(json_mode=True, command_parts=["version"])
            out.print_json(out.document({"version": __version__}))
        else:
            typer.echo(f"gpuctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    profile: str = typer.Option(None, "--profile", "-p", help="Profile to use (default: GPUCTL_PROFILE or the active one)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout (errors included)."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="Logs on stderr: -v info, -vv debug."),
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks for known errors too."),
    version: bool = typer.Option(False, "--version", callback=_version, is_eager=True, help="Show the version and exit."),
) -> None:
    """Global options apply to every command."""
    out = Output(json_mode=json_out, verbose=verbose, debug=debug,
                 command_parts=ctx.meta.setdefault("gpuctl.command", []))
    ctx.obj = AppContext(out=out, profile_flag=profile)
    _configure_logging(ctx.obj, verbose)


def _configure_logging(app_ctx: AppContext, verbose: int) -> None:
    """stdlib logging is configured here and nowhere else."""
    from gpuctl.config import gpuctl_home
    from gpuctl.events import JsonLinesHandler, event_log_path

    root_logger = logging.getLogger("gpuctl")
    for handler in list(root_logger.handlers):
        root_logger.removeHandler(handler)
        handler.close()
    root_logger.propagate = False
    level = logging.WARNING if verbose == 0 else logging.INFO if verbose == 1 else logging.DEBUG
    stream = logging.StreamHandler(sys.stderr)
    stream.setLevel(level)
    stream.setFormatter(_RedactingFormatter("%(levelname)s %(name)s: %(message)s"))
    root_logger.addHandler(stream)
    # The JSON-lines event log is on by default (cron cleanups leave a trail); GPUCTL_EVENT_LOG=0 turns it off.
    if os.environ.get("GPUCTL_EVENT_LOG", "1") not in {"0", "false", "no", "off"}:
        root_logger.addHandler(JsonLinesHandler(event_log_path(gpuctl_home())))
        root_logger.setLevel(min(level, logging.INFO))
    else:
        root_logger.setLevel(level)


class _RedactingFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        from gpuctl.redact import redact

        text = super().format(record)
        fields = getattr(record, "gpuctl_fields", None)
        if fields:
            from gpuctl.redact import redact_mapping

            text += " " + " ".join(f"{k}={v}" for k, v in redact_mapping(fields).items())
        return redact(text)


def _register() -> None:
    # Each module is tiny at import time; their work is imported inside the commands.
    import importlib

    for name, target in COMMANDS:
        module, attribute = target.split(":")
        thing = getattr(importlib.import_module(f"gpuctl.cli.{module}"), attribute)
        if isinstance(thing, typer.Typer):
            app.add_typer(thing, name=name)
        else:
            app.command(name)(thing)


_register()


def run() -> None:
    """Console-script entry point. Typer draws its help and errors on consoles of its own:
    they follow gpuctl's rules too (NO_COLOR: no style at all; a closed pipe: exit 0)."""
    import rich.console

    rich.console.Console.on_broken_pipe = raise_broken_pipe  # type: ignore[method-assign,assignment]  # rich's hook
    if no_color():
        plain_typer_consoles()
    app(prog_name="gpuctl")


def plain_typer_consoles() -> None:
    """Typer's help and error consoles without any style (NO_COLOR): `typer.rich_utils`'s
    COLOR_SYSTEM, set when typer imports that module, if it does. Importing it here to set it
    would cost every command ~30 ms (it imports rich.markdown and rich.traceback)."""
    import importlib.abc
    import importlib.machinery
    import types

    loaded = sys.modules.get("typer.rich_utils")
    if loaded is not None:
        loaded.COLOR_SYSTEM = None  # type: ignore[attr-defined]
        return

    class Plain(importlib.abc.MetaPathFinder, importlib.abc.Loader):
        def find_spec(self, name: str, path: object, target: object = None) -> importlib.machinery.ModuleSpec | None:
            if name != "typer.rich_utils":
                return None
            sys.meta_path.remove(self)
            spec = importlib.machinery.PathFinder.find_spec(name, path)  # type: ignore[arg-type]
            if spec is None or spec.loader is None:
                return spec
            self.inner = spec.loader
            spec.loader = self
            return spec

        def create_module(self, spec: importlib.machinery.ModuleSpec) -> types.ModuleType | None:
            return self.inner.create_module(spec)

        def exec_module(self, module: types.ModuleType) -> None:
            self.inner.exec_module(module)
            module.COLOR_SYSTEM = None  # type: ignore[attr-defined]

    sys.meta_path.insert(0, Plain())
