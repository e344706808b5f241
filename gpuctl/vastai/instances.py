"""What launch, destroy and cleanup share: gpuctl's instance label, the per-launch and cleanup
locks, the client built from settings, "destroy it and mark the ledger row with its cost", and
the error for a run in which every destroy failed (`ActionsFailed`).

The label is `gpuctl:<profile or 'env'>:<nonce>`. The `gpuctl:` prefix is how cleanup finds
what gpuctl created without the ledger; the nonce is unique per launch, written to the ledger's
intent row *before* the create call, so an instance whose id never reached the ledger (a crash
right after the create) is still matched to its row by label.

A launch holds the state lock `launch-<nonce>` until it returns (an flock on
`GPUCTL_HOME/locks/launch-<nonce>.lock`, or a PostgreSQL advisory lock); it is dropped when the
process dies (even SIGKILL), so cleanup on any host can tell a launch that is still watching
its instance from one whose process is gone. Every launch also runs "check the budget, write
the intent row" as one serialised transaction (`budget_lock`), so two launches at once, on one
host or several, cannot both spend the same dollars.

Must not: decide what to destroy (cleanup and destroy do), print, or exit.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import re
import secrets
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from decimal import Decimal
from typing import Any, TypeVar

from gpuctl.config import Settings
from gpuctl.errors import CredentialsError, ProviderError
from gpuctl.state import InstanceRow, State, StateUnavailableError
from gpuctl.vastai.api_types import PROVIDER, Instance
from gpuctl.vastai.budget import dec, higher_dph, lifetime_cost
from gpuctl.vastai.client import AUTH_HINT, VastAIClient

logger = logging.getLogger("gpuctl.vastai")
T = TypeVar("T")

# How long a gpuctl-labelled instance the ledger does not know, or an intent row the list does
# not show, is given before cleanup acts: a launch may still be between its create and its
# ledger write, or its create may still be in flight at Vast.
ORPHAN_GRACE_S = 15 * 60
LABEL_PREFIX = "gpuctl:"
_NONCE_RE = re.compile(r"^[0-9a-f]{8,32}$")
_COST_PLACES = Decimal("0.000001")


class ActionsFailed(ProviderError):
    """Every destroy (or cleanup action) that was tried failed: exit 1, not the partial 4
    ("destroyed 0 of 1" is a failure). Carries the per-instance results for --json as `data`,
    as PartialError does (the CLI's error handler puts them in the envelope)."""

    def __init__(self, message: str, *, data: object, hint: str | None = None) -> None:
        super().__init__(message, provider=PROVIDER, kind="http", hint=hint)
        self.data = data


def make_label(profile: str | None, nonce: str | None = None) -> str:
    return f"{LABEL_PREFIX}{profile or 'env'}:{nonce or secrets.token_hex(6)}"


def is_gpuctl_label(label: str | None) -> bool:
    return bool(label) and str(label).startswith(LABEL_PREFIX)


def label_nonce(label: str | None) -> str | None:
    parts = (label or "").split(":")
    if len(parts) >= 3 and parts[0] + ":" == LABEL_PREFIX and _NONCE_RE.match(parts[-1]):
        return parts[-1]
    return None


# -- locks ---------------------------------------------------------------------------------
# The locks are the state's own (`State.lock`): flock files beside a SQLite state, advisory
# locks in a shared PostgreSQL one, so they hold across every host that shares the budget.

CLEANUP_LOCK = "cleanup"
BUDGET_LOCK = "launch"  # the name (and SQLite's locks/launch.lock) it always had


def launch_lock_name(label: str | None) -> str | None:
    nonce = label_nonce(label)
    return f"launch-{nonce}" if nonce else None


@contextlib.contextmanager
def launch_lock(state: State, label: str) -> Iterator[None]:
    """Held by the launching process for the whole launch; a dead launcher's lock is gone."""
    name = launch_lock_name(label)
    if name is None:
        raise ValueError(f"label {label!r} has no launch nonce")
    with state.try_lock(name, ephemeral=True) as held:
        if not held:  # a nonce is random: this only happens if a label was reused
            raise RuntimeError(f"launch lock {name} is already held")
        yield


def budget_lock(state: State) -> AbstractContextManager[None]:
    """Every launch's "re-check the budget, then write the intent row" step: one transaction,
    one launch at a time across processes and hosts (a SQLite write transaction under a flock;
    a PostgreSQL transaction under an advisory transaction lock). What it reads and writes
    through `state` commits together, or not at all."""
    return state.serialised(BUDGET_LOCK)


def launch_in_progress(state: State, label: str | None) -> bool:
    """True while the process that launched this label is alive and still watching it."""
    name = launch_lock_name(label)
    return name is not None and state.lock_held(name)


# `gpuctl destroy` of an instance a launch still watches writes this fact (`destroy:<label>`)
# *before* its destroy request: the launch then knows the box vanished on the user's word (it
# stops, and never rents a replacement), not because the host failed.


def request_destroy(state: State, label: str) -> None:
    state.set_metric(PROVIDER, f"destroy:{label}", state.clock())


def destroy_requested(state: State, label: str) -> bool:
    return state.metrics(PROVIDER).get(f"destroy:{label}") is not None


def forget_destroy_request(state: State, label: str) -> None:
    if destroy_requested(state, label):
        state.set_metric(PROVIDER, f"destroy:{label}", None)


# -- client and destroy --------------------------------------------------------------------


def open_client(settings: Settings) -> VastAIClient:
    key = settings.get("vastai.api_key")
    if not key:
        raise CredentialsError("No Vast.ai API key.", hint=AUTH_HINT)
    return VastAIClient(key, api_url=settings["vastai.api_url"])


def if_reachable(call: Callable[..., T], *args: Any, **kw: Any) -> T | None:
    """A ledger read or write next to a destroy: the shared state may be what failed (down, or
    hung), and that must never stop the destroy. None when it could not be done; `gpuctl
    cleanup` settles the row once the state answers (its label finds it)."""
    try:
        return call(*args, **kw)
    except StateUnavailableError as exc:
        logger.warning("the ledger could not be read or updated: %s", exc.message)
        return None


def destroy_remote(client: VastAIClient, instance_id: int) -> bool:
    """Destroy; True if it was destroyed now, False if Vast says it was already gone.

    A 404 is only "gone" once a show confirms it: an API that answers 404 by mistake must not
    make gpuctl forget an instance that still bills."""
    try:
        client.destroy_instance(instance_id)
        return True
    except ProviderError as exc:
        if exc.kind == "not_found" and client.get_instance(instance_id) is None:
            return False
        raise


def instance_cost(row: InstanceRow, end: float, *, dph: Decimal | None = None) -> Decimal | None:
    """$/h × lifetime, at the higher of the recorded price and `dph` (the live one)."""
    rate = higher_dph(row.dph, dph)
    if rate is None:
        return None
    return lifetime_cost(rate, row.created_at, end).quantize(_COST_PLACES)


def mark_destroyed(state: State, row: InstanceRow, now: float, *, dph: Decimal | None = None,
                   note: str | None = None, never_created: bool = False) -> Decimal | None:
    """Mark the row destroyed at `now` with its cost ($/h × lifetime; 0 for an intent whose
    create never happened); returns the cost."""
    cost = Decimal(0) if never_created else instance_cost(row, now, dph=dph)
    changes: dict[str, object] = {"status": "destroyed", "destroyed_at": now,
                                  "cost": None if cost is None else str(cost)}
    rate = higher_dph(row.dph, dph)
    if rate is not None and str(rate) != row.dph:
        changes["dph"] = str(rate)
    if note:
        changes["status_msg"] = note[:500]
    state.update_instance(row.id, **changes)  # one transaction: destroyed, when, and what it cost
    return cost


def record_live_price(state: State, row: InstanceRow, live_dph: Decimal | None, *, write: bool = True) -> InstanceRow:
    """Raise the row's $/h to the live price Vast reports, if higher (a host raised it at
    renewal); never lower it. Returns the row as the budget should now see it."""
    recorded = dec(row.dph)
    rate = higher_dph(recorded, live_dph)
    if rate is None or (recorded is not None and rate <= recorded):
        return row
    if write:
        state.update_instance(row.id, dph=str(rate))
    return dataclasses.replace(row, dph=str(rate))


def record_untracked(state: State, inst: Instance, now: float, *, note: str) -> Decimal | None:
    """Put a gpuctl-labelled instance the ledger never knew (a crash before its intent row
    settled, another machine's ledger) into the ledger as destroyed, so its cost counts."""
    row_id = state.add_instance_intent(
        provider=PROVIDER, label=inst.label or f"unlabelled:{inst.id}", gpu=inst.gpu_name,
        dph=None if inst.dph_total is None else str(inst.dph_total),
        machine_id=None if inst.machine_id is None else str(inst.machine_id),
    )
    state.update_instance(row_id, remote_id=str(inst.id), status="created",
                          created_at=inst.start_date if inst.start_date is not None else now)
    row = state.get_instance(row_id)
    assert row is not None
    return mark_destroyed(state, row, now, note=note)
