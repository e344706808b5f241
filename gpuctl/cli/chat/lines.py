"""Where the chat's input comes from: a prompt, a pipe, a plain terminal or the line editor.

Which mode (the rule `gpuctl chat --help` documents):
  - a PROMPT argument or `-f FILE`: ask once (piped stdin, if any, goes before it) and exit;
  - no prompt and piped stdin: if its last line is /exit (or /quit), each line is REPL input;
    otherwise the whole of stdin is one prompt;
  - no prompt and a terminal: the REPL, with line editing and history when stdout is a terminal
    too (prompt_toolkit, imported only then), else plain line input.
Text between \"\"\" lines is one multi-line input in every REPL mode.

Must not: print (the UI's `prompt` writes the plain prompt) or run SQL/HTTP.
"""

from __future__ import annotations

import asyncio
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from gpuctl.cli.chat import commands
from gpuctl.errors import UsageError

if TYPE_CHECKING:
    from gpuctl.cli.chat.ui import ChatUI

HISTORY_FILE = "chat_history"
PROMPT = "> "
TRIPLE = '"""'


class LineSource(Protocol):
    def read(self, runner: asyncio.Runner) -> str | None:
        """The next input (possibly several lines), or None at the end (EOF, Ctrl-D, Ctrl-C)."""


def inputs(prompt: str | None, file: Path | None, home: Path, ui: ChatUI,
           stdin: TextIO) -> tuple[str | None, LineSource | None]:
    """The one-shot prompt, or where REPL lines come from (history lives in `home`)."""
    if prompt is not None or file is not None:
        parts = []
        if _piped_data(stdin):
            piped = stdin.read().strip("\n")
            if piped.strip():
                parts.append(piped)
        if file is not None:
            parts.append(_read_prompt_file(file))
        if prompt is not None:
            parts.append(prompt)
        joined = "\n\n".join(p for p in parts if p.strip())
        if not joined.strip():
            raise UsageError("the prompt is empty")
        return joined, None
    if not _isatty(stdin):
        text = stdin.read()
        lines = text.splitlines()
        # REPL input only when it says so by ending with /exit (or /quit): a pasted transcript
        # with a line like "/save output" in it stays one prompt, never several paid questions.
        last = next((line.strip() for line in reversed(lines) if line.strip()), "")
        if last in ("/exit", "/quit"):
            return None, PlainLines(iter(lines))
        if not text.strip():
            raise UsageError("nothing to ask: stdin is empty", hint='gpuctl chat "your question", or run it in a terminal')
        return text.strip("\n"), None
    if ui.interactive and not ui.json_mode:
        return None, TerminalInput(home / HISTORY_FILE)
    lines_iter = (line.rstrip("\n") for line in iter(stdin.readline, ""))
    return None, PlainLines(lines_iter, prompt=lambda: ui.prompt(PROMPT))


def _isatty(stream: Any) -> bool:
    try:
        return bool(stream.isatty())
    except (AttributeError, ValueError):
        return False


def _piped_data(stdin: TextIO) -> bool:
    """Is there piped input to prepend to a prompt? Only pipes and files: reading a terminal,
    /dev/null or an inherited socket would wait for nothing or forever."""
    if _isatty(stdin):
        return False
    try:
        mode = os.fstat(stdin.fileno()).st_mode
    except (AttributeError, OSError, ValueError):
        return True  # an in-memory stream (tests, embedding)
    return stat.S_ISFIFO(mode) or stat.S_ISREG(mode)


def _read_prompt_file(path: Path) -> str:
    try:
        return path.expanduser().read_text(encoding="utf-8")
    except FileNotFoundError:
        raise UsageError(f"prompt file {path} does not exist") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise UsageError(f"cannot read prompt file {path}: {getattr(exc, 'strerror', None) or exc}") from None


def unwrap(text: str) -> str:
    """Text typed between \"\"\" lines, without the quotes."""
    stripped = text.strip()
    if stripped.startswith(TRIPLE):
        stripped = stripped[len(TRIPLE):]
        if stripped.endswith(TRIPLE):
            stripped = stripped[: -len(TRIPLE)]
    return stripped.strip("\n")


def open_block(text: str) -> bool:
    """True while a \"\"\" block is still open (Enter adds a line instead of sending)."""
    stripped = text.strip()
    return stripped.startswith(TRIPLE) and (len(stripped) < 2 * len(TRIPLE) or not stripped.endswith(TRIPLE))


class PlainLines:
    """Lines from a pipe (or a terminal without line editing); \"\"\" blocks are joined."""

    def __init__(self, lines: Iterator[str], *, prompt: Callable[[], None] | None = None) -> None:
        self.lines = lines
        self.prompt = prompt

    def read(self, runner: asyncio.Runner) -> str | None:
        if self.prompt is not None:
            self.prompt()
        line = next(self.lines, None)
        if line is None:
            return None
        if not open_block(line):
            return unwrap(line) if line.strip().startswith(TRIPLE) else line
        block = [line]
        for more in self.lines:
            block.append(more)
            if not open_block("\n".join(block)):
                break
        return unwrap("\n".join(block))


class TerminalInput:
    """prompt_toolkit line editing, history in GPUCTL_HOME/chat_history (0600), Esc-Enter or
    \"\"\" for multi-line, Ctrl-C clears a line (or leaves at an empty prompt), Ctrl-D leaves."""

    def __init__(self, history_path: Path) -> None:
        from prompt_toolkit import PromptSession
        from prompt_toolkit.auto_suggest import AutoSuggestFromHistory
        from prompt_toolkit.history import FileHistory

        history_path.parent.mkdir(parents=True, exist_ok=True)
        # The history holds everything typed: private like the rest of GPUCTL_HOME.
        os.close(os.open(history_path, os.O_CREAT | os.O_APPEND | os.O_WRONLY, 0o600))
        os.chmod(history_path, 0o600)
        self._session: Any = PromptSession(
            history=FileHistory(str(history_path)), key_bindings=_key_bindings(),
            multiline=True, auto_suggest=AutoSuggestFromHistory(), prompt_continuation="… ",
            completer=_slash_completer(), complete_while_typing=True,
            # No blank rows kept free under the prompt for a menu of nine commands.
            reserve_space_for_menu=0,
        )

    def read(self, runner: asyncio.Runner) -> str | None:
        try:
            text = runner.run(self._session.prompt_async(PROMPT))
        except (EOFError, KeyboardInterrupt):
            return None
        return None if text is None else unwrap(text) if text.strip().startswith(TRIPLE) else text


def _key_bindings() -> Any:
    from prompt_toolkit.key_binding import KeyBindings

    kb = KeyBindings()

    @kb.add("enter")
    def _enter(event: Any) -> None:
        buf = event.current_buffer
        state = buf.complete_state
        if state is not None and state.current_completion is not None:
            # Enter picks the highlighted /command: runs it, or waits for its argument.
            buf.apply_completion(state.current_completion)
            if buf.text.strip() in commands.WITH_ARGUMENT:
                buf.insert_text(" ")
            else:
                buf.validate_and_handle()
        elif open_block(buf.text):
            buf.insert_text("\n")
        else:
            buf.validate_and_handle()

    @kb.add("escape", "enter")
    def _newline(event: Any) -> None:
        event.current_buffer.insert_text("\n")

    @kb.add("c-c")
    def _interrupt(event: Any) -> None:
        buf = event.current_buffer
        if buf.text:
            buf.reset()  # like a shell: Ctrl-C drops the line being typed
        else:
            event.app.exit(result=None)

    @kb.add("c-d")
    def _eof(event: Any) -> None:
        buf = event.current_buffer
        if buf.text:
            buf.delete()
        else:
            event.app.exit(result=None)

    return kb


def _slash_completer() -> Any:
    """Completes /commands at the start of the input; nothing else (prose needs no completion)."""
    from prompt_toolkit.completion import Completer, Completion

    class SlashCompleter(Completer):
        def get_completions(self, document: Any, complete_event: Any) -> Iterator[Completion]:
            text = document.text_before_cursor
            if not text.startswith("/") or " " in text:
                return
            for name in commands.NAMES:
                if ("/" + name).startswith(text):
                    yield Completion("/" + name, start_position=-len(text))

    return SlashCompleter()
