"""The root Typer app: global options, command registration, and errors → exit codes in one place.

Commands live in sibling modules and stay thin; they import their ops lazily so that
`gpuctl --help` pays for Typer and nothing else (tests/test_startup.py keeps that true).
"""

from __future__ import annotations

import logging
import os
import sys

import typer

from gpuctl import __version__
from gpuctl.cli.context import AppContext
from gpuctl.cli.group import new_app
from gpuctl.cli.output import Output

app = new_app(
    help="Run your own open-weight LLM endpoint cheaply: Modal first, Vast.ai when cheaper, "
    "Anthropic as the fallback that always answers.\n\n"
    "Example: [bold]gpuctl cost estimate[/bold]",
)


def _version(value: bool) -> None:
    if value:
        typer.echo(f"gpuctl {__version__}")
        raise typer.Exit()


@app.callback()
def root(
    ctx: typer.Context,
    profile: str = typer.Option(None, "--profile", "-p", help="Profile to use (default: GPUCTL_PROFILE or the active one)."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON document on stdout."),
    verbose: int = typer.Option(0, "--verbose", "-v", count=True, help="-v info, -vv debug logs on stderr."),
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
    from gpuctl.cli import chat, cleanup, cost, deploy, destroy, launch, profile, serve, status

    app.add_typer(deploy.app, name="deploy")
    app.command("status")(status.status)
    app.command("chat")(chat.chat)
    app.command("launch")(launch.launch)
    app.command("destroy")(destroy.destroy)
    app.command("cleanup")(cleanup.cleanup)
    app.add_typer(cost.app, name="cost")
    app.add_typer(profile.app, name="profile")
    app.command("serve")(serve.serve)


_register()


def run() -> None:
    """Console-script entry point."""
    app(prog_name="gpuctl")
