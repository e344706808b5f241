"""The state database on both backends (SQLite, PostgreSQL): migrations, ledger rows, breakers
shared across processes, conversations, metrics, locks."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

import pytest

from gpuctl.state import MIGRATIONS, BreakerRecord, State, StateDamagedError, UsageRecord
from tests.support.state import OPEN_IN_CHILD, StateBackend


def _child(backend: StateBackend, code: str, *args: str, home: Path | None = None,
           timeout: float = 60) -> subprocess.CompletedProcess[str]:
    proc = subprocess.run([sys.executable, "-c", OPEN_IN_CHILD + code, backend.url, str(home or backend.home), *args],
                          capture_output=True, text=True, timeout=timeout)
    assert proc.returncode == 0, proc.stderr
    return proc


def test_migrations_apply_once(backend: StateBackend) -> None:
    with backend.open() as st:
        assert st.schema_version == len(MIGRATIONS)
        assert st.backend == backend.kind
    with backend.open() as st:  # re-open: nothing re-applied
        assert st.schema_version == len(MIGRATIONS)
        assert st.info().rows["usage"] == 0


def test_sqlite_file_is_private_and_in_wal_mode(tmp_path: Path) -> None:
    State(tmp_path / "state.db").close()
    assert stat.S_IMODE((tmp_path / "state.db").stat().st_mode) == 0o600
    mode = sqlite3.connect(tmp_path / "state.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_a_newer_schema_is_refused_by_name(backend: StateBackend) -> None:
    backend.open().close()
    if backend.kind == "sqlite":
        db = sqlite3.connect(backend.home / "state.db")
        db.execute(f"PRAGMA user_version = {len(MIGRATIONS) + 3}")
        db.close()
    else:
        import psycopg

        with psycopg.connect(backend.url, autocommit=True) as conn:
            conn.execute("UPDATE gpuctl_schema SET version = %s", (len(MIGRATIONS) + 3,))
    with pytest.raises(StateDamagedError, match=f"schema version {len(MIGRATIONS) + 3}, newer") as info:
        backend.open()
    assert info.value.exit_code == 3 and "upgrade gpuctl" in (info.value.hint or "")


def test_instance_lifecycle_in_the_ledger(backend: StateBackend) -> None:
    now = [1000.0]
    with backend.open(clock=lambda: now[0]) as st:
        row = st.add_instance_intent(provider="vastai", label="gpuctl:dev", profile="dev", gpu="RTX 3090", dph="0.14")
        assert [r.status for r in st.live_instances("vastai")] == ["intent"]
        st.set_instance_remote_id(row, "4242")
        found = st.instance_by_remote("vastai", "4242")
        assert found is not None and found.id == row
        now[0] = 2000.0
        st.mark_instance_destroyed(row, cost="0.04")
        assert st.live_instances() == []
        got = st.get_instance(row)
        assert got is not None and got.destroyed_at == 2000.0 and got.cost == "0.04" and got.status == "destroyed"
        assert [r.id for r in st.instances("vastai", since=1500.0)] == [row]


def test_usage_rows_and_last_use(backend: StateBackend) -> None:
    with backend.open() as st:
        st.record_usage(UsageRecord(ts=10, provider="modal", model="m", prompt_tokens=5, completion_tokens=7, cost="0.001"))
        st.record_usage(UsageRecord(ts=20, provider="modal", ok=False, error="refused"))
        st.record_usage(UsageRecord(ts=30, provider="anthropic", fallback_reason="modal: refused", host="box-2"))
        assert [u.ts for u in st.usage_since(15)] == [20, 30]
        assert st.last_usage_at("modal") == 10  # failed attempts are not "use"
        assert st.usage_since(provider="anthropic")[0].fallback_reason == "modal: refused"
        hosts = [u.host for u in st.usage_since()]
        assert hosts[2] == "box-2" and hosts[0] == st.host  # written with this machine's name


def test_breaker_state_is_shared_between_processes(backend: StateBackend) -> None:
    code = (
        "from gpuctl.state import BreakerRecord\n"
        "st = open_child()\n"
        "st.update_breaker('modal', lambda b: BreakerRecord('modal', 'open', b.failures + 1, 1.0, 99.0, 'refused'))\n"
        "st.close()\n"
    )
    for _ in range(2):
        _child(backend, code)
    with backend.open() as st:
        rec = st.get_breaker("modal")
        assert (rec.state, rec.failures, rec.open_until, rec.last_error) == ("open", 2, 99.0, "refused")
        assert st.get_breaker("vastai") == BreakerRecord(provider="vastai")


_WRITER = """
import time
from gpuctl.state import UsageRecord
who, go, rows = sys.argv[3], Path(sys.argv[4]), int(sys.argv[5])
st = open_child()
(go.parent / f"ready-{who}").touch()
deadline = time.monotonic() + 30
while not go.exists():  # wait for the other writer, so both write at the same moment
    if time.monotonic() > deadline:
        sys.exit("never told to go")
    time.sleep(0.001)
for i in range(rows):
    st.record_usage(UsageRecord(ts=i, provider=who))
st.close()
"""


def test_two_processes_write_at_once_and_no_row_is_lost(backend: StateBackend, tmp_path: Path) -> None:
    go, rows = tmp_path / "go", 300
    backend.open().close()  # migrated once, so the writers race on rows only
    procs = [
        subprocess.Popen([sys.executable, "-c", OPEN_IN_CHILD + _WRITER, backend.url, str(backend.home), who, str(go),
                          str(rows)], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        for who in ("a", "b")
    ]
    try:
        deadline = time.monotonic() + 30
        while not all((tmp_path / f"ready-{who}").exists() for who in ("a", "b")):
            assert time.monotonic() < deadline and all(p.poll() is None for p in procs), "a writer did not start"
            time.sleep(0.005)
        go.touch()
        for proc in procs:
            _, err = proc.communicate(timeout=60)
            assert proc.returncode == 0, err
    finally:
        for proc in procs:
            if proc.poll() is None:
                proc.kill()
                proc.communicate()
    with backend.open() as st:
        written = st.usage_since()
    assert len(written) == 2 * rows
    for who in ("a", "b"):
        assert sorted(r.ts for r in written if r.provider == who) == list(range(rows))


def test_conversations_and_metrics(backend: StateBackend) -> None:
    with backend.open() as st:
        cid = st.create_conversation(title="t", system_prompt="be brief")
        st.add_message(cid, "user", "hi")
        st.add_message(cid, "assistant", "hel", partial=True, provider="modal")
        msgs = st.messages(cid)
        assert [(m.role, m.partial) for m in msgs] == [("user", False), ("assistant", True)]
        last = st.last_conversation()
        assert last is not None and last.id == cid
        st.delete_messages(cid, [msgs[1].id])
        assert [m.role for m in st.messages(cid)] == ["user"]
        assert st.get_conversation(2**70) is None
        st.bump_metric("modal", "total_requests")
        assert st.bump_metric("modal", "total_requests") == 2
        st.set_metric("modal", "last_health_s", 0.12)
        assert st.metrics("modal") == {"total_requests": 2, "last_health_s": 0.12}
        st.exclude_machine("vastai", "77", "CDI injection failure")
        st.exclude_machine("vastai", "77", "stuck loading")  # the newer reason wins
        assert st.excluded_machines("vastai") == {"77": "stuck loading"}
    with backend.open() as st:  # and all of it was written, not only remembered
        assert st.metrics("modal") == {"total_requests": 2, "last_health_s": 0.12}
        assert st.info().rows["messages"] == 1


def test_timestamps_keep_their_fractions(backend: StateBackend) -> None:
    """PostgreSQL's REAL is 4 bytes: the migrations must give it 8, as SQLite has."""
    with backend.open(clock=lambda: 1767225600.123456) as st:
        row = st.add_instance_intent(provider="vastai", label="gpuctl:x:0123456789ab")
        got = st.get_instance(row)
        assert got is not None and got.created_at == 1767225600.123456


def test_psycopg_is_imported_only_for_a_postgres_url(tmp_path: Path) -> None:
    code = (
        "import sys\nfrom pathlib import Path\nfrom gpuctl.config import load_settings\n"
        "from gpuctl.state import open_for\n"
        "open_for(load_settings(env={}, home=Path(sys.argv[1]))).close()\n"
        "print('psycopg' in sys.modules)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code, str(tmp_path)], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "False"


def test_machine_exclusions_expire_and_can_be_forgotten(backend: StateBackend) -> None:
    """Review B finding 9: exclusions are read from a time on, and forgotten one by one or all."""
    now = [1000.0]
    with backend.open(clock=lambda: now[0]) as st:
        st.exclude_machine("vastai", "77", "the container exited")
        now[0] = 2000.0
        st.exclude_machine("vastai", "78", "CDI injection failure")
        st.exclude_machine("other", "77", "elsewhere")
        assert set(st.excluded_machines("vastai")) == {"77", "78"}
        assert set(st.excluded_machines("vastai", since=1500.0)) == {"78"}
        assert st.forget_excluded_machines("vastai", ["77"]) == 1 and set(st.excluded_machines("vastai")) == {"78"}
        assert st.forget_excluded_machines("vastai", []) == 0
        assert st.forget_excluded_machines("vastai") == 1 and st.excluded_machines("vastai") == {}
        assert st.excluded_machines("other") == {"77": "elsewhere"}
