"""The reads behind `cost report` and `cost estimate --from-usage` on both backends: the answered
requests of a period as plain columns in (ts, id) order (`usage_times`), the requests per prompt
size, and — on SQLite, which has no statistics to plan by — the indexes that keep a million rows
to one pass (migration 14)."""

from __future__ import annotations

import sqlite3
from decimal import Decimal
from pathlib import Path
from typing import Any

from gpuctl.state import State, UsageRecord
from tests.support.state import StateBackend


def _fill(st: State) -> None:
    rows = [  # (ts, provider, model, prompt, completion, latency, ok, host)
        (100.0, "modal", None, 10, 5, 2.5, True, "web-b"),
        (100.0, "modal", "", 1, 1, None, True, "web-a"),  # the same instant, written second
        (101.0, "modal", "Qwen", 20, 7, 1.0, True, "web-a"),
        (102.0, "modal", "other", 30, 0, 1.0, False, "web-a"),  # failed: not replayed
        (103.0, "anthropic", "claude-haiku-4-5", 20, 9, 0.5, True, "web-c"),
        (500.0, "modal", "Qwen", 5, 5, 1.0, True, "web-a"),  # after the period
    ]
    for ts, provider, model, prompt, completion, latency, ok, host in rows:
        st.record_usage(UsageRecord(ts=ts, provider=provider, model=model, prompt_tokens=prompt,
                                    completion_tokens=completion, latency_s=latency, ok=ok, host=host))


def test_usage_times_are_the_answered_requests_in_order(backend: StateBackend) -> None:
    with backend.open() as st:
        _fill(st)
        modal = st.usage_times(50.0, 400.0, provider="modal", hosts=True)
        assert modal.rows == [(100.0, 2.5, 15, "web-b"), (100.0, None, 2, "web-a"), (101.0, 1.0, 27, "web-a")]
        assert modal.model == "Qwen"  # the first that names one
        assert modal.prompt_sizes is None
        every = st.usage_times(50.0, 400.0, prompt_sizes=True)
        assert [tuple(r) for r in every.rows] == [(100.0, 2.5, 15), (100.0, None, 2), (101.0, 1.0, 27), (103.0, 0.5, 29)]
        assert every.prompt_sizes is not None
        sizes = sorted((p, n, int(Decimal(c)), least) for p, n, c, least in every.prompt_sizes)
        assert sizes == [(1, 1, 1, 1), (10, 1, 5, 5), (20, 2, 16, 7)]
        assert st.usage_times(600.0, 700.0, provider="modal").rows == []
        summary = st.usage_summary(50.0, 400.0, by="host", replay="modal")
        assert summary.replayed.rows == modal.rows
        assert st.usage_summary(50.0, 400.0, replay="modal").replayed.rows == [r[:3] for r in modal.rows]
        assert st.last_usage_at("modal") == 500.0  # usage_replay answers it now


def _plans(db: Path, calls: list[tuple[str, Any]]) -> list[str]:
    conn = sqlite3.connect(db)
    try:
        return [" | ".join(str(r[-1]) for r in conn.execute("EXPLAIN QUERY PLAN " + sql, args)) for sql, args in calls]
    finally:
        conn.close()


def test_the_report_reads_one_pass_of_indexes_on_sqlite(tmp_path: Path, monkeypatch: Any) -> None:
    with State(tmp_path / "state.db") as st:
        _fill(st)
        calls: list[tuple[str, Any]] = []
        rows, query = st.db.rows, st.db.query
        monkeypatch.setattr(st.db, "rows", lambda sql, args=(): calls.append((sql, args)) or rows(sql, args))
        monkeypatch.setattr(st.db, "query", lambda sql, args=(), **kw: calls.append((sql, args)) or query(sql, args))
        st.usage_summary(50.0, 400.0, by="host", priced_now=("anthropic", "modal"), replay="modal")
    groups, unpriced, replayed, first = _plans(tmp_path / "state.db", calls)
    assert "COVERING INDEX usage_report" in groups
    assert "USING INDEX usage_unpriced" in unpriced
    assert "COVERING INDEX usage_replay" in replayed and "TEMP B-TREE" not in replayed  # no sort either
    assert "usage_replay" in first
