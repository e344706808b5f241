"""The routing policy: which providers a request may try, in what order, and what counts.

Owns: the priority order (`order`), what a provider cannot do (`cannot`: the provider's own
`unsupported`), the breaker gate (`gate`: not configured, open, or a half-open probe claimed by
another request), the cold gate for providers that scale to zero
(`cold_gate`: a short /health probe first — a scaled-to-zero GPU is *waking up*, not *down*),
the candidate walk (`candidates`: a waking provider is tried again last, when everyone else
failed), and the bookkeeping every attempt leaves (`failed`, `succeeded`, `failed_before_text`).
A 503 is a cold start only from a slot that scales to zero (`outage_503`): from any other it is
a failure like a 500, and `status` judges a health check the same way.
`Router` is the public face `RoutedStream`, `complete` and status use.

Breakers and the "waking" memory are read and written under each slot's `breaker_key` (the
provider and what it talks to), never its bare name; every breaker transition is an event.

Must not: name a provider (their traits are `Slot` properties set by the registry), parse a
message to decide anything (reasons are `outcomes.Reason`), or print.
"""

from __future__ import annotations

import time
from collections.abc import AsyncGenerator, Callable

from gpuctl.config import Settings
from gpuctl.errors import Kind, ProviderError, UsageError
from gpuctl.events import log_event
from gpuctl.providers.base import ChatRequest
from gpuctl.routing import breaker
from gpuctl.routing.ledger import Ledger
from gpuctl.routing.outcomes import Attempt, Outcome, Reason, without_name
from gpuctl.routing.registry import BUILDERS, Slot, nothing_configured
from gpuctl.state import BreakerRecord, State

# After a cold probe, requests go straight to the next provider for this long, then probe again
# (Modal's cold start is 10–30 s; the first probe already asked it to start a container).
WAKE_GRACE_S = 45.0
# A provider "waking up" for longer than this is down (Modal's startup_timeout for vLLM is 600 s).
MAX_WAKE_S = 15 * 60.0


class Router:
    """The policy over one manager's slots, state and clocks. `slots` is the manager's list
    (a provider asked for by name but not in the priority is appended to it)."""

    def __init__(self, settings: Settings, state: State, slots: list[Slot], *, ledger: Ledger,
                 clock: Callable[[], float] = time.time, timer: Callable[[], float] = time.perf_counter) -> None:
        self.settings = settings
        self.state = state
        self.slots = slots
        self.ledger = ledger
        self.clock = clock  # wall time: breaker, ledger, waking
        self.timer = timer  # latency

    # -------------------------------------------------------------- order and gates

    def slot(self, name: str) -> Slot | None:
        return next((s for s in self.slots if s.name == name), None)

    def order(self, only: str | None = None) -> list[Slot]:
        """The slots a request walks: all in priority order, or just the one asked for."""
        if only is None:
            return self.slots
        found = self.slot(only)
        if found is not None:
            return [found]
        if only not in BUILDERS:
            raise UsageError(f"unknown provider {only!r}", hint="providers: " + ", ".join(BUILDERS))
        extra = BUILDERS[only](self.settings, self.state)
        self.slots.append(extra)
        return [extra]

    def current(self) -> str | None:
        """The provider that would be tried first now (configured, breaker closed); no network."""
        now = self.clock()
        for slot in self.slots:
            if slot.configured and breaker.check(self.breaker(slot), now)[0]:
                return slot.name
        return None

    def breaker(self, slot: Slot) -> BreakerRecord:
        """The breaker of this slot's current setting (`Slot.breaker_key`)."""
        return self.state.get_breaker(slot.breaker_key)

    def _key(self, name: str) -> str:
        found = self.slot(name)
        return found.breaker_key if found is not None else name

    def gate(self, slot: Slot, now: float, *, claim: bool = False) -> Reason | None:
        """Why this slot is skipped, or None if it may be tried. With `claim`, a breaker due for
        its probe is claimed atomically, so one request (in all processes) probes, not all."""
        if not slot.configured:
            if slot.unreadable:
                return Reason.failed(slot.why_not or "", error_kind="state")
            return Reason.not_configured(slot.why_not or "")
        record = self.breaker(slot)
        allowed, why = breaker.check(record, now)
        if not allowed:
            return Reason.breaker_open(why or "") if record.state == "open" else Reason.half_open_probing()
        if claim and breaker.is_probe(record, now):
            claimed: list[bool] = []
            s = self.settings
            lease = float(s["routing.connect_timeout_s"]) + float(s["routing.first_byte_timeout_s"]) + 5.0

            def take(current: BreakerRecord) -> BreakerRecord:
                if not breaker.is_probe(current, now):
                    return current  # another process claimed it first
                claimed.append(True)
                return breaker.claim_probe(current, now, lease)

            self.state.update_breaker(slot.breaker_key, take)
            if not claimed:
                return Reason.half_open_probing()
            log_event("breaker_half_open", provider=slot.name, endpoint=slot.endpoint, failures=record.failures,
                      lease_s=lease)
        return None

    def cannot(self, slot: Slot, request: ChatRequest | None) -> Reason | None:
        """Why this configured slot cannot serve `request` at all (the provider says), or None."""
        if request is None or slot.provider is None:
            return None
        what = slot.provider.unsupported(request)
        return None if what is None else Reason.unsupported(what)

    def idle_past_window(self, slot: Slot) -> bool:
        """Has this scale-to-zero provider been idle long enough to have scaled down?"""
        if slot.scaledown_s is None:
            return False
        # The last answer from *this* endpoint: a new deployment behind a new URL starts cold.
        last = self.state.last_usage_at(slot.name, endpoint=slot.endpoint)
        return last is None or self.clock() - last >= slot.scaledown_s

    async def cold_gate(self, slot: Slot, has_next: bool) -> Attempt | None:
        """A scale-to-zero provider idle past its window gets a short /health probe first.

        If it is waking up and another provider can answer, that one answers now; the probe
        itself has already asked the provider to start a container, so the next request finds
        it warm. None: go ahead and send it the request.
        """
        if not slot.scales_to_zero or not has_next or not self.settings["routing.fallback_on_cold"]:
            return None
        if not self.idle_past_window(slot):
            return None  # answered recently: warm
        now = self.clock()
        waking = self.state.metrics(slot.breaker_key).get("waking")  # {"since": t0, "probed": t}
        if isinstance(waking, dict) and now - float(waking["probed"]) < WAKE_GRACE_S:
            # Probed cold moments ago: don't make every request of a burst pay another probe.
            return Attempt(slot.name, Reason.still_waking(now - float(waking["since"])))
        assert slot.provider is not None
        health = await slot.provider.health(timeout=self.settings["routing.cold_probe_timeout_s"])  # type: ignore[call-arg]
        if health.status == "cold":
            since = float(waking["since"]) if isinstance(waking, dict) else now
            if now - since > MAX_WAKE_S:
                # Far longer than any cold start (Modal gives vLLM 10 min to open its port): a
                # 503 for a lost quota or a crashed app, not a GPU waking up.
                self.state.set_metric(slot.breaker_key, "waking", None)
                reason = Reason.wake_timed_out(now - since, without_name(slot.name, health.detail))
                self.failed(slot.name, reason)
                return Attempt(slot.name, reason)
            self.state.set_metric(slot.breaker_key, "waking", {"since": since, "probed": now})
            if not isinstance(waking, dict):
                log_event("provider_waking", provider=slot.name, endpoint=slot.endpoint, detail=health.detail)
            return Attempt(slot.name, Reason.waking())
        if waking is not None:
            self.state.set_metric(slot.breaker_key, "waking", None)
        if health.status == "unhealthy":
            reason = Reason.failed(without_name(slot.name, health.detail or "health check failed"), health.error_kind)
            if health.error_kind != Kind.AUTH:  # a refused key is a setting to fix: no breaker
                self.failed(slot.name, reason)
            log_event("vllm_health_check_failed", provider=slot.name, endpoint=slot.endpoint, detail=reason.text,
                      error_kind=health.error_kind)
            return Attempt(slot.name, reason)
        return None

    async def candidates(self, only: str | None, attempts: list[Attempt],
                         trying: Callable[[str], None] = lambda name: None,
                         request: ChatRequest | None = None) -> AsyncGenerator[tuple[Slot, bool], None]:
        """The providers to try, in order, each with "is there another after it?".

        Skips are recorded in `attempts`: a provider that cannot do `request` (n > 1 on
        Anthropic) is skipped before its breaker is asked, so it never claims a probe. A
        provider that is only waking up is tried again at the end, with the full first-byte
        budget: if every other provider fails, waiting for a cold GPU still beats no answer.
        """
        order = self.order(only)
        if only is None and not any(slot.in_chain for slot in order):
            raise nothing_configured(self.settings, self.state, [slot.name for slot in order])
        now = self.clock()
        deferred: list[Slot] = []
        for index, slot in enumerate(order):
            why = self.cannot(slot, request) or self.gate(slot, now, claim=True)
            if why is not None:
                attempts.append(Attempt(slot.name, why))
                continue
            has_next = only is None and any(self.cannot(s, request) is None and self.gate(s, now) is None
                                            for s in order[index + 1:])
            trying(slot.name)
            cold = await self.cold_gate(slot, has_next)
            if cold is not None:
                attempts.append(cold)
                if cold.outcome is Outcome.COLD:
                    deferred.append(slot)
                continue
            yield slot, has_next or bool(deferred)
        for index, slot in enumerate(deferred):
            trying(slot.name)
            yield slot, index + 1 < len(deferred)

    # -------------------------------------------------------------- bookkeeping

    def failed(self, name: str, reason: Reason) -> None:
        """Count a failure against the provider's breaker (its text is the breaker's last error)."""
        s = self.settings
        now = self.clock()
        error = reason.text
        self._move(name, lambda rec: breaker.on_failure(rec, now, threshold=s["routing.failure_threshold"],
                                                        cooldown_s=s["routing.cooldown_s"], error=error))

    def succeeded(self, name: str) -> None:
        rec = self.state.get_breaker(self._key(name))
        if rec.state != "closed" or rec.failures:
            self._move(name, breaker.on_success)

    def _move(self, name: str, change: Callable[[BreakerRecord], BreakerRecord]) -> None:
        """Change one breaker in one transaction; an open or a close is an event."""
        before: list[BreakerRecord] = []

        def step(current: BreakerRecord) -> BreakerRecord:
            before.append(current)  # the last call's: a retried transaction calls it again
            return change(current)

        after = self.state.update_breaker(self._key(name), step)
        was = before[-1].state if before else "closed"
        if after.state == was:
            return
        found = self.slot(name)
        endpoint = found.endpoint if found is not None else None
        if after.state == "open":
            log_event("breaker_opened", provider=name, endpoint=endpoint, failures=after.failures,
                      cooldown_s=round((after.open_until or 0.0) - (after.opened_at or 0.0), 3), error=after.last_error)
        elif after.state == "closed":
            log_event("breaker_closed", provider=name, endpoint=endpoint, was=was)

    def failed_before_text(self, slot: Slot, exc: ProviderError, request: ChatRequest, started: float,
                           started_at: float) -> Attempt:
        """A provider failed before its first token: breaker, ledger row, and the attempt."""
        reason = Reason.from_error(slot.name, exc)
        counts = exc.counts_against_breaker
        if outage_503(slot, exc.kind):
            reason, counts = Reason.failed(unavailable(slot, exc.status), Kind.HTTP), True
        # A timeout from a GPU that had scaled to zero is a slow cold start, not a dead backend.
        cold = exc.kind == "timeout" and self.idle_past_window(slot)
        if counts and not cold:
            self.failed(slot.name, reason)
        self.ledger.record(slot, request, latency=self.timer() - started, started_at=started_at, error=reason.text)
        return Attempt(slot.name, reason)


def outage_503(slot: Slot, kind: str | None) -> bool:
    """A 503 (`Kind.COLD`) means "waking up" only from a provider that scales to zero; from any
    other (a Vast.ai box, your own server) it is an outage, and counts against the breaker."""
    return kind == Kind.COLD and not slot.scales_to_zero


def unavailable(slot: Slot, status: int | None) -> str:
    """The words for `outage_503`: what answered, never "cold start or GPU quota"."""
    return f"unavailable (HTTP {status or 503} from {slot.endpoint or slot.name})"
