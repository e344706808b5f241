"""Leak tests: a real `gpuctl launch` process is killed with SIGKILL at each stage of a launch
(no handler runs, no `finally`), then `gpuctl cleanup` must leave zero gpuctl instances on the
account and no live rows in the ledger.

Stages: (1) the create was sent but its reply (the instance id) never arrived, (2) the
instance is loading, (3) the container runs and the launcher waits for vLLM's /health.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from gpuctl.state import open_state
from tests.fakes.vastai_server import FakeVast
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit
from tests.support.vast import KEY, MODEL, market

REPO = Path(__file__).resolve().parents[2]


def wait_for(condition: Callable[[], bool], what: str, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.02)


def spawn_launch(home: Path, vast: FakeVast, tmp_path: Path) -> subprocess.Popen[bytes]:
    env = {
        "PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path / "user-home"), "GPUCTL_HOME": str(home),
        "VAST_URL": vast.url, "VASTAI_API_KEY": KEY, "NO_COLOR": "1", "GPUCTL_EVENT_LOG": "0",
    }
    return subprocess.Popen([sys.executable, "-m", "gpuctl", "launch", "--yes"], cwd=REPO, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


@pytest.mark.parametrize("stage", ["create_sent", "loading", "waiting_for_health"])
def test_sigkill_during_launch_then_cleanup_leaves_nothing(stage: str, cli, tmp_path: Path, gpuctl_home: Path,  # type: ignore[no-untyped-def]
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    with FakeVLLM(model=MODEL) as vllm, FakeVast(api_key=KEY, offers=market(), clock=time.time,
                                                 endpoint_port=vllm.port, running_after_polls=1) as vast:
        if stage == "create_sent":
            vast.set_delay(0.6)  # every reply waits: the kill lands while the create is in flight
        if stage == "loading":
            vast.stick_loading(offer_id=102)
        if stage == "waiting_for_health":
            vllm.fail(503, paths=["/health"])  # vLLM still loading the model
        proc = spawn_launch(gpuctl_home, vast, tmp_path)
        try:
            if stage == "create_sent":
                wait_for(lambda: bool(vast.received("PUT")), "the create request")
            elif stage == "loading":
                wait_for(lambda: any(r.method == "GET" and r.path.startswith("/api/v0/instances/2")
                                     for r in vast.requests), "a status poll")
            else:
                wait_for(lambda: vllm.hits("/health") >= 1, "a health probe")
            proc.send_signal(signal.SIGKILL)
        finally:
            if proc.poll() is None:
                proc.kill()
            _, stderr = proc.communicate(timeout=10)
        assert proc.returncode == -signal.SIGKILL, stderr.decode()
        wait_for(lambda: len(vast.live_ids()) == 1, "the instance to exist")  # the fake finishes the create
        vast.set_delay(0)
        with open_state(gpuctl_home) as st:
            (row,) = st.live_instances("vastai")  # the launcher left its trace before it died
        if stage == "create_sent":
            assert row.status == "intent" and row.remote_id is None  # the id never reached the ledger
        else:
            assert row.remote_id == str(next(iter(vast.live_ids())))

        monkeypatch.setenv("VAST_URL", vast.url)
        monkeypatch.setenv("VASTAI_API_KEY", KEY)
        result = cli("cleanup")
        assert_exit(result, 0)
        assert vast.live_ids() == set(), result.stdout
        assert "launch abandoned" in result.stdout
        with open_state(gpuctl_home) as st:
            assert st.live_instances("vastai") == []
            (done,) = st.instances("vastai")
        assert done.remote_id is not None and done.cost is not None


def test_sigterm_during_launch_destroys_what_it_created(tmp_path: Path, gpuctl_home: Path) -> None:
    """`kill` / `timeout` send SIGTERM: the launcher itself destroys its instance, exit 130."""
    with FakeVLLM(model=MODEL) as vllm, FakeVast(api_key=KEY, offers=market(), clock=time.time,
                                                 endpoint_port=vllm.port, running_after_polls=1) as vast:
        vllm.fail(503, paths=["/health"])
        proc = spawn_launch(gpuctl_home, vast, tmp_path)
        try:
            wait_for(lambda: vllm.hits("/health") >= 1, "a health probe")
            proc.send_signal(signal.SIGTERM)
            try:
                _, stderr = proc.communicate(timeout=60)
            except subprocess.TimeoutExpired:
                proc.kill()
                _, stderr = proc.communicate(timeout=10)
                pytest.fail("launch did not exit after SIGTERM:\n" + stderr.decode()[-3000:])
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=10)
        assert proc.returncode == 130, stderr.decode()
        assert "interrupted: destroyed instance" in stderr.decode()
        assert len(vast.instances) == 1 and vast.live_ids() == set()
        with open_state(gpuctl_home) as st:
            assert st.live_instances("vastai") == []
