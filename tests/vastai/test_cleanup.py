"""`gpuctl cleanup`'s rules (`gpuctl.vastai.cleanup`): idle, orphan, exited, abandoned, stuck,
unattended, budgets; the API-error guard (an empty or malformed list never means "nothing to
do"); partial failures. Through the CLI: test_cleanup_cli.py."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuctl.config import Settings, load_settings
from gpuctl.errors import CredentialsError, PartialError, ProviderError, UsageError
from gpuctl.state import State, UsageRecord
from gpuctl.vastai.cleanup import CleanupReport, run_cleanup
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.instances import launch_lock, make_label
from tests.fakes.vastai_server import FakeClock, FakeVast
from tests.fakes.vllm_server import FakeVLLM
from tests.support.vast import health, launched_row

MIN = 60.0


def cleanup(settings: Settings, client: VastAIClient, state: State, clock: FakeClock, **kw) -> CleanupReport:  # type: ignore[no-untyped-def]
    kw.setdefault("probe", lambda endpoint, key, model: health("unhealthy", "connection refused"))
    return run_cleanup(settings, client=client, state=state, clock=clock, **kw)


def by_instance(report: CleanupReport) -> dict[int | None, tuple[str, str]]:
    return {a.instance_id: (a.result, a.reason) for a in report.actions}


def test_idle_past_keep_alive_is_destroyed_recently_used_is_kept(settings: Settings, client: VastAIClient,
                                                                 state: State, vast: FakeVast, clock: FakeClock) -> None:
    idle_row, idle = launched_row(state, vast, created_at=clock())
    busy_row, busy = launched_row(state, vast, created_at=clock())
    clock.advance(50 * MIN)
    busy_endpoint = state.get_instance(busy_row).endpoint  # type: ignore[union-attr]
    state.record_usage(UsageRecord(ts=clock() - 5 * MIN, provider="vastai", endpoint=f"{busy_endpoint}/v1"))
    report = cleanup(settings, client, state, clock)
    got = by_instance(report)
    assert got[idle][0] == "destroyed" and "idle for 50 min (keep-alive 45 min)" in got[idle][1]
    assert got[busy][0] == "kept" and "last request 5 min ago" in got[busy][1]
    assert vast.live_ids() == {busy}
    done = state.get_instance(idle_row)
    assert done is not None and not done.live and done.cost == "0.166667"  # $0.20/h × 50 min
    assert state.get_instance(busy_row).live  # type: ignore[union-attr]


def test_max_idle_overrides_the_keep_alive(settings: Settings, client: VastAIClient, state: State,
                                           vast: FakeVast, clock: FakeClock) -> None:
    _, iid = launched_row(state, vast, created_at=clock())
    clock.advance(50 * MIN)
    assert by_instance(cleanup(settings, client, state, clock, max_idle_minutes=60))[iid][0] == "kept"
    assert by_instance(cleanup(settings, client, state, clock, max_idle_minutes=30))[iid][0] == "destroyed"


def test_orphans_older_than_grace_go_younger_stay_others_untouched(settings: Settings, client: VastAIClient,
                                                                     state: State, vast: FakeVast, clock: FakeClock) -> None:
    old = vast.add_instance(label="gpuctl:laptop:0123456789ab", created_at=clock() - 20 * MIN)
    young = vast.add_instance(label="gpuctl:laptop:0123456789ac", created_at=clock() - 5 * MIN)
    foreign = vast.add_instance(label="my-own-box", created_at=clock() - 600 * MIN)
    got = by_instance(cleanup(settings, client, state, clock))
    assert got[old][0] == "destroyed" and "orphaned" in got[old][1]
    assert got[young][0] == "kept" and "grace" in got[young][1]
    assert foreign not in got
    assert vast.live_ids() == {young, foreign}
    (recorded,) = state.instances("vastai")  # the orphan's cost now counts against the budget
    assert recorded.remote_id == str(old) and recorded.cost is not None and not recorded.live


def test_exited_is_destroyed(settings: Settings, client: VastAIClient, state: State, vast: FakeVast,
                             clock: FakeClock) -> None:
    _, iid = launched_row(state, vast, created_at=clock())
    assert iid is not None
    vast.instance(iid).stopped = True  # a stopped instance still bills storage
    got = by_instance(cleanup(settings, client, state, clock))
    assert got[iid][0] == "destroyed" and got[iid][1].startswith("exited")


def test_abandoned_launch_is_destroyed_unless_its_launcher_still_runs(settings: Settings, client: VastAIClient,
                                                                      state: State, vast: FakeVast, clock: FakeClock) -> None:
    label = make_label("default")
    _, iid = launched_row(state, vast, status="loading", label=label, created_at=clock())
    with launch_lock(state, label):
        got = by_instance(cleanup(settings, client, state, clock))
        assert got[iid] == ("kept", "a launch is still watching it")
    got = by_instance(cleanup(settings, client, state, clock))
    assert got[iid][0] == "destroyed" and "launch abandoned" in got[iid][1]
    assert vast.live_ids() == set() and state.live_instances("vastai") == []


def test_crash_between_create_and_recording_the_id_is_matched_by_label(settings: Settings, client: VastAIClient,
                                                                       state: State, vast: FakeVast, clock: FakeClock) -> None:
    label = make_label("default")
    row_id = state.add_instance_intent(provider="vastai", label=label, dph="0.18")
    iid = vast.add_instance(label=label, running=False)
    got = by_instance(cleanup(settings, client, state, clock))
    assert got[iid][0] == "destroyed" and "launch abandoned" in got[iid][1]
    row = state.get_instance(row_id)
    assert row is not None and row.remote_id == str(iid) and not row.live


def test_intent_is_marked_never_created_only_past_the_grace_and_two_listings_apart(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    vast.add_instance(label="my-own-box")  # the list is not empty
    label = make_label("default")
    row_id = state.add_instance_intent(provider="vastai", label=label, dph="0.18")
    with launch_lock(state, label):
        assert cleanup(settings, client, state, clock).actions[0].result == "kept"
    # Its create may still be in flight at Vast (listed late): one look proves nothing yet.
    (young,) = cleanup(settings, client, state, clock).actions
    assert (young.action, young.result) == ("keep", "kept") and "may still appear" in young.reason
    assert state.get_instance(row_id).live  # type: ignore[union-attr]
    clock.advance(16 * MIN)
    (first,) = cleanup(settings, client, state, clock).actions  # one listing that lacks it: a sighting
    assert (first.action, first.result) == ("keep", "kept") and "10 min from now" in first.reason
    clock.advance(10 * MIN)
    report = cleanup(settings, client, state, clock)
    assert [(a.action, a.result, a.cost) for a in report.actions] == [("mark_never_created", "marked", "0.00")]
    assert not state.get_instance(row_id).live  # type: ignore[union-attr]


@pytest.mark.parametrize("status", ["intent", "failed"])
def test_an_empty_list_with_only_rows_without_an_id_is_an_api_error(settings: Settings, client: VastAIClient,
                                                                    state: State, vast: FakeVast, clock: FakeClock,
                                                                    status: str) -> None:
    """Finding 1: an intent (or a `failed` create of unknown outcome) has no instance id yet;
    an empty list must not mark it "never created, $0"."""
    row_id = state.add_instance_intent(provider="vastai", label=make_label("default"), dph="0.18")
    state.update_instance(row_id, status=status)
    iid = vast.add_instance(label=state.get_instance(row_id).label)  # type: ignore[union-attr]
    clock.advance(60 * MIN)
    vast.set_list_fault("empty")  # the 2026 leak: the instance bills, the list says nothing
    with pytest.raises(ProviderError, match="empty instance list while the ledger shows 1 live") as err:
        cleanup(settings, client, state, clock)
    assert err.value.exit_code == 1 and "no id yet" in err.value.message
    row = state.get_instance(row_id)
    assert row is not None and row.live and row.status == status and row.cost is None
    vast.set_list_fault(None)  # the API recovers: the instance is found by its label and destroyed
    cleanup(settings, client, state, clock)
    assert vast.live_ids() == set() and not state.get_instance(row_id).live  # type: ignore[union-attr]
    assert iid == int(state.get_instance(row_id).remote_id or 0)  # type: ignore[union-attr]


def test_stuck_loading_past_ten_minutes_is_destroyed(settings: Settings, client: VastAIClient, state: State,
                                                     vast: FakeVast, clock: FakeClock) -> None:
    _, iid = launched_row(state, vast, status="unattended", created_at=clock(), running=False)
    clock.advance(5 * MIN)
    assert by_instance(cleanup(settings, client, state, clock))[iid][0] == "kept"
    clock.advance(6 * MIN)
    result, reason = by_instance(cleanup(settings, client, state, clock))[iid]
    assert result == "destroyed" and reason.startswith("stuck")


def test_unattended_is_promoted_when_vllm_answers_or_destroyed_if_never(settings: Settings, client: VastAIClient,
                                                                       state: State, vast: FakeVast, clock: FakeClock,
                                                                       vllm: FakeVLLM) -> None:
    row_id, iid = launched_row(state, vast, status="unattended", created_at=clock())
    report = cleanup(settings, client, state, clock, probe=lambda e, k, m: health("ready"))
    assert by_instance(report)[iid][0] == "promoted"
    row = state.get_instance(row_id)
    assert row is not None and row.status == "ready" and row.endpoint == f"http://127.0.0.1:{vllm.port}"
    _, never = launched_row(state, vast, status="unattended", created_at=clock())
    clock.advance(31 * MIN)
    assert by_instance(cleanup(settings, client, state, clock))[never][1].startswith("never became ready")


def test_over_budget_destroys_everything_live(settings: Settings, client: VastAIClient, state: State,
                                              vast: FakeVast, clock: FakeClock) -> None:
    _, iid = launched_row(state, vast, created_at=clock())
    old = state.add_instance_intent(provider="vastai", label=make_label("default"), dph="1")
    state.mark_instance_destroyed(old, cost="15.00")
    result, reason = by_instance(cleanup(settings, client, state, clock))[iid]
    assert result == "destroyed" and reason.startswith("over budget")


def test_session_budget_caps_one_instance(settings: Settings, client: VastAIClient, state: State,
                                          vast: FakeVast, clock: FakeClock) -> None:
    _, dear = launched_row(state, vast, dph="2.50", created_at=clock())
    _, cheap = launched_row(state, vast, dph="0.20", created_at=clock())
    clock.advance(50 * MIN)  # $2.08 > the $2 session budget
    got = by_instance(cleanup(settings, client, state, clock, max_idle_minutes=600))
    assert got[dear][0] == "destroyed" and got[dear][1].startswith("session budget spent")
    assert got[cheap][0] == "kept"


def test_a_raised_live_price_is_recorded_and_charged(settings: Settings, client: VastAIClient, state: State,
                                                     vast: FakeVast, clock: FakeClock) -> None:
    """Finding 6: hosts can raise prices at renewal; spend uses the higher of recorded and live."""
    row_id, iid = launched_row(state, vast, dph="0.20", created_at=clock())
    _, cheaper = launched_row(state, vast, dph="0.20", created_at=clock())
    assert iid is not None and cheaper is not None
    clock.advance(30 * MIN)  # in use (keep-alive 45 min): kept at $0.20/h
    vast.set_price(iid, "4.00")  # $4/h × 30 min = $2: the whole session budget
    vast.set_price(cheaper, "0.10")  # a lower live price never lowers what is charged
    dry = cleanup(settings, client, state, clock, dry_run=True)
    assert by_instance(dry)[iid][0] == "would_destroy" and state.get_instance(row_id).dph == "0.20"  # type: ignore[union-attr]
    report = cleanup(settings, client, state, clock)
    result, reason = by_instance(report)[iid]
    assert result == "destroyed" and reason.startswith("session budget spent: it has cost $2.00")
    row = state.get_instance(row_id)
    assert row is not None and row.dph == "4.0" and row.cost == "2.000000"
    assert by_instance(report)[cheaper][0] == "kept"
    assert [r.dph for r in state.live_instances("vastai")] == ["0.20"]


@pytest.mark.parametrize("status", ["offline", "scheduling", "created_by_a_future_gpuctl"])
def test_a_row_in_an_unknown_status_with_no_launcher_is_destroyed_after_the_grace(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock, status: str) -> None:
    """Finding 7: the launcher died while the ledger held Vast's raw status: no rule knew it."""
    row_id, iid = launched_row(state, vast, status=status, created_at=clock())
    young = by_instance(cleanup(settings, client, state, clock))
    assert young[iid][0] == "kept" and "grace" in young[iid][1]
    clock.advance(16 * MIN)
    result, reason = by_instance(cleanup(settings, client, state, clock))[iid]
    assert result == "destroyed" and "no launch watching it" in reason
    assert vast.live_ids() == set() and not state.get_instance(row_id).live  # type: ignore[union-attr]


def test_a_probe_refusing_the_key_does_not_stop_cleanup(settings: Settings, client: VastAIClient, state: State,
                                                        vast: FakeVast, clock: FakeClock) -> None:
    def refused(endpoint: str, key: str | None, model: str | None):  # type: ignore[no-untyped-def]
        raise ProviderError("vastai: HTTP 401: the API key was refused", provider="vastai", kind="auth")

    _, iid = launched_row(state, vast, status="unattended", created_at=clock())
    assert by_instance(cleanup(settings, client, state, clock, probe=refused))[iid][0] == "kept"
    clock.advance(31 * MIN)
    assert by_instance(cleanup(settings, client, state, clock, probe=refused))[iid][0] == "destroyed"


def test_gone_from_the_account_is_confirmed_then_marked(settings: Settings, client: VastAIClient, state: State,
                                                        vast: FakeVast, clock: FakeClock) -> None:
    row_id, iid = launched_row(state, vast, created_at=clock())
    launched_row(state, vast, created_at=clock())  # keeps the list non-empty
    assert iid is not None
    vast.instance(iid).destroyed = True  # destroyed on the web console
    report = cleanup(settings, client, state, clock)
    (marked,) = [a for a in report.actions if a.ledger_row == row_id]
    assert (marked.action, marked.result) == ("mark_gone", "marked")
    assert vast.received("GET", f"/api/v0/instances/{iid}/")  # confirmed with a show first


def test_still_billing_although_marked_destroyed_is_destroyed(settings: Settings, client: VastAIClient, state: State,
                                                              vast: FakeVast, clock: FakeClock) -> None:
    row_id, iid = launched_row(state, vast, created_at=clock())
    state.mark_instance_destroyed(row_id, cost="0.01")
    got = by_instance(cleanup(settings, client, state, clock))
    assert got[iid][0] == "destroyed" and vast.live_ids() == set()


@pytest.mark.parametrize("fault", ["empty", "malformed", "no_instances_key"])
def test_a_list_that_lies_is_an_api_error_and_nothing_changes(settings: Settings, client: VastAIClient, state: State,
                                                              vast: FakeVast, clock: FakeClock, fault: str) -> None:
    row_id, iid = launched_row(state, vast, created_at=clock())
    clock.advance(600 * MIN)  # idle for hours: would be destroyed if the list were believed
    vast.set_list_fault(fault)
    with pytest.raises(ProviderError) as err:
        cleanup(settings, client, state, clock)
    assert err.value.exit_code == 1
    if fault == "empty":
        assert "empty instance list while the ledger shows 1 live" in err.value.message
    assert vast.live_ids() == {iid} and vast.received("DELETE") == []
    row = state.get_instance(row_id)
    assert row is not None and row.live and row.status == "ready"


def test_no_key_and_nothing_live_is_fine_but_live_rows_need_a_key(gpuctl_home: Path, state: State,
                                                                  vast: FakeVast) -> None:
    bare = load_settings(env={}, home=gpuctl_home)
    assert run_cleanup(bare, state=state).message.startswith("Vast.ai is not configured")
    launched_row(state, vast)
    with pytest.raises(CredentialsError):
        run_cleanup(bare, state=state)


def test_a_failure_beside_kept_instances_is_still_exit_1(settings: Settings, client: VastAIClient, state: State,
                                                         vast: FakeVast, clock: FakeClock) -> None:
    """Keeping an instance in use is a decision, not a success: with the only destroy failed,
    nothing was done."""
    from gpuctl.vastai.cleanup import failure_error
    from gpuctl.vastai.instances import ActionsFailed

    _, idle = launched_row(state, vast, created_at=clock())
    busy_row, busy = launched_row(state, vast, created_at=clock())
    clock.advance(50 * MIN)
    endpoint = state.get_instance(busy_row).endpoint  # type: ignore[union-attr]
    state.record_usage(UsageRecord(ts=clock() - MIN, provider="vastai", endpoint=endpoint))
    assert idle is not None
    vast.fail_destroy(idle)
    report = cleanup(settings, client, state, clock)
    assert by_instance(report)[busy][0] == "kept" and by_instance(report)[idle][0] == "failed"
    error = failure_error(report, {"x": 1})
    assert isinstance(error, ActionsFailed) and error.exit_code == 1 and error.data == {"x": 1}
    vast.allow_destroy(idle)
    other = vast.add_instance(label="gpuctl:laptop:0123456789ab", created_at=clock() - 60 * MIN)  # an orphan
    vast.fail_destroy(busy)
    state.record_usage(UsageRecord(ts=clock(), provider="vastai", endpoint=endpoint))
    clock.advance(60 * MIN)
    mixed = cleanup(settings, client, state, clock)
    assert {k: v[0] for k, v in by_instance(mixed).items()} == {idle: "destroyed", busy: "failed", other: "destroyed"}
    partial = failure_error(mixed, None)
    assert isinstance(partial, PartialError) and partial.exit_code == 4


def test_run_cleanup_refuses_a_non_finite_max_idle(settings: Settings, client: VastAIClient, state: State,
                                                   vast: FakeVast, clock: FakeClock) -> None:
    with pytest.raises(UsageError, match="finite"):
        cleanup(settings, client, state, clock, max_idle_minutes=float("nan"))
    assert vast.requests == []


def test_a_launch_lock_held_past_the_watch_bound_no_longer_protects(settings: Settings, client: VastAIClient,
                                                                    state: State, vast: FakeVast,
                                                                    clock: FakeClock) -> None:
    """Review B, finding 5: a launch paused with Ctrl-Z (SIGSTOP) keeps its lock: past the
    loading + health deadlines (+ a margin) from the create, cleanup judges as if no launch held it."""
    from gpuctl.vastai.cleanup import LAUNCH_WATCH_MARGIN_S, READY_DEADLINE_S

    bound = READY_DEADLINE_S + LAUNCH_WATCH_MARGIN_S
    label, id_less = make_label("default"), make_label("default")
    row_id, iid = launched_row(state, vast, status="loading", label=label, created_at=clock(), running=False)
    intent = state.add_instance_intent(provider="vastai", label=id_less, dph="0.18")
    with launch_lock(state, label), launch_lock(state, id_less):
        clock.advance(bound - MIN)  # still inside what a launch may watch
        got = {a.ledger_row: (a.result, a.reason) for a in cleanup(settings, client, state, clock).actions}
        assert got[row_id] == ("kept", "a launch is still watching it")
        assert got[intent] == ("kept", "a launch is creating it")
        clock.advance(2 * MIN)
        got = {a.ledger_row: (a.result, a.reason) for a in cleanup(settings, client, state, clock).actions}
    assert got[row_id][0] == "destroyed" and got[row_id][1].startswith("launch stalled")
    assert "Ctrl-Z" in got[row_id][1]
    assert got[intent][0] == "kept" and "10 min from now" in got[intent][1]  # judged as an unconfirmed row
    assert iid not in vast.live_ids() and not state.get_instance(row_id).live  # type: ignore[union-attr]


def test_an_orphan_without_a_start_date_is_aged_from_the_first_sighting(settings: Settings, client: VastAIClient,
                                                                        state: State, vast: FakeVast,
                                                                        clock: FakeClock) -> None:
    """Review B, finding 6: an orphan listed with "start_date": null was "0 s old" on every run."""
    iid = vast.add_instance(label="gpuctl:laptop:00000000aaaa", created_at=clock() - 6 * 60 * MIN, running=False)
    vast.instance(iid).no_start_date = True
    dry = by_instance(cleanup(settings, client, state, clock, dry_run=True))[iid]
    assert dry[0] == "kept" and "first saw it" in dry[1]
    clock.advance(10 * MIN)
    first = by_instance(cleanup(settings, client, state, clock))[iid]  # the dry run remembered nothing
    assert first[0] == "kept" and first[1].startswith("unknown to the ledger but only 0 s old since cleanup first")
    clock.advance(10 * MIN)
    assert by_instance(cleanup(settings, client, state, clock))[iid][1].startswith(
        "unknown to the ledger but only 10 min old")
    clock.advance(6 * MIN)
    result, reason = by_instance(cleanup(settings, client, state, clock))[iid]
    assert result == "destroyed" and "orphaned" in reason and "16 min old since cleanup first saw it" in reason
    assert vast.live_ids() == set()
    assert not any(k.startswith("seen:") and v is not None for k, v in state.metrics("vastai").items())


def test_cleanup_does_not_count_held_unconfirmed_rows_as_spend(settings: Settings, client: VastAIClient,
                                                               state: State, vast: FakeVast, clock: FakeClock) -> None:
    """Review B, finding 15: a create of unknown outcome is held against the budget, not spent
    (as in `gpuctl cost report`): it neither trips the over-budget rule nor shows as spend."""
    vast.add_instance(label="my-own-box")  # the list is not empty
    held = state.add_instance_intent(provider="vastai", label=make_label("default"), dph="10.00")
    state.update_instance(held, status="unconfirmed")
    _, iid = launched_row(state, vast, dph="0.20", created_at=clock())
    clock.advance(2 * 60 * MIN)  # the held row: $10/h × 2 h = $20 > the $15 budget, were it spend
    report = cleanup(settings, client, state, clock, max_idle_minutes=600)
    result, reason = by_instance(report)[iid]
    assert result == "kept" and not reason.startswith("over budget")
    assert report.spent == "0.40" and report.held == "20.00"  # $0.20/h × 2 h; the held row apart
    assert report.as_dict()["held"] == "20.00"
