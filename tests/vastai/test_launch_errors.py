"""How a launch that handed nothing over says so (`gpuctl.vastai.launch_errors`): every message
names what is still held (review B finding 8: "nothing was created" while a create of unknown
outcome was held), and says "each failed instance was destroyed" only when one was."""

from __future__ import annotations

import pytest

from gpuctl.config import Settings, load_settings
from gpuctl.errors import BudgetError
from gpuctl.state import State
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.launch import LaunchFailed
from tests.fakes.vastai_server import FakeClock, FakeVast
from tests.support.vast import KEY, create_ids, run_launch


def test_the_over_budget_message_names_the_held_unconfirmed_row(settings: Settings, client: VastAIClient,
                                                                 state: State, vast: FakeVast,
                                                                 clock: FakeClock) -> None:
    """The repro: a 500 whose instance is listed late, then a budget too small for the next offer:
    "…; nothing was created." while ledger row 1 was held and its box billed."""
    vast.create_but_fail(1, status=500, visible_after_lists=1000)
    tight = load_settings(env={"VAST_URL": vast.url, "VASTAI_API_KEY": KEY, "VASTAI_BUDGET_LIMIT": "0.28"},
                          home=settings.home)
    with pytest.raises(BudgetError) as err:
        run_launch(tight, client, state, clock, escalate=True, create_lookup_s=0)
    (row,) = state.live_instances("vastai")
    message = err.value.message
    assert "nothing was created" not in message and "so it was not rented" in message
    assert f"1 create(s) of unknown outcome (ledger row(s) {row.id}) stay held against the budget" in message
    assert "gpuctl cleanup" in (err.value.hint or "") and "Each failed instance was destroyed" not in message


def test_refused_creates_are_not_called_destroyed_instances(settings: Settings, client: VastAIClient, state: State,
                                                            vast: FakeVast, clock: FakeClock) -> None:
    for offer_id in (102, 101, 201, 401):
        vast.fail_creates_for(offer_id=offer_id, status=404, msg="Offer no longer available")
    with pytest.raises(LaunchFailed) as err:
        run_launch(settings, client, state, clock, escalate=True)
    assert create_ids(vast) == [102, 101, 201, 401]
    assert "Each failed instance was destroyed" not in err.value.message  # none was made
    assert "Nothing is left running" in err.value.message
