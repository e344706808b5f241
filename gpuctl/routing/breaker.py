"""The circuit breaker's rules, as pure functions over `BreakerRecord` (no I/O, no clock).

closed → open after `threshold` consecutive failures → half-open after `cooldown_s`, when one
probe is let through → closed on success, open again on failure. The records live in the state
database so every gpuctl process sees the same breaker: a dead Modal costs one timeout, not
one per `gpuctl chat`.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, replace

from gpuctl.state import BreakerRecord


def check(record: BreakerRecord, now: float) -> tuple[bool, str | None]:
    """May a request go to this provider now? If not, the reason to show the user."""
    if record.state == "open" and record.open_until is not None and now < record.open_until:
        until = time.strftime("%H:%M:%S", time.localtime(record.open_until))
        why = f"breaker open until {until} after {record.failures} failure{'s' if record.failures != 1 else ''}"
        if record.last_error:
            why += f" ({record.last_error})"
        return False, why
    if record.state == "half_open" and record.open_until is not None and now < record.open_until:
        return False, "breaker half-open: another request is probing it"
    return True, None


def is_probe(record: BreakerRecord, now: float) -> bool:
    """An open breaker whose cooldown has passed lets one probe through (half-open); so does a
    half-open one whose probe's lease ran out (the prober died)."""
    return record.state in ("open", "half_open") and (record.open_until is None or now >= record.open_until)


def claim_probe(record: BreakerRecord, now: float, lease_s: float) -> BreakerRecord:
    """Half-open: this request probes; every other one (in any process) skips the provider
    until the probe succeeds, fails, or its lease runs out."""
    return replace(record, state="half_open", open_until=now + lease_s)


def on_success(record: BreakerRecord) -> BreakerRecord:
    if record.state == "closed" and record.failures == 0:
        return record
    return replace(record, state="closed", failures=0, opened_at=None, open_until=None, last_error=None)


def on_failure(record: BreakerRecord, now: float, *, threshold: int, cooldown_s: float, error: str) -> BreakerRecord:
    failures = record.failures + 1
    if is_probe(record, now) or failures >= threshold:
        return replace(record, state="open", failures=failures, opened_at=now,
                       open_until=now + cooldown_s, last_error=error)
    return replace(record, state="closed", failures=failures, last_error=error)


@dataclass(frozen=True)
class BreakerView:
    """A breaker as `gpuctl status` shows it: a short `label` for the table, and while it is
    open, `why` (until when, after how many failures, the last error) for the detail line."""

    label: str
    why: str | None = None

    @property
    def text(self) -> str:
        """'open: breaker open until 12:00:00 after 3 failures (refused)': the JSON's `breaker`."""
        return f"{self.label}: {self.why}" if self.why else self.label


def view(record: BreakerRecord, now: float) -> BreakerView:
    """closed, closed (2 failed), open (with why), half-open (probing | next request probes)."""
    if record.state == "half_open":
        return BreakerView("half-open (probing)" if not is_probe(record, now) else "half-open (next request probes)")
    if record.state == "open":
        if is_probe(record, now):
            return BreakerView("half-open (next request probes)")
        allowed, why = check(record, now)
        return BreakerView("open", None if allowed else f"{why}; to retry now: `gpuctl status --deep`")
    if record.failures:
        return BreakerView(f"closed ({record.failures} failed)")
    return BreakerView("closed")


def describe(record: BreakerRecord, now: float) -> str:
    """`view(record, now).text`."""
    return view(record, now).text
