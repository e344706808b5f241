"""The chat verb below the terminal: the conversation `gpuctl chat` talks in, from settings.

Owns opening a `ChatSession` for resolved settings — the state (`gpuctl.state.open_for`), the
backend manager, a stored conversation to resume, the provider choice checked before anyone
types — and closing them after. Asking, retrying and spend are the session's
(`gpuctl.chat.session`); input, Ctrl-C and rendering are the CLI's (`gpuctl.cli.chat`).

Must not: print, read input or know about terminals.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Iterator

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
