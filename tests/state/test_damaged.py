"""Issue 11, item 5: a damaged `state.db` (garbage, truncated, a newer schema, locked for long)
is one line that names the file and says what to do, exit 3, never a traceback; with --json the
envelope. Commands that do not need the state still work."""

from __future__ import annotations

import json
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

from gpuctl.state import MIGRATIONS, State, UsageRecord
from tests.support import assert_exit


def _garbage(home: Path) -> Path:
    home.mkdir(parents=True, exist_ok=True)
    path = home / "state.db"
    path.write_bytes(b"this is no database, just some bytes a crash left behind\n" * 80)
    return path


def _truncated(home: Path) -> Path:
    path = home / "state.db"
    with State(path) as st:
        for i in range(3000):
            st.record_usage(UsageRecord(ts=1_700_000_000 + i, provider="anthropic", model="claude-haiku-4-5",
                                        prompt_tokens=10, completion_tokens=20, cost="0.0001"))
    db = sqlite3.connect(path)
    db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    db.close()
    data = path.read_bytes()
    path.write_bytes(data[: len(data) // 3])  # a copy cut short
    return path


def _newer(home: Path) -> Path:
    path = home / "state.db"
    State(path).close()
    db = sqlite3.connect(path)
    db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 1}")
    db.close()
    return path


def _one_error_line(result, path: Path) -> str:  # type: ignore[no-untyped-def]
    assert "Traceback" not in result.stderr and "Traceback" not in result.stdout
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1, result.stderr
    assert str(path) in errors[0]
    return errors[0]


@pytest.mark.parametrize("damage, words", [(_garbage, "is damaged"), (_truncated, "is damaged"),
                                           (_newer, "newer than this gpuctl")])
@pytest.mark.parametrize("command", [["status"], ["cost", "report"], ["cleanup", "--dry-run"]])
def test_a_damaged_state_is_one_line_naming_the_file_exit_3(cli, gpuctl_home: Path, damage, words: str,  # type: ignore[no-untyped-def]
                                                          command: list[str]) -> None:
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    path = damage(gpuctl_home)
    result = cli(*command)
    assert_exit(result, 3)
    line = _one_error_line(result, path)
    assert words in line
    assert "Hint:" in result.stderr  # what to do: move it aside, or upgrade


def test_the_json_envelope_carries_the_state_error(cli, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    path = _garbage(gpuctl_home)
    result = cli("--json", "cost", "report")
    assert_exit(result, 3)
    doc = json.loads(result.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 3
    (error,) = doc["errors"]
    assert error["type"] == "StateDamagedError" and str(path) in error["message"] and "mv " in error["hint"]


def test_commands_that_need_no_state_still_work(cli, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    _garbage(gpuctl_home)
    for command in (["--help"], ["cost", "estimate"], ["profile", "list"], ["profile", "show", "--resolved"]):
        assert_exit(cli(*command), 0)
    assert_exit(cli("profile", "create", "dev"), 0)


_HOLD_WRITE_LOCK = """
import sqlite3, sys
db = sqlite3.connect(sys.argv[1], isolation_level=None)
db.execute("BEGIN IMMEDIATE")
print("locked", flush=True)
sys.stdin.readline()
"""


def test_a_state_locked_for_long_is_one_line_not_a_hang(cli, gpuctl_home: Path,  # type: ignore[no-untyped-def]
                                                        monkeypatch: pytest.MonkeyPatch) -> None:
    """An older file must be migrated (a write): another process holding its write lock past
    state.lock_timeout_s is named, with what to do, instead of waiting forever."""
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    path = gpuctl_home / "state.db"
    db = sqlite3.connect(path)
    for script in MIGRATIONS[:4]:
        db.executescript(script)
    db.execute("PRAGMA user_version = 4")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    monkeypatch.setenv("GPUCTL_STATE_LOCK_TIMEOUT_S", "0.2")
    holder = subprocess.Popen([sys.executable, "-c", _HOLD_WRITE_LOCK, str(path)], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout is not None and holder.stdout.readline().strip() == "locked"
        result = cli("status")
        assert_exit(result, 3)
        line = _one_error_line(result, path)
        assert "locked by another process for over 0.2 s" in line
        assert "fuser" in result.stderr
    finally:
        holder.communicate("go\n", timeout=30)
    assert_exit(cli("cost", "report"), 0)  # the lock gone, the migration runs and all is well


@pytest.mark.parametrize("damage", [
    "CREATE TABLE usage (id int, stuff text)",  # another application's table of the same name
    "half",  # a migration applied by hand (its column is there) but not recorded
])
def test_a_shared_state_gpuctl_cannot_migrate_is_one_line_exit_3(cli, pg_url: str, gpuctl_home: Path,  # type: ignore[no-untyped-def]
                                                                 monkeypatch: pytest.MonkeyPatch, damage: str) -> None:
    import psycopg

    monkeypatch.setenv("GPUCTL_STATE_URL", pg_url)
    if damage == "half":
        assert_exit(cli("state", "info"), 0)  # migrated, then one step undone in the record only
        damage = f"UPDATE gpuctl_schema SET version = {MIGRATIONS.index(next(m for m in MIGRATIONS if 'host' in m))}"
    with psycopg.connect(pg_url, autocommit=True) as conn:
        conn.execute(damage)
    for command in (["state", "info"], ["cost", "report"], ["--json", "status"]):
        result = cli(*command)
        assert_exit(result, 3)
        assert "cannot be brought to gpuctl's schema" in result.stdout + result.stderr
        assert "Traceback" not in result.stderr
