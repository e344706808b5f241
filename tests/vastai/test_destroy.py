"""Destroying (`gpuctl.vastai.destroy`): --all trusts neither the list nor the ledger alone, and
a row that never got an instance id is marked never-created only as cleanup would."""

from __future__ import annotations

import pytest

from gpuctl.config import Settings
from gpuctl.errors import PartialError
from gpuctl.state import State
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.destroy import execute_destroy, plan_destroy
from gpuctl.vastai.instances import ActionsFailed, make_label
from tests.fakes.vastai_server import FakeClock, FakeVast


def test_destroy_all_marks_an_id_less_row_only_when_a_non_empty_list_lacks_it_past_the_grace(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    """Finding 1 (destroy --all): an empty list, or a create that may still be in flight, is no
    proof that an intent row never created anything."""
    row_id = state.add_instance_intent(provider="vastai", label=make_label("default"), dph="0.18")
    clock.advance(20 * 60)
    vast.set_list_fault("empty")
    with pytest.raises(ActionsFailed):  # its only target not done: a failure, not partial
        execute_destroy(client, state, plan_destroy(client, state, all_=True), home=settings.home, clock=clock)
    row = state.get_instance(row_id)
    assert row is not None and row.live and row.cost is None
    vast.set_list_fault(None)
    vast.add_instance(label="my-own-box")  # a non-empty list that lacks its label
    young = state.add_instance_intent(provider="vastai", label=make_label("default"), dph="0.18")
    with pytest.raises(PartialError) as err:  # the young one may still appear
        execute_destroy(client, state, plan_destroy(client, state, all_=True), home=settings.home, clock=clock)
    results = {r["ledger_row"]: r["result"] for r in err.value.data["results"]}  # type: ignore[index]
    assert results == {row_id: "marked", young: "failed"}
    assert not state.get_instance(row_id).live and state.get_instance(young).live  # type: ignore[union-attr]


def test_destroy_by_id_settles_the_unconfirmed_row_of_a_late_listed_create(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    """Review B, finding 12: `destroy <id>` of an instance whose create was of unknown outcome
    (its row has no id) matches the row by label, as --all does: settled, not counted twice."""
    label = make_label("default")
    row_id = state.add_instance_intent(provider="vastai", label=label, dph="0.18")
    state.update_instance(row_id, status="unconfirmed")
    clock.advance(30 * 60)
    iid = vast.add_instance(label=label, running=False)  # listed late, still starting
    plan = plan_destroy(client, state, instance_id=iid)
    (target,) = plan.targets
    assert target.row is not None and target.row.id == row_id
    assert target.as_dict()["status"] == "created"  # finding 17: never "?" for a box still starting
    report = execute_destroy(client, state, plan, home=settings.home, clock=clock)
    assert [o.result for o in report.outcomes] == ["destroyed"]
    (row,) = state.instances("vastai")  # no second row for the same instance
    assert row.id == row_id and not row.live and row.cost == "0.100000"  # its live $0.20/h × 30 min
    assert state.live_instances("vastai") == [] and vast.live_ids() == set()
