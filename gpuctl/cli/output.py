"""The two consoles (stdout = data, stderr = people), tables, spinners and the JSON envelope.

`--json` prints exactly one envelope on stdout, errors included; streaming commands print one
JSON object per line instead (`status --watch`: one envelope per line). Every envelope carries a
UTC `timestamp` (cron logs). Spinners, progress and warnings always go to stderr. Colour and
every other style (dim, bold) are off when NO_COLOR is set or the stream is not a terminal.

Tables fit the terminal (80 columns when it is not one): labels stay on one line, the other
cells wrap by words (a URL, having none, folds), and a title is a paragraph above the table.
A closed stdout (`gpuctl cost estimate | head -1`) is not an error: the rest is dropped.
"""

from __future__ import annotations

import contextlib
import json
import os
import sys
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from rich.console import Console, Group, RenderableType
from rich.markup import escape
from rich.table import Table
from rich.text import Text

from gpuctl.redact import redact

RESULT_VERSION = 1


def now() -> float:
    """The wall clock the envelopes are stamped with (tests replace this function)."""
    return time.time()


def utc_timestamp(at: float) -> str:
    """Epoch seconds as the envelope's `timestamp`: ISO 8601 in UTC, to the second, 'Z'."""
    return datetime.fromtimestamp(at, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def envelope(command: str, *, status: str, exit_code: int, data: Any = None,
             errors: Sequence[Mapping[str, Any]] = (), at: float | None = None) -> dict[str, Any]:
    """The versioned JSON result every `--json` command prints (one contract test pins its keys).

    `timestamp` is when the document was written (`at`, default now), so `gpuctl cleanup
    --json >> log` from cron leaves dated lines."""
    return {
        "gpuctl_result_version": RESULT_VERSION,
        "command": command,
        "status": status,  # success | partial | error
        "exit_code": exit_code,
        "timestamp": utc_timestamp(now() if at is None else at),
        "data": data,
        "errors": list(errors),
    }


def error_entry(kind: str, message: str, hint: str | None = None) -> dict[str, Any]:
    """One item of the envelope's `errors`: what went wrong (the error's class name), and the fix."""
    return {"type": kind, "message": message, "hint": hint}


def no_color() -> bool:
    """NO_COLOR (https://no-color.org): any non-empty value turns colour and styles off."""
    return bool(os.environ.get("NO_COLOR"))


def raise_broken_pipe(console: Console | None = None) -> None:
    """What a console does when its reader went away: raise, so that gpuctl decides (the
    command goes on quietly, or ends with exit 0). rich's default exits with code 1."""
    raise BrokenPipeError


class PipeSafeConsole(Console):
    """A rich Console whose closed pipe is a BrokenPipeError, not `SystemExit(1)`."""

    def on_broken_pipe(self) -> None:
        raise_broken_pipe(self)


def new_console(*, stderr: bool = False) -> Console:
    """A console for one stream. With NO_COLOR no style at all is written, dim and bold
    included (rich alone keeps those); without a terminal rich writes none anyway."""
    if no_color():
        return PipeSafeConsole(stderr=stderr, soft_wrap=True, color_system=None, no_color=True)
    return PipeSafeConsole(stderr=stderr, soft_wrap=True)


def show_value(value: Any) -> str:
    """A setting's value in a table or a sentence: text as it is, everything else as TOML
    spells it (`true`, `["modal", "anthropic"]`), never a Python repr."""
    if isinstance(value, str):
        return value
    from gpuctl.config.files import toml_value

    return toml_value(value)


def silence_stdout() -> None:
    """stdout was closed by its reader (`| head -1`): send whatever else is written to
    /dev/null, so neither a later print nor the interpreter's final flush fails."""
    with contextlib.suppress(OSError, ValueError, AttributeError):  # CliRunner's stdout has no descriptor
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        os.close(devnull)


def _json_default(value: Any) -> Any:
    if isinstance(value, Decimal):
        from gpuctl.costs.money import money_str

        return money_str(value)  # a bare Decimal in --json data is money: the one formatter
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
    stdout: Console = field(default_factory=new_console)
    stderr: Console = field(default_factory=lambda: new_console(stderr=True))
    emitted: bool = False
    streaming: bool = False  # one document per line (status --watch): an error is one more line
    stdout_closed: bool = False  # its reader went away: nothing more is written there
    clock: Callable[[], float] = field(default=lambda: now())  # the envelopes' timestamp

    @property
    def command(self) -> str:
        return " ".join(self.command_parts) or "gpuctl"

    # -------------------------------------------------------------- data (stdout)

    def result(self, data: Any, *, status: str = "success", exit_code: int = 0,
               errors: Sequence[Mapping[str, Any]] = ()) -> None:
        """In --json mode print the envelope; otherwise the caller renders for people."""
        if self.json_mode:
            self.print_json(self.document(data, status=status, exit_code=exit_code, errors=errors))

    def document(self, data: Any = None, *, status: str = "success", exit_code: int = 0,
                 errors: Sequence[Mapping[str, Any]] = ()) -> dict[str, Any]:
        """This command's envelope, stamped now (a streaming command prints one per line)."""
        return envelope(self.command, status=status, exit_code=exit_code, data=data, errors=errors, at=self.clock())

    def error_document(self, kind: str, message: str, *, exit_code: int, hint: str | None = None,
                       status: str = "error", data: Any = None) -> dict[str, Any]:
        return self.document(data, status=status, exit_code=exit_code, errors=[error_entry(kind, message, hint)])

    def fail(self, kind: str, message: str, *, exit_code: int, hint: str | None = None,
             status: str = "error", data: Any = None) -> None:
        """In --json mode the error envelope, unless this run already printed its document
        (a result before the failure): one document per run. A streaming command's error is
        one more line."""
        if self.json_mode and (not self.emitted or self.streaming):
            self.print_json(self.error_document(kind, message, exit_code=exit_code, hint=hint, status=status,
                                                data=data))

    def print_json(self, value: Any) -> None:
        """One JSON document (or one NDJSON line) on stdout, written raw: no markup, no wrapping."""
        self.emitted = True
        self._write(lambda: (sys.stdout.write(dumps(value) + "\n"), sys.stdout.flush()))

    def print(self, *objects: Any, **kwargs: Any) -> None:
        """Human data on stdout (tables, answers). Not used in --json mode. A table (any
        renderable but text) is laid out to the terminal's width; text is left to soft-wrap."""
        if objects and not all(isinstance(o, str) for o in objects):
            kwargs.setdefault("soft_wrap", False)
        self._write(lambda: self.stdout.print(*objects, **kwargs))

    def _write(self, write: Callable[[], object]) -> None:
        if self.stdout_closed:
            return
        try:
            write()
        except BrokenPipeError:  # the reader is gone (| head): the command goes on, quietly
            self.stdout_closed = True
            silence_stdout()

    def table(self, columns: Sequence[str], rows: Sequence[Sequence[Any]], *, title: str | None = None,
              fixed: Sequence[int] = (0,), fold: Sequence[int] = ()) -> RenderableType:
        """A plain table that fits the terminal (80 columns when it is not one).

        The `fixed` columns (default: the first, the row labels) and the columns of single
        words (numbers, money, ids) never wrap, so no label breaks mid-phrase; columns of
        prose wrap by words; the `fold` columns (an endpoint URL) fold where they must and are
        never cut to "…". The title is a paragraph above, wrapped by words to the full width."""
        cells = [["" if v is None else redact(show_value(v)) for v in row] for row in rows]
        # Cells are redacted like JSON output is: a URL can carry user:password or ?api_key=.
        table = Table(show_header=any(columns), header_style="bold", box=None, pad_edge=False)
        for i, col in enumerate(columns):
            words = all(not any(ch.isspace() for ch in row[i]) for row in cells if i < len(row))
            if i in fold:
                table.add_column(col, overflow="fold")
            elif i in fixed or words:
                table.add_column(col, no_wrap=True)
            else:
                table.add_column(col, overflow="fold")
        for row in cells:
            table.add_row(*row)
        if not title:
            return table
        return Group(Text(title, style="bold"), table)

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
