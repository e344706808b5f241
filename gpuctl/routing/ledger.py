"""The usage ledger: one row per answer (or failure, or stopped answer) and its estimated price.

Owns: writing `UsageRecord`s to the state, the per-answer events (the same
`<prefix>_chat_completion`, `…_failed` and `…_stopped` for every provider, with the same fields:
tokens marked `estimated` when the server reported none, as the row's `tokens_estimated`; and
`routing_fallback` when a later provider answered) and the request counter, and the price of
one request from the slot's `Billing`: tokens × $/M or the request's GPU-seconds × $/s, both
computed by `gpuctl.costs` (the one place for money math).

Also `CLIENT_KEY`: who asked, for the row's `key_name`. `gpuctl serve` sets it per request to
the name of the client's key (a context variable: it follows the request's task through every
await and into its stream, and nothing between the gateway and the ledger has to carry it).
A `Ledger.sink` takes finished rows (and their events) instead of writing them in the caller's
thread (the gateway's writer thread); `write` is what storing one row means, either way.

Must not: decide anything about routing, reimplement a price formula, or let pricing break an
answer (a row without a cost is better than no answer).
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from contextvars import ContextVar
from decimal import Decimal
from typing import Any

from gpuctl.config import Settings
from gpuctl.events import log_event
from gpuctl.providers.base import ChatRequest, ChatResponse, Usage
from gpuctl.routing.outcomes import STOPPED, Fallback
from gpuctl.routing.registry import Billing, Slot
from gpuctl.state import State, UsageRecord

logger = logging.getLogger("gpuctl.router")

# The name (never the key) of the client key the current request came with; None outside
# `gpuctl serve` or without client keys.
CLIENT_KEY: ContextVar[str | None] = ContextVar("gpuctl_client_key", default=None)

# The events one row makes: (name, fields); the `<prefix>_chat_completion` of an answer also
# gets the request counter when the row is written.
Events = tuple[tuple[str, dict[str, Any]], ...]


class Ledger:
    """Writes usage rows for one manager. With `enabled=False` nothing is written (benchmarks)."""

    def __init__(self, settings: Settings, state: State, *, enabled: bool = True) -> None:
        self.settings = settings
        self.state = state
        self.enabled = enabled
        self._prices: Any = None  # the catalog, loaded on the first priced row
        # Where finished rows go instead of this thread's state (`write` is the default): the
        # gateway hands them to a writer thread, so no request waits on the database.
        self.sink: Callable[[UsageRecord, Events], None] | None = None

    def record(self, slot: Slot, request: ChatRequest, *, latency: float, started_at: float,
               response: ChatResponse | None = None, error: str | None = None, fallback: Fallback | None = None,
               usage: Usage | None = None, model: str | None = None, ttft: float | None = None) -> None:
        """One row: `started_at` is wall time (replays of real traffic need it), `latency` the
        request's own seconds; `error` None for an answer, `STOPPED` for an interrupted one."""
        if not self.enabled:
            return
        usage = usage or (response.usage if response else Usage())
        model = model or (response.model if response else request.model)
        # An answer stopped mid-way still used the GPU (and tokens): price it too.
        cost = self.estimate_cost(slot, model, usage, latency) if error in (None, STOPPED) else None
        row = UsageRecord(
            ts=started_at, provider=slot.name, model=model,
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            latency_s=latency, ttft_s=ttft if ttft is not None else (response.ttft_s if response else None),
            cost=None if cost is None else str(cost), ok=error is None, error=error,
            fallback_reason=None if fallback is None else fallback.text, endpoint=slot.endpoint,
            profile=self.settings.profile, tokens_estimated=usage.estimated, key_name=CLIENT_KEY.get(),
        )
        prefix = slot.event_prefix or slot.name
        fields = {"provider": slot.name, "model": model, "endpoint": slot.endpoint, "tokens": usage.total_tokens,
                  "prompt_tokens": usage.prompt_tokens, "completion_tokens": usage.completion_tokens,
                  # the server sent no usage: the tokens were counted from the text (as the row says)
                  "estimated": usage.estimated,
                  "latency_s": round(latency, 4), "cost": None if cost is None else str(cost)}
        events: Events
        if error is None:
            events = ((f"{prefix}_chat_completion", {**fields, "fallback": None if fallback is None else fallback.text}),)
            if fallback is not None:
                events += (("routing_fallback", {"provider": slot.name, "reason": fallback.text,
                                                 "passed_over": [a.provider for a in fallback.attempts]}),)
        elif error == STOPPED:
            events = ((f"{prefix}_chat_completion_stopped", fields),)
        else:
            events = ((f"{prefix}_chat_completion_failed", {**fields, "error": error}),)
        if self.sink is not None:
            self.sink(row, events)
        else:
            write(self.state, row, events)

    def estimate_cost(self, slot: Slot, model: str | None, usage: Usage, seconds: float) -> Decimal | None:
        """Estimated $ for one request, or None when the slot does not bill per request (or the
        catalog has no price for it)."""
        if slot.billing is Billing.ELSEWHERE:
            return None
        try:
            from gpuctl import costs

            if self._prices is None:
                self._prices = costs.load_catalog(overrides=self.settings.extra.get("prices") or None)
            if slot.billing is Billing.TOKENS:
                if not model:
                    return None
                return costs.token_cost(self._prices.token_price(model), usage.prompt_tokens, usage.completion_tokens)
            # GPU seconds: a request's share is its own duration (a lower bound: the cold start
            # and the scaledown tail are priced by `gpuctl cost report`).
            per_second = self._prices.modal_price(slot.gpu).dollars_per_second
            return costs.modal_cost(per_second, costs.exact_seconds(seconds))
        except Exception:  # pricing must never break an answer; the row just lacks a cost
            logger.debug("cost estimate failed", exc_info=True)
            return None


def write(state: State, row: UsageRecord, events: Events) -> None:
    """Store one row, count an answer, and log its events."""
    state.record_usage(row)
    total = state.bump_metric(row.provider, "total_requests") if row.ok else None
    for name, fields in events:
        if total is not None and name.endswith("_chat_completion"):
            fields = {**fields, "total_requests": int(total)}
        log_event(name, **fields)
