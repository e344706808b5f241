"""A chat conversation: its turns, system prompt, provider choice, persistence and spend.

Owns: turning a user's message into a routed request that carries the earlier turns, recording
each exchange in the state database — complete, or marked partial when the user stopped it or
the stream broke — /retry, /reset, /system, /provider, and the per-provider tally /cost shows.

Must not: print, read input or know about terminals (`gpuctl.cli.chat` does), talk HTTP (the
router does) or run SQL (state.py does). `gpuctl.ops.chat.open_session` opens one from settings.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gpuctl.costs.money import money_str
from gpuctl.errors import StreamBrokenError, UsageError
from gpuctl.providers.base import EMPTY, ChatRequest, Message, ToolCall, Usage

if TYPE_CHECKING:
    from gpuctl.config import Settings
    from gpuctl.routing.manager import BackendManager, RoutedStream
    from gpuctl.routing.outcomes import Fallback
    from gpuctl.state import State

TITLE_CHARS = 60


@dataclass(frozen=True)
class Turn:
    """One stored message of the conversation (never the system prompt)."""

    role: str  # user | assistant
    content: str
    partial: bool = False
    provider: str | None = None
    model: str | None = None
    id: int | None = None  # row id in the messages table


@dataclass(frozen=True)
class Answer:
    """What one question got: the text and how it was made."""

    text: str
    provider: str | None
    model: str | None
    usage: Usage | None
    cost: Decimal | None
    fallback: Fallback | None = None  # typed: why earlier providers did not answer
    ttft_s: float | None = None
    latency_s: float | None = None
    finish_reason: str | None = None
    partial: bool = False  # stopped by the user or broken off
    conversation_id: int | None = None
    tool_calls: tuple[ToolCall, ...] = ()  # calls the model asked for (shown, not run)

    @property
    def fallback_reason(self) -> str | None:
        """The fallback as the ledger and --json show it ('modal: waking up (…)')."""
        return None if self.fallback is None else self.fallback.text

    @property
    def tokens_per_s(self) -> float | None:
        """Generation speed: output tokens over the time after the first token."""
        if self.usage is None or not self.usage.completion_tokens or not self.latency_s:
            return None
        span = self.latency_s - (self.ttft_s or 0.0)
        if span <= 0.05:  # one burst: the whole time is the honest denominator
            span = self.latency_s
        return self.usage.completion_tokens / span

    def summary(self) -> dict[str, Any]:
        """The final NDJSON object of `gpuctl chat --json`."""
        return {
            "type": "summary",
            "text": self.text,
            "provider": self.provider,
            "model": self.model,
            "usage": (self.usage or Usage()).as_dict(),
            "cost": money_str(self.cost),  # the one --json money formatter: never "3E-7", never 28 digits
            "fallback_reason": self.fallback_reason,
            "conversation_id": self.conversation_id,
            "ttft_s": _round(self.ttft_s),
            "latency_s": _round(self.latency_s),
            "finish_reason": self.finish_reason,
            "partial": self.partial,
            "tool_calls": [c.as_dict() for c in self.tool_calls],
        }


def _round(value: float | None) -> float | None:
    return None if value is None else round(value, 4)


@dataclass
class Spend:
    """One provider's share of this session's answers."""

    answers: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: Decimal = Decimal(0)
    unpriced: int = 0  # answers without an estimate (e.g. Vast.ai bills by instance lifetime)

    def add(self, answer: Answer) -> None:
        self.answers += 1
        if answer.usage is not None:
            self.prompt_tokens += answer.usage.prompt_tokens
            self.completion_tokens += answer.usage.completion_tokens
        if answer.cost is None:
            self.unpriced += 1
        else:
            self.cost += answer.cost


@dataclass
class ChatSession:
    """The conversation in progress. `ask`/`retry` are async; everything else is plain."""

    manager: BackendManager
    state: State
    system_prompt: str
    provider: str | None = None  # None: the router's priority order
    temperature: float | None = 0.7
    max_tokens: int = 2048
    stream: bool = True
    conversation_id: int | None = None  # created with the first exchange
    turns: list[Turn] = field(default_factory=list)
    profile: str | None = None
    resumed: bool = False
    spend: dict[str, Spend] = field(default_factory=dict)
    interrupted: Answer | None = None  # the partial answer of the last stopped question
    # OpenAI's response_format for every question (`gpuctl chat --json-schema FILE`), or None.
    response_format: dict[str, Any] | None = None
    # A question that got no answer yet (what /retry re-asks), and the stream in flight.
    _pending: str | None = field(default=None, init=False, repr=False)
    _stream: RoutedStream | None = field(default=None, init=False, repr=False)

    @classmethod
    def open(
        cls,
        manager: BackendManager,
        state: State,
        settings: Settings,
        *,
        system: str | None = None,
        provider: str | None = None,
        stream: bool = True,
        continue_last: bool = False,
        conversation: int | None = None,
    ) -> ChatSession:
        """A new conversation, or a stored one (`--continue`, `--conversation ID`).

        The system prompt is `system` if given, else the stored conversation's, else
        `chat.system_prompt`; temperature and max tokens come from settings (flags included).
        """
        if continue_last and conversation is not None:
            raise UsageError("use --continue or --conversation, not both")
        row = None
        if conversation is not None:
            row = state.get_conversation(conversation)
            if row is None:
                raise UsageError(f"no conversation {conversation} in this gpuctl home",
                                 hint="`gpuctl chat --continue` resumes the last one")
        elif continue_last:
            row = state.last_conversation()
        session = cls(
            manager, state,
            system_prompt=settings["chat.system_prompt"] if system is None else system,
            provider=provider, temperature=settings["chat.temperature"],
            max_tokens=settings["chat.max_tokens"], stream=stream, profile=settings.profile,
        )
        if row is not None:
            session.conversation_id = row.id
            session.resumed = True
            session.turns = [Turn(m.role, m.content, m.partial, m.provider, m.model, m.id)
                             for m in state.messages(row.id) if m.role in ("user", "assistant")]
            if system is None and row.system_prompt is not None:
                session.system_prompt = row.system_prompt
            elif system is not None and system != row.system_prompt:
                state.update_conversation(row.id, system_prompt=system)
        return session

    # -------------------------------------------------------------- asking

    def request(self, question: str) -> ChatRequest:
        messages = [Message("system", self.system_prompt)] if self.system_prompt else []
        messages += [Message(t.role, t.content) for t in self.turns]
        messages.append(Message("user", question))
        params = {"response_format": self.response_format} if self.response_format else EMPTY
        return ChatRequest(tuple(messages), temperature=self.temperature, max_tokens=self.max_tokens, params=params)

    def require_provider(self) -> None:
        """Fail early, before anyone types a question, when nothing at all can answer."""
        self.manager.require_configured(self.provider)

    async def ask(self, question: str, on_text: Callable[[str], None]) -> Answer:
        """Ask `question` with the earlier turns; `on_text` gets each piece as it arrives.

        Cancelled (Ctrl-C) after some text: the partial answer is stored, marked partial, kept
        in `interrupted`, and CancelledError goes on up. A broken stream stores the partial
        answer too and raises StreamBrokenError. Failing before any text stores nothing; the
        question waits for /retry.
        """
        self._pending = question
        self.interrupted = None
        request = self.request(question)
        if not self.stream:
            response = await self.manager.complete(request, only=self.provider)
            on_text(response.text)
            return self._record(question, response.text, response.provider, response.model, response.usage,
                                fallback=response.fallback, ttft=response.ttft_s, latency=response.latency_s,
                                finish=response.finish_reason, partial=False, tool_calls=response.tool_calls)
        stream = self._stream = self.manager.stream_chat(request, only=self.provider)
        try:
            async for chunk in stream:
                if chunk.text:
                    on_text(chunk.text)
        except StreamBrokenError as exc:
            self._record_stream(question, stream, exc.partial_text or stream.text, partial=True)
            raise
        except asyncio.CancelledError:
            if stream.text:
                self.interrupted = self._record_stream(question, stream, stream.text, partial=True)
            raise
        finally:
            self._stream = None
        return self._record_stream(question, stream, stream.text, partial=not stream.complete)

    async def retry(self, on_text: Callable[[str], None]) -> Answer:
        """Ask the last question again; its earlier answer (if any) is replaced."""
        question = self._pending
        if question is None:
            last = next((i for i in range(len(self.turns) - 1, -1, -1) if self.turns[i].role == "user"), None)
            if last is None:
                raise UsageError("nothing to retry yet: ask a question first")
            question = self.turns[last].content
            removed = self.turns[last:]
            if self.conversation_id is not None:
                self.state.delete_messages(self.conversation_id, [t.id for t in removed if t.id is not None])
            del self.turns[last:]
        return await self.ask(question, on_text)

    def prefetch(self) -> None:
        """Warm what a first fallback answer would need, while a person types (no network)."""
        self.manager.prefetch()

    def order(self) -> list[str]:
        """The configured providers, in the order `auto` tries them."""
        return [s.name for s in self.manager.slots() if s.configured]

    def likely_cold(self, name: str) -> bool:
        """Whether asking `name` now would probably wait for a cold start (for the spinner's words)."""
        return self.manager.likely_cold(name)

    def trying(self) -> str | None:
        """The provider being waited on now (for the spinner): best effort, no network."""
        if self.provider is not None:
            return self.provider
        stream = self._stream
        if stream is None:
            return self.manager.get_current_provider()
        return stream.provider or stream.trying

    def _record_stream(self, question: str, stream: RoutedStream, text: str, *, partial: bool) -> Answer:
        return self._record(question, text, stream.provider, stream.model, stream.usage,
                            fallback=stream.fallback, ttft=stream.ttft_s, latency=stream.latency_s,
                            finish=stream.finish_reason, partial=partial, tool_calls=stream.tool_calls)

    def _record(self, question: str, text: str, provider: str | None, model: str | None, usage: Usage | None, *,
                fallback: Fallback | None, ttft: float | None, latency: float | None, finish: str | None,
                partial: bool, tool_calls: tuple[ToolCall, ...] = ()) -> Answer:
        conv = self._ensure_conversation(question)
        q_id = self.state.add_message(conv, "user", question)
        tokens = None if usage is None or not usage.total_tokens else (usage.prompt_tokens, usage.completion_tokens)
        a_id = self.state.add_message(conv, "assistant", text, partial=partial, provider=provider, model=model,
                                      tokens=tokens)
        self.turns += [Turn("user", question, id=q_id), Turn("assistant", text, partial, provider, model, a_id)]
        self._pending = None
        cost = None
        if provider:
            cost = self.manager.estimate_cost(provider, model, usage or Usage(), latency or 0.0)
        answer = Answer(text, provider, model, usage, cost, fallback, ttft, latency, finish, partial, conv, tool_calls)
        if provider:
            self.spend.setdefault(provider, Spend()).add(answer)
        return answer

    def _ensure_conversation(self, question: str) -> int:
        if self.conversation_id is None:
            # The first line of the first question: what `gpuctl chat --list` shows to pick it by.
            first = next((line for line in question.splitlines() if line.strip()), "")
            title = " ".join(first.split())[:TITLE_CHARS]
            self.conversation_id = self.state.create_conversation(
                title=title, profile=self.profile, system_prompt=self.system_prompt)
        return self.conversation_id

    # -------------------------------------------------------------- slash-command state

    def reset(self) -> None:
        """Forget the turns and start a new conversation (the old one stays stored)."""
        self.turns = []
        self.conversation_id = None
        self.resumed = False
        self._pending = None
        self.interrupted = None

    def set_system(self, text: str) -> None:
        self.system_prompt = text
        if self.conversation_id is not None:
            self.state.update_conversation(self.conversation_id, system_prompt=text)

    def set_provider(self, name: str | None) -> None:
        if name is not None:
            from gpuctl.config import PROVIDERS

            if name not in PROVIDERS:
                raise UsageError(f"unknown provider {name!r}", hint="providers: " + ", ".join(PROVIDERS) + ", or auto")
        self.provider = name

    def total_spend(self) -> Spend:
        total = Spend()
        for part in self.spend.values():
            total.answers += part.answers
            total.prompt_tokens += part.prompt_tokens
            total.completion_tokens += part.completion_tokens
            total.cost += part.cost
            total.unpriced += part.unpriced
        return total
