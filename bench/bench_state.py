"""The state on the request path and in the reports, on both backends (issue 15).

Rows:
- per-request ledger cost (`routing.ledger.Ledger.record`: the usage row, the request counter,
  as a gateway pays it per answer) on PostgreSQL, p50, against the same on SQLite: ≤ 50 µs;
- `cost report` over 1M usage rows on PostgreSQL (≤ 1 s) and on SQLite (≤ 2 s), each against
  reading those rows back one by one (`State.usage_since`, what the report did before), and
  `cost estimate --from-usage` over them (which read them so, then replayed them: ≤ that read);
- state open + migration check per CLI command on SQLite (≤ 5 ms), against a bare
  `sqlite3.connect` of the same file.

PostgreSQL rows need the server binaries (Debian's `postgresql`): a throwaway cluster is
started (tests/support/postgres.py); without them those rows are skipped, with a note.
"""

from __future__ import annotations

import random
import sqlite3
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from bench.common import REPO, Row, median, percentile

USAGE_COLS = ("ts", "provider", "model", "prompt_tokens", "completion_tokens", "latency_s", "ttft_s", "cost", "ok",
              "host", "uid")


@contextmanager
def _postgres() -> Iterator[str | None]:
    sys.path.insert(0, str(REPO))
    from tests.support.postgres import PgCluster, server_bin_dir

    bin_dir = server_bin_dir()
    if bin_dir is None:
        yield None
        return
    cluster = PgCluster(bin_dir).init()
    try:
        yield cluster.url
    finally:
        cluster.destroy()


def _open(url: str | None, home: Path) -> Any:
    from gpuctl.state import open_location, parse_location

    return open_location(parse_location(url, home), home)


def _ledger_cost(url: str | None, home: Path, n: int) -> float:
    """p50 seconds of one `Ledger.record` (what every answer costs on the request path)."""
    from gpuctl.config import load_settings
    from gpuctl.providers.base import ChatRequest, ChatResponse, Usage
    from gpuctl.routing.ledger import Ledger
    from gpuctl.routing.registry import Billing, Slot

    home.mkdir(parents=True, exist_ok=True)
    settings = load_settings(env={}, home=home)
    state = _open(url, home)
    ledger = Ledger(settings, state)
    slot = Slot("endpoint", None, billing=Billing.ELSEWHERE, endpoint="http://127.0.0.1:9/v1")
    request = ChatRequest.from_openai([{"role": "user", "content": "hi"}], model="m")
    response = ChatResponse(text="hello", provider="endpoint", model="m", usage=Usage(prompt_tokens=5, completion_tokens=7))
    times = []
    try:
        for i in range(n + 50):
            started = time.perf_counter()
            ledger.record(slot, request, latency=0.2, started_at=time.time(), response=response)
            if i >= 50:  # after a warm-up
                times.append(time.perf_counter() - started)
        state.flush()
    finally:
        state.close()
    return percentile(times, 50)


def _fill(url: str | None, home: Path, rows: int) -> None:
    """`rows` usage rows over the last 29 days: Anthropic (priced per token), Modal (replayed
    per request), a generic endpoint, and some failures, from three hosts."""
    rng = random.Random(15)
    now = time.time()
    start = now - 29 * 86400
    data = []
    for i in range(rows):
        provider = ("anthropic", "anthropic", "modal", "endpoint")[i % 4]
        ok = i % 50 != 0
        data.append((start + i * (29 * 86400 / rows), provider, "claude-haiku-4-5" if provider == "anthropic" else "m",
                     rng.randint(10, 2000), rng.randint(10, 500), rng.uniform(0.2, 5.0), 0.1,
                     f"0.000{rng.randint(100000, 999999)}" if ok else None, int(ok), f"web-{i % 3}", f"b{i:x}"))
    _open(url, home).close()  # migrated
    if url is None:
        db = sqlite3.connect(home / "state.db")
        db.executemany(f"INSERT INTO usage ({', '.join(USAGE_COLS)}) VALUES ({', '.join('?' for _ in USAGE_COLS)})",
                       data)
        db.commit()
        db.close()
        return
    import psycopg

    with psycopg.connect(url) as conn, conn.cursor() as cur:
        with cur.copy(f"COPY usage ({', '.join(USAGE_COLS)}) FROM STDIN") as copy:
            for row in data:
                copy.write_row(row)
        conn.commit()
    with psycopg.connect(url, autocommit=True) as conn:
        conn.execute("VACUUM ANALYZE usage")  # as autovacuum would have, long before a million rows


def _timed(fn: Callable[[], object], runs: int) -> float:
    times = []
    for _ in range(runs):
        started = time.perf_counter()
        fn()
        times.append(time.perf_counter() - started)
    return median(times)


def _report(url: str | None, home: Path, rows: int, runs: int) -> tuple[float, float, float]:
    """(reading every row back, `gpuctl cost report --since 30d`, `gpuctl cost estimate
    --from-usage --since 30d`), median seconds."""
    from gpuctl.config import load_settings
    from gpuctl.ops.cost import EstimateRequest, cost_estimate, cost_report

    _fill(url, home, rows)
    env = {"GPUCTL_STATE_URL": url} if url else {}
    settings = load_settings(env=env, home=home)
    with _open(url, home) as st:
        since = time.time() - 30 * 86400
        baseline = _timed(lambda: st.usage_since(since), runs)
        ours = _timed(lambda: cost_report(settings, st, since="30d"), runs)
    estimate = _timed(lambda: cost_estimate(settings, EstimateRequest(from_usage=True, since="30d")), runs)
    return baseline, ours, estimate


def _open_cost(home: Path, runs: int) -> tuple[float, float]:
    from gpuctl.state import State

    path = home / "state.db"
    State(path).close()
    bare = _timed(lambda: sqlite3.connect(path).close(), runs)
    ours = _timed(lambda: State(path).close(), runs)
    return bare, ours


def run(*, requests: int = 5000, report_rows: int = 1_000_000, runs: int = 3, open_runs: int = 50) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp, _postgres() as pg:
        root = Path(tmp)
        sqlite_us = _ledger_cost(None, root / "ledger-sqlite", requests) * 1e6
        if pg is not None:
            pg_us = _ledger_cost(pg, root / "ledger-pg", requests) * 1e6
            rows.append(Row("per-request ledger cost on PostgreSQL (p50, batched off the request path)",
                            f"{sqlite_us:.1f} µs on SQLite", f"{pg_us:.1f} µs ({pg_us / sqlite_us:.2f}×)",
                            "≤ 50 µs", pg_us <= 50))
        for name, url, limit in (("PostgreSQL", pg, 1.0), ("SQLite", None, 2.0)):
            if name == "PostgreSQL" and url is None:
                continue
            base, ours, estimate = _report(url, root / f"report-{name}", report_rows, runs)
            rows.append(Row(f"`cost report` over {report_rows:,} usage rows on {name}",
                            f"{base:.2f} s reading them back", f"{ours:.2f} s ({ours / base:.2f}×)", f"≤ {limit:g} s",
                            ours <= limit))
            # It read them back one by one and then replayed them: reading them is its floor then.
            rows.append(Row(f"… `cost estimate --from-usage` over them on {name}", f"{base:.2f} s reading them back",
                            f"{estimate:.2f} s ({estimate / base:.2f}×)", "≤ 1× (no worse than before)",
                            estimate <= base))
        bare, ours = _open_cost(root / "open", open_runs)
        rows.append(Row("state open + migration check per CLI command (SQLite)", f"{bare * 1e3:.2f} ms bare connect",
                        f"{ours * 1e3:.2f} ms (+{(ours - bare) * 1e3:.2f} ms)", "≤ 5 ms", ours <= 0.005))
    if pg is None:
        print("bench_state: PostgreSQL rows skipped (no initdb/pg_ctl; apt-get install postgresql)", file=sys.stderr)
    return rows
