"""Running a chat: one-shot, piped, or the interactive REPL — and what Ctrl-C means in each.

Which mode (the rule `gpuctl chat --help` documents):
  - a PROMPT argument or `-f FILE`: ask once (piped stdin, if any, goes before it) and exit;
  - no prompt and piped stdin: if any line is a slash command (/cost, /exit, ...), each line is
    REPL input; otherwise the whole of stdin is one prompt;
  - no prompt and a terminal: the REPL, with line editing and history when stdout is a terminal
    too (prompt_toolkit), else plain line input.

Ctrl-C: each answer runs in its own `asyncio.Runner.run`, whose SIGINT handler cancels just
that answer's task; the session records the partial answer and the REPL reads the next line.
Ctrl-C or Ctrl-D at an empty prompt ends the REPL (exit 0). In one-shot mode Ctrl-C ends the
command (cli/main turns KeyboardInterrupt into exit 130).

Must not: print directly (the UI renders) or run SQL/HTTP (session → state, router).
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import stat
import sys
from collections.abc import Awaitable, Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol, TextIO

from gpuctl.chat import commands
from gpuctl.chat.session import Answer, ChatSession
from gpuctl.errors import GpuctlError, UsageError

if TYPE_CHECKING:
    from gpuctl.chat.render import ChatUI
    from gpuctl.config import Settings

HISTORY_FILE = "chat_history"
PROMPT = "> "
TICK_S = 0.1  # spinner refresh while waiting for the first token
TRIPLE = '"""'


@dataclass(frozen=True)
class ChatOptions:
    """What `gpuctl chat` was asked to do (temperature and max tokens travel in settings)."""

    prompt: str | None = None
    file: Path | None = None
    system: str | None = None
    provider: str | None = None
    stream: bool = True
    continue_last: bool = False
    conversation: int | None = None


class LineSource(Protocol):
    def read(self, runner: asyncio.Runner) -> str | None:
        """The next input (possibly several lines), or None at the end (EOF, Ctrl-D, Ctrl-C)."""


def run_chat(options: ChatOptions, settings: Settings, ui: ChatUI, *, stdin: TextIO | None = None) -> None:
    """Run `gpuctl chat`. Raises the error tree (and KeyboardInterrupt for a stopped one-shot)."""
    try:
        _run(options, settings, ui, sys.stdin if stdin is None else stdin)
    except GpuctlError as exc:
        ui.error(exc, final=True)  # --json: the final {"type": "error"} line
        raise


def _run(options: ChatOptions, settings: Settings, ui: ChatUI, stdin: TextIO) -> None:
    prompt, source = _inputs(options, settings, ui, stdin)
    from gpuctl.config import ensure_home
    from gpuctl.routing.manager import BackendManager
    from gpuctl.state import open_state

    state = open_state(ensure_home(settings.home))
    manager = BackendManager(settings, state=state)
    runner = asyncio.Runner()
    try:
        session = ChatSession.open(
            manager, state, settings, system=options.system, stream=options.stream,
            continue_last=options.continue_last, conversation=options.conversation,
        )
        if options.provider is not None:
            session.set_provider(None if options.provider == "auto" else options.provider)
        session.require_provider()
        if options.continue_last and not session.resumed:
            ui.note("No earlier conversation: starting a new one.")
        if prompt is not None:
            _one_shot(session, ui, runner, prompt)
        else:
            assert source is not None
            _repl(session, ui, runner, source)
    finally:
        try:
            runner.run(manager.aclose())
        finally:
            runner.close()
            state.close()


# -------------------------------------------------------------- modes


def _one_shot(session: ChatSession, ui: ChatUI, runner: asyncio.Runner, prompt: str) -> None:
    try:
        answer = runner.run(_answer(session, ui, lambda on_text: session.ask(prompt, on_text)))
    except KeyboardInterrupt:
        ui.stopped(session.interrupted, final=True)
        raise
    ui.done(answer)


def _repl(session: ChatSession, ui: ChatUI, runner: asyncio.Runner, source: LineSource) -> None:
    if ui.interactive:
        session.manager.prefetch()  # while the person types their first question
        order = " → ".join(s.name for s in session.manager.slots() if s.configured) or "nothing configured"
        ui.note(f"gpuctl chat · answers from {session.provider or order} · /help for commands · Ctrl-D to exit")
        if session.resumed:
            ui.note(f"Resumed conversation {session.conversation_id} ({len(session.turns)} messages).")
    while True:
        try:
            line = source.read(runner)
        except KeyboardInterrupt:  # Ctrl-C at a plain prompt
            return
        if line is None:
            return
        text = line.strip()
        if not text:
            continue
        if text.startswith("//"):  # "//etc is..." asks "/etc is..."
            text = text[1:]
        elif commands.is_command(text):
            try:
                action = commands.handle(session, ui, text)
            except GpuctlError as exc:
                ui.error(exc, final=False)
                continue
            if action == "exit":
                return
            if action == "retry":
                _turn(session, ui, runner, session.retry)
            continue
        _turn(session, ui, runner, lambda on_text, q=text: session.ask(q, on_text))  # type: ignore[misc]


def _turn(session: ChatSession, ui: ChatUI, runner: asyncio.Runner,
          ask: Callable[[Callable[[str], None]], Awaitable[Answer]]) -> None:
    try:
        answer = runner.run(_answer(session, ui, ask))
        ui.done(answer)
    except KeyboardInterrupt:  # Ctrl-C stopped this answer only
        ui.stopped(session.interrupted, final=False)
    except GpuctlError as exc:  # a failed answer never ends the session either
        ui.error(exc, final=False)


async def _answer(session: ChatSession, ui: ChatUI,
                  ask: Callable[[Callable[[str], None]], Awaitable[Answer]]) -> Answer:
    # Read once, before the request: the answer it starts is itself "use" in the ledger.
    cold = session.manager.likely_cold("modal")
    ui.begin(session.trying, lambda: cold)
    ticker = asyncio.create_task(_tick(ui))
    try:
        return await ask(ui.text)
    finally:
        ticker.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await ticker
        ui.close()


async def _tick(ui: ChatUI) -> None:
    while True:
        await asyncio.sleep(TICK_S)
        ui.tick()


# -------------------------------------------------------------- input


def _inputs(options: ChatOptions, settings: Settings, ui: ChatUI, stdin: TextIO) -> tuple[str | None, LineSource | None]:
    """The one-shot prompt, or where REPL lines come from."""
    if options.prompt is not None or options.file is not None:
        parts = []
        if _piped_data(stdin):
            piped = stdin.read().strip("\n")
            if piped.strip():
                parts.append(piped)
        if options.file is not None:
            parts.append(_read_prompt_file(options.file))
        if options.prompt is not None:
            parts.append(options.prompt)
        prompt = "\n\n".join(p for p in parts if p.strip())
        if not prompt.strip():
            raise UsageError("the prompt is empty")
        return prompt, None
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
        return None, TerminalInput(settings.home / HISTORY_FILE)
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
