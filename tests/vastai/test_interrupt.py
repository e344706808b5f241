"""The one handler around a launch (`gpuctl.vastai.interrupt`, review B finding 4): Ctrl-C or
SIGTERM at any moment (not only inside an attempt: during the last look for a create of unknown
outcome after the replacement came up, or while the next tier is searched) destroys whatever was
created and not handed over, unless --keep, and the message names every instance and its state.
Time is the fake clock's; the interruptions are injected at the API calls."""

from __future__ import annotations

import os
import signal
from pathlib import Path

import pytest

from gpuctl.config import Settings
from gpuctl.errors import ProviderError
from gpuctl.state import State, open_state
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.launch import LaunchInterrupted
from tests.fakes.vastai_server import FIRST_INSTANCE_ID, FakeClock, FakeVast
from tests.support import assert_exit
from tests.support.vast import create_ids, run_launch


def interrupt_list_call(monkeypatch: pytest.MonkeyPatch, client: VastAIClient, n: int,
                        exc: BaseException | type[BaseException] = KeyboardInterrupt) -> None:
    """The `n`th instance listing raises `exc` (Ctrl-C arriving while the launch looks)."""
    real = client.list_instances
    calls = [0]

    def listing():  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == n:
            raise exc
        return real()

    monkeypatch.setattr(client, "list_instances", listing)


def held_then_ready(vast: FakeVast) -> None:
    """Offer 102's create answers 500 yet makes a box listed only much later; 101 comes up."""
    vast.create_but_fail(1, status=500, visible_after_lists=1000)


def test_ctrl_c_during_the_last_look_after_the_replacement_came_up_destroys_it(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    """The repro: the READY instance was left billing with only "Error: interrupted"."""
    held_then_ready(vast)
    interrupt_list_call(monkeypatch, client, 2)  # 1: the create's own lookup; 2: the look once 101 is up
    with pytest.raises(LaunchInterrupted) as err:
        run_launch(settings, client, state, clock, create_lookup_s=0)
    held, ready = state.instances("vastai")
    assert err.value.exit_code == 130 and create_ids(vast) == [102, 101]
    message = err.value.message
    assert f"destroyed instance {ready.remote_id}" in message
    assert f"ledger row {held.id}: whether an instance was created is unknown" in message
    assert "gpuctl cleanup" in (err.value.hint or "")
    assert not ready.live and ready.cost is not None and ready.status_msg == "launch interrupted"
    assert held.live and held.status == "unconfirmed"  # held for cleanup, as before
    assert vast.live_ids() == {FIRST_INSTANCE_ID}  # only the held create's box, which cleanup settles


def test_ctrl_c_with_keep_after_the_replacement_came_up_keeps_it_and_says_so(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    held_then_ready(vast)
    interrupt_list_call(monkeypatch, client, 2)
    with pytest.raises(LaunchInterrupted) as err:
        run_launch(settings, client, state, clock, create_lookup_s=0, keep=True)
    _, ready = state.instances("vastai")
    assert f"kept instance {ready.remote_id} (ready); it bills until destroyed" in err.value.message
    assert ready.live and ready.status == "ready" and int(ready.remote_id or 0) in vast.live_ids()
    assert f"gpuctl destroy {ready.remote_id} --yes" in (err.value.hint or "")


def test_ctrl_c_while_the_next_tier_is_searched_names_every_instance(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    for offer_id in (102, 101):
        vast.fail_boot(offer_id=offer_id)
    real = client.search_offers

    def search(**kw):  # type: ignore[no-untyped-def]
        if kw.get("gpu_name") == "RTX 4090":
            raise KeyboardInterrupt
        return real(**kw)

    monkeypatch.setattr(client, "search_offers", search)
    with pytest.raises(LaunchInterrupted) as err:
        run_launch(settings, client, state, clock, escalate=True)
    first, second = state.instances("vastai")
    assert err.value.message == (f"interrupted: destroyed instance {first.remote_id}; destroyed instance "
                                 f"{second.remote_id}.")
    assert vast.live_ids() == set() and state.live_instances("vastai") == []


def test_an_error_after_the_box_came_up_destroys_it_and_keeps_the_error(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    held_then_ready(vast)
    interrupt_list_call(monkeypatch, client, 2, RuntimeError("a bug in the last look"))
    with pytest.raises(ProviderError) as err:  # something may still bill (the held create): say so
        run_launch(settings, client, state, clock, create_lookup_s=0)
    held, ready = state.instances("vastai")
    assert isinstance(err.value.__cause__, RuntimeError)  # the bug's traceback stays (--debug)
    assert f"the launch failed (RuntimeError: a bug in the last look) and ledger row {held.id}" in err.value.message
    assert f"destroyed instance {ready.remote_id}" in err.value.message
    assert not ready.live and vast.live_ids() == {FIRST_INSTANCE_ID}


def test_a_bug_after_the_box_came_up_with_nothing_else_held_keeps_its_traceback(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    vast.fail_boot(offer_id=102)
    real = state.get_instance
    calls = [0]

    def get_instance(row_id: int):  # type: ignore[no-untyped-def]
        row = real(row_id)
        if row is not None and row.status == "ready" and calls[0] == 0:
            calls[0] += 1
            raise RuntimeError("a bug while handing over")
        return row

    monkeypatch.setattr(state, "get_instance", get_instance)
    with pytest.raises(RuntimeError, match="a bug while handing over"):
        run_launch(settings, client, state, clock)
    assert vast.live_ids() == set() and state.live_instances("vastai") == []


def test_a_second_ctrl_c_during_the_handlers_destroy_says_what_may_still_bill(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    held_then_ready(vast)
    interrupt_list_call(monkeypatch, client, 2)
    real = client.destroy_instance

    def destroy(instance_id: int) -> None:
        real(instance_id)  # sent; its answer never read
        raise KeyboardInterrupt

    monkeypatch.setattr(client, "destroy_instance", destroy)
    with pytest.raises(LaunchInterrupted) as err:
        run_launch(settings, client, state, clock, create_lookup_s=0)
    _, ready = state.instances("vastai")
    assert ready.live and ready.status == "failed"  # cleanup finishes the job
    assert f"instance {ready.remote_id}: launch interrupted; destroy sent, its answer never read; it may still " \
           "bill" in err.value.message
    assert f"gpuctl destroy {ready.remote_id} --yes" in (err.value.hint or "")


def test_sigterm_in_the_cli_after_the_box_came_up_destroys_it_and_exits_130(
        cli, vast_env: FakeVast, gpuctl_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    """`kill`, `timeout`, systemd: SIGTERM is Ctrl-C, also outside an attempt."""
    vast_env.create_but_fail(1, status=500, visible_after_lists=1000)
    real = VastAIClient.list_instances
    calls = [0]

    def listing(self: VastAIClient):  # type: ignore[no-untyped-def]
        calls[0] += 1
        if calls[0] == 2:  # the last look, once 101 is ready
            os.kill(os.getpid(), signal.SIGTERM)
        return real(self)

    monkeypatch.setattr(VastAIClient, "list_instances", listing)
    result = cli("launch", "--yes")
    assert_exit(result, 130)
    with open_state(gpuctl_home) as st:
        held, ready = st.instances("vastai")
    assert f"destroyed instance {ready.remote_id}" in result.stderr
    assert f"ledger row {held.id}: whether an instance was created is unknown" in result.stderr
    assert vast_env.live_ids() == {FIRST_INSTANCE_ID} and not ready.live


def test_ctrl_c_while_looking_for_a_create_of_unknown_outcome_holds_its_row_and_names_it(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    vast.fail_creates_for(offer_id=102)  # 500; the launch looks for its label every 10 s

    def sleep(seconds: float) -> None:
        raise KeyboardInterrupt  # Ctrl-C during the first wait between looks

    with pytest.raises(LaunchInterrupted) as err:
        run_launch(settings, client, state, clock, sleep=sleep)
    (row,) = state.live_instances("vastai")
    assert row.status == "unconfirmed" and create_ids(vast) == [102]
    assert err.value.message.startswith(f"interrupted: ledger row {row.id}: whether an instance was created is "
                                        "unknown")


def test_ctrl_c_while_a_failed_box_is_destroyed_finishes_the_destroy(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock,
        monkeypatch: pytest.MonkeyPatch) -> None:
    vast.fail_boot(offer_id=102)
    real = client.destroy_instance
    calls = [0]

    def destroy(instance_id: int) -> None:
        calls[0] += 1
        if calls[0] == 1:
            raise KeyboardInterrupt  # before the request went out
        real(instance_id)

    monkeypatch.setattr(client, "destroy_instance", destroy)
    with pytest.raises(LaunchInterrupted) as err:
        run_launch(settings, client, state, clock, escalate=True)
    assert err.value.message == f"interrupted: destroyed instance {FIRST_INSTANCE_ID}."
    assert create_ids(vast) == [102] and vast.live_ids() == set() and state.live_instances("vastai") == []
