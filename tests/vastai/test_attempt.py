"""One attempt (`gpuctl.vastai.attempt`): a create refused, failed, dropped or listed late is
never re-sent and never forgotten (a create of unknown outcome is held `unconfirmed` against the
budget while the launch goes on, and destroyed if it shows up); Ctrl-C destroys what was created
(or keeps it with --keep); the budget check and the intent row happen under the global launch
lock, before each retry."""

from __future__ import annotations

import contextlib
import threading
from decimal import Decimal

import pytest

from gpuctl.config import Settings, load_settings
from gpuctl.errors import BudgetError, ProviderError
from gpuctl.state import State, open_state
from gpuctl.vastai import launch as vast_launch
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.instances import BUDGET_LOCK, budget_lock
from gpuctl.vastai.launch import LaunchFailed, LaunchInterrupted, launch
from gpuctl.vastai.plan import plan_launch
from tests.fakes.vastai_server import DROP, FIRST_INSTANCE_ID, FakeClock, FakeVast
from tests.support.vast import KEY, create_ids, health, run_launch


@pytest.mark.parametrize("status", [200, 404])
def test_create_refused_outright_moves_to_the_next_offer(settings: Settings, client: VastAIClient, state: State,
                                                         vast: FakeVast, clock: FakeClock, status: int) -> None:
    vast.fail_creates_for(offer_id=102, status=status, msg="Offer no longer available")
    result = run_launch(settings, client, state, clock)
    assert result.ready and create_ids(vast) == [102, 101]
    assert [a.outcome for a in result.attempts] == ["failed", "ready"] and "no longer available" in result.attempts[0].reason
    rows = state.instances("vastai")
    assert rows[0].status == "destroyed" and rows[0].cost == "0" and rows[0].remote_id is None
    assert state.excluded_machines("vastai") == {}  # a refused create says nothing about the machine
    assert vast.live_ids() == {result.instance_id}


def list_calls(vast: FakeVast) -> int:
    return len([r for r in vast.received("GET", "/api/v1/instances/") if "after_token" not in r.query])


def test_create_500_polls_for_its_label_then_holds_the_row_unconfirmed_and_tries_the_next_offer(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    """Issue 11 item 3: a 500 may have created an instance; nothing listed yet proves nothing, but
    it does not end the launch either: the row is held (counted, watched) and the next offer tried."""
    vast.fail_creates_for(offer_id=102)  # (in truth nothing was created)
    start = clock()
    result = run_launch(settings, client, state, clock)
    assert result.ready and create_ids(vast) == [102, 101]  # never re-sent; the next offer instead
    assert clock() - start >= vast_launch.CREATE_LOOKUP_S
    assert list_calls(vast) == 8  # every 10 s for 60 s, then one more look once the launch is done
    held, ready = result.attempts
    assert (held.outcome, held.offer_id, held.instance_id) == ("unconfirmed", 102, None) and ready.outcome == "ready"
    assert "outcome unknown" in held.reason and result.unconfirmed == (held,)
    row = state.get_instance(held.ledger_row or 0)
    assert row is not None and row.live and row.status == "unconfirmed" and row.remote_id is None and row.cost is None
    # It counts against the budget until cleanup settles it.
    from gpuctl.vastai import budget

    live = state.live_instances("vastai")
    assert budget.reserved(live, 45) == Decimal("0.135") + Decimal("0.165")  # it and the running 101
    assert vast.live_ids() == {result.instance_id}


def test_an_unconfirmed_create_must_fit_in_the_budget_beside_the_next_offer(settings: Settings, client: VastAIClient,
                                                                           state: State, vast: FakeVast,
                                                                           clock: FakeClock) -> None:
    """"While the budget can hold both": the held row counts, so a budget that fits one launch
    but not two stops before the second create."""
    vast.fail_creates_for(offer_id=102)
    tight = load_settings(env={"VAST_URL": vast.url, "VASTAI_API_KEY": KEY, "VASTAI_BUDGET_LIMIT": "0.30"},
                          home=settings.home)  # 0.135 held (+ 60 s spent) + 0.165 for 101 > 0.30
    with pytest.raises(BudgetError, match=r"1 attempt\(s\) failed .*outcome unknown.*the next offer") as err:
        run_launch(tight, client, state, clock, escalate=True)
    assert create_ids(vast) == [102]
    assert err.value.data["attempts"][0]["outcome"] == "unconfirmed"  # type: ignore[attr-defined]
    (row,) = state.live_instances("vastai")
    assert row.status == "unconfirmed"


def test_an_unconfirmed_create_listed_later_in_the_launch_is_destroyed(settings: Settings, client: VastAIClient,
                                                                      state: State, vast: FakeVast,
                                                                      clock: FakeClock) -> None:
    """Never a phantom: the create went through but is listed only after the 60 s look; the
    launch looks once more when it ends and destroys the second box."""
    vast.create_but_fail(1, status=500, visible_after_lists=7)  # hidden from the 7 looks of the lookup
    result = run_launch(settings, client, state, clock)
    assert result.ready and create_ids(vast) == [102, 101]
    first = state.instances("vastai")[0]
    assert first.status == "destroyed" and first.remote_id == str(FIRST_INSTANCE_ID) and first.cost not in (None, "0")
    assert vast.instance(FIRST_INSTANCE_ID).destroyed and vast.live_ids() == {result.instance_id}
    assert result.attempts[0].outcome == "failed" and "listed late, destroyed" in result.attempts[0].reason
    assert result.unconfirmed == ()


def test_create_listed_late_is_found_destroyed_and_the_next_offer_tried(settings: Settings, client: VastAIClient,
                                                                        state: State, vast: FakeVast,
                                                                        clock: FakeClock) -> None:
    """Finding 5: the create failed at HTTP level but went through, and is listed only on the
    4th listing. One immediate look would have called it never-created and rented a second."""
    vast.create_but_fail(1, status=502, visible_after_lists=3)
    result = run_launch(settings, client, state, clock)
    assert result.ready and create_ids(vast) == [102, 101]
    first = state.instances("vastai")[0]
    assert first.status == "destroyed" and first.remote_id == str(FIRST_INSTANCE_ID)
    assert "yet it was created" in (first.status_msg or "")
    assert vast.instance(FIRST_INSTANCE_ID).destroyed and vast.live_ids() == {result.instance_id}
    assert list_calls(vast) == 4


def test_dropped_create_never_listed_is_held_and_cleanup_destroys_it_once_listed(settings: Settings,
                                                                                 client: VastAIClient, state: State,
                                                                                 vast: FakeVast, clock: FakeClock) -> None:
    vast.create_but_fail(1, status=DROP, visible_after_lists=1000)
    result = run_launch(settings, client, state, clock)
    assert result.ready and create_ids(vast) == [102, 101]
    assert result.attempts[0].outcome == "unconfirmed" and "Cannot reach" in result.attempts[0].reason
    assert vast.live_ids() == {FIRST_INSTANCE_ID, result.instance_id}  # billing, but not unseen:
    row = state.get_instance(result.attempts[0].ledger_row or 0)
    assert row is not None and row.live and row.status == "unconfirmed" and row.remote_id is None
    vast.instance(FIRST_INSTANCE_ID).hidden_lists = 0  # Vast lists it at last
    from gpuctl.vastai.cleanup import run_cleanup

    report = run_cleanup(settings, client=client, state=state, clock=clock,
                         probe=lambda e, k, m: health("unhealthy", "connection refused"))
    got = {a.instance_id: (a.result, a.reason) for a in report.actions}
    assert got[FIRST_INSTANCE_ID][0] == "destroyed" and "launch abandoned" in got[FIRST_INSTANCE_ID][1]
    assert got[result.instance_id][0] == "kept"  # the one that serves
    assert vast.live_ids() == {result.instance_id}
    settled = state.get_instance(row.id)
    assert settled is not None and not settled.live and settled.remote_id == str(FIRST_INSTANCE_ID)


def test_a_crash_whose_destroy_fails_names_the_instance(settings: Settings, client: VastAIClient, state: State,
                                                        vast: FakeVast, clock: FakeClock) -> None:
    """Finding 9: the destroy failure during an abort is the news, not the crash alone."""
    def probe(endpoint: str, key: str | None, model: str | None):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in the probe")

    vast.fail_destroy(FIRST_INSTANCE_ID)
    with pytest.raises(ProviderError) as err:
        run_launch(settings, client, state, clock, probe=probe)
    assert f"gpuctl destroy {FIRST_INSTANCE_ID} --yes" in err.value.message and "may still bill" in err.value.message
    assert isinstance(err.value.__cause__, RuntimeError)
    (row,) = state.live_instances("vastai")
    assert row.status == "failed" and row.remote_id == str(FIRST_INSTANCE_ID)
    assert vast.live_ids() == {FIRST_INSTANCE_ID}


def test_create_that_fails_yet_creates_is_found_by_label_and_destroyed(settings: Settings, client: VastAIClient,
                                                                       state: State, vast: FakeVast, clock: FakeClock,
                                                                       monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real = client.create_instance
    calls: list[int] = []

    def create_then_time_out(offer_id: int, **kw):  # type: ignore[no-untyped-def]
        real(offer_id, **kw)
        calls.append(offer_id)
        if len(calls) == 1:
            raise ProviderError("Vast.ai create timed out", provider="vastai", kind="timeout")
        return real.__self__.list_instances()[-1].id  # type: ignore[attr-defined]

    monkeypatch.setattr(client, "create_instance", create_then_time_out)
    result = run_launch(settings, client, state, clock)
    assert result.ready and calls == [102, 101]
    first = state.instances("vastai")[0]
    assert first.status == "destroyed" and first.remote_id is not None  # found by its label
    assert vast.live_ids() == {result.instance_id}


class InterruptAfter:
    def __init__(self, clock: FakeClock, n: int) -> None:
        self.clock, self.n = clock, n

    def __call__(self, seconds: float) -> None:
        self.n -= 1
        if self.n < 0:
            raise KeyboardInterrupt
        self.clock.advance(seconds)


def test_ctrl_c_while_loading_destroys_what_was_created(settings: Settings, client: VastAIClient, state: State,
                                                        vast: FakeVast, clock: FakeClock) -> None:
    with pytest.raises(LaunchInterrupted, match="destroyed instance") as err:
        run_launch(settings, client, state, clock, sleep=InterruptAfter(clock, 1))
    assert err.value.exit_code == 130
    assert len(vast.instances) == 1 and vast.live_ids() == set()
    (row,) = state.instances("vastai")
    assert row.status == "destroyed" and row.cost is not None


def test_ctrl_c_with_keep_keeps_it(settings: Settings, client: VastAIClient, state: State,
                                   vast: FakeVast, clock: FakeClock) -> None:
    with pytest.raises(LaunchInterrupted, match="kept instance"):
        run_launch(settings, client, state, clock, sleep=InterruptAfter(clock, 1), keep=True)
    assert len(vast.live_ids()) == 1
    (row,) = state.live_instances("vastai")
    assert row.status == "unattended" and row.remote_id == str(next(iter(vast.live_ids())))


def test_ctrl_c_before_the_create_is_listed_keeps_the_row_live(settings: Settings, client: VastAIClient,
                                                               state: State, vast: FakeVast, clock: FakeClock,
                                                               monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Finding 1: one look at a list that does not show it yet proves nothing."""
    vast.create_but_fail(1, status=500, visible_after_lists=2)
    real = client.create_instance

    def create_then_interrupt(offer_id: int, **kw):  # type: ignore[no-untyped-def]
        with contextlib.suppress(ProviderError):
            real(offer_id, **kw)
        raise KeyboardInterrupt  # Ctrl-C while the create was in flight

    monkeypatch.setattr(client, "create_instance", create_then_interrupt)
    with pytest.raises(LaunchInterrupted, match="whether an instance was created is unknown") as err:
        run_launch(settings, client, state, clock)
    assert "gpuctl cleanup" in (err.value.hint or "")
    (row,) = state.live_instances("vastai")
    assert row.status == "unconfirmed" and row.cost is None and vast.live_ids() == {FIRST_INSTANCE_ID}


def test_ctrl_c_during_the_create_call_finds_it_by_label(settings: Settings, client: VastAIClient, state: State,
                                                         vast: FakeVast, clock: FakeClock, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real = client.create_instance

    def create_then_interrupt(offer_id: int, **kw):  # type: ignore[no-untyped-def]
        real(offer_id, **kw)
        raise KeyboardInterrupt  # the reply never reached us

    monkeypatch.setattr(client, "create_instance", create_then_interrupt)
    with pytest.raises(LaunchInterrupted):
        run_launch(settings, client, state, clock)
    assert len(vast.instances) == 1 and vast.live_ids() == set() and state.live_instances("vastai") == []


def test_budget_check_and_intent_row_happen_under_the_global_launch_lock(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock,
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    held: list[bool] = []
    real = state.add_instance_intent

    def spy(**kw):  # type: ignore[no-untyped-def]
        held.append(state.lock_held(BUDGET_LOCK))
        return real(**kw)

    monkeypatch.setattr(state, "add_instance_intent", spy)
    assert run_launch(settings, client, state, clock, wait=False).instance_id
    assert held == [True]
    assert not state.lock_held(BUDGET_LOCK)  # and released afterwards


def test_a_second_launch_waits_for_the_global_launch_lock(settings: Settings, client: VastAIClient, state: State,
                                                          vast: FakeVast, clock: FakeClock) -> None:
    plan = plan_launch(settings, client, state, clock=clock)
    results: list[object] = []

    def second() -> None:
        with open_state(settings.home, clock=clock) as st, VastAIClient(KEY, api_url=vast.url) as api:
            results.append(launch(settings, plan, client=api, state=st, clock=clock, wait=False))

    with budget_lock(state):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=0.3)
        assert thread.is_alive() and vast.received("PUT") == [] and state.instances("vastai") == []
    thread.join(timeout=10)
    assert not thread.is_alive() and len(results) == 1 and len(vast.received("PUT")) == 1


def test_budget_is_checked_again_before_each_retry(settings: Settings, client: VastAIClient, state: State,
                                                   vast: FakeVast, clock: FakeClock) -> None:
    vast.fail_boot(offer_id=102)
    settings = load_settings(env={"VAST_URL": vast.url, "VASTAI_API_KEY": KEY,
                                  "VASTAI_SESSION_BUDGET_LIMIT": "0.15"}, home=settings.home)  # 0.22 × 0.75 > 0.15
    with pytest.raises(BudgetError, match="1 attempt"):
        run_launch(settings, client, state, clock)
    assert create_ids(vast) == [102] and vast.live_ids() == set() and state.live_instances("vastai") == []


def test_the_walk_stops_when_the_instance_list_cannot_be_read_either(settings: Settings, client: VastAIClient,
                                                                     state: State, vast: FakeVast,
                                                                     clock: FakeClock) -> None:
    """Going on is right when Vast lists fine but lacks the label; with the list broken too, every
    further create could be a box nobody can see."""
    vast.fail_creates_for(offer_id=102)
    vast.inject_status(500, times=None, method="GET", path="/api/v1/instances/")
    with pytest.raises(LaunchFailed, match="could not be read either") as err:
        run_launch(settings, client, state, clock, escalate=True)
    assert create_ids(vast) == [102] and "gpuctl status" in (err.value.hint or "")
    assert [a["outcome"] for a in err.value.data["attempts"]] == ["unconfirmed"]
    (row,) = state.live_instances("vastai")
    assert row.status == "unconfirmed"


def test_two_creates_of_unknown_outcome_stop_the_walk(settings: Settings, client: VastAIClient, state: State,
                                                      vast: FakeVast, clock: FakeClock) -> None:
    vast.fail_creates_for(offer_id=102, status=502)
    vast.fail_creates_for(offer_id=101, status=503)
    with pytest.raises(LaunchFailed, match=r"2 creates of unknown outcome: the Vast\.ai API is failing"):
        run_launch(settings, client, state, clock, escalate=True)
    assert create_ids(vast) == [102, 101] and len(state.live_instances("vastai")) == 2
