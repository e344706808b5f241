"""The ops behind `gpuctl launch` and `gpuctl destroy` (`gpuctl.ops.launch`, `gpuctl.ops.destroy`):
arguments read before anything is opened, and a session that fails on a missing key before
any request. Their rendering is tested through the CLI (test_launch_cli.py, test_destroy_cli.py)."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuctl.config import Settings, load_settings
from gpuctl.errors import CredentialsError, UsageError
from gpuctl.ops import destroy as destroy_ops
from gpuctl.ops import launch as launch_ops
from gpuctl.state import State
from tests.fakes.vastai_server import FakeVast


@pytest.mark.parametrize(("target", "instance_id", "all_", "want"), [
    ("12345", None, False, destroy_ops.DestroyRequest(instance_id=12345)),
    ("vastai", "12345", False, destroy_ops.DestroyRequest(instance_id=12345)),
    ("vast", None, True, destroy_ops.DestroyRequest(all_=True)),
    ("gpuctl:dev:0123456789ab", None, False, destroy_ops.DestroyRequest(label="gpuctl:dev:0123456789ab")),
])
def test_destroy_request_reads_an_id_a_label_or_all(target: str, instance_id: str | None, all_: bool,
                                                    want: destroy_ops.DestroyRequest) -> None:
    assert destroy_ops.request(target, instance_id, all_=all_, force=False) == want


@pytest.mark.parametrize(("target", "instance_id", "all_", "needle"), [
    ("modal-ish", None, False, "unknown target"),
    ("vastai", "abc", False, "is a number"),
    ("12", None, True, "names one instance"),
    ("vastai", "12", True, "not both"),
    ("vastai", None, False, "not both"),
])
def test_destroy_request_refuses_what_names_nothing_or_too_much(target: str, instance_id: str | None, all_: bool,
                                                                needle: str) -> None:
    with pytest.raises(UsageError, match=needle):
        destroy_ops.request(target, instance_id, all_=all_, force=False)


def test_sessions_need_a_key_before_any_request(gpuctl_home: Path, vast: FakeVast) -> None:
    bare = load_settings(env={"VAST_URL": vast.url}, home=gpuctl_home)
    for session in (launch_ops.session, destroy_ops.session):
        with pytest.raises(CredentialsError, match=r"No Vast\.ai API key"), session(bare):
            pass
    assert vast.requests == []


def test_a_dry_run_is_the_plan_without_an_instance(settings: Settings, state: State, vast: FakeVast) -> None:
    with launch_ops.session(settings) as launch:
        planned = launch.plan(state)
    data = planned.as_dict()
    assert list(data) == ["dry_run", "plan"] and data["dry_run"] is True
    assert data["plan"]["choice"]["offer_id"] == 102 and vast.received("PUT") == []


# -- `launch_yes`: the same launch as `gpuctl launch --yes`, for code without a terminal ---------


@pytest.fixture
def yes_setup(gpuctl_home: Path, real_time_vast: FakeVast, monkeypatch: pytest.MonkeyPatch):  # type: ignore[no-untyped-def]
    from gpuctl.state import open_state
    from gpuctl.vastai import launch as vast_launch
    from tests.support.vast import KEY

    monkeypatch.setattr(vast_launch, "POLL_S", 0.0)
    settings = load_settings(env={"VAST_URL": real_time_vast.url, "VASTAI_API_KEY": KEY}, home=gpuctl_home)
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    with open_state(gpuctl_home) as st:
        yield settings, st, real_time_vast


def test_launch_yes_walks_the_tiers_and_reports_progress_through_a_callback(yes_setup) -> None:  # type: ignore[no-untyped-def]
    settings, state, vast = yes_setup
    vast.fail_boot(offer_id=102)
    vast.fail_boot(offer_id=101)
    lines: list[str] = []
    launched = launch_ops.launch_yes(settings, state, progress=lines.append)
    assert launched.instance is not None and launched.instance.ready and launched.instance.tier == "RTX 4090"
    assert [a.outcome for a in launched.instance.attempts] == ["failed", "failed", "ready"]
    assert any("Past the RTX 3090 tier" in line for line in lines) and any("Creating" in line for line in lines)


def test_launch_yes_refuses_a_plan_that_would_not_proceed_with_the_plan_as_data(yes_setup) -> None:  # type: ignore[no-untyped-def]
    from gpuctl.errors import BudgetError

    settings, state, vast = yes_setup
    tight = load_settings(env={"VAST_URL": vast.url, "VASTAI_API_KEY": settings["vastai.api_key"],
                               "VASTAI_SESSION_BUDGET_LIMIT": "0.10"}, home=settings.home)
    for dry_run in (True, False):
        with pytest.raises(BudgetError) as err:
            launch_ops.launch_yes(tight, state, dry_run=dry_run)
        assert err.value.data["plan"]["choice"]["offer_id"] == 102  # type: ignore[attr-defined]
    assert vast.received("PUT") == []


def test_raising_from_progress_aborts_and_destroys_what_was_created(yes_setup) -> None:  # type: ignore[no-untyped-def]
    settings, state, vast = yes_setup

    class Cancelled(Exception):
        pass

    def progress(line: str) -> None:
        if line.startswith("Instance"):  # the box is booting: the caller gives up (a gateway shutting down)
            raise Cancelled

    with pytest.raises(Cancelled):
        launch_ops.launch_yes(settings, state, progress=progress)
    assert len(vast.instances) == 1 and vast.live_ids() == set() and state.live_instances("vastai") == []
