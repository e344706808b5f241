"""The walk over offers and tiers (`gpuctl.vastai.launch`): each failed box destroyed; without
leave, retries never dearer than what the user confirmed (the chosen tier, its $/h + 25%, or
--max-dph), and never a later tier; with `--yes` (escalate=True) the original system's whole
tier fallback, within the budgets and --max-dph; an interactive launch asks once."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gpuctl.config import Settings, load_settings
from gpuctl.errors import BudgetError, ProviderError
from gpuctl.state import State
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.launch import Escalation, LaunchFailed, launch
from gpuctl.vastai.plan import plan_launch
from tests.fakes.vastai_server import FakeClock, FakeVast, make_offer
from tests.support.vast import KEY, OK, Sleeper, create_ids, run_launch


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


# -- the tier fallback under --yes (issue 11 item 4) ---------------------------------------------


def a5000(offer_id: int, dph: str) -> dict[str, object]:
    return make_offer(offer_id, gpu_name="RTX A5000", dph_total=dph, **OK)


def test_yes_walks_the_tiers_past_every_kind_of_failure_until_a_vllm_generates(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    vast.add_offer(a5000(301, "0.30"))
    vast.add_offer(a5000(302, "0.32"))
    vast.fail_boot(offer_id=102)  # "failed to inject CDI devices"
    vast.fail_creates_for(offer_id=101, status=404, msg="Offer no longer available")  # a definite refusal
    vast.stick_loading(offer_id=201)  # the RTX 4090 tier: stuck loading
    vast.exit_on_boot(offer_id=301)  # the container exits
    result = run_launch(settings, client, state, clock, escalate=True)
    assert result.ready and result.tier == "RTX A5000" and result.dph == "0.32"
    assert create_ids(vast) == [102, 101, 201, 301, 302]
    outcomes = [(a.offer_id, a.tier, a.outcome) for a in result.attempts]
    assert outcomes == [(102, "RTX 3090", "failed"), (101, "RTX 3090", "failed"), (201, "RTX 4090", "failed"),
                        (301, "RTX A5000", "failed"), (302, "RTX A5000", "ready")]
    why = [a.reason for a in result.attempts[:4]]
    assert "CDI" in why[0] and "no longer available" in why[1] and "stuck in loading" in why[2]
    assert "container exited" in why[3] and "unrecognized arguments" in why[3]
    assert vast.live_ids() == {result.instance_id}  # each failed box destroyed
    assert [r.remote_id for r in state.live_instances("vastai")] == [str(result.instance_id)]


def test_every_tier_tried_each_failed_box_destroyed_and_every_attempt_listed(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    for offer_id in (102, 101, 201, 401):
        vast.fail_boot(offer_id=offer_id)
    with pytest.raises(LaunchFailed) as err:
        run_launch(settings, client, state, clock, escalate=True)
    assert create_ids(vast) == [102, 101, 201, 401] and vast.live_ids() == set()
    assert state.live_instances("vastai") == []
    message = err.value.message
    assert "after 4 attempt(s)" in message and "Every acceptable offer of the 10 tier(s) tried" in message
    assert "offer 102 (RTX 3090, $0.18/h): CDI injection failure" in message
    assert "offer 401 (H100 SXM, $2.40/h): CDI" in message and "Nothing is left running" in message
    assert [a["offer_id"] for a in err.value.data["attempts"]] == [102, 101, 201, 401]
    assert all(a["outcome"] == "failed" and a["cost"] for a in err.value.data["attempts"])


def test_a_walk_in_which_no_create_succeeded_does_not_say_instances_were_destroyed(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    """Review B, finding 17: "Each failed instance was destroyed" when none was ever created."""
    for offer_id in (102, 101, 201, 401):
        vast.fail_creates_for(offer_id=offer_id, status=404, msg="Offer no longer available")
    with pytest.raises(LaunchFailed) as err:
        run_launch(settings, client, state, clock, escalate=True)
    assert create_ids(vast) == [102, 101, 201, 401] and vast.live_ids() == set()
    message = err.value.message
    assert "No create succeeded, so no instance was made." in message
    assert "Each failed instance was destroyed" not in message


def test_each_tier_gets_at_most_three_attempts_then_the_next_tier(settings: Settings, client: VastAIClient,
                                                                  state: State, vast: FakeVast, clock: FakeClock) -> None:
    for offer_id, dph in ((108, "0.19"), (109, "0.20")):
        vast.add_offer(make_offer(offer_id, dph_total=dph, **OK))
    for offer_id in (102, 108, 109, 101):
        vast.fail_boot(offer_id=offer_id)
    result = run_launch(settings, client, state, clock, escalate=True)
    assert create_ids(vast) == [102, 108, 109, 201] and result.tier == "RTX 4090"  # 101 left for another day


def test_yes_stays_within_max_dph_and_the_budgets(settings: Settings, client: VastAIClient, state: State,
                                                 vast: FakeVast, clock: FakeClock) -> None:
    for offer_id in (102, 101, 201):
        vast.fail_boot(offer_id=offer_id)
    with pytest.raises(LaunchFailed, match="Every acceptable offer"):
        run_launch(settings, client, state, clock, escalate=True, max_dph=1)
    assert 401 not in create_ids(vast)  # the H100 at $2.40/h is above --max-dph
    vast.reset_faults()
    for offer_id in (102, 101, 201):  # new machines, same failures
        vast.remove_offer(offer_id)
    vast.add_offer(make_offer(120, dph_total="0.18", **OK))
    vast.fail_boot(offer_id=120)
    vast.add_offer(make_offer(220, gpu_name="RTX 4090", dph_total="0.40", gpu_ram=24564, **OK))
    vast.fail_boot(offer_id=220)
    tight = load_settings(env={"VAST_URL": vast.url, "VASTAI_API_KEY": KEY, "VASTAI_SESSION_BUDGET_LIMIT": "0.35"},
                          home=settings.home)  # the H100 projects $1.80 over the keep-alive
    with pytest.raises(BudgetError, match=r"2 attempt\(s\) failed .*the next offer: H100 SXM") as err:
        run_launch(tight, client, state, clock, escalate=True)
    assert create_ids(vast)[-2:] == [120, 220] and vast.live_ids() == set()
    assert [a["offer_id"] for a in err.value.data["attempts"]] == [120, 220]  # type: ignore[attr-defined]


def test_an_interactive_launch_asks_once_before_a_dearer_tier(settings: Settings, client: VastAIClient,
                                                              state: State, vast: FakeVast, clock: FakeClock) -> None:
    for offer_id in (102, 101, 201):
        vast.fail_boot(offer_id=offer_id)
    asked: list[Escalation] = []

    def yes_once(question: Escalation) -> bool:
        asked.append(question)
        return True

    result = run_launch(settings, client, state, clock, escalate=yes_once)
    assert result.ready and create_ids(vast) == [102, 101, 201, 401]
    (question,) = asked  # once, though two more offers followed
    assert question.next.offer.id == 201 and question.confirmed_dph == Decimal("0.225")
    assert question.confirmed_tier == "RTX 3090" and [a.offer_id for a in question.attempts] == [102, 101]


def test_an_interactive_launch_that_is_told_no_stops_at_what_was_confirmed(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    for offer_id in (102, 101):
        vast.fail_boot(offer_id=offer_id)
    with pytest.raises(LaunchFailed, match="are exhausted; dearer offers and later tiers are not rented"):
        run_launch(settings, client, state, clock, escalate=lambda question: False)
    assert create_ids(vast) == [102, 101] and vast.live_ids() == set()


# -- review B finding 14: the cap on unknown-outcome creates is the account's, not one launch's ----


def test_a_yes_launch_refuses_while_the_account_holds_the_cap_of_unconfirmed_creates(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    """Re-running `launch --yes` during a Vast 5xx outage added two more held creates each time."""
    from gpuctl.vastai.launch import MAX_UNCONFIRMED

    vast.fail_creates_for(offer_id=102, status=502)
    vast.fail_creates_for(offer_id=101, status=503)
    with pytest.raises(LaunchFailed, match="2 creates of unknown outcome"):
        run_launch(settings, client, state, clock, escalate=True)
    held = state.live_instances("vastai")
    assert len(held) == MAX_UNCONFIRMED == 2 and create_ids(vast) == [102, 101]
    with pytest.raises(LaunchFailed) as err:
        run_launch(settings, client, state, clock, escalate=True)  # the outage goes on: no third create
    assert err.value.exit_code == 1 and create_ids(vast) == [102, 101]
    message = err.value.message
    assert "2 create(s) of unknown outcome are already held on this account" in message
    assert all(f"ledger row {r.id} ({r.label})" in message for r in held) and "Nothing was created" in message
    assert "gpuctl cleanup" in (err.value.hint or "")


def test_one_held_create_from_before_leaves_room_for_one_more(settings: Settings, client: VastAIClient,
                                                              state: State, vast: FakeVast, clock: FakeClock) -> None:
    vast.fail_creates_for(offer_id=102, status=502)
    assert run_launch(settings, client, state, clock, escalate=True).ready  # 102 held, 101 came up
    with pytest.raises(LaunchFailed, match=r"2 creates of unknown outcome.*\(1 of them from before this launch\)"):
        run_launch(settings, client, state, clock, escalate=True)  # 102 fails again: the account holds two
    assert create_ids(vast) == [102, 101, 102]  # the account's cap: not on to 201
