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
