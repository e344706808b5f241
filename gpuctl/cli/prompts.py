"""Confirmation before destroying anything; `--yes` skips it, and no terminal means no."""

from __future__ import annotations

import sys

from gpuctl.cli.output import Output
from gpuctl.errors import GpuctlError, UsageError


def confirm(out: Output, question: str, *, yes: bool) -> None:
    """Ask on stderr; raise UsageError if declined or if nobody can answer (no TTY, --json)."""
    if yes:
        return
    if out.json_mode or not sys.stdin.isatty():
        raise UsageError(f"{question} Refusing without confirmation.", hint="pass --yes to confirm")
    import typer

    if not typer.confirm(question, default=False, err=True):
        raise GpuctlError("cancelled; nothing was changed")
