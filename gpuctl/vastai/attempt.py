"""One launch attempt: one offer, from its budget check to a ready endpoint, or to a failure
whose instance is destroyed and whose ledger row is settled.

In order: under the global launch lock (`budget_lock`), both budgets are checked against what
is spent and what every live row may still bill, and the intent row with a unique label is
written; under the attempt's own launch lock, the create is sent and its instance id recorded
the moment it returns; then `watch.py` waits for vLLM. A create whose outcome is unknown is
never re-sent: its label is looked for in the instance list for a while (a create in flight may
be listed late); still not listed, its row becomes `unconfirmed` (held against the budget,
watched by cleanup) and the launch goes on to the next offer. Later looks (`recheck`) destroy
such an instance if it shows up after all. A failed watch destroys the box; its machine is
excluded unless a setting is to blame (a raised price, or the same exit message as another
machine: `verdict.py`); a box that `gpuctl destroy` took (`taken`) stops the launch. Ctrl-C or
any error destroys what was created, unless `keep` (the launch's own handler,
`interrupt.py`, has the last word).

Kept apart from `launch.py` (the walk over offers and tiers) because one attempt with its
failure paths is a unit of its own. Must not: print, exit, or choose offers.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import Decimal

from gpuctl.config import Settings
from gpuctl.costs.money import money_str
from gpuctl.errors import EXIT_INTERRUPTED, GpuctlError, ProviderError
from gpuctl.events import log_event
from gpuctl.vastai import budget
from gpuctl.vastai.budget import dec, money
from gpuctl.vastai.container import CreateSpec
from gpuctl.vastai.held import HeldCreates
from gpuctl.vastai.instances import (
    PROVIDER,
    budget_lock,
    destroy_remote,
    destroy_requested,
    forget_destroy_request,
    if_reachable,
    launch_lock,
    make_label,
    mark_destroyed,
)
from gpuctl.vastai.offers import Candidate
from gpuctl.vastai.plan import budget_check
from gpuctl.vastai.verdict import (
    create_refused,
    exit_signature,
    misconfigured_message,
    names_config,
    price_refusal,
)
from gpuctl.vastai.watch import Watch, WatchFailed, WatchSetup

# How often the instance list is read while looking for a create of unknown outcome.
CREATE_LOOKUP_POLL_S = 10.0
UNCONFIRMED = "unconfirmed"  # the ledger status of a create of unknown outcome, not listed (yet)


class LaunchInterrupted(GpuctlError):
    """Ctrl-C during a launch; the message says what became of the instance."""

    exit_code = EXIT_INTERRUPTED


@dataclass(frozen=True)
class Attempt:
    """One offer tried, for the launch's summary: which, at what $/h, and what came of it."""

    offer_id: int
    machine_id: int
    gpu: str
    dph: str
    instance_id: int | None
    outcome: str  # ready | unattended | failed | unconfirmed (a create of unknown outcome, held for cleanup)
    reason: str = ""
    cost: str | None = None
    tier: str = ""
    ledger_row: int | None = None


@dataclass(frozen=True)
class Started:
    """An attempt that worked: vLLM answers at `endpoint`, or (`ready` false) --no-wait."""

    row_id: int
    label: str
    instance_id: int
    endpoint: str | None
    ready: bool


class AttemptFailed(Exception):
    """This offer did not work out; its instance (if any) is destroyed and its row settled
    (or, outcome `unconfirmed`, held for cleanup)."""

    def __init__(self, attempt: Attempt, *, fatal: ProviderError | None = None, halt: str | None = None,
                 misconfigured: bool | None = None) -> None:
        super().__init__(attempt.reason)
        self.attempt = attempt
        self.fatal = fatal  # stop trying further offers, and raise this
        self.halt = halt  # stop trying further offers, for this reason (the walk says so)
        # The same container exit on two machines: stop, the configuration is at fault (True: a
        # setting the message names, exit 3; False: something else in the container, exit 1).
        self.misconfigured = misconfigured


class Settled(Exception):
    """An error whose ledger row is already settled: raise `error` without another cleanup."""

    def __init__(self, error: GpuctlError) -> None:
        super().__init__(error.message)
        self.error = error


class Attempter:
    """Makes attempts for one launch: each `run(candidate)` is one offer."""

    def __init__(self, settings: Settings, spec: CreateSpec, watch: WatchSetup, *, wait: bool, keep: bool,
                 create_lookup_s: float) -> None:
        self.settings, self.spec, self.watch_setup = settings, spec, watch
        self.client, self.state = watch.client, watch.state
        self.clock, self.sleep, self.progress = watch.clock, watch.sleep, watch.progress
        self.wait, self.keep, self.create_lookup_s = wait, keep, create_lookup_s
        self.started = self.clock()
        self.held = HeldCreates(watch.client, watch.state, clock=watch.clock, sleep=watch.sleep, progress=watch.progress,
                                lookup_s=create_lookup_s, poll_s=CREATE_LOOKUP_POLL_S)
        self.rows: list[int] = []  # every ledger row this launch wrote, in order
        self.exits: dict[str, int] = {}  # a container exit's signature → the machine that showed it first

    def reserve(self, cand: Candidate, label: str) -> int:
        """Under the global launch lock: check both budgets against what is spent and what the
        live rows (unconfirmed ones too) may still bill, then write the intent row (which the
        next launch counts)."""
        offer = cand.offer
        with budget_lock(self.state):
            rows = self.state.instances(PROVIDER)
            check = budget_check(self.settings, offer.dph_total, spent=budget.spent(rows, self.clock()),
                                 reserved=budget.reserved(rows, self.settings["vastai.keep_alive_minutes"]))
            if not check.ok:
                raise check.error(offer.gpu_name)
            row_id = self.state.add_instance_intent(
                provider=PROVIDER, label=label, profile=self.spec.profile, gpu=offer.gpu_name,
                dph=str(offer.dph_total), offer_id=str(offer.id), machine_id=str(offer.machine_id),
            )
            self.rows.append(row_id)
            return row_id

    def run(self, cand: Candidate, *, limit: Decimal | None = None, limit_why: str = "") -> Started:
        """One offer; raises BudgetError (nothing written), AttemptFailed (try the next offer),
        Settled (stop), or what `abort` says after cleaning up. A live price above `limit`
        (`limit_why` says whose) or past a budget fails the attempt."""
        offer = cand.offer
        label = make_label(self.spec.profile)
        with launch_lock(self.state, label):
            row_id = self.reserve(cand, label)
            instance_id: int | None = None
            try:
                self.progress(f"Creating an instance from offer {offer.id}: {offer.gpu_name} "
                              f"(${money(offer.dph_total)}/h, {offer.geolocation or 'unknown location'})…")
                try:
                    instance_id = self.client.create_instance(offer.id, image=self.spec.image, env=self.spec.env,
                                                              args=self.spec.args, disk_gb=self.spec.disk_gb,
                                                              label=label)
                except ProviderError as exc:
                    raise self.create_failed(row_id, label, cand, exc) from None
                self.state.set_instance_remote_id(row_id, str(instance_id))  # at once: this id bills
                log_event("vastai_instance_created", instance_id=instance_id, offer_id=offer.id, gpu=offer.gpu_name,
                          dph=str(offer.dph_total), label=label, machine_id=offer.machine_id)
                if not self.wait:
                    self.state.update_instance(row_id, status="unattended", status_msg="launched with --no-wait")
                    return Started(row_id, label, instance_id, None, False)
                watch = Watch(self.watch_setup, row_id=row_id, instance_id=instance_id, machine_id=offer.machine_id,
                              label=label, offer_dph=offer.dph_total,
                              price_check=lambda live: price_refusal(
                                  self.settings, self.state.instances(PROVIDER), row_id=row_id, gpu=offer.gpu_name,
                                  live=live, limit=limit, limit_why=limit_why, now=self.clock()))
                try:
                    endpoint = watch.until_ready()
                    watch.check_boot(watch.show())  # a last look: destroyed, exited or repriced meanwhile?
                except WatchFailed as failed:
                    if failed.destroyed:
                        raise self.taken(cand, row_id, label, instance_id, failed.reason) from None
                    raise self.fail(cand, row_id, instance_id, failed.reason, exclude=failed.exclude,
                                    fatal=failed.fatal, exit_msg=failed.exit_msg) from None
                self.state.update_instance(row_id, status="ready", endpoint=endpoint, ready_at=self.clock(),
                                           status_msg="vLLM answered a 1-token completion")
                log_event("vastai_instance_ready", instance_id=instance_id, endpoint=endpoint, gpu=offer.gpu_name,
                          waited_s=round(self.clock() - self.started, 1))
                return Started(row_id, label, instance_id, endpoint, True)
            except (AttemptFailed, Settled):
                raise
            except BaseException as exc:  # Ctrl-C, or anything unexpected: never leave it billing
                replacement = self.abort(row_id, label, instance_id, exc)
                if replacement is exc:
                    raise
                raise replacement from exc

    def attempt(self, cand: Candidate, instance_id: int | None, outcome: str, reason: str = "",
                cost: str | None = None, row_id: int | None = None) -> Attempt:
        """The attempt for the summary, at the real $/h: the ledger's (a host may have raised it)."""
        o = cand.offer
        row = self.state.get_instance(row_id) if row_id is not None else None
        dph = budget.higher_dph(o.dph_total, row.dph if row else None) or o.dph_total
        return Attempt(o.id, o.machine_id, o.gpu_name, money_str(dph) or "", instance_id, outcome, reason, cost,
                       cand.tier.name, row_id)

    def create_failed(self, row_id: int, label: str, cand: Candidate, exc: ProviderError) -> AttemptFailed:
        """The create failed. Unless Vast refused it outright, it may still have created an
        instance (maybe listed only later): look for our label before concluding anything."""
        o = cand.offer
        reason = exc.message.rstrip(".")  # "Vast.ai create instance from offer 101 failed: HTTP 500: …"
        # A refused key fails every offer alike: stop after settling this one.
        fatal = exc if exc.kind == "auth" else None
        if create_refused(exc):
            row = self.state.get_instance(row_id)
            assert row is not None
            mark_destroyed(self.state, row, self.clock(), note=reason, never_created=True)
            log_event("vastai_launch_attempt_failed", offer_id=o.id, machine_id=o.machine_id, reason=reason)
            return AttemptFailed(self.attempt(cand, None, "failed", reason, "0", row_id), fatal=fatal)
        found, list_error = self.held.look_for(label)
        row = self.state.get_instance(row_id)
        if destroy_requested(self.state, label) or (row is not None and not row.live):
            # `gpuctl destroy` took it (matched by label) while we looked: stop, never replace it.
            gone = f"the instance labelled {label} was destroyed by `gpuctl destroy` while the launch looked for it"
            if found is not None:
                if row is not None and row.live:
                    self.state.set_instance_remote_id(row_id, str(found.id))
                return self.taken(cand, row_id, label, found.id, f"{gone}; not replaced")
            if row is None or not row.live:
                forget_destroy_request(self.state, label)
                return AttemptFailed(self.attempt(cand, None, "destroyed", gone, None, row_id),
                                     fatal=ProviderError(f"{gone}; not replaced.", provider=PROVIDER))
            fatal = ProviderError(f"{gone}; not replaced.", provider=PROVIDER)  # held below, for cleanup
        elif found is not None:
            self.state.set_instance_remote_id(row_id, str(found.id))
            return self.fail(cand, row_id, found.id, reason + " (yet it was created)", exclude=False, fatal=fatal)
        why = (f"the instance list could not be read ({list_error})" if list_error
               else f"no instance labelled {label} was listed within {self.create_lookup_s:g}s")
        self.state.update_instance(row_id, status=UNCONFIRMED, status_msg=f"{reason}; outcome unknown: {why}"[:500])
        self.held.hold(row_id, label)
        log_event("vastai_create_outcome_unknown", offer_id=o.id, label=label, ledger_row=row_id, reason=reason)
        self.progress(f"The create from offer {o.id} may have created an instance all the same: ledger row "
                      f"{row_id} is held against the budget as unconfirmed (cleanup destroys it if it appears)")
        # An API that cannot even list is one where more creates would be boxes nobody can see.
        halt = (f"the Vast.ai instance list could not be read either ({list_error}): no further create is sent "
                "while nobody can see what they make" if list_error else None)
        return AttemptFailed(self.attempt(cand, None, UNCONFIRMED, f"{reason}; outcome unknown ({why})", None, row_id),
                             fatal=fatal, halt=halt)

    def taken(self, cand: Candidate, row_id: int, label: str, instance_id: int, reason: str) -> AttemptFailed:
        """`gpuctl destroy` (or cleanup) took this instance while it was watched: make sure it is
        gone (a destroy is idempotent; the other process may have failed), settle its row, and
        stop the launch: what the user destroyed is never replaced."""
        row = self.state.get_instance(row_id)
        assert row is not None
        try:
            destroy_remote(self.client, instance_id)
        except ProviderError as exc:
            self.state.update_instance(row_id, status="failed", status_msg=f"{reason}; destroy failed: {exc.message}"[:500])
            raise Settled(ProviderError(
                f"{reason}, but it may still bill: destroying it failed ({exc.message}). Run `gpuctl destroy "
                f"{instance_id} --yes` or `gpuctl cleanup`.", provider=PROVIDER, kind=exc.kind, status=exc.status)) from None
        cost = mark_destroyed(self.state, row, self.clock(), note=reason) if row.live else dec(row.cost)
        forget_destroy_request(self.state, label)
        log_event("vastai_launch_stopped", instance_id=instance_id, reason=reason)
        stop = ProviderError(f"{reason}.", provider=PROVIDER,
                             hint="`gpuctl launch` again rents a new one; `gpuctl status` shows what bills")
        return AttemptFailed(self.attempt(cand, instance_id, "destroyed", reason, money_str(cost), row_id), fatal=stop)

    def fail(self, cand: Candidate, row_id: int, instance_id: int, reason: str, *, exclude: bool,
             fatal: ProviderError | None = None, exit_msg: str | None = None) -> AttemptFailed:
        """Destroy this attempt's instance, record its cost, maybe exclude its machine (not when
        another machine exited with the same message: then the configuration is at fault)."""
        o = cand.offer
        row = self.state.get_instance(row_id)
        assert row is not None
        misconfigured = None
        if exit_msg:
            first = self.exits.setdefault(exit_signature(exit_msg), o.machine_id)
            if first != o.machine_id:
                misconfigured = names_config(exit_msg, self.spec.model)
                reason = misconfigured_message(exit_msg, (first, o.machine_id), model=self.spec.model,
                                               config=misconfigured)
                exclude = False
                self.state.forget_excluded_machines(PROVIDER, [str(first)])  # it was never the host
        self.progress(f"Destroying instance {instance_id}: {reason}")
        try:
            destroy_remote(self.client, instance_id)
        except ProviderError as exc:
            self.state.update_instance(row_id, status="failed", status_msg=f"{reason}; destroy failed: {exc.message}")
            raise Settled(ProviderError(
                f"instance {instance_id} failed ({reason}) and destroying it failed too: {exc.message}. "
                f"It may still bill: run `gpuctl destroy {instance_id} --yes` or `gpuctl cleanup`.",
                provider=PROVIDER, kind=exc.kind, status=exc.status)) from None
        cost = mark_destroyed(self.state, row, self.clock(), note=reason)
        if exclude:
            self.state.exclude_machine(PROVIDER, str(o.machine_id), reason[:300])
            log_event("vastai_machine_excluded", machine_id=o.machine_id, reason=reason)
        log_event("vastai_launch_attempt_failed", instance_id=instance_id, offer_id=o.id, machine_id=o.machine_id,
                  reason=reason, cost=None if cost is None else str(cost))
        return AttemptFailed(self.attempt(cand, instance_id, "failed", reason, money_str(cost),
                                          row_id), fatal=fatal, misconfigured=misconfigured)

    def abort(self, row_id: int, label: str, instance_id: int | None, exc: BaseException) -> BaseException:
        """Interrupted or crashed mid-launch: destroy what was created (unless --keep on Ctrl-C).

        Returns what to raise: LaunchInterrupted on Ctrl-C; the original error once everything is
        cleaned up; else a ProviderError that says what may still bill (the caller chains it)."""
        interrupted = isinstance(exc, KeyboardInterrupt)
        ledger = if_reachable
        if interrupted and self.keep:
            ledger(self.state.update_instance, row_id, status="unattended", status_msg="kept after Ctrl-C (--keep)")
            what = f"instance {instance_id}" if instance_id is not None else f"the instance labelled {label} (if created)"
            return LaunchInterrupted(f"interrupted: kept {what}; it bills until destroyed.",
                                     hint=f"`gpuctl destroy {instance_id or '--all'} --yes`; `gpuctl cleanup` destroys it if it never becomes ready")
        note = "launch interrupted" if interrupted else f"launch failed: {describe(exc)}"[:200]
        try:
            if instance_id is None:
                found = self.held.find(label)  # one look: someone is waiting for us to stop
                if found is None:
                    # Not listed (yet) proves nothing: keep the row live, counted, for cleanup.
                    ledger(self.state.update_instance, row_id, status=UNCONFIRMED,
                                               status_msg=f"{note}; whether the create went through is unknown"[:500])
                    log_event("vastai_launch_aborted", instance_id=None, interrupted=interrupted, outcome="unknown")
                    what = (f"whether an instance was created is unknown (none labelled {label} is listed yet); "
                            f"ledger row {row_id} stays live and counts against the budget")
                    return abort_error(exc, what, "run `gpuctl cleanup` in a few minutes: it destroys the "
                                                  "instance if it appears")
                instance_id = found.id
            # The destroy before any ledger read or write: the ledger may be what failed (down,
            # or hung, where a statement could wait for minutes while the instance bills).
            destroy_remote(self.client, instance_id)
            ledger(self.state.set_instance_remote_id, row_id, str(instance_id))
            row = ledger(self.state.get_instance, row_id)
            cost = None if row is None else ledger(mark_destroyed, self.state, row, self.clock(), note=note)
            log_event("vastai_launch_aborted", instance_id=instance_id, interrupted=interrupted,
                      cost=None if cost is None else str(cost))
        except (ProviderError, OSError) as cleanup_exc:
            detail = cleanup_exc.message if isinstance(cleanup_exc, ProviderError) else str(cleanup_exc)
            ledger(self.state.update_instance, row_id, status="failed",
                   status_msg=f"{note}; abort cleanup failed: {detail}"[:500])
            if instance_id is not None:
                return abort_error(exc, f"destroying instance {instance_id} failed ({detail}); it may still "
                                        f"bill: run `gpuctl destroy {instance_id} --yes`",
                                   f"`gpuctl destroy {instance_id} --yes`, or `gpuctl cleanup` (cron) finishes the job")
            return abort_error(exc, f"whether an instance was created could not be checked ({detail}); ledger "
                                    f"row {row_id} stays live", "run `gpuctl cleanup` once the Vast.ai API answers")
        if interrupted:
            return LaunchInterrupted(f"interrupted: destroyed instance {instance_id}.")
        return exc



def abort_error(exc: BaseException, what: str, hint: str) -> GpuctlError:
    """What an aborted attempt raises when something may still bill: `what` says what."""
    if isinstance(exc, KeyboardInterrupt):
        return LaunchInterrupted(f"interrupted: {what}.", hint=hint)
    return ProviderError(f"the launch failed ({describe(exc)}) and {what}.", provider=PROVIDER,
                         kind=exc.kind if isinstance(exc, ProviderError) else "http", hint=hint)


def describe(exc: BaseException) -> str:
    if isinstance(exc, GpuctlError):
        return exc.message
    return f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
