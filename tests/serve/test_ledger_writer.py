"""The gateway stores usage rows in a thread of its own: a database locked by another process
(a cron cleanup) never stalls an answer, a full queue writes in place, and closing writes
everything queued (the shutdown's "flush the ledger")."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from gpuctl.serve import ledger_writer
from gpuctl.serve.ledger_writer import LedgerWriter
from gpuctl.state import UsageRecord, open_state
from tests.fakes.vllm_server import FakeVLLM
from tests.support.routing import ledger
from tests.support.serve import MODEL, chain_env, running_gateway


def test_a_locked_database_does_not_stall_answers_and_no_row_is_lost(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    with running_gateway(gpuctl_home, chain_env(vllm)) as gw, gw.client(timeout=5) as client:
        client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "warm"}])
        gw.ledger()
        other = sqlite3.connect(gpuctl_home / "state.db", isolation_level=None)
        other.execute("BEGIN IMMEDIATE")  # another process holds the write lock
        try:
            answers = [client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
                       for _ in range(3)]
        finally:
            other.execute("ROLLBACK")
            other.close()
        rows = gw.ledger()
    assert all(a.choices[0].message.content for a in answers)
    assert [r.ok for r in rows] == [True] * 4 and all(r.provider == "modal" for r in rows)


def row(n: int) -> UsageRecord:
    return UsageRecord(ts=1_000_000.0 + n, provider="endpoint", model="m", completion_tokens=n)


def test_a_full_queue_writes_in_place_and_close_writes_the_rest(gpuctl_home: Path, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    monkeypatch.setattr(ledger_writer, "MAX_QUEUED", 2)
    with open_state(gpuctl_home) as here:
        opened: list[int] = []

        def slow_state():  # type: ignore[no-untyped-def]
            opened.append(1)
            return open_state(gpuctl_home)

        writer = LedgerWriter(slow_state, lambda: here)
        for n in range(50):
            writer.put(row(n), ())
        writer.close()
        assert sorted(r.completion_tokens for r in ledger(gpuctl_home)) == list(range(50))
        assert here.metrics("endpoint")["total_requests"] == 50 and opened == [1]


def test_a_writer_that_cannot_open_the_database_hands_rows_back(gpuctl_home: Path) -> None:
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    with open_state(gpuctl_home) as here:
        def broken():  # type: ignore[no-untyped-def]
            raise OSError("disk gone")

        writer = LedgerWriter(broken, lambda: here)
        writer.thread.join(5)
        writer.put(row(1), ())
        writer.close()
        assert [r.completion_tokens for r in ledger(gpuctl_home)] == [1]
