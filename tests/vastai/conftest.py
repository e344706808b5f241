"""Fixtures for the Vast.ai tests: the loopback Vast.ai fake (with a fake vLLM as every
instance's endpoint), a client and a ledger on one `FakeClock`, and the CLI's environment.

Time: library tests run on one `FakeClock` (ledger, fake API and the launcher's sleep), so a
"10 minutes stuck" test takes milliseconds. CLI tests run on real time with `POLL_S = 0`.
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuctl.config import Settings, load_settings
from gpuctl.state import State, open_state
from gpuctl.vastai import launch as vast_launch
from gpuctl.vastai.client import VastAIClient
from tests.fakes.vastai_server import FakeClock, FakeVast
from tests.fakes.vllm_server import FakeVLLM
from tests.support.vast import KEY, MODEL, market


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
    monkeypatch.setattr(vast_launch, "POLL_S", 0.0)
    monkeypatch.setattr(vast_launch, "CREATE_LOOKUP_S", 0.0)  # one look for a create of unknown outcome
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
