"""Shared fixtures for the Vast.ai lifecycle tests (imported by the other test_vast_* files),
and the tests of what they share: labels, launch and cleanup locks, destroy-and-mark.

Time: lifecycle tests run on one `FakeClock` (ledger, fake API and the launcher's sleep), so a
"10 minutes stuck" test takes milliseconds. CLI tests run on real time with `POLL_S = 0`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gpuctl.config import Settings, load_settings
from gpuctl.providers.base import Health
from gpuctl.state import State, open_state
from gpuctl.vastai import launch as lifecycle
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.instances import (
    destroy_remote,
    is_gpuctl_label,
    label_nonce,
    launch_in_progress,
    launch_lock,
    make_label,
    mark_destroyed,
    try_lock,
)
from tests.fakes.vastai_server import FakeClock, FakeVast, make_offer
from tests.fakes.vllm_server import FakeVLLM

KEY = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
MODEL = "Qwen/Qwen2.5-7B-Instruct"


def market() -> list[dict[str, Any]]:
    """Offers against the shipped tiers (CUDA ≥ 13.0, ≥ 500 Mb/s, reliability ≥ 0.95)."""
    ok: dict[str, Any] = {"cuda_max_good": 13.0, "inet_down": 900.0, "reliability": 0.99}
    return [
        # the retry after 102: within the confirmed $0.18/h + 25% ($0.225) that retries may cost
        make_offer(101, gpu_name="RTX 3090", dph_total="0.22", **{**ok, "reliability": 0.97}),
        make_offer(102, gpu_name="RTX 3090", dph_total="0.18", **ok),  # the cheapest acceptable
        make_offer(103, gpu_name="RTX 3090", dph_total="0.12", **{**ok, "reliability": 0.90}),  # unreliable
        make_offer(104, gpu_name="RTX 3090", dph_total="0.40", **ok),  # above the tier's $0.35
        make_offer(105, gpu_name="RTX 3090", dph_total="0.10", num_gpus=2, **ok),  # two GPUs
        make_offer(106, gpu_name="RTX 3090", dph_total="0.11", **{**ok, "cuda_max_good": 12.4}),  # old driver
        make_offer(107, gpu_name="RTX 3090", dph_total="0.13", **{**ok, "inet_down": 100.0}),  # slow link
        make_offer(201, gpu_name="RTX 4090", dph_total="0.40", gpu_ram=24564, **ok),
        make_offer(401, gpu_name="H100 SXM", dph_total="2.40", gpu_ram=81559, **ok),
    ]


class Sleeper:
    """The launcher's sleep: moves the fake clock instead of waiting."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls = 0

    def __call__(self, seconds: float) -> None:
        self.calls += 1
        self.clock.advance(seconds)


@pytest.fixture
def clock() -> FakeClock:
    return FakeClock()


@pytest.fixture
def vllm() -> Iterator[FakeVLLM]:
    with FakeVLLM(model=MODEL, answer="Hello from Vast") as fake:
        yield fake


@pytest.fixture
def vast(vllm: FakeVLLM, clock: FakeClock) -> Iterator[FakeVast]:
    fake = FakeVast(api_key=KEY, offers=market(), clock=clock, endpoint_port=vllm.port)
    with fake:
        yield fake
    assert fake.internal_errors == []
    assert not any(r.key_in_url for r in fake.requests)


@pytest.fixture
def real_time_vast(vllm: FakeVLLM) -> Iterator[FakeVast]:
    """For CLI tests: the fake's clock is wall time, like the ledger's."""
    fake = FakeVast(api_key=KEY, offers=market(), clock=time.time, endpoint_port=vllm.port)
    with fake:
        yield fake
    assert fake.internal_errors == []


@pytest.fixture
def vast_env(monkeypatch: pytest.MonkeyPatch, real_time_vast: FakeVast) -> FakeVast:
    """The CLI's environment points at the fake; the launcher polls without waiting."""
    monkeypatch.setenv("VAST_URL", real_time_vast.url)
    monkeypatch.setenv("VASTAI_API_KEY", KEY)
    monkeypatch.setattr(lifecycle, "POLL_S", 0.0)
    monkeypatch.setattr(lifecycle, "CREATE_LOOKUP_S", 0.0)  # one look for a create of unknown outcome
    return real_time_vast


@pytest.fixture
def settings(gpuctl_home: Path, vast: FakeVast) -> Settings:
    return load_settings(env={"VAST_URL": vast.url, "VASTAI_API_KEY": KEY}, home=gpuctl_home)


@pytest.fixture
def state(gpuctl_home: Path, clock: FakeClock) -> Iterator[State]:
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    with open_state(gpuctl_home, clock=clock) as st:
        yield st


@pytest.fixture
def client(vast: FakeVast) -> Iterator[VastAIClient]:
    with VastAIClient(KEY, api_url=vast.url, sleep=lambda s: None) as c:
        yield c


def create_ids(vast: FakeVast) -> list[int]:
    """The offer id of every create request, in order."""
    return [int(r.path.split("/")[-2]) for r in vast.received("PUT") if r.path.startswith("/api/v0/asks/")]


def health(status: str, detail: str = "") -> Health:
    return Health(provider="vastai", status=status, detail=detail)  # type: ignore[arg-type]


def seed_row(state: State, vast: FakeVast, *, status: str = "ready", label: str | None = None,
             dph: str = "0.20", endpoint: str | None = None, created_at: float | None = None,
             remote: bool = True, running: bool = True) -> tuple[int, int | None]:
    """A ledger row (and its remote instance) as a launch would have left it."""
    label = label or make_label("default")
    row_id = state.add_instance_intent(provider="vastai", label=label, profile="default", gpu="RTX 3090", dph=dph,
                                       offer_id="102", machine_id="50102")
    instance_id = None
    if remote:
        instance_id = vast.seed_instance(label=label, offer=make_offer(102, dph_total=dph), created_at=created_at,
                                         running=running)
        state.set_instance_remote_id(row_id, str(instance_id))
    changes: dict[str, Any] = {"status": status}
    if created_at is not None:
        changes["created_at"] = created_at
    if status == "ready":
        changes.update(endpoint=endpoint or f"http://127.0.0.1:{41000 + row_id}", ready_at=created_at or state.clock())
    state.update_instance(row_id, **changes)
    return row_id, instance_id


# -- tests of the shared pieces ---------------------------------------------------------------


def test_label_names_gpuctl_the_profile_and_a_unique_nonce() -> None:
    a, b = make_label("dev"), make_label(None)
    assert a.startswith("gpuctl:dev:") and b.startswith("gpuctl:env:")
    assert is_gpuctl_label(a) and not is_gpuctl_label("my-own-box") and not is_gpuctl_label(None)
    assert label_nonce(a) and label_nonce(a) != label_nonce(make_label("dev"))
    assert label_nonce("gpuctl:dev") is None and label_nonce("gpuctl:dev:../../etc") is None


def test_launch_lock_is_seen_while_held_and_gone_after(gpuctl_home: Path) -> None:
    label = make_label("dev")
    assert launch_in_progress(gpuctl_home, label) is False
    with launch_lock(gpuctl_home, label):
        assert launch_in_progress(gpuctl_home, label) is True
    assert launch_in_progress(gpuctl_home, label) is False
    assert not list((gpuctl_home / "locks").glob("launch-*"))  # no litter


def test_try_lock_refuses_a_second_holder(tmp_path: Path) -> None:
    path = tmp_path / "cleanup.lock"
    with try_lock(path) as first, try_lock(path) as second:
        assert first is True and second is False
    with try_lock(path) as again:
        assert again is True


def test_destroy_remote_tells_gone_from_failure(vast: FakeVast, client: VastAIClient) -> None:
    iid = vast.seed_instance(label="gpuctl:dev:0123456789ab")
    assert destroy_remote(client, iid) is True
    assert destroy_remote(client, iid) is False  # already gone, confirmed by a show
    other = vast.seed_instance(label="gpuctl:dev:0123456789ac")
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
    assert cost == Decimal("0.105")  # the seed's example: $0.14/h × 45 min
    done = state.get_instance(row_id)
    assert done is not None and done.status == "destroyed" and done.cost == "0.105000" and not done.live
