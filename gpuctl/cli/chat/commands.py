"""The chat's slash commands: /help /reset /system /provider /retry /save /cost /exit.

Owns parsing a slash line and applying it to the session. Commands that ask a question
(/retry) or end the REPL (/exit) are returned to the REPL as an action, since only the REPL runs
answers. An unknown command gets a one-line hint; nothing here ends the session on an error.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import TYPE_CHECKING

from gpuctl.chat import transcript
from gpuctl.cli.chat.ui import cost_line
from gpuctl.costs.money import money_str
from gpuctl.errors import UsageError

if TYPE_CHECKING:
    from gpuctl.chat.session import ChatSession
    from gpuctl.cli.chat.ui import ChatUI

HELP = (
    ("/help", "this list"),
    ("/reset", "start a new conversation (the old one stays stored)"),
    ("/system TEXT", "set the system prompt (no TEXT: show it)"),
    ("/provider NAME|auto", "answer from one provider, or auto (the priority order)"),
    ("/retry", "ask the last question again, replacing its answer"),
    ("/save FILE", "save the transcript: FILE.md (Markdown) or FILE.json (never over a file)"),
    ("/save! FILE", "save it, replacing FILE if it exists"),
    ("/cost", "this session's estimated spend, per provider"),
    ("/exit", "leave (also /quit, Ctrl-D, or Ctrl-C at an empty prompt)"),
)
NAMES = ("help", "reset", "system", "provider", "retry", "save", "cost", "exit", "quit")
WITH_ARGUMENT = frozenset({"/system", "/provider", "/save", "/save!"})
# A line that is one of our commands (used to tell piped REPL input from a piped prompt).
COMMAND_LINE = re.compile(r"^/(" + "|".join(NAMES) + r")!?(\s|$)")
INPUT_HELP = ('Multi-line: Esc-Enter for a new line, or wrap the text in """ lines. '
              "A line starting with // is sent as a question starting with /.")


def is_command(line: str) -> bool:
    return line.startswith("/")


def handle(session: ChatSession, ui: ChatUI, line: str) -> str | None:
    """Apply one slash line. Returns "exit" or "retry" for the REPL to act on, else None."""
    name, _, arg = line[1:].strip().partition(" ")
    name, arg = name.lower(), arg.strip()
    if name in ("exit", "quit"):
        return "exit"
    if name == "retry":
        return "retry"
    if name == "help":
        width = max(len(cmd) for cmd, _ in HELP)
        ui.show("\n".join(f"{cmd.ljust(width)}  {what}" for cmd, what in HELP) + "\n" + INPUT_HELP)
    elif name == "reset":
        session.reset()
        ui.note("New conversation started (the previous one stays stored).")
    elif name == "system":
        if arg:
            session.set_system(arg)
            ui.note("System prompt set.")
        else:
            ui.show(f"System prompt: {session.system_prompt or '(none)'}", {"system_prompt": session.system_prompt})
    elif name == "provider":
        if not arg:
            ui.show(f"Provider: {session.provider or 'auto'}", {"provider": session.provider})
        else:
            session.set_provider(None if arg.lower() == "auto" else arg.lower())
            ui.note(f"Answers now come from {session.provider or 'the priority order (auto)'}.")
    elif name in ("save", "save!"):
        if not arg:
            raise UsageError(f"/{name} needs a file name", hint=f"e.g. /{name} chat.md or /{name} chat.json")
        path = transcript.save(Path(arg), session.turns, system_prompt=session.system_prompt,
                               conversation_id=session.conversation_id, replace=name == "save!")
        ui.note(f"Saved {len(session.turns)} messages to {path}.")
    elif name == "cost":
        total = session.total_spend()
        ui.show(cost_line(session.spend, total), {
            "type": "cost", "cost": money_str(total.cost), "answers": total.answers, "unpriced": total.unpriced,
            "providers": {k: {"answers": v.answers, "prompt_tokens": v.prompt_tokens,
                              "completion_tokens": v.completion_tokens, "cost": money_str(v.cost)}
                          for k, v in session.spend.items()},
        })
    else:
        ui.note(f"Unknown command /{name}. Type /help for the list.")
    return None
