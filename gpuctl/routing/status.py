"""The status report: every provider's health in priority order, which one would answer now,
and why, as typed values (`StatusReport`, `ProviderStatus`, `Note`) that `gpuctl status`
renders and `as_dict()` turns into the `--json` shape.

It lives in routing, not ops, because it is a routing decision: it applies the breaker (a
real probe moves it), the cold rules (a waking GPU is named with the provider that answers
meanwhile) and the priority order, through the same `Router` requests use.

Never hide what bills: a provider's rented machines (`Slot.rentals`) are listed on its row,
configured or not, in `routing.priority` or not (`registry.renters_outside`), and while one
exists the report never says "no provider is configured". A 503 is "cold" only from a slot
that scales to zero (`policy.outage_503`); from any other the provider is unhealthy.

Never wake an idle scale-to-zero provider: any request to it starts a GPU and bills its
scaledown window, so `status` (and `--watch` every minute) reports what the last probe saw
unless real traffic keeps it warm anyway, nothing is known yet, or `--wake` asks.

Must not: print, or decide anything from a message's text.
"""

from __future__ import annotations

import asyncio
import dataclasses
import enum
from dataclasses import dataclass
from typing import Any

from gpuctl.errors import GpuctlError, Kind, NoProviderError, ProviderError
from gpuctl.events import log_event
from gpuctl.providers.base import Health, Rental, Rentals
from gpuctl.routing import breaker
from gpuctl.routing.breaker import BreakerView
from gpuctl.routing.outcomes import Reason, keys_refused, without_name
from gpuctl.routing.policy import Router, outage_503, unavailable
from gpuctl.routing.registry import Slot, nothing_configured, renters_outside


@dataclass(frozen=True)
class ProviderStatus:
    """One row of `gpuctl status`. `status`: ready | cold | degraded | unhealthy | unconfigured,
    or the slot's `idle_note` (e.g. "no instance")."""

    name: str
    configured: bool
    status: str
    endpoint: str | None
    latency_s: float | None
    breaker: BreakerView
    detail: str
    models: tuple[str, ...] = ()
    error_kind: str | None = None  # the failed check's `ProviderError.kind` ("auth": the key was refused)
    rentals: tuple[Rental, ...] = ()  # machines it rents now, which bill whatever the traffic
    rentals_error: str | None = None

    @property
    def latency_ms(self) -> float | None:
        return None if self.latency_s is None else round(self.latency_s * 1000, 1)

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.name, "configured": self.configured, "status": self.status,
            "endpoint": self.endpoint, "latency_ms": self.latency_ms,
            "breaker": self.breaker.text, "detail": self.detail, "models": list(self.models),
            "error_kind": self.error_kind,
            "instances": [r.as_dict() for r in self.rentals], "instances_error": self.rentals_error,
        }


class Standing(enum.Enum):
    """Where one configured provider stands in the choice of who answers."""

    READY = "ready"
    WAKING = "waking"  # cold: a request would wake it (and wait, or fall back)
    BLOCKED = "blocked"  # its breaker says no
    DOWN = "down"  # unhealthy or degraded


@dataclass(frozen=True)
class Note:
    """One provider's part in the reason: 'modal: waking up', 'vastai: breaker open until …'."""

    provider: str
    standing: Standing
    detail: str = ""

    @property
    def text(self) -> str:
        if self.standing is Standing.READY:
            return f"{self.provider}: ready"
        if self.standing is Standing.WAKING:
            return f"{self.provider}: waking up" + (f" ({self.detail})" if self.detail else "")
        return f"{self.provider}: {self.detail}"


@dataclass(frozen=True)
class StatusReport:
    """Every provider's row, the one that would answer now (None: nobody), and the notes
    that explain the choice, in priority order up to the chosen one."""

    providers: tuple[ProviderStatus, ...]
    current: str | None
    notes: tuple[Note, ...]

    @property
    def chosen(self) -> ProviderStatus | None:
        return next((p for p in self.providers if p.name == self.current), None)

    @property
    def keys_refused(self) -> bool:
        """Nobody can answer and each configured provider that cannot refused its key: a setting
        to fix (exit 3, "the key was refused"), not an outage. Chat's rule (`outcomes.keys_refused`):
        a provider its open breaker keeps out is an outage, whatever its health check says."""
        blocked = {n.provider for n in self.notes if n.standing is Standing.BLOCKED}
        kinds = [None if p.name in blocked else p.error_kind for p in self.providers
                 if p.configured and (p.name in blocked or p.status in ("unhealthy", "degraded"))]
        return self.current is None and keys_refused(kinds)

    @property
    def reason(self) -> str:
        chosen = self.chosen
        if chosen is None:
            return "no provider can answer now: " + "; ".join(n.text for n in self.notes)
        if len(self.notes) == 1:
            return f"{chosen.name} is the first configured provider and is {chosen.status}"
        return f"{chosen.name} answers because " + "; ".join(n.text for n in self.notes[:-1])

    def as_dict(self) -> dict[str, Any]:
        chosen = self.chosen
        return {
            # the original package's shape first
            "status": chosen.status if chosen else "unavailable",
            "endpoint": chosen.endpoint if chosen else None,
            "provider": self.current,
            "reason": self.reason,
            "providers": [p.as_dict() for p in self.providers],
        }


def unprobed(router: Router, slot: Slot, now: float) -> Health | None:
    """For a scale-to-zero provider idle past its window, the health to report *without*
    probing it; None to probe (it is warm anyway, was never checked, or was down last time)."""
    if slot.scaledown_s is None or not router.idle_past_window(slot):
        return None
    last = router.state.metrics(slot.breaker_key).get("last_health")
    if not isinstance(last, dict) or "at" not in last:
        return None  # never checked: one probe tells the user whether the endpoint works
    if last.get("status") not in ("ready", "cold"):
        return None  # it was down: a dead endpoint starts no GPU, so look again
    ago = now - float(last["at"])
    seen = f"{last.get('status', '?')} when checked {ago:.0f}s ago"
    models = tuple(str(m) for m in last.get("models") or ())
    if ago < slot.scaledown_s and last.get("status") == "ready":
        return Health(slot.name, "ready", endpoint=slot.endpoint, models=models,
                      detail=f"{seen}; not re-probed (a probe keeps the GPU billing); --wake to check now")
    return Health(slot.name, "cold", endpoint=slot.endpoint, models=models,
                  detail=f"scaled to zero, not probed (a probe would start a GPU); was {seen}; "
                         "the next request wakes it, or `gpuctl status --wake`")


async def build_report(router: Router, *, deep: bool = False, wake: bool = False) -> StatusReport:
    """Health of every provider in priority order, and which one would answer now, and why.

    `deep` also generates a token; `wake` probes a scaled-to-zero provider even when that
    starts a GPU (both imply probing)."""
    # What the priority leaves out still bills: its rentals are listed (never routed to).
    routed = [s.name for s in router.slots]
    slots = [*router.slots, *renters_outside(router.settings, router.state, routed)]
    at = router.clock()
    cached = {s.name: (None if deep or wake else unprobed(router, s, at)) for s in slots}
    healths, held = await asyncio.gather(asyncio.gather(*(_check(router, s, cached[s.name], deep) for s in slots)),
                                         asyncio.gather(*(_rentals(s) for s in slots)))
    now = router.clock()
    rows: list[ProviderStatus] = []
    notes: list[Note] = []
    for slot, health, rented in zip(slots, healths, held, strict=True):
        if health is None:
            if rented.items:  # not routable, but billing: say so, and say it in the reason
                summary = billing_summary(rented.items, unused=None if slot.name in routed else slot.why_not)
                rows.append(ProviderStatus(slot.name, False, rented.items[0].state if len(rented.items) == 1
                                           else "billing", None, None, BreakerView("-"), summary,
                                           rentals=rented.items, rentals_error=rented.error))
                notes.append(Note(slot.name, Standing.DOWN, summary))
                continue
            if slot.name in routed or rented.error:
                rows.append(ProviderStatus(slot.name, False, slot.idle_note or "unconfigured", None, None,
                                           BreakerView("-"), slot.why_not or "", rentals_error=rented.error))
            continue
        if cached[slot.name] is None:
            _remember(router, slot, health, now, deep=deep)
        record = router.breaker(slot)
        detail = without_name(slot.name, health.detail)
        rows.append(ProviderStatus(slot.name, True, health.status, health.endpoint or slot.endpoint,
                                   health.latency_s, breaker.view(record, now), detail, health.models,
                                   error_kind=None if health.ok else health.error_kind,
                                   rentals=rented.items, rentals_error=rented.error))
        allowed, why = breaker.check(record, now)
        if not allowed:
            notes.append(Note(slot.name, Standing.BLOCKED, why or ""))
        elif health.status in ("ready", "cold"):
            notes.append(Note(slot.name, Standing.READY if health.status == "ready" else Standing.WAKING))
        else:
            notes.append(Note(slot.name, Standing.DOWN, detail or health.status))
    current, told = choose(notes, fallback_on_cold=bool(router.settings["routing.fallback_on_cold"]))
    if current is None and not any(r.configured or r.rentals for r in rows):
        error = nothing_configured(router.settings, router.state, [s.name for s in slots])
        unchecked = "; ".join(f"{r.name}: {r.rentals_error}" for r in rows if r.rentals_error)
        if unchecked:  # a list that could not be read proves nothing: say so, never "nothing bills"
            error = NoProviderError(f"{error.message} ({unchecked}; machines there may still bill)", hint=error.hint)
        raise error
    return StatusReport(tuple(rows), current, tuple(told))


def choose(notes: list[Note], *, fallback_on_cold: bool) -> tuple[str | None, list[Note]]:
    """Who answers now, and the notes that say why (those up to and including that one).

    A waking provider is passed over for the next ready one (with `fallback_on_cold`); when
    nothing is ready, the request waits for it."""
    current: str | None = None
    waiting: str | None = None
    told: list[Note] = []
    for note in notes:
        told.append(note)
        if note.standing is Standing.READY:
            current = note.provider
            break
        if note.standing is Standing.WAKING:
            waiting = waiting or note.provider
    if current is None and waiting is not None:
        # nothing ready: the request will wait for the waking GPU
        return waiting, [n for n in told if n.provider != waiting] + [Note(waiting, Standing.WAKING)]
    if waiting is not None and not fallback_on_cold:
        # told to wait for a cold GPU rather than fall back
        return waiting, [Note(waiting, Standing.WAKING, "routing.fallback_on_cold is off")]
    return current, told


async def _rentals(slot: Slot) -> Rentals:
    if slot.rentals is None:
        return Rentals()
    try:
        return await slot.rentals()
    except GpuctlError as exc:  # the provider's own errors are caught inside; this is the backstop
        return Rentals(error=exc.message)


def billing_summary(items: tuple[Rental, ...], *, unused: str | None = None) -> str:
    """'instance 20000001 loading ($0.18/h, 3 min): billing, not answering yet'; several are
    counted. Said of the first: a create of unknown outcome is held, not (known to be) billing;
    a running box may answer, but the router does not use it (`unused`: why it never will)."""
    first = items[0]
    age = "" if first.age_s is None else f", {first.age_s / 60:.0f} min"
    more = f" and {len(items) - 1} more" if len(items) > 1 else ""
    if first.id.startswith("ledger"):  # no instance id: nothing is known to exist
        return (f"{first.id} {first.state} (${first.dph or '?'}/h{age}){more}: a create of unknown outcome, "
                "held against the budget")
    what = f"instance {first.id} {first.state} (${first.dph or '?'}/h{age}){more}"
    if unused:
        return f"{what}: billing; {unused}"
    if first.state == "running":
        return f"{what}: billing; the router does not use it (not ready in this ledger)"
    return f"{what}: billing, not answering yet"


async def _check(router: Router, slot: Slot, cached: Health | None, deep: bool) -> Health | None:
    if slot.provider is None:
        return None
    if cached is not None:
        return cached
    timeout = router.settings["routing.health_timeout_s"]
    try:
        health = await asyncio.wait_for(slot.provider.health(deep=deep), timeout=timeout * (3 if deep else 1) + 1)
        if health.status == "cold" and outage_503(slot, health.error_kind):  # not waking: down
            return dataclasses.replace(health, status="unhealthy", detail=unavailable(slot, 503), error_kind=Kind.HTTP)
        return health
    except TimeoutError:
        return Health(slot.name, "cold", endpoint=slot.endpoint, detail="no answer in time (waking up?)")
    except ProviderError as exc:
        return Health(slot.name, "unhealthy", endpoint=slot.endpoint, detail=exc.message, error_kind=exc.kind)


def _remember(router: Router, slot: Slot, health: Health, now: float, *, deep: bool) -> None:
    """A real probe: remember what it saw, and let it move the breaker."""
    router.state.set_metric(slot.breaker_key, "last_health", {"status": health.status, "latency_s": health.latency_s,
                                                              "at": now, "models": list(health.models)})
    if health.status == "ready" and deep:
        # Only a generated token closes a breaker: /health can answer while chat fails.
        router.succeeded(slot.name)
    elif health.status in ("unhealthy", "degraded"):
        if health.error_kind != Kind.AUTH:  # a refused key is a setting to fix, not an outage
            router.failed(slot.name, Reason.failed(without_name(slot.name, health.detail or health.status),
                                                   health.error_kind))
        log_event("vllm_health_check_failed", provider=slot.name, endpoint=slot.endpoint, detail=health.detail,
                  error_kind=health.error_kind)
