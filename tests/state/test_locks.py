"""The state's locks on both backends: held across processes, released by a dead process, the
serialised transaction one at a time; and migrations applied once when two processes open a
new database at the same moment."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import threading
import time

import pytest

from gpuctl.state import MIGRATIONS
from tests.support import wait_for
from tests.support.state import OPEN_IN_CHILD, StateBackend

_HOLD = """
st = open_child()
with st.lock(sys.argv[3]) as held:
    assert held
    print("held", flush=True)
    sys.stdin.readline()  # until killed, or told to go
"""


def _holder(backend: StateBackend, name: str) -> subprocess.Popen[str]:
    proc = subprocess.Popen([sys.executable, "-c", OPEN_IN_CHILD + _HOLD, backend.url, str(backend.home), name],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.strip() == "held", proc.stderr.read() if proc.stderr else ""
    return proc


def test_a_lock_held_by_a_process_is_seen_and_refused(backend: StateBackend) -> None:
    with backend.open() as st:
        assert st.lock_held("cleanup") is False
        proc = _holder(backend, "cleanup")
        try:
            assert st.lock_held("cleanup") is True
            with st.try_lock("cleanup") as got:
                assert got is False
        finally:
            proc.communicate("go\n", timeout=30)
        assert st.lock_held("cleanup") is False
        with st.try_lock("cleanup") as got:
            assert got is True
            assert st.lock_held("cleanup") is True  # seen by anyone else: here, another connection/fd


def test_a_killed_process_releases_its_lock(backend: StateBackend) -> None:
    """What cleanup relies on to tell a dead launcher from a live one: SIGKILL drops the lock."""
    with backend.open() as st:
        proc = _holder(backend, "launch-0123456789ab")
        assert st.lock_held("launch-0123456789ab") is True
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        deadline = time.monotonic() + 10  # the server notices the closed socket at once; allow a moment
        while st.lock_held("launch-0123456789ab") and time.monotonic() < deadline:
            time.sleep(0.02)
        assert st.lock_held("launch-0123456789ab") is False


def test_an_ephemeral_sqlite_lock_leaves_no_file(tmp_path) -> None:  # type: ignore[no-untyped-def]
    from gpuctl.state import State

    with State(tmp_path / "state.db") as st:
        with st.lock("launch-0123456789ab", ephemeral=True) as held:
            assert held and (tmp_path / "locks" / "launch-0123456789ab.lock").exists()
        assert not (tmp_path / "locks" / "launch-0123456789ab.lock").exists()


def test_serialised_transactions_run_one_at_a_time(backend: StateBackend) -> None:
    """Read, decide, write: a second holder waits for the first to commit, and sees its row."""
    seen: list[int] = []
    inside = threading.Event()
    release = threading.Event()
    with backend.open() as first, backend.open() as second:
        def slow() -> None:
            with first.serialised("launch"):
                first.add_instance_intent(provider="vastai", label="gpuctl:a:0123456789ab")
                inside.set()
                release.wait(10)

        def fast() -> None:
            with second.serialised("launch"):
                seen.append(len(second.live_instances()))
                second.add_instance_intent(provider="vastai", label="gpuctl:b:0123456789ac")

        t1 = threading.Thread(target=slow)
        t1.start()
        assert inside.wait(10)
        t2 = threading.Thread(target=fast)
        t2.start()
        t2.join(0.3)
        assert t2.is_alive() and seen == []  # waiting for the first
        release.set()
        t1.join(10)
        t2.join(10)
        assert seen == [1] and len(first.live_instances()) == 2


def test_a_failed_serialised_transaction_writes_nothing(backend: StateBackend) -> None:
    with backend.open() as st:
        try:
            with st.serialised("launch"):
                st.add_instance_intent(provider="vastai", label="gpuctl:a:0123456789ab")
                raise RuntimeError("the budget check failed after the insert")
        except RuntimeError:
            pass
        assert st.live_instances() == []


def test_two_processes_opening_a_new_database_migrate_it_once(backend: StateBackend) -> None:
    code = "st = open_child()\nprint(st.schema_version)\nst.close()\n"
    procs = [subprocess.Popen([sys.executable, "-c", OPEN_IN_CHILD + code, backend.url, str(backend.home)],
                              stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) for _ in range(3)]
    outs = [p.communicate(timeout=60) for p in procs]
    assert all(p.returncode == 0 for p in procs), [err for _, err in outs]
    assert [out.strip() for out, _ in outs] == [str(len(MIGRATIONS))] * 3
    with backend.open() as st:
        assert st.schema_version == len(MIGRATIONS)


def test_a_lock_whose_connection_drops_is_taken_again(pg_backend: StateBackend, monkeypatch: pytest.MonkeyPatch) -> None:
    """A launch's lock outlives a dropped connection (a server restart, a blip): otherwise
    another host's cleanup would take the live launch for an abandoned one and destroy it."""
    import psycopg

    from gpuctl.state import pg

    monkeypatch.setattr(pg, "KEEP_S", 0.02)
    name = "launch-0123456789ab"
    with pg_backend.open() as st, st.try_lock(name) as held:
        assert held and st.lock_held(name)
        with psycopg.connect(pg_backend.url, autocommit=True) as admin:  # the lock's session dies
            admin.execute("SELECT pg_terminate_backend(pid) FROM pg_locks WHERE locktype = 'advisory' "
                          "AND pid <> pg_backend_pid()")
        wait_for(lambda: st.lock_held(name), what="the lock to be taken again", timeout=10)
    with pg_backend.open() as st:
        assert not st.lock_held(name)  # released at the end, as before
