"""`gpuctl chat`: interactive, one-shot and piped chat over the routed providers.

This package is the chat's terminal side; the conversation itself is `gpuctl.chat.session`,
opened by `gpuctl.ops.chat`:

__init__.py  the command: parses flags, picks the UI, hands over to `repl.run_chat`
repl.py      one-shot and the REPL; Ctrl-C stops an answer, not the session
lines.py     where input comes from: prompt, pipe, plain terminal, prompt_toolkit editor
commands.py  the slash commands (/help, /retry, /save, /cost, ...)
ui.py        the two UIs (people: stdout + stderr; --json: NDJSON) and the stats/cost lines
render.py    an answer as it streams (plain, or Markdown by block) and the wait spinner
history.py   `--list`: the stored conversations, for `--conversation ID`

Only the command is imported for `gpuctl --help`; the rest loads when a chat starts.
"""

from __future__ import annotations

from pathlib import Path

import typer

from gpuctl.cli.context import app_context
from gpuctl.errors import GpuctlError, UsageError

# The settings chat's flags set, and the flag each is typed as (errors name the flag).
FLAGS = {"chat.temperature": "--temperature", "chat.max_tokens": "--max-tokens", "chat.markdown": "--markdown"}


def chat(
    ctx: typer.Context,
    prompt: str = typer.Argument(None, help="Ask once and exit (default: interactive)."),
    file: Path = typer.Option(None, "--file", "-f", help="Read the prompt from a file."),
    system: str = typer.Option(None, "--system", help="System prompt (default: the conversation's, else chat.system_prompt)."),
    provider: str = typer.Option(None, "--provider", help="Force a provider (modal, vastai, anthropic, endpoint) or auto."),
    temperature: float = typer.Option(None, "--temperature", help="Sampling temperature (default: chat.temperature)."),
    max_tokens: int = typer.Option(None, "--max-tokens", help="Maximum tokens in the answer (default: chat.max_tokens)."),
    no_stream: bool = typer.Option(False, "--no-stream", help="Wait for the whole answer."),
    markdown: bool = typer.Option(None, "--markdown/--plain", help="Render Markdown by block in a terminal (default: chat.markdown, off)."),
    continue_: bool = typer.Option(False, "--continue", "-c", help="Resume the last conversation."),
    conversation: int = typer.Option(None, "--conversation", metavar="ID", help="Resume conversation ID (see --list)."),
    json_schema: Path = typer.Option(None, "--json-schema", metavar="FILE",
                                     help="Ask for JSON answers matching the JSON Schema in FILE."),
    list_: bool = typer.Option(False, "--list", help="List the stored conversations (id, date, first line, provider, tokens)."),
    limit: int = typer.Option(20, "--limit", metavar="N", help="With --list: how many, most recent first (0: all)."),
) -> None:
    """Chat with the best available provider: a REPL, or one answer and exit.

    Example: gpuctl chat "What is vLLM?"

    \b
    Input:
      gpuctl chat                       interactive (history, /help for the slash commands)
      gpuctl chat "question"            ask once; piped stdin, if any, is put before it
      gpuctl chat -f prompt.txt         ask once, the prompt from a file
      echo "question" | gpuctl chat     piped stdin is ONE prompt, unless its last line is /exit
                                        (or /quit): then each line is REPL input
      gpuctl chat --list                the stored conversations; resume one with --conversation ID
    In the REPL: Esc-Enter (or text between \"\"\" lines) for multi-line input; Ctrl-C stops an
    answer (the partial answer is kept, marked partial); Ctrl-C at an empty prompt or Ctrl-D exits.
    --json-schema FILE asks every answer to be JSON matching that schema (response_format). A tool
    call the model makes is shown (name and arguments, dim) after the answer's text.
    Answers go to stdout (plain text when it is not a terminal); the stats line (provider, tokens,
    speed, time to first token, estimated cost, fallback) goes to stderr. --json prints NDJSON:
    {"type": "chunk"} per chunk, then {"type": "summary"} (or {"type": "error"}).
    """
    from gpuctl.cli.chat.repl import ChatOptions, run_chat
    from gpuctl.cli.chat.ui import make_ui

    actx = app_context(ctx)
    if list_:
        from gpuctl.cli.chat.history import show_history

        if prompt is not None or file is not None or continue_ or conversation is not None:
            raise UsageError("--list lists conversations: it takes no prompt, --file, --continue or --conversation",
                             hint="gpuctl chat --list, then gpuctl chat --conversation ID")
        show_history(actx, limit=limit)
        return
    ui = make_ui(actx.out)
    try:
        settings = actx.settings({"chat.temperature": temperature, "chat.max_tokens": max_tokens,
                                  "chat.markdown": markdown}, FLAGS)
    except GpuctlError as exc:
        ui.error(exc, final=True)  # --json: even this ends with a {"type": "error"} line
        raise
    ui.markdown = bool(settings["chat.markdown"])
    options = ChatOptions(
        prompt=prompt, file=file, system=system, provider=provider, stream=not no_stream,
        continue_last=continue_, conversation=conversation, json_schema=json_schema,
    )
    run_chat(options, settings, ui)
