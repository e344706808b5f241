"""Running a chat: one-shot or the REPL — and what Ctrl-C means in each.

Which input makes which mode is `lines.inputs`; the conversation itself (state, router,
persistence) is `gpuctl.ops.chat.open_session` and `gpuctl.chat.session.ChatSession`.

Ctrl-C: each answer runs in its own `asyncio.Runner.run`, whose SIGINT handler cancels just
that answer's task; the session records the partial answer and the REPL reads the next line.
Ctrl-C or Ctrl-D at an empty prompt ends the REPL (exit 0). In one-shot mode Ctrl-C ends the
command (cli/group.py turns KeyboardInterrupt into exit 130).

Must not: print directly (the UI renders) or run SQL/HTTP (session → state, router).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import sys
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, TextIO

from gpuctl.cli.chat import commands
from gpuctl.cli.chat.lines import LineSource, inputs
from gpuctl.errors import GpuctlError, UsageError

if TYPE_CHECKING:
    from gpuctl.chat.session import Answer, ChatSession
    from gpuctl.cli.chat.ui import ChatUI
    from gpuctl.config import Settings

TICK_S = 0.1  # spinner refresh while waiting for the first token


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
    json_schema: Path | None = None  # --json-schema FILE


def response_format(path: Path) -> dict[str, Any]:
    """OpenAI's response_format asking for JSON that matches the JSON Schema in `path`."""
    try:
        schema = json.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise UsageError(f"--json-schema: cannot read {path}: {exc.strerror or exc}") from None
    except ValueError as exc:
        raise UsageError(f"--json-schema: {path} is not JSON ({exc})",
                         hint="give a JSON Schema file, e.g. {\"type\": \"object\", \"properties\": {...}}") from None
    if not isinstance(schema, dict):
        raise UsageError(f"--json-schema: {path} must hold a JSON Schema object")
    name = re.sub(r"[^A-Za-z0-9_-]", "_", str(schema.get("title") or path.stem))[:64] or "answer"
    return {"type": "json_schema", "json_schema": {"name": name, "schema": schema}}


def run_chat(options: ChatOptions, settings: Settings, ui: ChatUI, *, stdin: TextIO | None = None) -> None:
    """Run `gpuctl chat`. Raises the error tree (and KeyboardInterrupt for a stopped one-shot)."""
    try:
        _run(options, settings, ui, sys.stdin if stdin is None else stdin)
    except GpuctlError as exc:
        ui.error(exc, final=True)  # --json: the final {"type": "error"} line
        raise


def _run(options: ChatOptions, settings: Settings, ui: ChatUI, stdin: TextIO) -> None:
    from gpuctl.ops.chat import open_session

    wanted = response_format(options.json_schema) if options.json_schema is not None else None
    prompt, source = inputs(options.prompt, options.file, settings.home, ui, stdin)
    with asyncio.Runner() as runner, open_session(
        settings, runner, system=options.system, provider=options.provider, stream=options.stream,
        continue_last=options.continue_last, conversation=options.conversation,
    ) as session:
        session.response_format = wanted
        if options.continue_last and not session.resumed:
            ui.note("No earlier conversation: starting a new one.")
        if prompt is not None:
            _one_shot(session, ui, runner, prompt)
        else:
            assert source is not None
            _repl(session, ui, runner, source)


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
        session.prefetch()  # while the person types their first question
        order = " → ".join(session.order()) or "nothing configured"
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
    cold = {name for name in session.order() if session.likely_cold(name)}
    ui.begin(session.trying, cold.__contains__)
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
