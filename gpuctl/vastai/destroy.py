"""`gpuctl destroy [vastai] [ID | LABEL | --all] [--force]`: plan which instances to destroy,
then destroy them and mark their ledger rows with what they cost.

Only what gpuctl created is destroyed: an id whose instance carries no gpuctl label and that no
ledger row knows is refused (a usage error naming its label) unless `force`; `--all` never
looks past gpuctl's labels and ledger rows, force or not.

`--all` is every instance labelled by gpuctl in the remote list *plus* every live ledger row:
neither source alone is trusted (the list can come back empty, the ledger can miss a crash).
An instance that is already gone is fine: its row is marked destroyed. A row that never got an
instance id (an `unconfirmed` create) is marked never-created when a listing that shows absence
(non-empty, or saying `total_instances: 0`) lacks its label, no launch holds its lock, and it
is older than `unconfirmed.CREATE_IN_FLIGHT_S` (an instance that appears after all is an
orphan cleanup destroys); otherwise it is reported as not done, and the user, having checked
the web console, can name the row by its label (`gpuctl destroy gpuctl:<profile>:<nonce>`):
their word stands in for a list that cannot prove anything (a bare empty one). A list that
cannot be read is an error even when the ledger has nothing to destroy. A run in which nothing
succeeded is a failure (`ActionsFailed`, exit 1); one in which only some did is partial (exit 4);
Ctrl-C stops it with what each target's state is (`DestroyInterrupted`, exit 130).
Must not print or exit; the command confirms between `plan_destroy` and `execute_destroy`.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

from gpuctl.costs.money import money_str
from gpuctl.errors import EXIT_INTERRUPTED, GpuctlError, PartialError, ProviderError, UsageError
from gpuctl.events import log_event
from gpuctl.state import InstanceRow, State, StateUnavailableError
from gpuctl.vastai.api_types import Instance, Listing
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.instances import (
    PROVIDER,
    ActionsFailed,
    destroy_remote,
    if_reachable,
    is_gpuctl_label,
    launch_in_progress,
    mark_destroyed,
    record_untracked,
    request_destroy,
)
from gpuctl.vastai.unconfirmed import CREATE_IN_FLIGHT_S, forget_absent


@dataclass(frozen=True)
class Target:
    instance_id: int | None  # None: a ledger intent whose create never reported an id
    row: InstanceRow | None
    remote: Instance | None
    label: str | None
    gpu: str | None
    dph: str | None
    named: bool = False  # an id-less row the user named by its label: no listed instance carries it
    foreign: bool = False  # not gpuctl's (no gpuctl label, no ledger row): destroyed only with --force

    @property
    def status(self) -> str | None:
        """Vast's word for a listed instance ("created" before it has one: a --no-wait box still
        starting, as `gpuctl status` says), else the ledger's."""
        if self.remote is not None:
            return self.remote.actual_status or "created"
        return self.row.status if self.row else None

    def as_dict(self) -> dict[str, Any]:
        return {"instance_id": self.instance_id, "ledger_row": self.row.id if self.row else None,
                "label": self.label, "gpu": self.gpu, "dph": self.dph,
                "status": self.status,
                "created_by_gpuctl": not self.foreign}


@dataclass(frozen=True)
class DestroyPlan:
    targets: tuple[Target, ...]
    list_error: str | None = None  # --all could not read the remote list (ledger rows still go)
    listed: int | None = None  # how many instances the list showed
    shows_absence: bool = False  # the list is evidence that a label it lacks is on no instance
    ledger_error: str | None = None  # the (shared) ledger is unreachable: planned from the account's list

    def as_dict(self) -> dict[str, Any]:
        return {"targets": [t.as_dict() for t in self.targets], "list_error": self.list_error,
                "ledger_error": self.ledger_error}

    def check_listed(self) -> None:
        """A list that could not be read is a failure even with nothing to destroy: instances
        the ledger does not know may be billing."""
        if self.list_error and not self.targets:
            raise ProviderError(
                f"the Vast.ai instance list could not be read ({self.list_error}); the ledger shows nothing live, "
                "but instances it does not know may still bill. Nothing was destroyed.",
                provider=PROVIDER, hint="check https://console.vast.ai, then run `gpuctl destroy --all --yes` again")


@dataclass(frozen=True)
class Outcome:
    target: Target
    result: str  # destroyed | already_gone | marked | failed
    cost: Decimal | None = None
    error: str | None = None
    note: str | None = None  # e.g. the launch that was watching it stops (it does not replace it)

    def as_dict(self) -> dict[str, Any]:
        return {**self.target.as_dict(), "result": self.result,
                "cost": money_str(self.cost), "error": self.error, "note": self.note}


@dataclass(frozen=True)
class DestroyReport:
    outcomes: tuple[Outcome, ...] = field(default=())
    list_error: str | None = None
    ledger_error: str | None = None  # destroyed from the account's list: the ledger is unreachable

    @property
    def failed(self) -> list[Outcome]:
        return [o for o in self.outcomes if o.result == "failed"]

    def as_dict(self) -> dict[str, Any]:
        return {"dry_run": False, "results": [o.as_dict() for o in self.outcomes],
                "destroyed": sum(o.result in ("destroyed", "already_gone", "marked") for o in self.outcomes),
                "failed": len(self.failed), "list_error": self.list_error, "ledger_error": self.ledger_error}


def _target(instance_id: int | None, row: InstanceRow | None, remote: Instance | None) -> Target:
    gpu = (remote.gpu_name if remote else None) or (row.gpu if row else None)
    dph = (row.dph if row else None) or (str(remote.dph_total) if remote and remote.dph_total is not None else None)
    label = (remote.label if remote else None) or (row.label if row else None)
    return Target(instance_id, row, remote, label, gpu, dph)


def plan_destroy(client: VastAIClient, state: State, *, instance_id: int | None = None, all_: bool = False,
                 label: str | None = None, force: bool = False) -> DestroyPlan:
    """`force` lets one named id that gpuctl did not create be destroyed; nothing else."""
    if sum((instance_id is not None, all_, label is not None)) != 1:
        raise UsageError("name one Vast.ai instance id or gpuctl label, or pass --all (one of them)",
                         hint="e.g. `gpuctl destroy 12345` or `gpuctl destroy --all --yes`")
    if force and instance_id is None:
        raise UsageError("--force only applies to one Vast.ai instance id: --all and labels only ever touch "
                         "what gpuctl created", hint="e.g. `gpuctl destroy 12345 --force --yes`")
    try:
        return _plan(client, state, instance_id=instance_id, all_=all_, label=label, force=force)
    except StateUnavailableError as exc:
        # The shared ledger is away, the account is not: stopping what bills must not wait for
        # the database. Only gpuctl's labels say what is gpuctl's then; `cleanup` settles the
        # ledger rows once it answers.
        return _plan_account_only(client, instance_id=instance_id, all_=all_, label=label, force=force,
                                  why=exc.message)


def _plan(client: VastAIClient, state: State, *, instance_id: int | None, all_: bool, label: str | None,
          force: bool) -> DestroyPlan:
    if label is not None:
        return _plan_label(client, state, label)
    if instance_id is not None:
        row = state.instance_by_remote(PROVIDER, str(instance_id))
        remote = client.get_instance(instance_id)
        if row is None and remote is not None and is_gpuctl_label(remote.label):
            # A create of unknown outcome listed late: its row has no id yet. Match it by its
            # label, as --all does, so the destroy settles that row (no second row, nothing held).
            row = next((r for r in state.live_instances(PROVIDER) if r.label == remote.label and r.remote_id is None),
                       None)
        if remote is None and (row is None or not row.live):
            raise no_such_instance(instance_id)
        # A ledger row with this id means gpuctl created it, whatever its label says now.
        foreign = remote is not None and row is None and not is_gpuctl_label(remote.label)
        if foreign and not force:
            assert remote is not None
            what = f"is labelled {remote.label!r}" if remote.label else "has no label"
            raise UsageError(f"Vast.ai instance {instance_id} {what}, not a gpuctl label: gpuctl did not create it, "
                             "so it was not destroyed",
                             hint=f"`gpuctl destroy {instance_id} --force` destroys it anyway")
        target = _target(instance_id, row, remote)
        return DestroyPlan((dataclasses.replace(target, foreign=foreign),))
    targets: dict[str, Target] = {}
    list_error = None
    listing = Listing(())
    try:
        listing = client.listing()
    except ProviderError as exc:
        list_error = exc.message
    remote_all = list(listing.instances)
    by_id = {i.id: i for i in remote_all}
    for inst in remote_all:
        if is_gpuctl_label(inst.label):
            row = state.instance_by_remote(PROVIDER, str(inst.id))
            if row is None:  # a create whose id never reached the ledger: match by its label
                row = next((r for r in state.live_instances(PROVIDER) if r.label == inst.label and r.remote_id is None), None)
            targets[str(inst.id)] = _target(inst.id, row, inst)
    for row in state.live_instances(PROVIDER):
        if row.remote_id and row.remote_id not in targets and row.remote_id.isdigit():
            rid = int(row.remote_id)
            targets[row.remote_id] = _target(rid, row, by_id.get(rid))
        elif not row.remote_id and list_error is None and not any(t.row and t.row.id == row.id for t in targets.values()):
            targets[f"row:{row.id}"] = _target(None, row, None)
    return DestroyPlan(tuple(targets.values()), list_error, None if list_error else len(remote_all),
                       list_error is None and listing.shows_absence)


def no_such_instance(instance_id: int) -> GpuctlError:
    # Not a usage error (the command was well formed): what it names is not there. Exit 1.
    return GpuctlError(f"Vast.ai instance {instance_id} does not exist (or is already destroyed)",
                       hint="`gpuctl destroy --all --dry-run` lists what gpuctl runs on Vast.ai")


def _plan_account_only(client: VastAIClient, *, instance_id: int | None, all_: bool, label: str | None,
                       force: bool, why: str) -> DestroyPlan:
    """The targets from the account's list alone (the ledger is unreachable)."""
    if instance_id is not None:
        remote = client.get_instance(instance_id)
        if remote is None:
            raise no_such_instance(instance_id)
        foreign = not is_gpuctl_label(remote.label)
        if foreign and not force:
            raise UsageError(f"Vast.ai instance {instance_id} is not labelled by gpuctl, and the ledger that could "
                             f"say gpuctl created it is unreachable ({why}): it was not destroyed",
                             hint=f"`gpuctl destroy {instance_id} --force` destroys it anyway")
        return DestroyPlan((dataclasses.replace(_target(instance_id, None, remote), foreign=foreign),),
                           ledger_error=why)
    listing = client.listing()  # an unreadable list is an error here: it is all there is
    chosen = [i for i in listing.instances if is_gpuctl_label(i.label) and (all_ or i.label == label)]
    if label is not None and not chosen:
        raise UsageError(f"no listed instance carries the label {label!r} (the ledger is unreachable: {why})",
                         hint="`gpuctl destroy --all --dry-run` lists what gpuctl runs on Vast.ai")
    return DestroyPlan(tuple(_target(i.id, None, i) for i in chosen), listed=len(listing.instances),
                       ledger_error=why)


def _plan_label(client: VastAIClient, state: State, label: str) -> DestroyPlan:
    """One instance or ledger row named by its gpuctl label. An unreadable list is an error here:
    the label is only looked up in it."""
    row = next((r for r in state.live_instances(PROVIDER) if r.label == label), None)
    remote_all = client.list_instances()
    inst = next((i for i in remote_all if i.label == label), None)
    if inst is not None:
        return DestroyPlan((_target(inst.id, row or state.instance_by_remote(PROVIDER, str(inst.id)), inst),),
                           listed=len(remote_all))
    if row is None:
        raise UsageError(f"no live ledger row and no listed instance carries the label {label!r}",
                         hint="`gpuctl destroy --all --dry-run` lists what gpuctl runs on Vast.ai")
    if row.remote_id and row.remote_id.isdigit():
        rid = int(row.remote_id)
        return DestroyPlan((_target(rid, row, client.get_instance(rid)),), listed=len(remote_all))
    named = _target(None, row, None)
    return DestroyPlan((Target(None, row, None, named.label, named.gpu, named.dph, named=True),),
                       listed=len(remote_all))


class DestroyInterrupted(GpuctlError):
    """Ctrl-C during a destroy: the message says what state each target is in; `data` holds the
    results so far (for --json)."""

    exit_code = EXIT_INTERRUPTED

    def __init__(self, message: str, *, hint: str | None = None, data: object = None) -> None:
        super().__init__(message, hint=hint)
        self.data = data


def execute_destroy(client: VastAIClient, state: State, plan: DestroyPlan, *, home: Path | None = None,
                    clock: Callable[[], float] = time.time) -> DestroyReport:
    """Destroy every target; a failure does not stop the others. PartialError if some failed
    (or the list could not be read) and some succeeded; ActionsFailed if none succeeded;
    ProviderError if the list could not be read and there was nothing to destroy;
    DestroyInterrupted on Ctrl-C, saying what became of each target."""
    plan.check_listed()
    outcomes: list[Outcome] = []
    for target in plan.targets:
        try:
            outcomes.append(_destroy_one(client, state, target, home=home, clock=clock, listed=plan.listed,
                                         shows_absence=plan.shows_absence, ledger=plan.ledger_error is None))
        except KeyboardInterrupt:
            raise interrupted(plan, outcomes, target) from None
    report = DestroyReport(tuple(outcomes), plan.list_error, plan.ledger_error)
    if report.failed or plan.list_error:
        done = len(report.outcomes) - len(report.failed)  # targets is non-empty here (check_listed)
        parts = [f"destroyed {done} of {len(report.outcomes)}"]
        for o in report.failed[:3]:  # why, in the one line people read (the JSON has them all)
            parts.append(f"{name(o.target)}: {o.error}")
        if plan.list_error:
            parts.append(f"the instance list could not be read ({plan.list_error}), so instances missing from the "
                         "ledger may remain")
        hint = "run `gpuctl destroy --all --yes` again, or `gpuctl cleanup`"
        if done == 0:  # nothing succeeded: a failure, not a partial success
            raise ActionsFailed("; ".join(parts), data=report.as_dict(), hint=hint)
        raise PartialError("; ".join(parts), data=report.as_dict(), hint=hint)
    return report


def name(target: Target) -> str:
    if target.instance_id is not None:
        return f"instance {target.instance_id}"
    return f"ledger row {target.row.id if target.row else '?'}"


def interrupted(plan: DestroyPlan, outcomes: list[Outcome], current: Target) -> DestroyInterrupted:
    """What Ctrl-C leaves: the targets done, the one whose destroy was sent (its answer never
    read: it may or may not be gone), and those never touched (still billing)."""
    parts = [f"{name(o.target)} {o.result.replace('_', ' ')}" for o in outcomes]
    in_flight = [{**current.as_dict(), "result": "sent", "cost": None, "error": None}]
    if current.instance_id is not None:
        parts.append(f"{name(current)}: destroy sent; confirm with `gpuctl status`")
    else:
        parts.append(f"{name(current)}: not changed")
    rest = [t for t in plan.targets[len(outcomes) + 1:]]
    if rest:
        parts.append(f"not destroyed, still billing: {', '.join(name(t) for t in rest)}")
    results = [o.as_dict() for o in outcomes] + in_flight + [
        {**t.as_dict(), "result": "not_started", "cost": None, "error": None} for t in rest]
    log_event("vastai_destroy_interrupted", done=len(outcomes), sent=current.instance_id,
              not_started=[t.instance_id for t in rest])
    return DestroyInterrupted("interrupted: " + "; ".join(parts) + ".",
                              hint="`gpuctl destroy --all --yes` finishes the job; `gpuctl status` shows what bills",
                              data={"dry_run": False, "results": results, "interrupted": True})


def _destroy_one(client: VastAIClient, state: State, target: Target, *, home: Path | None,
                 clock: Callable[[], float], listed: int | None = None, shows_absence: bool = False,
                 ledger: bool = True) -> Outcome:
    """Destroy one target and record its end. `ledger` False: the ledger is unreachable (the
    plan came from the account's list): nothing is read or written, and `gpuctl cleanup`
    records the end once it answers. A ledger that goes away half-way never stops a destroy."""
    if target.instance_id is None:
        return _settle_id_less(state, target, home=home, clock=clock, listed=listed, shows_absence=shows_absence)
    # A launch still watching it is told first (before the request), so it reads the box's
    # disappearance as the user's word: it stops instead of renting a replacement.
    watched = bool(ledger and if_reachable(launch_in_progress, state, target.label))
    if watched and target.label:
        if_reachable(request_destroy, state, target.label)
    told = "the launch that was watching it stops: it does not rent a replacement" if watched else None
    try:
        destroyed_now = destroy_remote(client, target.instance_id)
    except ProviderError as exc:
        log_event("vastai_destroy_failed", instance_id=target.instance_id, error=exc.message)
        return Outcome(target, "failed", error=exc.message,
                       note=told and "the launch that was watching it was told to stop and destroy it")
    cost = None
    remote_dph = target.remote.dph_total if target.remote else None
    note = "destroyed by `gpuctl destroy`" if destroyed_now else "already gone"
    row = target.row
    if not ledger:
        told = "the ledger is unreachable: `gpuctl cleanup` records it once the ledger answers"
    # A row marked destroyed whose instance still billed is marked again: the cost grew.
    elif row is not None and (row.live or destroyed_now):
        cost = if_reachable(mark_destroyed, state, row, clock(), dph=remote_dph, note=note)
    elif row is None and destroyed_now and target.remote is not None and is_gpuctl_label(target.label):
        cost = if_reachable(record_untracked, state, target.remote, clock(), note=note)
    result = "destroyed" if destroyed_now else "already_gone"
    log_event("vastai_instance_destroyed", instance_id=target.instance_id, result=result,
              cost=None if cost is None else str(cost), label=target.label, launch_watching=watched)
    return Outcome(target, result, cost, note=told)


def _settle_id_less(state: State, target: Target, *, home: Path | None, clock: Callable[[], float],
                    listed: int | None, shows_absence: bool) -> Outcome:
    """A ledger row without an instance id (`unconfirmed`): see the module doc."""
    row = target.row
    assert row is not None
    if home is not None and launch_in_progress(state, row.label):
        return Outcome(target, "failed", error="a launch is still creating it; Ctrl-C that launch instead")
    age = clock() - row.created_at
    if target.named:
        note = "marked never-created by `gpuctl destroy <label>`: no listed instance carries its label"
    elif not shows_absence:
        # A bare empty list proves nothing: the instance may bill while the list says nothing.
        return Outcome(target, "failed", error=(
            "no instance id was recorded and the instance list is empty without saying so, which does not prove "
            f"its create never happened. Check https://console.vast.ai: if no instance carries it, "
            f"`gpuctl destroy {row.label} --yes` clears the row"))
    elif age < CREATE_IN_FLIGHT_S:
        return Outcome(target, "failed", error=(
            f"no listed instance carries its label, but the row is only {age:.0f} s old: its create may still be "
            "listed. Run `gpuctl destroy --all --yes` again in a few minutes"))
    else:
        note = (f"no listed instance ({listed or 0} on the account) carries its label: marked never-created "
                "(if one appears after all, `gpuctl cleanup` destroys it as an orphan)")
    mark_destroyed(state, row, clock(), never_created=True, note=note)
    forget_absent(state, row.label)
    log_event("vastai_instance_destroyed", instance_id=None, ledger_row=row.id, result="marked", named=target.named)
    return Outcome(target, "marked", Decimal(0))
