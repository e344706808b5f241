"""The state database: migrations, ledger rows, breakers shared across processes, conversations."""

from __future__ import annotations

import sqlite3
import stat
import subprocess
import sys
import time
from pathlib import Path

from gpuctl.state import MIGRATIONS, BreakerRecord, State, UsageRecord, open_state


def test_migrations_apply_once_and_file_is_private(tmp_path: Path) -> None:
    with open_state(tmp_path) as st:
        assert st.schema_version == len(MIGRATIONS)
    with open_state(tmp_path) as st:  # re-open: nothing re-applied
        assert st.schema_version == len(MIGRATIONS)
    assert stat.S_IMODE((tmp_path / "state.db").stat().st_mode) == 0o600
    mode = sqlite3.connect(tmp_path / "state.db").execute("PRAGMA journal_mode").fetchone()[0]
    assert mode == "wal"


def test_instance_lifecycle_in_the_ledger(tmp_path: Path) -> None:
    now = [1000.0]
    with State(tmp_path / "s.db", clock=lambda: now[0]) as st:
        row = st.add_instance_intent(provider="vastai", label="gpuctl:dev", profile="dev", gpu="RTX 3090", dph="0.14")
        assert [r.status for r in st.live_instances("vastai")] == ["intent"]
        st.set_instance_remote_id(row, "4242")
        assert st.instance_by_remote("vastai", "4242").id == row
        now[0] = 2000.0
        st.mark_instance_destroyed(row, cost="0.04")
        assert st.live_instances() == []
        got = st.get_instance(row)
        assert got is not None and got.destroyed_at == 2000.0 and got.cost == "0.04" and got.status == "destroyed"


def test_usage_rows_and_last_use(tmp_path: Path) -> None:
    with State(tmp_path / "s.db") as st:
        st.record_usage(UsageRecord(ts=10, provider="modal", model="m", prompt_tokens=5, completion_tokens=7, cost="0.001"))
        st.record_usage(UsageRecord(ts=20, provider="modal", ok=False, error="refused"))
        st.record_usage(UsageRecord(ts=30, provider="anthropic", fallback_reason="modal: refused"))
        assert [u.ts for u in st.usage_since(15)] == [20, 30]
        assert st.last_usage_at("modal") == 10  # failed attempts are not "use"
        assert st.usage_since(provider="anthropic")[0].fallback_reason == "modal: refused"


def test_breaker_state_is_shared_between_processes(tmp_path: Path) -> None:
    code = (
        "import sys; from pathlib import Path; from gpuctl.state import State, BreakerRecord\n"
        "st = State(Path(sys.argv[1]))\n"
        "st.update_breaker('modal', lambda b: BreakerRecord('modal', 'open', b.failures + 1, 1.0, 99.0, 'refused'))\n"
        "st.close()\n"
    )
    db = tmp_path / "s.db"
    for _ in range(2):
        proc = subprocess.run([sys.executable, "-c", code, str(db)], capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0, proc.stderr
    with State(db) as st:
        rec = st.get_breaker("modal")
        assert (rec.state, rec.failures, rec.open_until, rec.last_error) == ("open", 2, 99.0, "refused")
        assert st.get_breaker("vastai") == BreakerRecord(provider="vastai")


_WRITER = """
import sys, time
from pathlib import Path
from gpuctl.state import State, UsageRecord
db, who, go, rows = Path(sys.argv[1]), sys.argv[2], Path(sys.argv[3]), int(sys.argv[4])
st = State(db)
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


def test_two_processes_write_at_once_and_no_row_is_lost(tmp_path: Path) -> None:
    db, go, rows = tmp_path / "s.db", tmp_path / "go", 300
    State(db).close()  # migrated once, so the writers race on rows only
    procs = [
        subprocess.Popen([sys.executable, "-c", _WRITER, str(db), who, str(go), str(rows)],
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
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
    with State(db) as st:
        written = st.usage_since()
    assert len(written) == 2 * rows
    for who in ("a", "b"):
        assert sorted(r.ts for r in written if r.provider == who) == list(range(rows))


def test_conversations_and_metrics(tmp_path: Path) -> None:
    with State(tmp_path / "s.db") as st:
        cid = st.create_conversation(title="t", system_prompt="be brief")
        st.add_message(cid, "user", "hi")
        st.add_message(cid, "assistant", "hel", partial=True, provider="modal")
        msgs = st.messages(cid)
        assert [(m.role, m.partial) for m in msgs] == [("user", False), ("assistant", True)]
        assert st.last_conversation().id == cid
        st.bump_metric("modal", "total_requests")
        st.bump_metric("modal", "total_requests")
        st.set_metric("modal", "last_health_s", 0.12)
        assert st.metrics("modal") == {"total_requests": 2, "last_health_s": 0.12}
        st.exclude_machine("vastai", "77", "CDI injection failure")
        assert st.excluded_machines("vastai") == {"77": "CDI injection failure"}
