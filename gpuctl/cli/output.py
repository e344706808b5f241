"""The two consoles (stdout = data, stderr = people), tables, spinners and the JSON envelope.

`--json` prints exactly one envelope on stdout, errors included; streaming commands print one
JSON object per line instead. Spinners, progress and warnings always go to stderr, and colour is
off when NO_COLOR is set or the stream is not a terminal (rich decides both).
"""

from __future__ import annotations

import contextlib
import json
import sys
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.markup import escape
from rich.table import Table

from gpuctl.redact import redact

RESULT_VERSION = 1


def envelope(command: str, *, status: str, exit_code: int, data: Any = None,
             errors: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
    """The versioned JSON result every `--json` command prints (one contract test pins its keys)."""
    return {
        "gpuctl_result_version": RESULT_VERSION,
        "command": command,
        "status": status,  # success | partial | error
        "exit_code": exit_code,
        "data": data,
        "errors": list(errors),
    }


def error_entry(kind: str, message: str, hint: str | None = None) -> dict[str, Any]:
    """One item of the envelope's `errors`: what went wrong (the error's class name), and the fix."""
    return {"type": kind, "message": message, "hint": hint}


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        return str(value)  # exact decimals travel as strings
    if isinstance(value, Path):
        return str(value)
    if hasattr(value, "__dataclass_fields__"):
        return {k: getattr(value, k) for k in value.__dataclass_fields__}
    if isinstance(value, (set, frozenset, tuple)):
        return list(value)
    raise TypeError(f"not JSON serialisable: {type(value).__name__}")


def dumps(value: Any) -> str:
    # allow_nan=False: NaN/Infinity are not JSON; settings reject them, so this never fires.
    return redact(json.dumps(value, default=_json_default, ensure_ascii=False, allow_nan=False))


@dataclass
class Output:
    """Per-invocation output settings and the two consoles."""

    json_mode: bool = False
    command_parts: list[str] = field(default_factory=list)  # filled in as Click resolves subcommands
    verbose: int = 0
    debug: bool = False
    stdout: Console = field(default_factory=lambda: Console(soft_wrap=True))
    stderr: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))
    emitted: bool = False

    @property
    def command(self) -> str:
        return " ".join(self.command_parts) or "gpuctl"

    # -------------------------------------------------------------- data (stdout)

    def result(self, data: Any, *, status: str = "success", exit_code: int = 0,
               errors: Sequence[Mapping[str, Any]] = ()) -> None:
        """In --json mode print the envelope; otherwise the caller renders for people."""
        if self.json_mode:
            self.print_json(envelope(self.command, status=status, exit_code=exit_code, data=data, errors=errors))

    def fail(self, kind: str, message: str, *, exit_code: int, hint: str | None = None,
             status: str = "error", data: Any = None) -> None:
        """In --json mode the error envelope, unless this run already printed its document
        (a streaming command's lines, or a result before the failure): one document per run."""
        if self.json_mode and not self.emitted:
            self.print_json(envelope(self.command, status=status, exit_code=exit_code, data=data,
                                     errors=[error_entry(kind, message, hint)]))

    def print_json(self, value: Any) -> None:
        """One JSON document (or one NDJSON line) on stdout, written raw: no markup, no wrapping."""
        sys.stdout.write(dumps(value) + "\n")
        sys.stdout.flush()
        self.emitted = True

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Human data on stdout (tables, answers). Not used in --json mode."""
        self.stdout.print(*objects, **kwargs)

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None,
              wrap: Sequence[str] | None = None) -> Table:
        """A plain table. `wrap` names the columns that may wrap when the terminal is narrow
        (default: all); the others stay on one line so ids and URLs can be copied."""
        table = Table(title=title, show_header=True, header_style="bold", box=None, pad_edge=False)
        for col in columns:
            if wrap is None or col in wrap:
                table.add_column(col, overflow="fold")
            else:
                table.add_column(col, no_wrap=True)
        for row in rows:
            # Cells are redacted like JSON output is: a URL can carry user:password or ?api_key=.
            table.add_row(*("" if v is None else redact(str(v)) for v in row))
        return table

    # -------------------------------------------------------------- people (stderr)

    # Messages are escaped: a TOML section name like [modal] must not be read as rich markup.
    def info(self, message: str) -> None:
        self.stderr.print(escape(message), highlight=False)

    def note(self, message: str) -> None:
        self.stderr.print(f"[dim]{escape(message)}[/dim]", highlight=False)

    def warn(self, message: str) -> None:
        self.stderr.print(f"[yellow]Warning:[/yellow] {escape(message)}", highlight=False)

    def error(self, message: str, hint: str | None = None) -> None:
        self.stderr.print(f"[bold red]Error:[/bold red] {escape(redact(message))}", highlight=False)
        if hint:
            self.stderr.print(f"[dim]Hint: {escape(redact(hint))}[/dim]", highlight=False)

    @contextlib.contextmanager
    def spinner(self, message: str) -> Iterator[Spinner]:
        """A spinner with elapsed time on stderr; a plain line when stderr is not a terminal."""
        spin = Spinner(self.stderr, message)
        with spin:
            yield spin


class Spinner:
    """`with out.spinner("Deploying…") as s: s.update("cold start: loading weights…")`.

    In a terminal the elapsed time ticks on its own (the status line re-renders a few times a
    second); elsewhere each new message is one plain line on stderr.
    """

    def __init__(self, console: Console, message: str) -> None:
        self.console = console
        self.message = message
        self.started = time.monotonic()
        self._status: Any = None

    def __rich__(self) -> str:
        # Called on every refresh of the live status line, so the seconds keep counting.
        return f"{escape(self.message)} [dim]({time.monotonic() - self.started:.0f}s)[/dim]"

    def update(self, message: str | None = None) -> None:
        if message is None or message == self.message:
            return
        self.message = message
        if self._status is None:
            self.console.print(f"… {escape(message)}", highlight=False)

    def __enter__(self) -> Spinner:
        if self.console.is_terminal:
            self._status = self.console.status(self)
            self._status.__enter__()
        else:
            self.console.print(f"… {escape(self.message)}", highlight=False)
        return self

    def __exit__(self, *exc: object) -> None:
        if self._status is not None:
            self._status.__exit__(None, None, None)
            self._status = None
