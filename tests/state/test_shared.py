"""A shared (PostgreSQL) state on the request path and under faults: writes batched off the
request, breaker reads ≤ 1 s stale, nothing lost at SIGTERM, a dropped connection never
half-applies a transaction, and with the database killed mid-run chat still answers, launch
and cleanup refuse, and the spool drains once it is back."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import psycopg
import pytest

from gpuctl.config import load_settings
from gpuctl.routing.manager import BackendManager
from gpuctl.state import BreakerRecord, StateUnavailableError, UsageRecord, open_for
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit
from tests.support.state import OPEN_IN_CHILD, StateBackend

MESSAGES = [{"role": "user", "content": "hi"}]


def _sql(url: str, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql, args)
        return cur.fetchall() if cur.description else []


def test_usage_rows_are_batched_and_read_back_at_once(pg_backend: StateBackend) -> None:
    with pg_backend.open() as st:
        _sql(pg_backend.url, "CREATE TABLE seen_tx (tx BIGINT)")
        _sql(pg_backend.url, "CREATE FUNCTION note_tx() RETURNS trigger LANGUAGE plpgsql AS "
                             "$$ BEGIN INSERT INTO seen_tx VALUES (txid_current()); RETURN NULL; END $$")
        _sql(pg_backend.url, "CREATE TRIGGER usage_tx AFTER INSERT ON usage FOR EACH ROW EXECUTE FUNCTION note_tx()")
        for i in range(500):
            st.record_usage(UsageRecord(ts=i, provider="endpoint", prompt_tokens=1))
        assert len(st.usage_since()) == 500  # a process reads its own writes: queued rows go first
    (transactions,) = _sql(pg_backend.url, "SELECT COUNT(DISTINCT tx) FROM seen_tx")[0]
    assert transactions <= 5  # a few batches, not one round trip per request


def test_breaker_reads_are_at_most_a_second_stale_and_writes_go_through(pg_backend: StateBackend) -> None:
    with pg_backend.open() as one, pg_backend.open() as two:
        now = [100.0]
        assert two._cache is not None
        two._cache.clock = lambda: now[0]
        assert two.get_breaker("modal").state == "closed"  # read, and cached
        one.update_breaker("modal", lambda b: BreakerRecord("modal", "open", 3, 1.0, 99.0, "refused"))
        now[0] += 0.5
        assert two.get_breaker("modal").state == "closed"  # within the second: the cached read
        now[0] += 0.6
        assert two.get_breaker("modal").state == "open"  # past it: the shared value
        two.update_breaker("modal", lambda b: BreakerRecord("modal"))  # a write goes through at once
        assert two.get_breaker("modal").state == "closed"  # and the writer reads it back
        with pg_backend.open() as three:
            assert three.get_breaker("modal").state == "closed"


_SIGTERMED = """
import time
from gpuctl.state import UsageRecord
st = open_child()
for i in range(int(sys.argv[3])):
    st.record_usage(UsageRecord(ts=i, provider="endpoint"))
print("queued", flush=True)
time.sleep(60)
"""


def test_sigterm_loses_no_queued_row(pg_backend: StateBackend) -> None:
    pg_backend.open().close()
    proc = subprocess.Popen([sys.executable, "-c", OPEN_IN_CHILD + _SIGTERMED, pg_backend.url, str(pg_backend.home),
                             "300"], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    assert proc.stdout is not None and proc.stdout.readline().strip() == "queued"
    os.kill(proc.pid, signal.SIGTERM)  # at once: inside the writer's 200 ms
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 128 + signal.SIGTERM, err
    assert _sql(pg_backend.url, "SELECT COUNT(*) FROM usage")[0][0] == 300


def test_a_connection_dropped_mid_transaction_applies_nothing(pg_backend: StateBackend) -> None:
    with pg_backend.open() as st:
        st.add_instance_intent(provider="vastai", label="gpuctl:a:0123456789aa")  # connected
        dropped = "dropped during a transaction; it was rolled back"
        with pytest.raises(StateUnavailableError, match=dropped), st.serialised("launch"):
            st.add_instance_intent(provider="vastai", label="gpuctl:a:0123456789ab")
            _sql(pg_backend.url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                                 " WHERE application_name = 'gpuctl' AND state = 'idle in transaction'")
            st.add_instance_intent(provider="vastai", label="gpuctl:a:0123456789ac")
        # Nothing of it was written, and the state goes on on a new connection.
        assert [r.label for r in st.live_instances()] == ["gpuctl:a:0123456789aa"]


def test_a_dropped_writer_connection_writes_its_batch_once(pg_backend: StateBackend) -> None:
    with pg_backend.open() as st:
        st.record_usage(UsageRecord(ts=1, provider="endpoint"))
        assert st.flush()
        _sql(pg_backend.url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity"
                             " WHERE application_name = 'gpuctl' AND pid <> pg_backend_pid()")
        for i in range(2, 12):
            st.record_usage(UsageRecord(ts=i, provider="endpoint"))
        st.flush()  # the first try meets the dead connection: spooled, then written on the next
        assert st.flush() and not st.spooled
        assert [r.ts for r in st.usage_since()] == list(range(1, 12))


def _ask(runner: asyncio.Runner, manager: BackendManager, n: int) -> list[str]:
    async def go() -> list[str]:
        return [(await manager.chat_completion(MESSAGES)).provider for _ in range(n)]

    return runner.run(go())


def test_the_database_killed_mid_run(pg_cluster, pg_backend: StateBackend, cli,  # type: ignore[no-untyped-def]
                                     monkeypatch: pytest.MonkeyPatch, gpuctl_home: Path) -> None:
    """Chat still answers, launch and cleanup refuse (exit 1), and after a restart the spool
    drains: the ledger has one row per request made."""
    with FakeVLLM(model="m") as vllm:
        env = {"GPUCTL_ENDPOINT_URL": vllm.url, "GPUCTL_PRIORITY": "endpoint", **pg_backend.env(gpuctl_home)}
        for name, value in {**env, "VASTAI_API_KEY": "k" * 64, "VAST_URL": "http://127.0.0.1:9"}.items():
            monkeypatch.setenv(name, value)
        settings = load_settings(env=env, home=gpuctl_home)
        state = open_for(settings)
        manager = BackendManager(settings, state=state)
        runner = asyncio.Runner()
        try:
            assert _ask(runner, manager, 5) == ["endpoint"] * 5
            assert state.flush()
            pg_cluster.stop(immediate=True)  # pg_ctl stop -m immediate: what a crash looks like
            try:
                assert _ask(runner, manager, 7) == ["endpoint"] * 7  # the router goes on, rows wait locally
                for command in (["launch", "--yes"], ["cleanup"]):
                    result = cli(*command)
                    assert_exit(result, 1)
                    assert "unreachable" in result.stderr and "Traceback" not in result.stderr
                assert not state.flush() and state.spooled
            finally:
                pg_cluster.start()
            assert _ask(runner, manager, 3) == ["endpoint"] * 3
        finally:
            runner.run(manager.aclose())
            runner.close()
            state.close()
    with pg_backend.open(home=gpuctl_home) as again:
        assert len(again.usage_since()) == 15  # 5 + 7 + 3: every request, once
        assert not again.spooled


_SPOOLED = """
from gpuctl.state import UsageRecord
st = open_child()
for i in range(40):
    st.record_usage(UsageRecord(ts=i, provider="endpoint"))
st.close()
print("spooled" if st.spooled else "written", flush=True)
"""


def test_a_spool_left_by_one_process_is_drained_by_the_next(pg_cluster, pg_backend: StateBackend) -> None:  # type: ignore[no-untyped-def]
    pg_backend.open().close()
    pg_cluster.stop(immediate=True)
    try:
        proc = subprocess.run([sys.executable, "-c", OPEN_IN_CHILD + _SPOOLED, pg_backend.url, str(pg_backend.home)],
                              capture_output=True, text=True, timeout=60)
        assert proc.returncode == 0 and proc.stdout.strip() == "spooled", proc.stderr
    finally:
        pg_cluster.start()
    spool = list((pg_backend.home / "spool").glob("spool-*.jsonl"))
    assert len(spool) == 1 and oct(spool[0].stat().st_mode & 0o777) == "0o600" and spool[0].stat().st_size
    with pg_backend.open() as st:
        assert st.info().rows["usage"] == 40 and not st.spooled


def test_the_database_dying_right_after_a_create_never_leaves_the_instance_billing(
        pg_cluster, pg_backend: StateBackend, cli, monkeypatch: pytest.MonkeyPatch,  # type: ignore[no-untyped-def]
        gpuctl_home: Path) -> None:
    """The create went through, then the shared state went away before the launch could note
    the instance: the launch destroys it all the same (the destroy comes before the ledger)."""
    from tests.fakes.vastai_server import FakeVast, make_offer
    from tests.support.vast import KEY, OK

    pg_backend.open(home=gpuctl_home).close()  # the schema, before the fault
    offers = [make_offer(700, gpu_name="RTX 3090", dph_total="0.18", **OK)]
    with FakeVast(api_key=KEY, offers=offers) as vast:
        created = vast._create

        def create_then_crash(offer_id: Any, body: Any) -> Any:
            answer = created(offer_id, body)
            pg_cluster.stop(immediate=True)
            return answer

        monkeypatch.setattr(vast, "_create", create_then_crash)
        for name, value in {**pg_backend.env(gpuctl_home), "VASTAI_API_KEY": KEY, "VAST_URL": vast.url}.items():
            monkeypatch.setenv(name, value)
        try:
            result = cli("launch", "--yes")
        finally:
            pg_cluster.start()
        assert_exit(result, 1)
        assert "Traceback" not in result.stderr
        assert [r.path for r in vast.received("DELETE")] == ["/api/v0/instances/20000001/"]
        assert vast.live_ids() == set()


def test_text_with_a_nul_is_stored_and_one_row_the_database_refuses_never_holds_back_the_rest(
        pg_backend: StateBackend) -> None:
    with pg_backend.open() as st:
        st.record_usage(UsageRecord(ts=1, provider="endpoint", ok=False, error="bad byte \x00 from the server"))
        st.record_usage(UsageRecord(ts=2, provider="endpoint", prompt_tokens=2**70))  # past BIGINT: refused
        st.record_usage(UsageRecord(ts=3, provider="endpoint", prompt_tokens=5))
        assert st.flush()
        st.record_usage(UsageRecord(ts=4, provider="endpoint", prompt_tokens=6))
        assert st.flush() and not st.spooled
        rows = sorted(st.usage_since(), key=lambda r: r.ts)
    assert [r.ts for r in rows] == [1, 3, 4]
    assert rows[0].error == "bad byte \ufffd from the server"


def test_the_spool_is_the_databases_however_its_password_is_given(pg_cluster, pg_backend: StateBackend) -> None:  # type: ignore[no-untyped-def]
    """Rows spooled by a process whose URL held the password are drained by one that gives it
    in PGPASSWORD (the same database, the same spool); a spool under the old name is taken over."""
    from gpuctl.state.url import parse_location

    with_password = parse_location("postgresql://gp:s3cret@db.example:5432/gpuctl?sslmode=require", pg_backend.home)
    without = parse_location("postgresql://gp@db.example:5432/gpuctl?sslmode=require", pg_backend.home)
    other = parse_location("postgresql://gp@db.example:5432/other?sslmode=require", pg_backend.home)
    assert with_password.tag == without.tag != other.tag and "s3cret" not in with_password.tag

    pg_backend.open().close()
    pg_cluster.stop(immediate=True)
    try:
        with pg_backend.open() as st:
            st.record_usage(UsageRecord(ts=1, provider="endpoint"))
            assert not st.flush()
    finally:
        pg_cluster.start()
    location = pg_backend.location
    spool = pg_backend.home / "spool" / f"spool-{location.tag}.jsonl"
    spool.rename(spool.with_name(f"spool-{location.legacy_tag}.jsonl"))  # as an earlier gpuctl named it
    with pg_backend.open() as st:
        assert st.info().rows["usage"] == 1 and not st.spooled


def test_a_hung_database_never_holds_the_request_path_nor_a_shutdown(pg_cluster, pg_backend: StateBackend,  # type: ignore[no-untyped-def]
                                                                     gpuctl_home: Path) -> None:
    """A server that is there and never answers (frozen): breaker reads on the request path
    come back with what this process knows, chat answers, and closing the state spools the
    rows the hung write held, so nothing is lost. No timing is asserted (bench/ measures
    speed): a thread that never returns is what fails here."""
    import threading

    from tests.support.frozen import FrozenProxy

    pg_backend.open().close()
    proxy = FrozenProxy(pg_cluster.socket_dir / f".s.PGSQL.{pg_cluster.port}")
    try:
        with FakeVLLM(model="m") as vllm:
            env = {"GPUCTL_ENDPOINT_URL": vllm.url, "GPUCTL_PRIORITY": "endpoint", "GPUCTL_STATE_URL": proxy.url(),
                   "GPUCTL_HOME": str(gpuctl_home)}
            settings = load_settings(env=env, home=gpuctl_home)
            state = open_for(settings)
            manager = BackendManager(settings, state=state)
            runner = asyncio.Runner()
            answered: list[str] = []

            def while_frozen() -> None:
                answered.extend(_ask(runner, manager, 3))  # cache misses go to the frozen server
                state.get_breaker("endpoint|nobody-asked-before")  # a read it never cached
                # Writes on the request path (a breaker opening, the "waking" memory): their
                # BEGIN and COMMIT have the deadline too.
                state.update_breaker("endpoint|nobody-asked-before", lambda current: current)
                state.set_metric("endpoint", "waking", {"since": 1.0, "probed": 1.0})
                runner.run(manager.aclose())
                state.close()  # the writer is stuck in a write: what it holds is spooled

            try:
                assert _ask(runner, manager, 2) == ["endpoint"] * 2
                assert state.flush()
                proxy.freeze()
                worker = threading.Thread(target=while_frozen, daemon=True)
                worker.start()
                worker.join(60)
                assert not worker.is_alive(), "a hung database held the request path or the shutdown"
                assert answered == ["endpoint"] * 3
            finally:
                proxy.thaw()
                runner.close()
            again = open_for(settings)  # the next process: the spool drains into the database
            try:
                assert len(again.usage_since()) == 5 and not again.spooled
            finally:
                again.close()
    finally:
        proxy.close()


def test_a_database_that_refuses_writes_for_a_while_keeps_every_row(pg_backend: StateBackend) -> None:
    """Read-only for a while (a standby during a failover): the batch is spooled, not taken for
    bad rows and dropped, and written once writes are allowed again."""
    with pg_backend.open() as st:
        st.record_usage(UsageRecord(ts=1, provider="endpoint"))
        assert st.flush()
        _sql(pg_backend.url, "ALTER DATABASE gpuctl SET default_transaction_read_only = on")
        _sql(pg_backend.url, "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                             "WHERE datname = 'gpuctl' AND pid <> pg_backend_pid()")  # reconnect: read-only now
        try:
            st.record_usage(UsageRecord(ts=2, provider="endpoint", prompt_tokens=10))
            assert not st.flush() and st.spooled
        finally:
            with psycopg.connect(pg_backend.url, autocommit=True, options="-c default_transaction_read_only=off") as c:
                c.execute("ALTER DATABASE gpuctl SET default_transaction_read_only = off")
        assert st.flush() and not st.spooled
        assert sorted(r.ts for r in st.usage_since()) == [1, 2]


def test_a_shutdown_during_a_spool_drain_on_a_hung_database_neither_hangs_nor_loses_rows(
        pg_cluster, pg_backend: StateBackend, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    import threading

    from tests.support.frozen import FrozenProxy

    pg_backend.open().close()
    proxy = FrozenProxy(pg_cluster.socket_dir / f".s.PGSQL.{pg_cluster.port}")
    settings = load_settings(env={"GPUCTL_STATE_URL": proxy.url(), "GPUCTL_HOME": str(gpuctl_home)}, home=gpuctl_home)
    try:
        first = open_for(settings)
        pg_cluster.stop(immediate=True)  # down: a row goes to the spool
        try:
            first.record_usage(UsageRecord(ts=1, provider="endpoint"))
            assert not first.flush() and first.spooled
            first.close()
        finally:
            pg_cluster.start()
        second = open_for(settings)
        proxy.freeze()  # then hung, while the writer drains that spool (holding its lock)
        second.record_usage(UsageRecord(ts=2, provider="endpoint"))
        second._writer._wake.set()  # type: ignore[attr-defined]  # the writer's next flush, now
        closer = threading.Thread(target=second.close, daemon=True)
        closer.start()
        closer.join(60)
        assert not closer.is_alive(), "closing the state hung on the spool's lock"
        proxy.thaw()
        third = open_for(settings)
        try:
            assert sorted(r.ts for r in third.usage_since()) == [1, 2] and not third.spooled
        finally:
            third.close()
    finally:
        proxy.thaw()
        proxy.close()
