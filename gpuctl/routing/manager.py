"""The backend manager (the seed's `backend_manager`): priority, health, breaker, fallback, and why.

Only this module knows the priority order. For each request it walks `routing.priority`, skips
providers that are not configured or whose breaker is open, gives a possibly-cold Modal a short
health probe (a scaled-to-zero GPU is *waking up*, not *down*), and fails over on connection
errors, timeouts, 5xx, 429 and malformed replies — but only before the first token: once text
has been shown, a broken stream is reported plainly and never silently re-sent. Every decision
carries its reason, and every completion appends a usage row to the ledger.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
import time
from collections.abc import AsyncGenerator, AsyncIterator, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from decimal import Decimal
from typing import Any

from gpuctl.config import Settings, load_settings
from gpuctl.errors import (
    AllProvidersFailedError,
    NoProviderError,
    ProviderError,
    StreamBrokenError,
    UsageError,
)
from gpuctl.events import log_event
from gpuctl.providers.base import ChatRequest, ChatResponse, Health, StreamChunk, Usage
from gpuctl.routing import breaker
from gpuctl.routing.registry import BUILDERS, Slot, build_slots
from gpuctl.state import BreakerRecord, State, UsageRecord, open_state

logger = logging.getLogger("gpuctl.router")

NO_PROVIDER_HINT = ("set MODAL_WEB_URL (or run `gpuctl deploy modal`), VASTAI_API_KEY with `gpuctl launch`, "
                    "or ANTHROPIC_API_KEY")

STOPPED = "stopped by user"  # the ledger's error for an answer the user interrupted

# Providers that scale to zero: silence from them may mean "waking up", not "down".
SCALE_TO_ZERO = frozenset({"modal"})
# After a cold probe, requests go straight to the next provider for this long, then probe again
# (Modal's cold start is 10–30 s; the first probe already asked it to start a container).
WAKE_GRACE_S = 45.0
# A provider "waking up" for longer than this is down (Modal's startup_timeout for vLLM is 600 s).
MAX_WAKE_S = 15 * 60.0


@dataclass(frozen=True)
class Attempt:
    """What the router did with one provider for one request."""

    provider: str
    outcome: str  # skipped | cold | failed | answered
    reason: str = ""
    kind: str | None = None  # the ProviderError kind of a failure


@dataclass(frozen=True)
class ProviderStatus:
    name: str
    configured: bool
    status: str  # ready | cold | degraded | unhealthy | unconfigured
    endpoint: str | None
    latency_s: float | None
    breaker: str
    detail: str
    models: tuple[str, ...] = ()

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.name, "configured": self.configured, "status": self.status,
            "endpoint": self.endpoint, "latency_ms": None if self.latency_s is None else round(self.latency_s * 1000, 1),
            "breaker": self.breaker, "detail": self.detail, "models": list(self.models),
        }


@dataclass(frozen=True)
class StatusReport:
    providers: tuple[ProviderStatus, ...]
    current: str | None
    reason: str

    def as_dict(self) -> dict[str, Any]:
        chosen = next((p for p in self.providers if p.name == self.current), None)
        return {
            # the seed's shape first
            "status": chosen.status if chosen else "unavailable",
            "endpoint": chosen.endpoint if chosen else None,
            "provider": self.current,
            "reason": self.reason,
            "providers": [p.as_dict() for p in self.providers],
        }


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
        self._slots: list[Slot] | None = list(slots) if slots is not None else None
        self.clock = clock
        self.timer = timer
        self.record_usage = record_usage
        self._prices: Any = None
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
            from gpuctl.config import ensure_home

            self._state = open_state(ensure_home(self.settings.home), clock=self.clock)
        return self._state

    def priority(self) -> list[str]:
        order = list(self.settings["routing.priority"])
        # A user's own endpoint that is configured but not listed goes before the paid API.
        if self.settings.get("endpoint.url") and "endpoint" not in order:
            at = order.index("anthropic") if "anthropic" in order else len(order)
            order.insert(at, "endpoint")
        return order

    def slots(self) -> list[Slot]:
        if self._slots is None:
            self._slots = build_slots(self.settings, self.state, self.priority())
        return self._slots

    def _order(self, only: str | None) -> list[Slot]:
        slots = self.slots()
        if only is None:
            return slots
        for slot in slots:
            if slot.name == only:
                return [slot]
        if only not in BUILDERS:
            raise UsageError(f"unknown provider {only!r}", hint="providers: " + ", ".join(BUILDERS))
        extra = BUILDERS[only](self.settings, self.state)
        self._slots = [*slots, extra]
        return [extra]

    async def reload(self) -> None:
        """Read settings and the ledger again (a long-running app calls this after
        `gpuctl deploy` or `gpuctl launch` changed what is available). Breakers are kept: they
        live in the state database."""
        for slot in self._slots or []:
            if slot.provider is not None:
                await slot.provider.aclose()
        self._slots = None
        self._prices = None
        if self._settings_loaded:
            self._settings = None

    async def aclose(self) -> None:
        for slot in self._slots or []:
            if slot.provider is not None:
                await slot.provider.aclose()
        if self._own_state and self._state is not None:
            self._state.close()
            self._state = None

    async def __aenter__(self) -> BackendManager:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    # -------------------------------------------------------------- seed API

    def get_current_provider(self) -> str | None:
        """The provider that would be tried first now (configured, breaker closed); no network."""
        now = self.clock()
        for slot in self.slots():
            if slot.configured and breaker.check(self.state.get_breaker(slot.name), now)[0]:
                return slot.name
        return None

    async def get_vllm_status(self, *, deep: bool = False, wake: bool = False) -> dict[str, Any]:
        """The seed's `{"status", "endpoint", "provider"}` plus every provider's row."""
        return (await self.status(deep=deep, wake=wake)).as_dict()

    async def chat_completion(
        self,
        messages: Iterable[Mapping[str, Any]],
        *,
        temperature: float | None = 0.7,
        max_tokens: int = 2048,
        stream: bool = False,
        provider: str | None = None,
        model: str | None = None,
        stop: Iterable[str] = (),
    ) -> Any:
        """A complete answer (`ChatResponse`), or with `stream=True` a `RoutedStream` to iterate."""
        request = ChatRequest.from_openai(messages, model=model, temperature=temperature, max_tokens=max_tokens, stop=stop)
        if stream:
            return RoutedStream(self, request, only=provider)
        return await self.complete(request, only=provider)

    def stream_chat(self, request: ChatRequest, *, only: str | None = None) -> RoutedStream:
        return RoutedStream(self, request, only=only)

    def prefetch(self) -> None:
        """Import the Anthropic SDK (~1 s) in the background when it may be needed, so an
        interactive chat's first fallback answer does not pay for it. Nothing else is touched."""
        if any(s.name == "anthropic" and s.configured for s in self.slots()) and "anthropic" not in sys.modules:
            import importlib
            import threading

            threading.Thread(target=importlib.import_module, args=("anthropic",), name="gpuctl-prefetch",
                             daemon=True).start()

    def require_configured(self, only: str | None = None) -> None:
        """Fail now (exit 3, with what to set) if no provider — or not `only` — is configured."""
        slots = self._order(only)
        if only is not None and not slots[0].configured:
            raise NoProviderError(f"{only} is not configured", hint=slots[0].why_not)
        if not any(s.configured for s in slots):
            raise NoProviderError("no provider is configured", hint=NO_PROVIDER_HINT)

    # -------------------------------------------------------------- routing core

    def _gate(self, slot: Slot, now: float, *, claim: bool = False) -> str | None:
        """Why this slot is skipped, or None if it may be tried. With `claim`, a breaker due for
        its probe is claimed atomically, so one request (in all processes) probes, not all."""
        if not slot.configured:
            return f"{slot.name}: not configured ({slot.why_not})"
        record = self.state.get_breaker(slot.name)
        allowed, why = breaker.check(record, now)
        if not allowed:
            return f"{slot.name}: {why}"
        if claim and breaker.is_probe(record, now):
            claimed: list[bool] = []
            s = self.settings
            lease = float(s["routing.connect_timeout_s"]) + float(s["routing.first_byte_timeout_s"]) + 5.0

            def take(current: BreakerRecord) -> BreakerRecord:
                if not breaker.is_probe(current, now):
                    return current  # another process claimed it first
                claimed.append(True)
                return breaker.claim_probe(current, now, lease)

            self.state.update_breaker(slot.name, take)
            if not claimed:
                return f"{slot.name}: breaker half-open: another request is probing it"
        return None

    async def _cold_gate(self, slot: Slot, has_next: bool) -> Attempt | None:
        """A scale-to-zero provider idle past its window gets a short /health probe first.

        If it is waking up and another provider can answer, that one answers now; the probe
        itself has already asked Modal to start a container, so the next request finds it warm.
        """
        if slot.name not in SCALE_TO_ZERO or not has_next or not self.settings["routing.fallback_on_cold"]:
            return None
        if not self._idle_past_window(slot.name):
            return None  # answered recently: warm
        now = self.clock()
        waking = self.state.metrics(slot.name).get("waking")  # {"since": t0, "probed": t}
        if isinstance(waking, dict) and now - float(waking["probed"]) < WAKE_GRACE_S:
            # Probed cold moments ago: don't make every request of a burst pay another probe.
            began = now - float(waking["since"])
            return Attempt(slot.name, "cold", f"{slot.name}: still waking up (cold start began {began:.0f}s ago)")
        assert slot.provider is not None
        health = await slot.provider.health(timeout=self.settings["routing.cold_probe_timeout_s"])  # type: ignore[call-arg]
        if health.status == "cold":
            since = float(waking["since"]) if isinstance(waking, dict) else now
            if now - since > MAX_WAKE_S:
                # Far longer than any cold start (Modal gives vLLM 10 min to open its port): a
                # 503 for a lost quota or a crashed app, not a GPU waking up.
                self.state.set_metric(slot.name, "waking", None)
                why = f"still not answering {now - since:.0f}s after it began waking up ({_why(slot.name, health.detail)})"
                self._failure(slot.name, why)
                return Attempt(slot.name, "failed", f"{slot.name}: {why}")
            self.state.set_metric(slot.name, "waking", {"since": since, "probed": now})
            return Attempt(slot.name, "cold", f"{slot.name}: waking up (cold start, usually 10–30 s)")
        if waking is not None:
            self.state.set_metric(slot.name, "waking", None)
        if health.status == "unhealthy":
            why = _why(slot.name, health.detail or "health check failed")
            self._failure(slot.name, why)
            log_event("vllm_health_check_failed", provider=slot.name, detail=why)
            return Attempt(slot.name, "failed", f"{slot.name}: {why}")
        return None

    def likely_cold(self, name: str) -> bool:
        """Whether a request to `name` would probably meet a cold start (for what a UI says)."""
        return self._idle_past_window(name)

    def _idle_past_window(self, name: str) -> bool:
        """Has this scale-to-zero provider been idle long enough to have scaled down?"""
        if name not in SCALE_TO_ZERO:
            return False
        window = float(self.settings["modal.scaledown_window_minutes"]) * 60
        last = self.state.last_usage_at(name)
        return last is None or self.clock() - last >= window

    def _failure(self, name: str, error: str) -> None:
        s = self.settings
        now = self.clock()
        self.state.update_breaker(
            name,
            lambda rec: breaker.on_failure(rec, now, threshold=s["routing.failure_threshold"],
                                           cooldown_s=s["routing.cooldown_s"], error=error),
        )

    def _success(self, name: str) -> None:
        rec = self.state.get_breaker(name)
        if rec.state != "closed" or rec.failures:
            self.state.update_breaker(name, breaker.on_success)

    def _has_next(self, order: list[Slot], index: int, now: float) -> bool:
        return any(self._gate(s, now) is None for s in order[index + 1:])

    def _on_error(self, slot: Slot, exc: ProviderError, request: ChatRequest, started: float,
                  started_at: float) -> Attempt:
        why = _why(slot.name, exc.message)
        # A timeout from a GPU that had scaled to zero is a slow cold start, not a dead backend.
        cold = exc.kind == "timeout" and self._idle_past_window(slot.name)
        if exc.counts_against_breaker and not cold:
            self._failure(slot.name, why)
        self._ledger(slot, request, None, self.timer() - started, started_at, error=why)
        return Attempt(slot.name, "failed", f"{slot.name}: {why}", exc.kind)

    async def _candidates(self, only: str | None, attempts: list[Attempt],
                          trying: Callable[[str], None] = lambda name: None) -> AsyncGenerator[tuple[Slot, bool], None]:
        """The providers to try, in order, each with "is there another after it?".

        Skips are recorded in `attempts`. A provider that is only waking up is tried again at
        the end, with the full first-byte budget: if every other provider fails, waiting for a
        cold GPU still beats no answer.
        """
        order = self._order(only)
        now = self.clock()
        deferred: list[Slot] = []
        for index, slot in enumerate(order):
            why = self._gate(slot, now, claim=True)
            if why is not None:
                attempts.append(Attempt(slot.name, "skipped", why))
                continue
            has_next = only is None and self._has_next(order, index, now)
            trying(slot.name)
            cold = await self._cold_gate(slot, has_next)
            if cold is not None:
                attempts.append(cold)
                if cold.outcome == "cold":
                    deferred.append(slot)
                continue
            yield slot, has_next or bool(deferred)
        for index, slot in enumerate(deferred):
            trying(slot.name)
            yield slot, index + 1 < len(deferred)

    async def complete(self, request: ChatRequest, *, only: str | None = None) -> ChatResponse:
        attempts: list[Attempt] = []
        async with contextlib.aclosing(self._candidates(only, attempts)) as candidates:
            async for slot, has_next in candidates:
                response = await self._complete_on(slot, request, attempts, has_next)
                if response is not None:
                    return response
        raise self._give_up(attempts, None)

    async def _complete_on(self, slot: Slot, request: ChatRequest, attempts: list[Attempt],
                           has_next: bool) -> ChatResponse | None:
        """One provider's try: the answer, or None to go on to the next (else it raises)."""
        assert slot.provider is not None
        started, started_at = self.timer(), self.clock()
        try:
            response = await slot.provider.chat(request)
        except ProviderError as exc:
            attempts.append(self._on_error(slot, exc, request, started, started_at))
            if exc.failover and has_next:
                return None
            raise self._give_up(attempts, exc) from None
        self._success(slot.name)
        reason = fallback_reason(attempts)
        response = replace(response, provider=slot.name, fallback_reason=reason,
                           latency_s=response.latency_s or self.timer() - started)
        self._ledger(slot, request, response, response.latency_s, started_at, fallback=reason)
        return response

    def _give_up(self, attempts: list[Attempt], last: ProviderError | None) -> Exception:
        tried = [a for a in attempts if a.outcome != "skipped" or "not configured" not in a.reason]
        if not any(a for a in attempts if "not configured" not in a.reason):
            if len(attempts) == 1 and attempts[0].outcome == "skipped":
                slot_name = attempts[0].provider
                return NoProviderError(f"{slot_name} is not configured",
                                       hint=attempts[0].reason.split("(", 1)[-1].rstrip(")"))
            return NoProviderError("no provider is configured", hint=NO_PROVIDER_HINT)
        if last is not None and len([a for a in tried if a.outcome == "failed"]) == 1 and not last.failover:
            return last  # a request error (400) is the request's fault: show it as it is
        reasons = [a.reason for a in tried]
        hint = last.hint if last is not None else "see `gpuctl status` for each provider's health"
        failed = [a for a in tried if a.outcome == "failed"]
        credentials = bool(failed) and all(a.kind == "auth" for a in failed)
        return AllProvidersFailedError("no provider could answer: " + "; ".join(reasons), reasons=reasons, hint=hint,
                                       credentials=credentials)

    # -------------------------------------------------------------- ledger

    def _ledger(self, slot: Slot, request: ChatRequest, response: ChatResponse | None, latency: float,
                started_at: float,
                *, error: str | None = None, fallback: str | None = None, usage: Usage | None = None,
                model: str | None = None, ttft: float | None = None) -> None:
        if not self.record_usage:
            return
        usage = usage or (response.usage if response else Usage())
        model = model or (response.model if response else request.model)
        # An answer stopped mid-way still used the GPU (and tokens): price it too.
        cost = self.estimate_cost(slot.name, model, usage, latency) if error in (None, STOPPED) else None
        self.state.record_usage(UsageRecord(
            # ts is when the request started: replays of real traffic (cost --from-usage) need it
            ts=started_at, provider=slot.name, model=model,
            prompt_tokens=usage.prompt_tokens, completion_tokens=usage.completion_tokens,
            latency_s=latency, ttft_s=ttft if ttft is not None else (response.ttft_s if response else None),
            cost=None if cost is None else str(cost), ok=error is None, error=error,
            fallback_reason=fallback, endpoint=slot.endpoint, profile=self.settings.profile,
        ))
        if error is None:
            total = self.state.bump_metric(slot.name, "total_requests")
            if slot.name == "modal":
                log_event("modal_chat_completion", model=model, tokens=usage.total_tokens, total_requests=int(total))

    def estimate_cost(self, provider: str, model: str | None, usage: Usage, seconds: float) -> Decimal | None:
        """Estimated $ for one request: tokens for Anthropic, GPU-seconds for Modal, else None
        (a Vast.ai box bills by lifetime, which `gpuctl cost report` prices)."""
        try:
            from gpuctl import costs

            if self._prices is None:
                self._prices = costs.load_catalog(overrides=self.settings.extra.get("prices") or None)
            if provider == "anthropic" and model:
                price = self._prices.token_price(model)
                return costs.token_cost(price, usage.prompt_tokens, usage.completion_tokens)
            if provider == "modal":
                # Modal bills container time; a request's share is its own duration (a lower
                # bound: cold start and the scaledown tail are priced by `gpuctl cost report`).
                per_second = self._prices.modal_price(self.settings["modal.gpu"]).dollars_per_second
                return costs.modal_cost(per_second, costs.exact_seconds(seconds))
            return None
        except Exception:  # pricing must never break an answer; the ledger just lacks a cost
            logger.debug("cost estimate failed", exc_info=True)
            return None

    # -------------------------------------------------------------- status

    def _unprobed(self, slot: Slot, now: float) -> Health | None:
        """For a scale-to-zero provider, the health to report *without* probing it, or None to probe.

        Any request to an idle Modal endpoint starts a GPU and bills its scaledown window, so
        `status` (and `--watch` every minute) must not be what keeps it warm: it probes when
        real traffic keeps it warm anyway, or once when nothing is known, and otherwise reports
        what the last probe saw.
        """
        if slot.name not in SCALE_TO_ZERO or not self._idle_past_window(slot.name):
            return None
        last = self.state.metrics(slot.name).get("last_health")
        if not isinstance(last, dict) or "at" not in last:
            return None  # never checked: one probe tells the user whether the endpoint works
        if last.get("status") not in ("ready", "cold"):
            return None  # it was down: a dead endpoint starts no GPU, so look again
        ago = now - float(last["at"])
        window = float(self.settings["modal.scaledown_window_minutes"]) * 60
        seen = f"{last.get('status', '?')} when checked {ago:.0f}s ago"
        models = tuple(str(m) for m in last.get("models") or ())
        if ago < window and last.get("status") == "ready":
            return Health(slot.name, "ready", endpoint=slot.endpoint, models=models,
                          detail=f"{seen}; not re-probed (a probe keeps the GPU billing); --wake to check now")
        return Health(slot.name, "cold", endpoint=slot.endpoint, models=models,
                      detail=f"scaled to zero, not probed (a probe would start a GPU); was {seen}; "
                             "the next request wakes it, or `gpuctl status --wake`")

    async def status(self, *, deep: bool = False, wake: bool = False) -> StatusReport:
        """Health of every provider in priority order, and which one would answer now, and why.

        `deep` also generates a token; `wake` probes a scaled-to-zero provider even when that
        starts a GPU (both imply probing)."""
        slots = self.slots()
        timeout = self.settings["routing.health_timeout_s"]
        probe_all = deep or wake
        at = self.clock()
        cached = {s.name: (None if probe_all else self._unprobed(s, at)) for s in slots}

        async def check(slot: Slot) -> Health | None:
            if slot.provider is None:
                return None
            if cached[slot.name] is not None:
                return cached[slot.name]
            try:
                return await asyncio.wait_for(slot.provider.health(deep=deep), timeout=timeout * (3 if deep else 1) + 1)
            except TimeoutError:
                return Health(slot.name, "cold", endpoint=slot.endpoint, detail="no answer in time (waking up?)")
            except ProviderError as exc:
                return Health(slot.name, "unhealthy", endpoint=slot.endpoint, detail=exc.message)

        healths = await asyncio.gather(*(check(s) for s in slots))
        now = self.clock()
        rows: list[ProviderStatus] = []
        current: str | None = None
        waiting_on: str | None = None
        reasons: list[str] = []
        for slot, health in zip(slots, healths, strict=True):
            if health is None:
                # A Vast.ai key with no instance running is not "unconfigured": say what it is.
                idle = slot.name == "vastai" and bool(self.settings.get("vastai.api_key"))
                rows.append(ProviderStatus(slot.name, False, "no instance" if idle else "unconfigured", None, None,
                                           "-", slot.why_not or ""))
                continue
            if cached[slot.name] is None:  # a real probe: remember it, and let it move the breaker
                self.state.set_metric(slot.name, "last_health",
                                      {"status": health.status, "latency_s": health.latency_s, "at": now,
                                       "models": list(health.models)})
                if health.status == "ready" and deep:
                    # Only a generated token closes a breaker: /health can answer while chat fails.
                    self._success(slot.name)
                elif health.status in ("unhealthy", "degraded"):
                    self._failure(slot.name, _why(slot.name, health.detail or health.status))
                    log_event("vllm_health_check_failed", provider=slot.name, detail=health.detail)
            rec = self.state.get_breaker(slot.name)
            rows.append(ProviderStatus(slot.name, True, health.status, health.endpoint or slot.endpoint,
                                       health.latency_s, breaker.describe(rec, now), _why(slot.name, health.detail),
                                       health.models))
            allowed, why = breaker.check(rec, now)
            if current is None:
                if allowed and health.status == "ready":
                    current = slot.name
                    reasons.append(f"{slot.name}: ready")
                elif allowed and health.status == "cold":
                    # Waking up: with a fallback configured, the next ready provider answers now.
                    waiting_on = waiting_on or slot.name
                    reasons.append(f"{slot.name}: waking up")
                else:
                    reasons.append(f"{slot.name}: {why or _why(slot.name, health.detail) or health.status}")
        if current is None and waiting_on is not None:
            current = waiting_on  # nothing ready: the request will wait for the waking GPU
            reasons = [r for r in reasons if not r.startswith(f"{waiting_on}:")] + [f"{waiting_on}: waking up"]
        elif waiting_on is not None and not self.settings["routing.fallback_on_cold"]:
            current = waiting_on  # told to wait for a cold GPU rather than fall back
            reasons = [f"{waiting_on}: waking up (routing.fallback_on_cold is off)"]
        if current is None:
            if not any(r.configured for r in rows):
                raise NoProviderError("no provider is configured", hint=NO_PROVIDER_HINT)
            reason = "no provider can answer now: " + "; ".join(reasons)
        elif len(reasons) == 1:
            reason = f"{current} is the first configured provider and is {rows[[r.name for r in rows].index(current)].status}"
        else:
            reason = f"{current} answers because " + "; ".join(reasons[:-1])
        return StatusReport(tuple(rows), current, reason)


def _why(provider: str, message: str) -> str:
    """A provider's error without its own name in front: reasons read 'modal: refused', once."""
    prefix = f"{provider}: "
    return message[len(prefix):] if message.startswith(prefix) else message


def fallback_reason(attempts: Sequence[Attempt]) -> str | None:
    """'fell back from modal: <why>' material: failures, open breakers and cold starts only."""
    reasons = [a.reason for a in attempts if a.outcome in ("failed", "cold")
               or (a.outcome == "skipped" and "not configured" not in a.reason)]
    return "; ".join(reasons) or None


@dataclass
class RoutedStream:
    """An answer as it streams, from whichever provider could start it.

    Iterate it for `StreamChunk`s. After iteration: `provider`, `fallback_reason`, `text`,
    `usage`, `finish_reason`, `ttft_s`, `latency_s`. A failure after text was yielded raises
    `StreamBrokenError` (with the partial text) and is never re-sent elsewhere.
    """

    manager: BackendManager
    request: ChatRequest
    only: str | None = None
    provider: str | None = None
    model: str | None = None
    fallback_reason: str | None = None
    attempts: list[Attempt] = field(default_factory=list)
    parts: list[str] = field(default_factory=list)
    usage: Usage | None = None
    finish_reason: str | None = None
    ttft_s: float | None = None
    latency_s: float | None = None
    complete: bool = False
    trying: str | None = None  # the provider being waited on now (for "waiting for modal…")
    _started: float = 0.0
    _started_at: float = 0.0

    @property
    def text(self) -> str:
        return "".join(self.parts)

    def __aiter__(self) -> AsyncIterator[StreamChunk]:
        return self._run()

    async def _run(self) -> AsyncIterator[StreamChunk]:
        m = self.manager
        async with contextlib.aclosing(m._candidates(self.only, self.attempts, self._trying)) as candidates:
            async for slot, has_next in candidates:
                opened = await self._open(slot, has_next)
                if opened is None:
                    continue  # failed before its first token; the next provider answers
                chunks, buffered, started = opened
                self.provider = slot.name
                self.fallback_reason = fallback_reason(self.attempts)
                self.ttft_s = m.timer() - started
                parts = self.parts
                try:
                    for chunk in buffered:
                        self._take(chunk)
                        yield chunk
                    async for chunk in chunks:
                        # The hot path of every stream: plain text chunks skip the bookkeeping call.
                        if chunk.finish_reason is None and chunk.usage is None:
                            if chunk.text:
                                parts.append(chunk.text)
                        else:
                            self._take(chunk)
                        yield chunk
                except ProviderError as exc:
                    self.latency_s = m.timer() - started
                    if exc.counts_against_breaker:
                        m._failure(slot.name, _why(slot.name, exc.message))
                    m._ledger(slot, self.request, None, self.latency_s, self._started_at,
                              error=_why(slot.name, exc.message), usage=self.usage, model=self.model, ttft=self.ttft_s)
                    shown = len(self.text)
                    raise StreamBrokenError(
                        f"{slot.name}: the answer broke off after {shown} characters ({exc.message}); it was not re-sent",
                        provider=slot.name, partial_text=self.text,
                        hint="retry the question (in chat: /retry)",
                    ) from None
                finally:
                    await _close(chunks)
                    if not self.complete and self.latency_s is None:
                        # The consumer stopped early (Ctrl-C): keep an honest ledger row.
                        self.latency_s = m.timer() - started
                        m._ledger(slot, self.request, None, self.latency_s, self._started_at, error=STOPPED,
                                  usage=self.usage, model=self.model, ttft=self.ttft_s)
                return
        raise m._give_up(self.attempts, None)

    def _trying(self, name: str) -> None:
        self.trying = name

    async def _open(self, slot: Slot, has_next: bool) -> tuple[Any, list[StreamChunk], float] | None:
        """Start streaming from one provider and pull up to its first text. None when it
        failed before that and another provider may answer; raises otherwise."""
        m = self.manager
        assert slot.provider is not None
        started = self._started = m.timer()
        self._started_at = m.clock()
        chunks = slot.provider.stream(self.request)
        buffered: list[StreamChunk] = []
        try:
            # Pull until the first text (or the end): failures up to here can still fail over.
            async for chunk in chunks:
                buffered.append(chunk)
                if chunk.text or chunk.finish_reason is not None:
                    break
        except ProviderError as exc:
            await _close(chunks)
            self.attempts.append(m._on_error(slot, exc, self.request, started, self._started_at))
            if exc.failover and has_next:
                return None
            raise m._give_up(self.attempts, exc) from None
        return chunks, buffered, started

    def _take(self, chunk: StreamChunk) -> None:
        if chunk.text:
            self.parts.append(chunk.text)
        if chunk.model:
            self.model = chunk.model
        if chunk.usage is not None:
            self.usage = chunk.usage
        if chunk.finish_reason is not None:
            self.finish_reason = chunk.finish_reason
            self._finish()

    def _finish(self) -> None:
        m = self.manager
        slot = next(s for s in m.slots() if s.name == self.provider)
        self.latency_s = m.timer() - self._started
        self.complete = True
        m._success(slot.name)
        response = ChatResponse(self.text, slot.name, self.model or self.request.model or "", self.usage or Usage(),
                                self.finish_reason, 0.0, self.ttft_s, self.fallback_reason)
        m._ledger(slot, self.request, response, self.latency_s, self._started_at, fallback=self.fallback_reason,
                  usage=self.usage, model=self.model, ttft=self.ttft_s)

    def response(self) -> ChatResponse:
        """The finished answer as a `ChatResponse` (after iteration)."""
        return ChatResponse(self.text, self.provider or "", self.model or "", self.usage or Usage(),
                            self.finish_reason, self.latency_s or 0.0, self.ttft_s, self.fallback_reason)


async def _close(agen: Any) -> None:
    aclose = getattr(agen, "aclose", None)
    if aclose is not None:
        try:
            await aclose()
        except Exception:  # closing a broken stream must not hide the real error
            logger.debug("closing stream failed", exc_info=True)
