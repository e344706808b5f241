"""The chat conversation behind `gpuctl chat`, without any terminal.

session.py     the conversation: turns, system prompt, provider choice, persistence, spend
transcript.py  /save as Markdown or JSON, written atomically

Must not print, read input or import rich, prompt_toolkit or `gpuctl.cli`: the terminal side
(REPL, rendering, slash commands) is `gpuctl.cli.chat`; `gpuctl.ops.chat` opens a session.
"""

from __future__ import annotations
