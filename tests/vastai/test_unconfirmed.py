"""Creates of unknown outcome (`unconfirmed` rows, no instance id) are settled by cleanup only on
evidence one outage cannot fake, and never held forever (issue 11 item 3); `destroy --all`
clears them when nothing is left on the account; `cost report` never charges them."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gpuctl.config import Settings
from gpuctl.errors import ProviderError
from gpuctl.ops.cost import cost_report
from gpuctl.state import State
from gpuctl.vastai import budget
from gpuctl.vastai.cleanup import CleanupReport, run_cleanup
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.destroy import execute_destroy, plan_destroy
from gpuctl.vastai.instances import make_label
from gpuctl.vastai.unconfirmed import first_absent
from tests.fakes.vastai_server import FakeClock, FakeVast
from tests.support.vast import health

MIN = 60.0


def cleanup(settings: Settings, client: VastAIClient, state: State, clock: FakeClock, **kw) -> CleanupReport:  # type: ignore[no-untyped-def]
    kw.setdefault("probe", lambda endpoint, key, model: health("unhealthy", "connection refused"))
    return run_cleanup(settings, client=client, state=state, clock=clock, **kw)


def unconfirmed_row(state: State, clock: FakeClock) -> int:
    row_id = state.add_instance_intent(provider="vastai", label=make_label(None), dph="0.18", offer_id="102")
    state.update_instance(row_id, status="unconfirmed", status_msg="create from offer 102 failed: HTTP 500")
    return row_id


def test_an_unconfirmed_row_on_an_empty_account_is_settled_never_held_forever(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    """The old guard refused every empty list while any row was live: on an account with nothing
    else, the row was held (and counted) forever. An empty list that says `total_instances: 0`
    is one sighting; two of them 10 minutes apart settle it."""
    row_id = unconfirmed_row(state, clock)
    clock.advance(20 * MIN)
    (first,) = cleanup(settings, client, state, clock).actions
    assert first.result == "kept" and state.get_instance(row_id).live  # type: ignore[union-attr]
    clock.advance(5 * MIN)
    (again,) = cleanup(settings, client, state, clock).actions  # a fast second run is not enough
    assert again.result == "kept" and "missing from the listings for 5 min" in again.reason
    clock.advance(5 * MIN)
    (done,) = cleanup(settings, client, state, clock).actions
    assert (done.action, done.result, done.cost) == ("mark_never_created", "marked", "0.00")
    row = state.get_instance(row_id)
    assert row is not None and not row.live and row.cost == "0"
    assert budget.reserved(state.live_instances("vastai"), 45) == 0  # no longer held


def test_a_bare_empty_list_is_never_a_sighting(settings: Settings, client: VastAIClient, state: State,
                                               vast: FakeVast, clock: FakeClock) -> None:
    """The 2026 leak: `{"instances": []}` with no total, whatever exists. Never evidence, however often."""
    row_id = unconfirmed_row(state, clock)
    label = state.get_instance(row_id).label  # type: ignore[union-attr]
    vast.add_instance(label=label)  # the create went through after all
    vast.set_list_fault("empty")
    for _ in range(4):
        clock.advance(20 * MIN)
        with pytest.raises(ProviderError, match="empty instance list"):
            cleanup(settings, client, state, clock)
    assert first_absent(state, label) is None and state.get_instance(row_id).live  # type: ignore[union-attr]
    vast.set_list_fault(None)
    cleanup(settings, client, state, clock)  # found by its label: destroyed, never marked $0
    assert vast.live_ids() == set()
    row = state.get_instance(row_id)
    assert row is not None and not row.live and row.cost not in (None, "0")


def test_a_label_that_shows_up_between_two_sightings_is_destroyed_not_marked(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    row_id = unconfirmed_row(state, clock)
    label = state.get_instance(row_id).label  # type: ignore[union-attr]
    clock.advance(20 * MIN)
    cleanup(settings, client, state, clock)
    assert first_absent(state, label) is not None
    iid = vast.add_instance(label=label)  # listed late (Vast's side was slow)
    clock.advance(11 * MIN)
    report = cleanup(settings, client, state, clock)
    assert [(a.instance_id, a.result) for a in report.actions] == [(iid, "destroyed")]
    assert first_absent(state, label) is None and vast.live_ids() == set()


def test_a_dry_run_records_no_sighting(settings: Settings, client: VastAIClient, state: State, vast: FakeVast,
                                       clock: FakeClock) -> None:
    row_id = unconfirmed_row(state, clock)
    clock.advance(20 * MIN)
    cleanup(settings, client, state, clock, dry_run=True)
    assert first_absent(state, state.get_instance(row_id).label) is None  # type: ignore[arg-type,union-attr]


def test_destroy_all_clears_unconfirmed_rows_when_nothing_is_left_on_the_account(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    row_id = unconfirmed_row(state, clock)
    clock.advance(3 * MIN)
    report = execute_destroy(client, state, plan_destroy(client, state, all_=True), home=settings.home, clock=clock)
    assert [o.result for o in report.outcomes] == ["marked"] and report.failed == []
    assert state.live_instances("vastai") == [] and state.get_instance(row_id).cost == "0"  # type: ignore[union-attr]


def test_cost_report_holds_but_never_charges_an_unconfirmed_create(settings: Settings, state: State,
                                                                   clock: FakeClock) -> None:
    row_id = unconfirmed_row(state, clock)
    clock.advance(60 * MIN)
    assert budget.spent(state.instances("vastai"), clock()) == Decimal("0.18")  # the budget holds an hour of it
    view = cost_report(settings, state, now=clock())
    data = view.data
    assert data["totals"]["vastai_instances"] == "0.00" and data["totals"]["total"] == "0.00"
    assert data["budgets"]["vastai_spent_all_time"] == "0.00" and data["budgets"]["live_instances"] == []
    assert data["budgets"]["vastai_held_unconfirmed"] == "0.18"
    assert data["budgets"]["unconfirmed_creates"][0]["ledger_row"] == row_id
    assert any("unknown outcome" in n and "not charged" in n for n in view.notes)
