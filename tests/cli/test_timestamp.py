"""Every --json envelope carries a UTC `timestamp` (issue 11, item 20): `gpuctl cleanup --json
>> log` from cron leaves one dated line per run, failures included."""

from __future__ import annotations

import json
from datetime import UTC, datetime

import pytest

from tests.fakes.vastai_server import FakeVast
from tests.support import assert_exit
from tests.support.vast import KEY

T1 = datetime(2026, 11, 28, 3, 10, 0, tzinfo=UTC).timestamp()  # a Saturday night's cron runs
T2 = T1 + 600


def test_cleanup_json_lines_are_dated_for_cron_logs(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    times = iter([T1, T2])
    monkeypatch.setattr("gpuctl.cli.output.now", lambda: next(times))
    with FakeVast(api_key=KEY, offers=[]) as vast:
        env = {"VAST_URL": vast.url, "VASTAI_API_KEY": KEY}
        log = [cli("cleanup", "--json", env=env), cli("cleanup", "--json", env={**env, "VASTAI_API_KEY": "wrong"})]
    assert_exit(log[0], 0)
    assert_exit(log[1], 3)  # a refused key: the failure is dated too
    lines = [json.loads(r.stdout) for r in log]
    assert [d["timestamp"] for d in lines] == ["2026-11-28T03:10:00Z", "2026-11-28T03:20:00Z"]
    assert [d["status"] for d in lines] == ["success", "error"] and all(d["command"] == "cleanup" for d in lines)


def test_the_timestamp_is_utc_whatever_the_local_zone(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    import time

    monkeypatch.setenv("TZ", "America/Los_Angeles")
    time.tzset()
    try:
        monkeypatch.setattr("gpuctl.cli.output.now", lambda: T1)
        assert json.loads(cli("--json", "profile", "list").stdout)["timestamp"] == "2026-11-28T03:10:00Z"
    finally:
        monkeypatch.undo()
        time.tzset()
