"""The retry over offers (`gpuctl.vastai.launch`): up to `MAX_ATTEMPTS`, each failure
destroyed; retries never dearer than what the user confirmed (the chosen tier, its $/h + 25%,
or --max-dph), and never a later tier."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gpuctl.config import Settings
from gpuctl.errors import ProviderError
from gpuctl.state import State
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.launch import launch
from gpuctl.vastai.plan import plan_launch
from tests.fakes.vastai_server import FakeClock, FakeVast, make_offer
from tests.support.vast import OK, Sleeper, create_ids, run_launch


def test_all_attempts_fail_nothing_left_running(settings: Settings, client: VastAIClient, state: State,
                                                vast: FakeVast, clock: FakeClock) -> None:
    vast.add_offer(make_offer(108, dph_total="0.20", **OK))  # within $0.18 + 25%, like 101
    for offer_id in (102, 108, 101, 201, 401):
        vast.fail_boot(offer_id=offer_id)
    with pytest.raises(ProviderError, match="after 3 attempt"):
        run_launch(settings, client, state, clock)
    assert create_ids(vast) == [102, 108, 101]  # the limit
    assert vast.live_ids() == set() and state.live_instances("vastai") == []
    assert set(state.excluded_machines("vastai")) == {"50102", "50108", "50101"}


# -- retries stay within what the user confirmed (review finding 1) ------------------------------


def test_a_failed_cheap_offer_is_never_replaced_by_a_dearer_tier(settings: Settings, client: VastAIClient,
                                                                state: State, vast: FakeVast, clock: FakeClock) -> None:
    """The finding: the user confirmed an RTX 3090 at $0.18/h; its machine failed CDI, the other
    cheap offers were gone, and the retry rented an H100 SXM at $2.40/h with no second question."""
    vast.remove_offer(101)
    vast.remove_offer(201)
    vast.add_offer(make_offer(110, dph_total="0.30", **OK))  # same tier, but above $0.18 × 1.25
    vast.fail_boot(offer_id=102)
    plan = plan_launch(settings, client, state, clock=clock)
    assert plan.retry_max_dph == Decimal("0.225") and [t.name for t in plan.retry_tiers] == ["RTX 3090"]
    searches = len(vast.received("POST", "/api/v0/bundles/"))
    with pytest.raises(ProviderError) as err:
        launch(settings, plan, client=client, state=state, clock=clock, sleep=Sleeper(clock))
    assert create_ids(vast) == [102]  # never 110 ($0.30), never 401 (the H100 at $2.40)
    assert len(vast.received("POST", "/api/v0/bundles/")) == searches  # later tiers not even searched
    message = err.value.message
    assert err.value.exit_code == 1 and "CDI injection failure" in message
    assert "RTX 3090 tier's offers at most $0.225/h (the confirmed $0.18/h + 25%) are exhausted" in message
    assert "not rented without a new confirmation" in message and "gpuctl launch --dry-run" in (err.value.hint or "")
    assert vast.live_ids() == set() and state.live_instances("vastai") == []


def test_an_explicit_max_dph_is_the_retry_limit_but_not_a_licence_for_later_tiers(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    vast.remove_offer(101)
    vast.add_offer(make_offer(110, dph_total="0.28", **OK))  # above $0.225, within --max-dph
    vast.fail_boot(offer_id=102)
    result = run_launch(settings, client, state, clock, max_dph="0.30")  # what the user asked for
    assert result.ready and create_ids(vast) == [102, 110]
    vast.fail_boot(offer_id=110)
    vast.remove_offer(102)
    vast.add_offer(make_offer(111, dph_total="0.19", **OK))
    vast.fail_boot(offer_id=111)
    with pytest.raises(ProviderError, match=r"at most \$3.00/h \(--max-dph\) are exhausted; dearer offers and later"):
        run_launch(settings, client, state, clock, max_dph=3)  # the RTX 4090 at $0.40 fits $3, not the tier rule
    assert create_ids(vast)[2:] == [111] and 201 not in create_ids(vast)
