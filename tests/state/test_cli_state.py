"""`gpuctl state info` and `gpuctl state migrate --to postgresql://...` through the real app."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path

import pytest

from gpuctl.state import BreakerRecord, State, UsageRecord, open_location, parse_location
from tests.support import assert_exit


def _with_password(url: str, password: str = "s3cr3t-pw") -> str:
    """The test cluster trusts every local user: a password in the URL is accepted and ignored."""
    return url.replace("postgresql://postgres@", f"postgresql://postgres:{password}@")


def _fill(path: Path) -> None:
    with State(path, clock=lambda: 1_767_225_600.5) as st:
        for i in range(5):
            st.record_usage(UsageRecord(ts=1_767_225_600 + i, provider="anthropic", model="claude-haiku-4-5",
                                        prompt_tokens=10, completion_tokens=5, cost="0.0001"))
        st.add_instance_intent(provider="vastai", label="gpuctl:dev:0123456789ab", dph="0.18")
        cid = st.create_conversation(title="hello")
        st.add_message(cid, "user", "hi")
        st.add_message(cid, "assistant", "hello!")
        st.put_breaker(BreakerRecord("modal", "open", 3, 1.0, 2.0, "refused"))
        st.bump_metric("modal", "total_requests")
        st.exclude_machine("vastai", "77", "CDI")
    db = sqlite3.connect(path)  # two rows as written before migration 9: no uid yet
    db.execute("UPDATE usage SET uid = NULL WHERE id <= 2")
    db.commit()
    db.close()


def test_state_info_on_sqlite(cli, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("--json", "state", "info")
    assert_exit(result, 0)
    data = json.loads(result.stdout)["data"]
    assert data["backend"] == "sqlite" and data["url"] == str(gpuctl_home / "state.db")
    assert data["schema_version"] == data["known_schema_version"] and data["rows"]["usage"] == 0


def test_state_info_on_postgres_masks_the_password(cli, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GPUCTL_STATE_URL", _with_password(pg_url))
    for args in (["--json", "state", "info"], ["state", "info"], ["profile", "show", "--resolved"]):
        result = cli(*args)
        assert_exit(result, 0)
        assert "s3cr3t-pw" not in result.stdout + result.stderr
        if args[0] == "--json":
            data = json.loads(result.stdout)["data"]
            assert data["backend"] == "postgresql" and "postgres:***@" in data["url"]


def test_migrate_copies_once_and_is_idempotent(cli, pg_url: str, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    _fill(gpuctl_home / "state.db")
    url = _with_password(pg_url)
    dry = cli("--json", "state", "migrate", "--to", url, "--dry-run")
    assert_exit(dry, 0)
    assert json.loads(dry.stdout)["data"]["tables"]["usage"]["copied"] == 5
    with open_location(parse_location(pg_url, gpuctl_home), gpuctl_home) as pg:
        assert pg.info().rows["usage"] == 0  # the dry run wrote nothing
    first = cli("--json", "state", "migrate", "--to", url)
    assert_exit(first, 0)
    assert "s3cr3t-pw" not in first.stdout + first.stderr
    data = json.loads(first.stdout)["data"]
    assert {k: v["copied"] for k, v in data["tables"].items()} == {
        "usage": 5, "instances": 1, "conversations": 1, "messages": 2, "breakers": 1, "excluded_machines": 1,
        "provider_metrics": 1}
    again = cli("--json", "state", "migrate", "--to", url)  # idempotent: nothing new, nothing doubled
    assert_exit(again, 0)
    assert json.loads(again.stdout)["data"]["copied"] == 0
    with open_location(parse_location(pg_url, gpuctl_home), gpuctl_home) as pg:
        info = pg.info()
        assert info.rows == {"instances": 1, "usage": 5, "breakers": 1, "conversations": 1, "messages": 2,
                             "excluded_machines": 1, "provider_metrics": 1}
        conv = pg.last_conversation()
        assert conv is not None and [m.content for m in pg.messages(conv.id)] == ["hi", "hello!"]
        assert pg.get_breaker("modal").state == "open" and pg.metrics("modal") == {"total_requests": 1}


def test_migrate_refuses_a_database_with_other_rows_unless_merge(cli, pg_url: str, gpuctl_home: Path,  # type: ignore[no-untyped-def]
                                                                 tmp_path: Path) -> None:
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    _fill(gpuctl_home / "state.db")
    other_home = tmp_path / "other-host"
    other_home.mkdir()
    with open_location(parse_location(pg_url, other_home), other_home) as pg:
        pg.record_usage(UsageRecord(ts=1, provider="modal", host="other-host"))
    refused = cli("--json", "state", "migrate", "--to", pg_url)
    assert_exit(refused, 1)
    error = json.loads(refused.stdout)["errors"][0]
    assert "already holds 1 row(s)" in error["message"] and "--merge" in error["hint"]
    merged = cli("--json", "state", "migrate", "--to", pg_url, "--merge")
    assert_exit(merged, 0)
    with open_location(parse_location(pg_url, other_home), other_home) as pg:
        assert pg.info().rows["usage"] == 6


def test_migrate_wants_a_postgres_target_and_a_source(cli, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("state", "migrate", "--to", "sqlite:///tmp/x.db"), 2)
    result = cli("state", "migrate", "--to", "postgresql://db.invalid/gpuctl")
    assert_exit(result, 2)
    assert "no SQLite state" in result.stderr


def test_a_bad_or_unreachable_state_url_is_one_line(cli, monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GPUCTL_STATE_URL", "mysql://root:hunter2@db/gpuctl")
    result = cli("state", "info")
    assert_exit(result, 3)
    assert "state.url must be a postgresql://" in result.stderr and "hunter2" not in result.stderr
    nowhere = f"postgresql://gpuctl:hunter2@/gpuctl?host={tmp_path / 'no-server-here'}"
    monkeypatch.setenv("GPUCTL_STATE_URL", nowhere)
    for args in (["state", "info"], ["cost", "report"]):
        result = cli(*args)
        assert_exit(result, 1)
        assert "is unreachable" in result.stderr and "hunter2" not in result.stderr + result.stdout
        assert "Traceback" not in result.stderr


def test_migrations_run_at_once_queue_and_never_copy_twice_or_merge_unasked(pg_url: str, tmp_path: Path) -> None:
    """The same source twice at once copies it once; a second source at the same time is
    refused (the first one's rows are there by the time its plan is read)."""
    import os
    import subprocess
    import sys
    import uuid

    homes = [tmp_path / name for name in ("a", "a", "b")]
    for home in {*homes}:
        home.mkdir()
        _fill(home / "state.db")
        db = sqlite3.connect(home / "state.db")  # enough rows that the runs' plans and writes overlap
        db.executemany("INSERT INTO usage (ts, provider, model, prompt_tokens, completion_tokens, ok, uid) "
                       "VALUES (?, 'anthropic', 'claude-haiku-4-5', 1, 1, 1, ?)",
                       [(1_767_225_700 + i, uuid.uuid4().hex) for i in range(20_000)])
        db.commit()
        db.close()
    with open_location(parse_location(pg_url, tmp_path), tmp_path):
        pass  # the schema, so the three runs race on the copy, not on creating it
    env = {k: v for k, v in os.environ.items() if not k.startswith("GPUCTL_")}
    procs = [subprocess.Popen([sys.executable, "-m", "gpuctl", "--json", "state", "migrate", "--to", pg_url],
                              env={**env, "GPUCTL_HOME": str(home), "GPUCTL_EVENT_LOG": "0"},
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for home in homes]
    results = [(p.wait(120), json.loads(p.communicate()[0])) for p in procs]
    assert all(doc["exit_code"] == code for code, doc in results)  # one JSON document each, never a traceback
    # Whichever source came first is copied; the other is refused, never merged unasked.
    assert [code for code, _ in results] in ([0, 0, 1], [1, 1, 0])
    with open_location(parse_location(pg_url, tmp_path), tmp_path) as pg:
        rows = pg.info().rows
    assert rows["usage"] == 20_005 and rows["instances"] == 1 and rows["conversations"] == 1 and rows["messages"] == 2
