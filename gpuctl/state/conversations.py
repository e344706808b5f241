"""Chat conversations and their messages: the part of `State` that `gpuctl chat` writes.

A chat goes on while a shared state is unreachable: its conversation is then not saved (id 0,
said once on stderr), while its usage rows wait in the local spool like any others.

Must not: print (a warning goes to the `gpuctl.state` logger), or know about terminals.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from gpuctl.state.errors import StateUnavailableError
from gpuctl.state.memory import Db
from gpuctl.state.rows import ConversationRow, ConversationSummary, MessageRow

logger = logging.getLogger("gpuctl.state")


class ConversationStore:
    """Mixed into `State`, which sets `_db` and `clock` (and `_writer` for a shared state)."""

    _db: Db
    clock: Callable[[], float]
    _writer: Any = None
    _warned_unsaved = False


    def create_conversation(self, *, title: str | None = None, profile: str | None = None,
                            system_prompt: str | None = None) -> int:
        now = self.clock()
        with self._unsaved_if_down(), self._db.transaction():
            return self._db.insert(
                "INSERT INTO conversations (created_at, updated_at, title, profile, system_prompt)"
                " VALUES (?, ?, ?, ?, ?)", (now, now, title, profile, system_prompt))
        return 0

    @contextlib.contextmanager
    def _unsaved_if_down(self) -> Iterator[None]:
        try:
            yield
        except StateUnavailableError as exc:
            if self._writer is None:
                raise
            if not self._warned_unsaved:
                self._warned_unsaved = True
                logger.warning("%s: this conversation is not saved", exc.message)

    def get_conversation(self, conversation_id: int) -> ConversationRow | None:
        if not 0 < conversation_id < 2**63:  # integers are 64-bit in both backends: no such row
            return None
        rows = self._db.query("SELECT * FROM conversations WHERE id = ?", (conversation_id,))
        return ConversationRow(**rows[0]) if rows else None

    def last_conversation(self) -> ConversationRow | None:
        rows = self._db.query("SELECT * FROM conversations ORDER BY updated_at DESC, id DESC LIMIT 1")
        return ConversationRow(**rows[0]) if rows else None

    def update_conversation(self, conversation_id: int, *, title: str | None = None,
                            system_prompt: str | None = None) -> None:
        with self._db.transaction():
            if title is not None:
                self._db.execute("UPDATE conversations SET title = ? WHERE id = ?", (title, conversation_id))
            if system_prompt is not None:
                self._db.execute("UPDATE conversations SET system_prompt = ? WHERE id = ?",
                                 (system_prompt, conversation_id))

    def add_message(self, conversation_id: int, role: str, content: str, *, partial: bool = False,
                    provider: str | None = None, model: str | None = None,
                    tokens: tuple[int, int] | None = None) -> int:
        """`tokens`: an answer's (prompt, completion) usage, when the provider reported it."""
        now = self.clock()
        if not conversation_id:  # a conversation that could not be saved (see create_conversation)
            return 0
        prompt, completion = tokens if tokens is not None else (None, None)
        with self._unsaved_if_down(), self._db.transaction():
            message_id = self._db.insert(
                "INSERT INTO messages (conversation_id, ts, role, content, partial, provider, model, prompt_tokens,"
                " completion_tokens) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (conversation_id, now, role, content, 1 if partial else 0, provider, model, prompt, completion),
            )
            self._db.execute("UPDATE conversations SET updated_at = ? WHERE id = ?", (now, conversation_id))
            return message_id
        return 0

    def messages(self, conversation_id: int) -> list[MessageRow]:
        out = []
        for data in self._db.query("SELECT * FROM messages WHERE conversation_id = ? ORDER BY id", (conversation_id,)):
            data["partial"] = bool(data["partial"])
            out.append(MessageRow(**data))
        return out

    def conversations(self, limit: int | None = None) -> tuple[list[ConversationSummary], int]:
        """The stored conversations, most recently active first (at most `limit`), and how many
        there are in all."""
        total = int(self._db.query("SELECT COUNT(*) AS n FROM conversations")[0]["n"])
        rows = self._db.query(
            "SELECT c.id, c.created_at, c.updated_at, c.title, c.profile, COUNT(m.id) AS messages, "
            "COALESCE(SUM(COALESCE(m.prompt_tokens, 0) + COALESCE(m.completion_tokens, 0)), 0) AS tokens, "
            "(SELECT l.provider FROM messages l WHERE l.conversation_id = c.id AND l.provider IS NOT NULL "
            " ORDER BY l.id DESC LIMIT 1) AS provider "
            "FROM conversations c LEFT JOIN messages m ON m.conversation_id = c.id "
            "GROUP BY c.id, c.created_at, c.updated_at, c.title, c.profile "
            "ORDER BY c.updated_at DESC, c.id DESC" + ("" if limit is None else " LIMIT ?"),
            () if limit is None else (limit,))
        return [ConversationSummary(**{**r, "messages": int(r["messages"]), "tokens": int(r["tokens"])})
                for r in rows], total

    def clear_messages(self, conversation_id: int) -> None:
        with self._db.transaction():
            self._db.execute("DELETE FROM messages WHERE conversation_id = ?", (conversation_id,))

    def delete_messages(self, conversation_id: int, message_ids: Sequence[int]) -> None:
        """Remove some messages of one conversation (chat's /retry replaces the last exchange)."""
        with self._db.transaction():
            self._db.executemany("DELETE FROM messages WHERE conversation_id = ? AND id = ?",
                                 [(conversation_id, mid) for mid in message_ids])
