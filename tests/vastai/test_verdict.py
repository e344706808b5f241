"""What an attempt's evidence means (`gpuctl.vastai.verdict`), through real launches on the
fake: a host that raises its price past what the launch accepts (review B finding 2), and the
same container exit on two machines, which blames the configuration (review B finding 9)."""

from __future__ import annotations

from decimal import Decimal

import pytest

from gpuctl.config import Settings, load_settings
from gpuctl.errors import EXIT_CONFIG
from gpuctl.state import State
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.launch import LaunchFailed, LaunchMisconfigured
from gpuctl.vastai.verdict import exit_signature, names_config
from tests.fakes.vastai_server import FIRST_INSTANCE_ID, FakeClock, FakeVast
from tests.support.vast import KEY, MODEL, create_ids, health, run_launch


def raise_price_on_probe(vast: FakeVast, dph: str):  # type: ignore[no-untyped-def]
    """A probe that answers "loading" once, the host having raised the first box's price."""
    answers = iter([health("unhealthy", "loading"), health("ready")])

    def probe(endpoint: str, key: str | None, model: str | None):  # type: ignore[no-untyped-def]
        if not vast.instance(FIRST_INSTANCE_ID).destroyed:
            vast.set_price(FIRST_INSTANCE_ID, dph)
        return next(answers, health("ready"))

    return probe


# -- finding 2: a live price above --max-dph or past a budget fails the attempt -------------------


def test_a_price_raised_above_max_dph_while_booting_fails_the_attempt(settings: Settings, client: VastAIClient,
                                                                      state: State, vast: FakeVast,
                                                                      clock: FakeClock) -> None:
    """The repro: the host raised $0.18 to $3.00 while it booted; the launch kept it, the ledger
    said 3.0 and the summary $0.18/h."""
    result = run_launch(settings, client, state, clock, max_dph="0.25", probe=raise_price_on_probe(vast, "3.00"))
    assert result.ready and create_ids(vast) == [102, 101] and result.instance_id != FIRST_INSTANCE_ID
    raised, ready = result.attempts
    assert raised.outcome == "failed" and raised.dph == "3.00"  # the real $/h in the summary
    assert "raised its price to $3.00/h, above the $0.25/h this launch accepts (--max-dph)" in raised.reason
    assert ready.dph == "0.22" and result.dph == "0.22"
    first = state.instances("vastai")[0]
    assert first.status == "destroyed" and Decimal(first.dph or 0) == Decimal(3)  # charged at what it billed
    lived = Decimal(str((first.destroyed_at or 0) - first.created_at))
    assert lived > 0 and Decimal(first.cost or 0) == (lived * 3 / 3600).quantize(Decimal("0.000001"))
    assert state.excluded_machines("vastai") == {}  # nothing excluded: the machine did not fail
    assert vast.live_ids() == {result.instance_id}


def test_a_price_whose_projection_breaks_the_session_budget_fails_the_attempt(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    tight = load_settings(env={"VAST_URL": vast.url, "VASTAI_API_KEY": KEY, "VASTAI_SESSION_BUDGET_LIMIT": "0.20"},
                          home=settings.home)  # $0.18 × 45 min = $0.135 fits; $0.30 × 45 min = $0.225 does not
    result = run_launch(tight, client, state, clock, escalate=True, probe=raise_price_on_probe(vast, "0.30"))
    assert result.ready and create_ids(vast) == [102, 101]  # $0.30 is within the tier's $0.35 cap
    reason = result.attempts[0].reason
    assert "the host raised its price: RTX 3090 at $0.30/h would cost $0.225" in reason
    assert "more than the session budget of $0.20" in reason and "nothing was created" not in reason
    assert state.excluded_machines("vastai") == {} and vast.live_ids() == {result.instance_id}


def test_a_price_whose_projection_breaks_the_total_budget_fails_the_attempt(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    tight = load_settings(env={"VAST_URL": vast.url, "VASTAI_API_KEY": KEY, "VASTAI_BUDGET_LIMIT": "0.20"},
                          home=settings.home)
    with pytest.raises(LaunchFailed) as err:
        run_launch(tight, client, state, clock, escalate=True, max_attempts=1, probe=raise_price_on_probe(vast, "0.34"))
    assert "the host raised its price" in err.value.message and "Vast.ai budget" in err.value.message
    assert vast.live_ids() == set() and state.live_instances("vastai") == []


def test_a_raise_within_what_the_launch_accepts_is_kept_and_shown(settings: Settings, client: VastAIClient,
                                                                  state: State, vast: FakeVast,
                                                                  clock: FakeClock) -> None:
    result = run_launch(settings, client, state, clock, probe=raise_price_on_probe(vast, "0.21"))
    assert result.ready and result.instance_id == FIRST_INSTANCE_ID and create_ids(vast) == [102]
    assert result.dph == "0.21" and result.attempts[-1].dph == "0.21"


def test_an_interactive_launch_refuses_a_raise_past_the_price_it_confirmed(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    """Without leave to go further, the live price must stay within the confirmed $0.18 + 25%."""
    result = run_launch(settings, client, state, clock, probe=raise_price_on_probe(vast, "0.30"))
    assert create_ids(vast) == [102, 101] and result.instance_id != FIRST_INSTANCE_ID
    assert "above the $0.225/h this launch accepts (the confirmed $/h + 25%)" in result.attempts[0].reason


# -- finding 9: the same exit from two machines is the configuration's fault ---------------------

TYPO = "container exited with code 1: huggingface_hub.errors.RepositoryNotFoundError: 404 Repository Not Found"


def test_a_model_typo_stops_the_walk_at_the_second_machine_and_excludes_neither(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    """The repro: every boot exits with RepositoryNotFoundError; the walk rented one box per tier
    down to an H100 and excluded every healthy machine."""
    for offer_id in (102, 101, 201, 401):
        vast.exit_on_boot(offer_id=offer_id, msg=TYPO)
    with pytest.raises(LaunchMisconfigured) as err:
        run_launch(settings, client, state, clock, escalate=True)
    assert err.value.exit_code == EXIT_CONFIG
    assert create_ids(vast) == [102, 101]  # not 201, not the H100
    message = err.value.message
    assert "the same message on two machines (50102, 50101)" in message and "RepositoryNotFoundError" in message
    assert f"check vastai.model ({MODEL})" in message and "neither machine is excluded" in message
    assert state.excluded_machines("vastai") == {}  # the first one's exclusion is undone too
    assert vast.live_ids() == set() and state.live_instances("vastai") == []
    assert [a["outcome"] for a in err.value.data["attempts"]] == ["failed", "failed"]


def test_the_same_exit_not_naming_a_setting_stops_with_exit_1(settings: Settings, client: VastAIClient,
                                                              state: State, vast: FakeVast, clock: FakeClock) -> None:
    for offer_id in (102, 101):
        vast.exit_on_boot(offer_id=offer_id, msg="container exited with code 2: vllm: error: unrecognized arguments")
    with pytest.raises(LaunchFailed, match="the same message on two machines") as err:
        run_launch(settings, client, state, clock, escalate=True)
    assert err.value.exit_code == 1 and create_ids(vast) == [102, 101]
    assert state.excluded_machines("vastai") == {}


def test_different_exits_on_two_machines_are_the_hosts(settings: Settings, client: VastAIClient, state: State,
                                                       vast: FakeVast, clock: FakeClock) -> None:
    vast.exit_on_boot(offer_id=102, msg="container exited with code 139: segmentation fault")
    vast.exit_on_boot(offer_id=101, msg="container exited with code 1: CUDA error: no kernel image")
    result = run_launch(settings, client, state, clock, escalate=True)
    assert result.ready and result.tier == "RTX 4090"
    assert set(state.excluded_machines("vastai")) == {"50102", "50101"}


def test_exit_signatures_and_what_names_a_setting() -> None:
    assert exit_signature("exited with code 1 at 12:00:01 (pid 4242)") == exit_signature("exited with code 1 at "
                                                                                         "13:07:59 (pid 17)")
    assert exit_signature("code 1: repo not found") != exit_signature("code 1: out of memory")
    assert names_config(TYPO, MODEL) and names_config("401 Client Error: access to model is restricted", "m")
    assert names_config(f"OSError: {MODEL} does not appear to have a file", MODEL)
    assert not names_config("container exited with code 139: segmentation fault", MODEL)
