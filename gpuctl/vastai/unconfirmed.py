"""Ledger rows that carry no instance id: a create of unknown outcome (`unconfirmed`), or an
intent left by a crash. When may the ledger believe that no instance carries their label?

Never on one look: an empty list is what a broken endpoint sends (the 2026 leak), and a create
in flight may be listed late. So cleanup settles such a row (marks it never-created, $0) only
when it is older than `ORPHAN_GRACE_S` *and* two listings that show absence
(`Listing.shows_absence`: non-empty, or an explicit `total_instances: 0`), at least
`ABSENCE_CONFIRM_S` apart, both lacked its label. The first such sighting is remembered in the
state (a `vastai` fact `absent:<label>`, shared by every host that shares the state); a
listing that shows the label forgets it, and the row is matched to its instance. Neither a
single outage nor a fast pair of runs can settle a row, and no row is held forever.

`gpuctl destroy --all` is the user asking for everything gone: it settles such a row on one
listing that shows absence, once no launch holds its lock and it is older than
`CREATE_IN_FLIGHT_S`; an instance that appears after all is an orphan (gpuctl's label, no live
row), which `gpuctl status` shows and cleanup destroys.

The same memory serves an orphan (gpuctl's label, no ledger row) whose list entry has no
`start_date`: its age is counted from the first cleanup that saw it (a `vastai` fact
`seen:<instance id>`), so it is not "0 s old" on every run and kept forever; the fact goes
when the instance does.

Such rows are *held* against the budget (a launch counts them), not *charged*: no instance is
known to exist, so cleanup's spend (`charged`) leaves them out, as `gpuctl cost report` does.

Must not: destroy anything, print, or decide about rows that have an instance id.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from gpuctl.state import InstanceRow, State
from gpuctl.vastai.api_types import PROVIDER, Listing

# Seconds between the two listings that must both lack the label (cron runs every 10 minutes).
ABSENCE_CONFIRM_S = 10 * 60
# A create Vast accepted is listed within a minute or two (and the launch looked for 60 s).
CREATE_IN_FLIGHT_S = 2 * 60


def _fact(label: str) -> str:
    return f"absent:{label}"


def first_absent(state: State, label: str) -> float | None:
    value = state.metrics(PROVIDER).get(_fact(label))
    return float(value) if isinstance(value, int | float) else None


def note_absent(state: State, label: str, now: float) -> None:
    """Remember the first listing that showed the label absent."""
    state.set_metric(PROVIDER, _fact(label), now)


def forget_absent(state: State, label: str) -> None:
    """The label was listed (or the row is settled): the evidence starts again."""
    if first_absent(state, label) is not None:
        state.set_metric(PROVIDER, _fact(label), None)


def first_seen(state: State, instance_id: int) -> float | None:
    """When cleanup first saw this instance without a start date (None: not yet)."""
    value = state.metrics(PROVIDER).get(f"seen:{instance_id}")
    return float(value) if isinstance(value, int | float) else None


def note_seen(state: State, instance_id: int, now: float) -> None:
    state.set_metric(PROVIDER, f"seen:{instance_id}", now)


def forget_seen(state: State, listed: Iterable[int]) -> None:
    """Drop the sightings of instances the list no longer shows (destroyed, or gone)."""
    keep = {f"seen:{i}" for i in listed}
    for name, value in state.metrics(PROVIDER).items():
        if name.startswith("seen:") and value is not None and name not in keep:
            state.set_metric(PROVIDER, name, None)


def held_rows(rows: Iterable[InstanceRow]) -> list[InstanceRow]:
    """Live rows without an instance id (creates of unknown outcome, intents): held, not charged."""
    return [r for r in rows if r.live and r.remote_id is None]


def charged(rows: Iterable[InstanceRow]) -> list[InstanceRow]:
    """The rows whose cost is spend: every row but the held ones (`held_rows`)."""
    return [r for r in rows if not (r.live and r.remote_id is None)]


@dataclass(frozen=True)
class Verdict:
    settle: bool  # mark the row never-created now
    reason: str
    record: bool = False  # remember this listing as the first absence sighting


def judge(row: InstanceRow, listing: Listing, now: float, *, first_seen_absent: float | None, grace_s: float,
          confirm_s: float = ABSENCE_CONFIRM_S) -> Verdict:
    """Cleanup's rule for one id-less row whose label `listing` lacks (see the module doc)."""
    age = max(0.0, now - row.created_at)
    if age < grace_s:
        return Verdict(False, f"no instance carries its label yet; its create may still appear "
                              f"({minutes(age)} old, grace {minutes(grace_s)})")
    if not listing.shows_absence:
        return Verdict(False, "the instance list is empty without saying so (total_instances): that shows nothing")
    if first_seen_absent is None:
        return Verdict(False, f"no listed instance carries its label ({minutes(age)} old); settled once a listing "
                              f"{minutes(confirm_s)} from now still lacks it", record=True)
    apart = now - first_seen_absent
    if apart < confirm_s:
        return Verdict(False, f"missing from the listings for {minutes(apart)}; settled once it has been missing "
                              f"for {minutes(confirm_s)}")
    return Verdict(True, f"no listed instance carried its label for {minutes(apart)} ({len(listing.instances)} "
                         f"listed now), {minutes(age)} after its create: the create never happened")


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min" if seconds >= 60 else f"{seconds:.0f} s"
