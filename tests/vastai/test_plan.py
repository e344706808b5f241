"""What a launch would rent (`gpuctl.vastai.plan`): --max-dph and --gpu checked before any
API call, and the total budget holding a keep-alive for every live instance."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gpuctl.config import Settings, load_settings
from gpuctl.errors import BudgetError, UsageError
from gpuctl.state import State, open_state
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.plan import plan_launch
from tests.fakes.vastai_server import FakeClock, FakeVast
from tests.fakes.vllm_server import FakeVLLM
from tests.support.vast import KEY, market, run_launch


def test_plan_launch_refuses_a_non_finite_max_dph(settings: Settings, client: VastAIClient, state: State,
                                                  vast: FakeVast, clock: FakeClock) -> None:
    for value in (float("nan"), float("inf"), Decimal("NaN")):
        with pytest.raises(UsageError, match="finite"):
            plan_launch(settings, client, state, clock=clock, max_dph=value)
    assert vast.requests == []


def test_total_budget_holds_a_keep_alive_for_every_live_instance(gpuctl_home: Path, clock: FakeClock,
                                                                  vllm: FakeVLLM) -> None:
    """Finding 2: six `launch --no-wait` at $0.18/h under a $0.50 budget all succeeded ($0.81
    committed). Each live instance may bill a full keep-alive more: 3 × $0.135 fit, not 4."""
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    with (FakeVast(api_key=KEY, offers=market(), clock=clock, endpoint_port=vllm.port,
                   consume_offers=False) as fake,
          VastAIClient(KEY, api_url=fake.url, sleep=lambda s: None) as api,
          open_state(gpuctl_home, clock=clock) as st):
        limited = load_settings(env={"VAST_URL": fake.url, "VASTAI_API_KEY": KEY, "VASTAI_BUDGET_LIMIT": "0.5"},
                                home=gpuctl_home)
        launched, refusals = [], []
        for _ in range(6):
            try:
                launched.append(run_launch(limited, api, st, clock, wait=False))
            except BudgetError as exc:
                refusals.append(exc)
        assert len(launched) == 3 and len(fake.live_ids()) == 3 and len(refusals) == 3
        assert "$0.405 held for live instances" in refusals[0].message
        plan = plan_launch(limited, api, st, clock=clock)
        assert plan.reserved == Decimal("0.405") and plan.as_dict()["reserved"] == "0.405"


def test_unknown_gpu_is_rejected_before_the_api(settings: Settings, client: VastAIClient, state: State,
                                                vast: FakeVast, clock: FakeClock) -> None:
    with pytest.raises(UsageError):
        plan_launch(settings, client, state, gpu="TPU v5", clock=clock)
    assert vast.requests == []


def test_machine_exclusions_expire_after_a_day(settings: Settings, client: VastAIClient, state: State,
                                               vast: FakeVast, clock: FakeClock) -> None:
    """Review B finding 9: one failure (maybe the user's own setting) no longer bans a machine for good."""
    from gpuctl.vastai.plan import EXCLUDE_FOR_S

    state.exclude_machine("vastai", "50102", "the container exited")
    plan = plan_launch(settings, client, state, clock=clock)
    assert plan.choice is not None and plan.choice.offer.id == 101 and plan.excluded == {50102}
    assert plan.excluded_note == ("1 machine(s) that failed a launch in the last 24 h are excluded; "
                                  "`gpuctl launch --forget-excluded` tries them again")
    clock.advance(EXCLUDE_FOR_S + 1)
    later = plan_launch(settings, client, state, clock=clock)
    assert later.choice is not None and later.choice.offer.id == 102 and later.excluded_note is None


def test_no_acceptable_offer_says_how_many_machines_are_excluded(settings: Settings, client: VastAIClient,
                                                                 state: State, vast: FakeVast,
                                                                 clock: FakeClock) -> None:
    from gpuctl.vastai.plan import NoAcceptableOffer, check_plan

    for machine in ("50102", "50101"):
        state.exclude_machine("vastai", machine, "the container exited")
    plan = plan_launch(settings, client, state, clock=clock, gpu="RTX 3090")
    with pytest.raises(NoAcceptableOffer) as err:
        check_plan(plan)
    assert "2 machine(s) that failed a launch in the last 24 h are excluded" in err.value.message
    assert "--forget-excluded" in (err.value.hint or "")
    assert plan_launch(settings, client, state, clock=clock, gpu="RTX 3090", forget_excluded=True).choice is not None
    assert len(state.excluded_machines("vastai")) == 2  # planning forgets nothing
