"""`gpuctl cleanup` through the real app: the --json envelope and exit codes (4 partial, 1 when
nothing succeeded or the list cannot be trusted), --dry-run, --max-idle, the event log, and a
second run while one holds the lock."""

from __future__ import annotations

import json
import threading
import time
from pathlib import Path

import pytest

from gpuctl.config import load_settings
from gpuctl.state import open_state
from gpuctl.vastai.cleanup import CleanupReport, run_cleanup
from tests.fakes.vastai_server import FakeVast
from tests.support import assert_exit
from tests.support.vast import KEY, launched_row

MIN = 60.0


def old_ready_rows(home: Path, vast: FakeVast, n: int) -> list[int]:
    home.mkdir(parents=True, exist_ok=True)
    ids = []
    with open_state(home, clock=lambda: time.time() - 120 * MIN) as st:
        for _ in range(n):
            _, iid = launched_row(st, vast, created_at=time.time() - 120 * MIN)
            assert iid is not None
            ids.append(iid)
    return ids


def test_cli_json_envelope_and_one_event_per_action(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    ids = old_ready_rows(gpuctl_home, vast_env, 2)
    vast_env.add_instance(label="gpuctl:laptop:0123456789ab")  # young orphan: kept
    result = cli("cleanup", "--json")
    assert_exit(result, 0)
    doc = json.loads(result.stdout)
    assert doc["command"] == "cleanup" and doc["status"] == "success" and doc["exit_code"] == 0
    assert doc["data"]["counts"]["destroyed"] == 2 and doc["data"]["counts"]["kept"] == 1
    assert {a["instance_id"] for a in doc["data"]["actions"] if a["result"] == "destroyed"} == set(ids)
    events = [json.loads(line) for line in (gpuctl_home / "logs" / "gpuctl.jsonl").read_text().splitlines()]
    actions = [e for e in events if e["event"] == "vastai_cleanup_action"]
    assert len(actions) == 3 and {a["result"] for a in actions} == {"destroyed", "kept"}
    assert "legacy" not in result.stderr  # cron mails stderr: no note here


def test_cli_destroy_failure_is_exit_4_with_the_others_done(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    bad, good = old_ready_rows(gpuctl_home, vast_env, 2)
    vast_env.fail_destroy(bad)
    result = cli("--json", "cleanup")
    assert_exit(result, 4)
    doc = json.loads(result.stdout)
    assert doc["status"] == "partial" and doc["data"]["counts"]["failed"] == 1
    assert vast_env.live_ids() == {bad} and good not in vast_env.live_ids()  # the other one was done
    with open_state(gpuctl_home) as st:
        assert [r.remote_id for r in st.live_instances("vastai")] == [str(bad)]  # kept for the next run
    vast_env.allow_destroy(bad)
    assert_exit(cli("cleanup"), 0)
    assert vast_env.live_ids() == set()


def test_cli_list_suddenly_empty_is_exit_1_and_nothing_marked(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    old_ready_rows(gpuctl_home, vast_env, 1)
    vast_env.set_list_fault("empty")
    result = cli("cleanup")
    assert_exit(result, 1)
    assert "empty instance list" in result.stderr and "nothing was destroyed or marked" in result.stderr
    with open_state(gpuctl_home) as st:
        assert len(st.live_instances("vastai")) == 1
    vast_env.set_list_fault("malformed")
    assert_exit(cli("cleanup"), 1)
    assert len(vast_env.live_ids()) == 1 and vast_env.received("DELETE") == []


def test_cli_dry_run_destroys_nothing(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    (iid,) = old_ready_rows(gpuctl_home, vast_env, 1)
    result = cli("cleanup", "--dry-run")
    assert_exit(result, 0)
    assert "would destroy" in result.stdout and "idle" in result.stdout
    assert vast_env.live_ids() == {iid} and vast_env.received("DELETE") == []
    with open_state(gpuctl_home) as st:
        assert len(st.live_instances("vastai")) == 1


def test_two_cleanups_at_once(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    (iid,) = old_ready_rows(gpuctl_home, vast_env, 1)
    vast_env.set_delay(0.3)  # the first run sits in the list call, holding the lock
    reports: list[CleanupReport] = []
    first = threading.Thread(target=lambda: reports.append(
        run_cleanup(load_settings(home=gpuctl_home, env={"VAST_URL": vast_env.url, "VASTAI_API_KEY": KEY}))))
    first.start()
    try:
        deadline = time.monotonic() + 5
        while not vast_env.received("GET", "/api/v1/instances/") and time.monotonic() < deadline:
            time.sleep(0.01)
        started = time.monotonic()
        second = cli("cleanup", "--json")
        assert time.monotonic() - started < 0.3  # returned at once, without touching the API
    finally:
        first.join(timeout=10)
    assert_exit(second, 0)
    doc = json.loads(second.stdout)
    assert doc["data"]["skipped"] is True and doc["data"]["message"] == "another cleanup is running"
    assert len(vast_env.received("GET", "/api/v1/instances/")) == 1
    assert reports and not reports[0].skipped and vast_env.live_ids() == set() and iid not in vast_env.live_ids()


def test_cli_only_action_failing_is_exit_1_not_partial(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    """Finding 3: nothing succeeded, so it is a failure, with the actions still in --json."""
    (bad,) = old_ready_rows(gpuctl_home, vast_env, 1)
    vast_env.fail_destroy(bad)
    result = cli("--json", "cleanup", "--max-idle", "0")
    assert_exit(result, 1)
    doc = json.loads(result.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 1
    assert doc["data"]["counts"]["failed"] == 1 and doc["data"]["actions"][0]["instance_id"] == bad
    assert doc["errors"][0]["message"] == f"1 of 1 cleanup action(s) failed (instances {bad})"
    human = cli("cleanup", "--max-idle", "0")
    assert_exit(human, 1)
    assert "1 of 1 cleanup action(s) failed" in human.stderr and vast_env.live_ids() == {bad}


@pytest.mark.parametrize("value", ["-1", "nan", "inf", "-inf"])
def test_cli_max_idle_must_be_finite_and_not_negative(cli, vast_env: FakeVast, gpuctl_home: Path, value: str) -> None:  # type: ignore[no-untyped-def]
    """Finding 4: `--max-idle nan` kept idle instances forever (NaN compares false)."""
    (iid,) = old_ready_rows(gpuctl_home, vast_env, 1)
    result = cli("cleanup", "--max-idle", value)
    assert_exit(result, 2)
    assert "--max-idle must be a finite number of minutes, 0 or more" in result.stderr
    assert vast_env.requests == [] and vast_env.live_ids() == {iid}


def test_cli_spend_leaves_out_what_held_creates_hold(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    """Review B, finding 15: cleanup reported a create of unknown outcome as spend; `cost report`
    does not. It is shown apart, as held."""
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    vast_env.add_instance(label="my-own-box")  # the list is not empty
    with open_state(gpuctl_home, clock=lambda: time.time() - 60 * MIN) as st:
        row = st.add_instance_intent(provider="vastai", label="gpuctl:env:00000000aaaa", dph="3.00")
        st.update_instance(row, status="unconfirmed")
    result = cli("cleanup")
    assert_exit(result, 0)
    said = " ".join(result.stderr.split())
    assert "Vast.ai spend so far: $0.00 of $15.00 (plus $3.00" in said  # $3/h × the hour it has been held
    assert "held for creates of unknown outcome: not spent)" in said
