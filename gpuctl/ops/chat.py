"""The chat verb below the terminal: the conversation `gpuctl chat` talks in, from settings.

Owns opening a `ChatSession` for resolved settings — the state (`gpuctl.state.open_for`), the
backend manager, a stored conversation to resume, the provider choice checked before anyone
types — and closing them after; and the list of stored conversations (`gpuctl chat --list`). Asking, retrying and spend are the session's
(`gpuctl.chat.session`); input, Ctrl-C and rendering are the CLI's (`gpuctl.cli.chat`).

Must not: print, read input or know about terminals.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from gpuctl.chat.session import ChatSession
from gpuctl.config import Settings
from gpuctl.state import open_for


@contextlib.contextmanager
def open_session(
    settings: Settings,
    runner: asyncio.Runner,
    *,
    system: str | None = None,
    provider: str | None = None,
    stream: bool = True,
    continue_last: bool = False,
    conversation: int | None = None,
) -> Iterator[ChatSession]:
    """A new or resumed conversation, ready to ask; its router and state are closed on exit.

    `runner` is the event loop the answers will run on: the router's connections belong to it,
    so they are closed on it too. `provider` is a name, "auto" or None (the priority order).
    Raises `UsageError` for a bad provider or conversation, `NoProviderError` when nothing
    that was asked for is configured.
    """
    from gpuctl.routing.manager import BackendManager

    state = open_for(settings)
    manager = BackendManager(settings, state=state)
    try:
        session = ChatSession.open(
            manager, state, settings, system=system, stream=stream,
            continue_last=continue_last, conversation=conversation,
        )
        if provider is not None:
            session.set_provider(None if provider == "auto" else provider)
        session.require_provider()
        yield session
    finally:
        try:
            runner.run(manager.aclose())
        finally:
            state.close()


def list_conversations(settings: Settings, *, limit: int | None = 20) -> dict[str, Any]:
    """The stored conversations, most recently active first (`limit` None: all), for
    `--conversation ID`: id, when, first line, who answered last, tokens used."""
    with open_for(settings) as state:
        rows, total = state.conversations(limit)

    def iso(ts: float) -> str:
        return datetime.fromtimestamp(ts, UTC).isoformat(timespec="seconds")

    return {"conversations": [{"id": r.id, "created_at": iso(r.created_at), "updated_at": iso(r.updated_at),
                               "first_line": r.title or "", "provider": r.provider, "messages": r.messages,
                               "tokens": r.tokens, "profile": r.profile} for r in rows],
            "total": total}
