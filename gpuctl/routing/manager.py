"""The backend manager (the original vLLM multi-provider package's `backend_manager`): wiring.

Owns: settings (read on first use), the state database, the slots and the `Router` over them,
`reload`/`aclose`, and the public API: the original package's `get_current_provider`,
`get_vllm_status` and `chat_completion`, plus `complete`, `stream_chat`, `status` and the few
helpers a chat needs. Everything it does is delegated: the policy to `routing.policy`,
answers to `routing.stream`, usage rows to `routing.ledger`, the report to `routing.status`.

Must not: hold routing rules itself, or name a provider.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from decimal import Decimal
from typing import Any

from gpuctl.config import Settings, load_settings
from gpuctl.errors import NoProviderError
from gpuctl.providers.base import NOT_GIVEN, ChatRequest, NotGiven, Usage, python_defaults
from gpuctl.providers.chat_api import parse_chat_request
from gpuctl.routing import stream as answers
from gpuctl.routing.ledger import Ledger
from gpuctl.routing.outcomes import RoutedResponse
from gpuctl.routing.policy import Router
from gpuctl.routing.registry import Slot, build_slots, nothing_configured, priority
from gpuctl.routing.status import StatusReport, build_report
from gpuctl.routing.stream import RoutedStream
from gpuctl.state import BreakerRecord, State, open_for


class BackendManager:
    """Routes chat requests to the best available provider. Cheap to create; close when done.

    `settings` are read on first use if not given. `slots` and `state` can be injected (tests,
    benchmarks); `clock` is wall time for the breaker and ledger, `timer` measures latency.
    """

    def __init__(
        self,
        settings: Settings | None = None,
        *,
        state: State | None = None,
        slots: Sequence[Slot] | None = None,
        clock: Callable[[], float] = time.time,
        timer: Callable[[], float] = time.perf_counter,
        record_usage: bool = True,
    ) -> None:
        self._settings = settings
        self._state = state
        self._own_state = state is None
        self._given_slots = list(slots) if slots is not None else None
        self._router: Router | None = None
        self.clock = clock
        self.timer = timer
        self.record_usage = record_usage
        self._settings_loaded = False

    # -------------------------------------------------------------- wiring

    @property
    def settings(self) -> Settings:
        if self._settings is None:
            self._settings = load_settings()
            self._settings_loaded = True  # ours to re-read on reload(); given settings are kept
        return self._settings

    @property
    def state(self) -> State:
        if self._state is None:
            self._state = open_for(self.settings, clock=self.clock)
        return self._state

    @property
    def router(self) -> Router:
        """The routing policy over this manager's slots (built on first use, again after reload)."""
        if self._router is None:
            settings, state = self.settings, self.state
            slots = self._given_slots if self._given_slots is not None else build_slots(settings, state, self.priority())
            self._router = Router(settings, state, slots, ledger=Ledger(settings, state, enabled=self.record_usage),
                                  clock=self.clock, timer=self.timer)
        return self._router

    def priority(self) -> list[str]:
        return priority(self.settings)

    def slots(self) -> list[Slot]:
        return self.router.slots

    async def reload(self) -> None:
        """Read settings and the ledger again (a long-running app calls this after
        `gpuctl deploy` or `gpuctl launch` changed what is available). Breakers are kept: they
        live in the state database."""
        await self._close_providers()
        self._router = None
        self._given_slots = None  # rebuilt from the settings, as a long-running app expects
        if self._settings_loaded:
            self._settings = None

    async def aclose(self) -> None:
        await self._close_providers()
        if self._own_state and self._state is not None:
            self._state.close()
            self._state = None
            self._router = None  # it holds the closed state

    async def _close_providers(self) -> None:
        for slot in self._router.slots if self._router is not None else []:
            if slot.provider is not None:
                await slot.provider.aclose()

    async def __aenter__(self) -> BackendManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -------------------------------------------------------------- the original package's API

    def breaker(self, name: str) -> BreakerRecord | None:
        """The breaker of provider `name` as it is set up now (its endpoint, key and model), or
        None for a provider not in this manager's slots."""
        slot = self.router.slot(name)
        return None if slot is None else self.router.breaker(slot)

    def get_current_provider(self) -> str | None:
        """The provider that would be tried first now (configured, breaker closed); no network."""
        return self.router.current()

    async def get_vllm_status(self, *, deep: bool = False, wake: bool = False) -> dict[str, Any]:
        """The original `{"status", "endpoint", "provider"}` plus every provider's row."""
        return (await self.status(deep=deep, wake=wake)).as_dict()

    async def chat_completion(
        self,
        messages: Iterable[Mapping[str, Any]],
        *,
        tools: list[Mapping[str, Any]] | None = None,
        tool_choice: str | Mapping[str, Any] | None = None,
        response_format: Mapping[str, Any] | None = None,
        temperature: float | NotGiven | None = NOT_GIVEN,
        max_tokens: int | NotGiven | None = NOT_GIVEN,
        stream: bool = False,
        provider: str | None = None,
        model: str | None = None,
        stop: Iterable[str] | str = (),
        **params: Any,
    ) -> Any:
        """The OpenAI request, routed: a complete answer (a `ChatResponse`: `.text`,
        `.provider`, `.usage` as always, plus `.message`, `.tool_calls` and `.to_openai()`),
        or with `stream=True` a `RoutedStream` to iterate. `params` are any other OpenAI (or
        vLLM) fields, passed on verbatim. The request is validated first (`RequestError`,
        naming the parameter). Left out, temperature is 0.7 and max_tokens 2048, as always,
        except beside `top_p` / `max_completion_tokens` (`providers.base.python_defaults`)."""
        extra = {k: v for k, v in (("tools", tools), ("tool_choice", tool_choice),
                                   ("response_format", response_format)) if v is not None}
        extra.update(params)
        temp, limit = python_defaults(temperature, max_tokens, extra)
        body: dict[str, Any] = {"messages": [m if isinstance(m, dict) else dict(m) for m in messages], **extra}
        for key, value in (("model", model), ("temperature", temp), ("max_tokens", limit)):
            if value is not None:
                body[key] = value
        if stop:
            body["stop"] = stop if isinstance(stop, str) else list(stop)
        request = parse_chat_request(body)
        if stream:
            return self.stream_chat(request, only=provider)
        return await self.complete(request, only=provider)

    # -------------------------------------------------------------- gpuctl's own

    async def complete(self, request: ChatRequest, *, only: str | None = None) -> RoutedResponse:
        return await answers.complete(self.router, request, only=only)

    def stream_chat(self, request: ChatRequest, *, only: str | None = None) -> RoutedStream:
        return RoutedStream(self.router, request, only=only)

    async def status(self, *, deep: bool = False, wake: bool = False) -> StatusReport:
        """Health of every provider, which one would answer now, and why (`routing.status`)."""
        return await build_report(self.router, deep=deep, wake=wake)

    def require_configured(self, only: str | None = None) -> None:
        """Fail now (exit 3, with what to set) if no provider — or not `only` — is configured."""
        slots = self.router.order(only)
        if only is not None and not slots[0].configured:
            raise NoProviderError(f"{only} is not configured", hint=slots[0].why_not)
        if not any(s.in_chain for s in slots):
            raise nothing_configured(self.settings, self.state, [s.name for s in slots])

    def likely_cold(self, name: str) -> bool:
        """Whether a request to `name` would probably meet a cold start (for what a UI says)."""
        slot = self.router.slot(name)
        return slot is not None and self.router.idle_past_window(slot)

    def estimate_cost(self, provider: str, model: str | None, usage: Usage, seconds: float) -> Decimal | None:
        """Estimated $ for one request: tokens × $/M or GPU-seconds × $/s by how `provider`
        bills; None when it bills otherwise (a Vast.ai box by lifetime: `gpuctl cost report`)."""
        slot = self.router.slot(provider)
        return None if slot is None else self.router.ledger.estimate_cost(slot, model, usage, seconds)

    def prefetch(self) -> None:
        """Import a configured provider's slow SDK (Anthropic's, ~1 s) in the background, so an
        interactive chat's first fallback answer does not pay for it. Nothing else is touched."""
        for slot in self.slots():
            if slot.configured and slot.prefetch and slot.prefetch not in sys.modules:
                import importlib
                import threading

                threading.Thread(target=importlib.import_module, args=(slot.prefetch,), name="gpuctl-prefetch",
                                 daemon=True).start()
