"""What gpuctl's Vast.ai instances bill right now, for `gpuctl status`: the ledger's live rows
merged with the account's instance list, so that no billing instance is ever hidden (a box
still loading, a create of unknown outcome, one another machine's ledger launched).

The list is read when an API key is set: it is one cheap GET that bills nothing, bounded by
`routing.health_timeout_s` and never retried (status must answer). When it cannot be read, or
comes back empty while the ledger shows live rows, the ledger's rows are shown with that said.
Only gpuctl-labelled instances (or ids a ledger row knows) are shown.

Must not: create, destroy or mark anything; print; put a key anywhere.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Sequence

from gpuctl.config import Settings
from gpuctl.errors import GpuctlError
from gpuctl.providers.base import Rental, Rentals
from gpuctl.state import InstanceRow, State, StateUnavailableError
from gpuctl.vastai.api_types import PROVIDER, Instance, Listing
from gpuctl.vastai.instances import ORPHAN_GRACE_S, is_gpuctl_label

VLLM_PORT = 8000  # deploy/vastai/container.toml's vllm.port (a listed instance's endpoint)


def read_listing(settings: Settings, timeout_s: float) -> Listing:
    from gpuctl.http.client import Timeouts
    from gpuctl.vastai.client import VastAIClient

    t = float(timeout_s)
    with VastAIClient(settings["vastai.api_key"], api_url=settings["vastai.api_url"], retries=0,
                      timeouts=Timeouts(connect=t, first_byte=t, read=t, write=t, pool=t)) as client:
        return client.listing()


async def rentals(settings: Settings, state: State | None, *, now: float | None = None, routed: bool = True) -> Rentals:
    """The ledger's live rows, and (with an API key) the account's gpuctl instances, merged.
    `routed` False: `routing.priority` leaves Vast.ai out, so not even a ready one is used."""
    at = time.time() if now is None else now
    try:
        rows = state.live_instances(PROVIDER) if state is not None else []
    except StateUnavailableError as exc:
        if not settings.get("vastai.api_key"):
            raise
        # The ledger is away, the account is not: what bills is listed from its labels, and
        # said to be the account's view only.
        listed_only = await rentals(settings, None, now=at, routed=routed)
        return Rentals(listed_only.items, listed_only.error or f"the instance ledger is unreachable ({exc.message}): "
                                                              "this is the Vast.ai account's list alone")
    if not settings.get("vastai.api_key"):
        if not rows:
            return Rentals()
        return Rentals(merge(rows, None, at, routed), "VASTAI_API_KEY is not set: nothing can check or destroy these "
                                                 "until it is")
    timeout = float(settings["routing.health_timeout_s"])
    try:
        listing = await asyncio.wait_for(asyncio.to_thread(read_listing, settings, timeout), timeout * 2 + 1)
    except TimeoutError:
        return Rentals(merge(rows, None, at, routed), f"the Vast.ai instance list did not answer within {timeout:g}s")
    except GpuctlError as exc:
        return Rentals(merge(rows, None, at, routed), f"the Vast.ai instance list could not be read "
                                              f"({exc.message.rstrip('.')})")
    if not listing.instances and rows and not listing.shows_absence:
        return Rentals(merge(rows, None, at, routed), "Vast.ai returned an empty instance list while the ledger shows live "
                                              "instances: not trusted")
    return Rentals(merge(rows, listing, at, routed))


def merge(rows: Sequence[InstanceRow], listing: Listing | None, now: float, routed: bool = True) -> tuple[Rental, ...]:
    """One `Rental` per billing instance: each listed gpuctl instance (with its ledger row, if
    any), then each live row the list does not show."""
    out: list[Rental] = []
    seen: set[int] = set()
    by_remote = {r.remote_id: r for r in rows if r.remote_id}
    by_label = {r.label: r for r in rows if r.remote_id is None}
    for inst in listing.instances if listing is not None else ():
        row = by_remote.get(str(inst.id)) or by_label.get(inst.label or "")
        if row is None and not is_gpuctl_label(inst.label):
            continue  # not gpuctl's
        if row is not None:
            seen.add(row.id)
        out.append(listed(inst, row, now, routed))
    for row in rows:
        if row.id not in seen:
            out.append(unlisted(row, now, listing))
    return tuple(out)


def listed(inst: Instance, row: InstanceRow | None, now: float, routed: bool = True) -> Rental:
    age = max(0.0, now - inst.start_date) if inst.start_date is not None else (
        max(0.0, now - row.created_at) if row else None)
    dph = str(inst.dph_total) if inst.dph_total is not None else (row.dph if row else None)
    endpoint = row.endpoint if row and row.endpoint else inst.endpoint(VLLM_PORT)
    state = inst.actual_status or "created"
    if row is None:
        detail = (f"not in this machine's ledger (launched elsewhere, or a crash): `gpuctl destroy {inst.id} --yes`; "
                  f"`gpuctl cleanup` destroys it {minutes(ORPHAN_GRACE_S)} after its start")
    elif row.status == "ready":
        detail = "ready: the router uses it" if routed else "ready, unused: routing.priority leaves vastai out"
    elif row.status == "unattended":
        detail = "nobody is watching it boot (--no-wait): `gpuctl cleanup` marks it ready once vLLM answers"
    elif row.status in ("created", "loading", "running"):
        detail = "booting: a launch is watching it, or `gpuctl cleanup` destroys it if that launch is gone"
    else:
        detail = f"ledger status {row.status}: `gpuctl cleanup` finishes it"
    if inst.status_msg and state != "running":
        detail = f"{detail} ({inst.status_msg[:120]})"
    return Rental(str(inst.id), state, dph, age, f"{endpoint}/v1" if endpoint else None, detail)


def unlisted(row: InstanceRow, now: float, listing: Listing | None) -> Rental:
    age = max(0.0, now - row.created_at)
    if row.remote_id is None:
        return Rental(f"ledger row {row.id}", row.status, row.dph, age, None,
                      f"a create of unknown outcome: no instance carries {row.label} (yet); held against the budget "
                      "until `gpuctl cleanup` settles it")
    if listing is None:
        detail = "in the ledger (not checked against Vast.ai)"
    else:
        detail = "in the ledger but not in Vast.ai's list: probably gone; `gpuctl cleanup` confirms it"
    endpoint = f"{row.endpoint}/v1" if row.endpoint else None
    return Rental(row.remote_id, row.status, row.dph, age, endpoint, detail)


def minutes(seconds: float) -> str:
    return f"{seconds / 60:.0f} min"
