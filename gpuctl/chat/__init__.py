"""The chat experience behind `gpuctl chat`: conversation, REPL, streaming rendering, transcripts.

session.py   the conversation: turns, system prompt, provider choice, persistence, spend
commands.py  the slash commands (/help, /retry, /save, /cost, ...)
repl.py      one-shot, piped and interactive input; Ctrl-C stops an answer, not the session
render.py    streaming output for people (plain or Markdown by block) and for machines (NDJSON)
transcript.py  /save as Markdown or JSON, written atomically

Must not import `gpuctl.cli` (the CLI imports this, never the other way round); consoles and
the JSON writer are handed in.
"""

from __future__ import annotations
