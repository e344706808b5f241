"""What launch, destroy and cleanup share (`gpuctl.vastai.instances`): labels, the launch and
cleanup locks, destroy-and-mark."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gpuctl.state import State
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.instances import (
    CLEANUP_LOCK,
    destroy_remote,
    is_gpuctl_label,
    label_nonce,
    launch_in_progress,
    launch_lock,
    make_label,
    mark_destroyed,
)
from tests.fakes.vastai_server import FakeClock, FakeVast


def test_label_names_gpuctl_the_profile_and_a_unique_nonce() -> None:
    a, b = make_label("dev"), make_label(None)
    assert a.startswith("gpuctl:dev:") and b.startswith("gpuctl:env:")
    assert is_gpuctl_label(a) and not is_gpuctl_label("my-own-box") and not is_gpuctl_label(None)
    assert label_nonce(a) and label_nonce(a) != label_nonce(make_label("dev"))
    assert label_nonce("gpuctl:dev") is None and label_nonce("gpuctl:dev:../../etc") is None


def test_launch_lock_is_seen_while_held_and_gone_after(gpuctl_home: Path) -> None:
    label = make_label("dev")
    with State(gpuctl_home / "state.db") as state:
        assert launch_in_progress(state, label) is False
        with launch_lock(state, label):
            assert launch_in_progress(state, label) is True
        assert launch_in_progress(state, label) is False
    assert not list((gpuctl_home / "locks").glob("launch-*"))  # no litter


def test_the_cleanup_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    with State(tmp_path / "state.db") as one, State(tmp_path / "state.db") as two:
        with one.try_lock(CLEANUP_LOCK) as first, two.try_lock(CLEANUP_LOCK) as second:
            assert first is True and second is False
        with two.try_lock(CLEANUP_LOCK) as again:
            assert again is True


def test_destroy_remote_tells_gone_from_failure(vast: FakeVast, client: VastAIClient) -> None:
    iid = vast.add_instance(label="gpuctl:dev:0123456789ab")
    assert destroy_remote(client, iid) is True
    assert destroy_remote(client, iid) is False  # already gone, confirmed by a show
    other = vast.add_instance(label="gpuctl:dev:0123456789ac")
    vast.fail_destroy(other)
    with pytest.raises(Exception, match="destroy instance"):
        destroy_remote(client, other)
    assert other in vast.live_ids()


def test_mark_destroyed_records_dph_times_lifetime(state: State, clock: FakeClock) -> None:
    row_id = state.add_instance_intent(provider="vastai", label=make_label("d"), dph="0.14")
    clock.advance(45 * 60)
    row = state.get_instance(row_id)
    assert row is not None
    cost = mark_destroyed(state, row, clock())
    assert cost == Decimal("0.105")  # $0.14/h × 45 min
    done = state.get_instance(row_id)
    assert done is not None and done.status == "destroyed" and done.cost == "0.105000" and not done.live
