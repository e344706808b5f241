"""`gpuctl cleanup`, for cron: nothing gpuctl created keeps billing after a crash, an idle
period, or a budget overrun.

The remote list is the truth and the ledger the cross-check. Every instance whose label
starts with `gpuctl:` is judged, in this order:

- over budget: total spend (live instances up to now) reached `vastai.budget_limit`, or this
  instance alone has cost `vastai.session_budget_limit` → destroy;
- a launch is still watching it (its launch lock is held) → keep, but only up to
  `LAUNCH_WATCH_MAX_S` after the row's create (the loading and health deadlines plus a margin):
  a launch paused with Ctrl-Z (SIGSTOP) holds its lock forever, so past that bound the
  instance is judged as if no launch held it;
- exited (a stopped instance still bills storage) → destroy;
- its launch was abandoned (the launching process died before vLLM was ready) → destroy;
- stuck loading past 10 minutes → destroy;
- unattended (--no-wait / --keep): promoted to ready once vLLM answers, destroyed if it is
  not ready within 30 minutes;
- ready but idle past the keep-alive (last use from the usage ledger, else when it became
  ready) → destroy;
- any other ledger status (neither ready nor unattended, no launch watching it) → destroy once
  older than the grace period;
- orphaned (unknown to the ledger) and older than the grace period → destroy (younger ones
  may be a launch that has not written its row yet). An orphan the list gives no
  `start_date` is aged from the first run that saw it (remembered in the state, as absent
  labels are), never "0 s old" forever.

Each listed instance's live $/h is recorded when it is higher than the ledger's (hosts raise
prices at renewal), before any budget is judged. The spend judged (and reported) is what the
instances cost: a row without an instance id that no listed instance carries (an `unconfirmed`
create) is held against the budget by launches, not charged, as in `gpuctl cost report`
(`held` in the report). Ledger rows the list does not show are
confirmed one by one (`show`) before being marked gone; a row that never got an instance id
(an `unconfirmed` create of unknown outcome, or an intent cut off) is marked never-created only
on evidence one outage cannot fake: older than the grace period, and two listings that show
absence at least 10 minutes apart both lacked its label (`gpuctl.vastai.unconfirmed`). An empty
or malformed list while the ledger shows a live row with an instance id, or an empty one that
does not say `total_instances: 0`, is an API error: nothing is destroyed and nothing marked (an
empty answer read as "none" made a major tool leak paid instances in
2026). A second concurrent run returns at once (the state's `cleanup` lock: on every host that
shares the state). Each
action is one `vastai_cleanup_action` event. Must not print.
"""

from __future__ import annotations

import contextlib
import dataclasses
import time
from collections.abc import Callable
from decimal import Decimal
from typing import Any

from gpuctl.config import Settings
from gpuctl.costs.money import money_str
from gpuctl.errors import CredentialsError, ProviderError
from gpuctl.events import log_event
from gpuctl.providers.base import Health
from gpuctl.state import InstanceRow, State, open_for
from gpuctl.vastai import budget
from gpuctl.vastai.api_types import Instance, Listing
from gpuctl.vastai.budget import dec, money
from gpuctl.vastai.cleanup_report import Action, CleanupReport, check_max_idle, failure_error
from gpuctl.vastai.client import AUTH_HINT, VastAIClient
from gpuctl.vastai.container import find_vllm_key
from gpuctl.vastai.instances import (
    CLEANUP_LOCK,
    ORPHAN_GRACE_S,
    PROVIDER,
    destroy_remote,
    is_gpuctl_label,
    launch_in_progress,
    mark_destroyed,
    open_client,
    record_live_price,
    record_untracked,
)
from gpuctl.vastai.unconfirmed import (
    ABSENCE_CONFIRM_S,
    charged,
    first_absent,
    first_seen,
    forget_absent,
    forget_seen,
    held_rows,
    judge,
    minutes,
    note_absent,
    note_seen,
)
from gpuctl.vastai.watch import HEALTH_TIMEOUT_S, LOADING_TIMEOUT_S, Probe, probe_vllm

__all__ = ["ANOTHER_RUNNING", "Action", "CleanupReport", "check_max_idle", "failure_error", "run_cleanup"]

READY_DEADLINE_S = LOADING_TIMEOUT_S + HEALTH_TIMEOUT_S
# A launch watches one create for at most its loading and health deadlines, plus the create's
# own look-up and a few polls: a lock held longer belongs to a launch that is stopped (Ctrl-Z),
# not one that is watching. Cleanup then judges the instance as if no launch held it.
LAUNCH_WATCH_MARGIN_S = 10 * 60
_LAUNCHING = frozenset({"intent", "created", "loading", "running", "failed", "unconfirmed"})
ANOTHER_RUNNING = "another cleanup is running"


def run_cleanup(
    settings: Settings,
    *,
    client: VastAIClient | None = None,
    state: State | None = None,
    dry_run: bool = False,
    max_idle_minutes: float | None = None,
    clock: Callable[[], float] = time.time,
    probe: Probe | None = None,
    orphan_grace_s: float = ORPHAN_GRACE_S,
    absence_confirm_s: float = ABSENCE_CONFIRM_S,
    loading_timeout_s: float = LOADING_TIMEOUT_S,
    ready_deadline_s: float = READY_DEADLINE_S,
) -> CleanupReport:
    """One cleanup pass under the cleanup lock; raises ProviderError when the API cannot be read."""
    check_max_idle(max_idle_minutes)
    own_state = state is None
    st = state if state is not None else open_for(settings, clock=clock)
    # One cleanup at a time on every host sharing the state (a flock, or an advisory lock).
    with contextlib.closing(st) if own_state else contextlib.nullcontext(), st.try_lock(CLEANUP_LOCK) as held:
        if not held:
            log_event("vastai_cleanup_skipped", reason=ANOTHER_RUNNING)
            return CleanupReport(dry_run, skipped=True, message=ANOTHER_RUNNING)
        own_client = False
        try:
            if client is None:
                if not settings.get("vastai.api_key"):
                    live = st.live_instances(PROVIDER)
                    if live:
                        raise CredentialsError(
                            f"the ledger shows {len(live)} live Vast.ai instance(s) but no Vast.ai API key is set "
                            "to check or destroy them", hint=AUTH_HINT)
                    return CleanupReport(dry_run, message="Vast.ai is not configured; nothing to clean up")
                client, own_client = open_client(settings), True
            idle = settings["vastai.keep_alive_minutes"] if max_idle_minutes is None else max_idle_minutes
            run = _Cleanup(settings, client, st, dry_run=dry_run, max_idle_s=float(idle) * 60, now=clock(),
                           probe=probe or probe_vllm, orphan_grace_s=orphan_grace_s, absence_confirm_s=absence_confirm_s,
                           loading_timeout_s=loading_timeout_s, ready_deadline_s=ready_deadline_s)
            return run.run()
        finally:
            if own_client and client is not None:
                client.close()


class _Cleanup:
    def __init__(self, settings: Settings, client: VastAIClient, state: State, *, dry_run: bool, max_idle_s: float,
                 now: float, probe: Probe, orphan_grace_s: float, absence_confirm_s: float, loading_timeout_s: float,
                 ready_deadline_s: float) -> None:
        self.settings, self.client, self.state, self.dry_run = settings, client, state, dry_run
        self.max_idle_s, self.now, self.probe = max_idle_s, now, probe
        self.orphan_grace_s, self.loading_timeout_s, self.ready_deadline_s = orphan_grace_s, loading_timeout_s, ready_deadline_s
        self.absence_confirm_s = absence_confirm_s
        self.launch_watch_max_s = ready_deadline_s + LAUNCH_WATCH_MARGIN_S
        self.home = settings.home
        self.total_limit = dec(settings["vastai.budget_limit"]) or Decimal(0)
        self.session_limit = dec(settings["vastai.session_budget_limit"]) or Decimal(0)
        self.spent = Decimal(0)
        self.listing = Listing(())
        self.answering: dict[int, str] = {}  # instance id → endpoint where vLLM answered

    def run(self) -> CleanupReport:
        listing = self.client.listing()  # a ProviderError here: exit 1, nothing done
        remote = list(listing.instances)
        rows = self.state.instances(PROVIDER)
        live = [r for r in rows if r.live]
        # Rows without an instance id count too: "not listed" never proves a create did not happen.
        # Only an empty list that says so (total_instances: 0) with nothing but id-less rows live is
        # read at all, and then only as one sighting (`unconfirmed.judge`).
        if not remote and live and not (listing.shows_absence and all(r.remote_id is None for r in live)):
            ids = ", ".join(r.remote_id or f"ledger row {r.id} (no id yet)" for r in live[:5])
            id_less = [r.label for r in live if r.remote_id is None]
            hint = "check the instances at https://console.vast.ai, then run `gpuctl cleanup` again"
            if id_less:  # nothing else can ever prove these never existed: the user's word can
                hint += (f"; if none carries the label {id_less[0]}, `gpuctl destroy {id_less[0]} --yes` clears "
                         "its ledger row")
            raise ProviderError(
                f"Vast.ai returned an empty instance list while the ledger shows {len(live)} live instance(s) "
                f"({ids}); treating it as an API error: nothing was destroyed or marked.",
                provider=PROVIDER, kind="malformed", hint=hint)
        self.listing = listing
        by_remote = {r.remote_id: r for r in rows if r.remote_id}  # rows are in id order: newest wins
        unmatched_intents = {r.label: r for r in live if r.remote_id is None}
        pairs: list[tuple[Instance, InstanceRow | None]] = []
        for inst in remote:
            row = by_remote.get(str(inst.id))
            if row is None and inst.label in unmatched_intents:
                row = unmatched_intents.pop(inst.label or "")
                row = dataclasses.replace(row, remote_id=str(inst.id))  # it bills: charged from now on
                if not self.dry_run:  # the crash came between the create and recording its id
                    self.state.update_instance(row.id, remote_id=str(inst.id))
                    forget_absent(self.state, row.label)
            if row is None and not is_gpuctl_label(inst.label):
                continue  # not gpuctl's: never touched
            if row is not None and row.live:
                row = record_live_price(self.state, row, inst.dph_total, write=not self.dry_run)
            pairs.append((inst, row))
        # Budgets are judged on the refreshed prices (in a dry run, on the rows as they would be).
        refreshed = {row.id: row for _, row in pairs if row is not None}
        self.spent = budget.spent(charged([refreshed.get(r.id, r) for r in rows]), self.now)
        actions: list[Action] = []
        seen: set[int] = set()
        for inst, row in pairs:
            if row is not None:
                seen.add(row.id)
            actions.append(self.execute(self.decide(inst, row), inst, row))
        for row in live:
            if row.id in seen:
                continue
            actions.append(self.unlisted(row))
        if not self.dry_run:
            gone = {a.instance_id for a in actions if a.result in ("destroyed", "already_gone")}
            forget_seen(self.state, [i.id for i in remote if i.id not in gone])
        after = [refreshed.get(r.id, r) if self.dry_run else r for r in self.state.instances(PROVIDER)]
        spent, held = budget.spent(charged(after), self.now), budget.spent(held_rows(after), self.now)
        return CleanupReport(self.dry_run, tuple(actions), spent=money_str(spent), budget_limit=money_str(self.total_limit),
                             held=money_str(held) if held else None)

    # -- deciding --------------------------------------------------------------------------

    def decide(self, inst: Instance, row: InstanceRow | None) -> tuple[str, str]:
        if row is None:
            return self.decide_orphan(inst)
        started = inst.start_date if inst.start_date is not None else row.created_at
        age = max(0.0, self.now - started)
        msg = f" ({inst.status_msg})" if inst.status_msg else ""
        if not row.live:
            return "destroy", "still on the account although the ledger marked it destroyed"
        if self.spent >= self.total_limit:
            return "destroy", f"over budget: ${money(self.spent)} spent of the ${money(self.total_limit)} Vast.ai budget"
        cost = budget.row_cost(row, self.now)
        if cost >= self.session_limit:
            return "destroy", f"session budget spent: it has cost ${money(cost)} (limit ${money(self.session_limit)})"
        stalled = self.stalled(row)
        if launch_in_progress(self.state, row.label) and not stalled:
            return "keep", "a launch is still watching it"
        if inst.actual_status == "exited" or inst.intended_status == "stopped":
            return "destroy", f"exited{msg}"
        if row.status in _LAUNCHING:
            return "destroy", stalled or ("launch abandoned: the launching process ended before vLLM was ready "
                                          f"(status {row.status})")
        if inst.actual_status in (None, "created", "loading") and age > self.loading_timeout_s:
            return "destroy", f"stuck {inst.actual_status or 'starting'} for {minutes(age)}{msg}"
        if row.status == "unattended":
            return self.decide_unattended(inst, row, age)
        if row.status == "ready":
            used = self.last_use(row)
            last = max(t for t in (used, row.ready_at, row.created_at) if t is not None)
            idle = max(0.0, self.now - last)
            if idle > self.max_idle_s:
                return "destroy", f"idle for {minutes(idle)} (keep-alive {minutes(self.max_idle_s)})"
            since = "last request" if used is not None and used >= last else "ready, no request since"
            return "keep", f"in use: {since} {minutes(idle)} ago (keep-alive {minutes(self.max_idle_s)})"
        # A status no rule above knows (an older gpuctl stored Vast's own, e.g. `offline`), and no
        # launch is watching it: nobody will ever promote or destroy it but us.
        row_age = max(0.0, self.now - row.created_at)
        if row_age >= self.orphan_grace_s:
            return "destroy", f"ledger status {row.status!r} and no launch watching it, {minutes(row_age)} old"
        return "keep", (f"ledger status {row.status!r}, only {minutes(row_age)} old "
                        f"(grace {minutes(self.orphan_grace_s)})")

    def decide_orphan(self, inst: Instance) -> tuple[str, str]:
        """Labelled by gpuctl, unknown to the ledger: destroyed once older than the grace. Without
        a start date in the list, its age counts from the first run that saw it."""
        since = ""
        started = inst.start_date
        if started is None:
            started = first_seen(self.state, inst.id)
            if started is None:
                started = self.now
                if not self.dry_run:
                    note_seen(self.state, inst.id, self.now)
            since = " since cleanup first saw it (Vast.ai gives no start date)"
        age = max(0.0, self.now - started)
        if age >= self.orphan_grace_s:
            return "destroy", f"orphaned: labelled by gpuctl, unknown to the ledger, {minutes(age)} old{since}"
        return "keep", (f"unknown to the ledger but only {minutes(age)} old{since} "
                        f"(grace {minutes(self.orphan_grace_s)})")

    def stalled(self, row: InstanceRow) -> str:
        """Why a held launch lock no longer protects this row ("" while it does, or no lock is
        held): the row is older than any launch watches a create (`LAUNCH_WATCH_MARGIN_S`)."""
        age = self.now - row.created_at
        if age <= self.launch_watch_max_s or not launch_in_progress(self.state, row.label):
            return ""
        return (f"launch stalled: its launch still holds the lock {minutes(age)} after the create, longer than a "
                f"launch watches one ({minutes(self.launch_watch_max_s)}): stopped with Ctrl-Z? "
                f"(status {row.status})")

    def decide_unattended(self, inst: Instance, row: InstanceRow, age: float) -> tuple[str, str]:
        if inst.actual_status == "running":
            from gpuctl.bundle import vast_container_settings

            endpoint = inst.endpoint(int(vast_container_settings()["vllm"]["port"]))
            if endpoint:
                try:
                    health = self.probe(endpoint, find_vllm_key(self.settings, self.state),
                                        self.settings["vastai.model"])
                except ProviderError as exc:  # e.g. the key refused: not ready, the deadline decides
                    health = Health(provider=PROVIDER, status="unhealthy", endpoint=endpoint, detail=exc.message)
                if health.status == "ready":
                    self.answering[inst.id] = endpoint
                    return "promote", f"vLLM answers at {endpoint}"
        if age > self.ready_deadline_s:
            return "destroy", f"never became ready: {minutes(age)} since it was created"
        return "keep", f"booting unattended ({row.status_msg or 'no launcher watching'}), {minutes(age)} old"

    def last_use(self, row: InstanceRow) -> float | None:
        if not row.endpoint:
            return None
        # The router records the OpenAI base (".../v1"); accept the bare endpoint too.
        times = [self.state.last_usage_at(PROVIDER, endpoint=e) for e in (row.endpoint, row.endpoint.rstrip("/") + "/v1")]
        return max((t for t in times if t is not None), default=None)

    def unlisted(self, row: InstanceRow) -> Action:
        """A live ledger row the list did not show: confirm before believing it is gone."""
        if row.remote_id is None:
            if launch_in_progress(self.state, row.label) and not self.stalled(row):
                return self.record(Action(None, row.id, row.label, row.gpu, None, "keep", "a launch is creating it",
                                          "kept"))
            return self.id_less(row)
        try:
            inst = self.client.get_instance(int(row.remote_id))
        except (ProviderError, ValueError) as exc:
            error = exc.message if isinstance(exc, ProviderError) else str(exc)
            return self.record(Action(_int(row.remote_id), row.id, row.label, row.gpu, None, "keep",
                                      "missing from the list and its status could not be read", "failed", error=error))
        if inst is None:
            return self.mark(row, None, "mark_gone", "no longer on the account")
        return self.execute(self.decide(inst, row), inst, row)

    def id_less(self, row: InstanceRow) -> Action:
        """A live row without an instance id whose label no listed instance carries: settled only
        on evidence no single outage can fake (`gpuctl.vastai.unconfirmed`)."""
        assert row.label is not None
        first = first_absent(self.state, row.label)
        verdict = judge(row, self.listing, self.now, first_seen_absent=first, grace_s=self.orphan_grace_s,
                        confirm_s=self.absence_confirm_s)
        if verdict.settle:
            action = self.mark(row, None, "mark_never_created", verdict.reason)
            if not self.dry_run:
                forget_absent(self.state, row.label)
            return action
        if verdict.record and not self.dry_run:
            note_absent(self.state, row.label, self.now)
        return self.record(Action(None, row.id, row.label, row.gpu, None, "keep", verdict.reason, "kept"))

    # -- doing -----------------------------------------------------------------------------

    def execute(self, decision: tuple[str, str], inst: Instance, row: InstanceRow | None) -> Action:
        action, reason = decision
        base = Action(inst.id, row.id if row else None, inst.label, inst.gpu_name, inst.actual_status, action, reason)
        if action == "keep":
            return self.record(_with(base, result="kept"))
        if action == "promote":
            assert row is not None
            if self.dry_run:
                return self.record(_with(base, result="would_promote"))
            self.state.update_instance(row.id, status="ready", endpoint=self.answering[inst.id], ready_at=self.now,
                                       status_msg="vLLM answered (promoted by cleanup)")
            return self.record(_with(base, result="promoted"))
        if self.dry_run:
            return self.record(_with(base, result="would_destroy"))
        try:
            destroyed_now = destroy_remote(self.client, inst.id)
        except ProviderError as exc:
            return self.record(_with(base, result="failed", error=exc.message))
        note = f"cleanup: {reason}"
        cost: Decimal | None = None
        if row is not None:
            cost = mark_destroyed(self.state, row, self.now, dph=inst.dph_total, note=note)
        elif is_gpuctl_label(inst.label):
            cost = record_untracked(self.state, inst, self.now, note=note)
        return self.record(_with(base, result="destroyed" if destroyed_now else "already_gone",
                                 cost=money_str(cost)))

    def mark(self, row: InstanceRow, inst: Instance | None, action: str, reason: str) -> Action:
        base = Action(_int(row.remote_id), row.id, row.label, row.gpu, None, action, reason)
        if self.dry_run:
            return self.record(_with(base, result="would_mark"))
        cost = mark_destroyed(self.state, row, self.now, note=f"cleanup: {reason}",
                              never_created=action == "mark_never_created")
        return self.record(_with(base, result="marked", cost=money_str(cost)))

    def record(self, action: Action) -> Action:
        log_event("vastai_cleanup_action", instance_id=action.instance_id, ledger_row=action.ledger_row,
                  action=action.action, result=action.result, reason=action.reason, cost=action.cost,
                  error=action.error, dry_run=self.dry_run)
        return action


def _with(action: Action, **changes: Any) -> Action:
    return Action(**{**action.__dict__, **changes})


def _int(value: str | None) -> int | None:
    return int(value) if value is not None and value.isdigit() else None
