"""The shared state's background writer, against a write function of the test's own: a value
the database refuses drops that row alone, and a transient failure half-way through never
makes a counter count twice (rows carry ids and dedupe; counters do not)."""

from __future__ import annotations

import json
from pathlib import Path

from gpuctl.state import StateUnavailableError, hot
from gpuctl.state.hot import Spool, Writer


def test_a_transient_failure_after_a_refused_batch_never_doubles_a_counter(tmp_path: Path) -> None:
    committed: list[tuple[list, list]] = []  # type: ignore[type-arg]
    calls = {"n": 0}

    def write(rows: list, bumps: list) -> None:  # type: ignore[type-arg]
        calls["n"] += 1
        if any(r[0] == "bad" for r in rows):
            raise ValueError("a value the database cannot store")  # refuses the whole batch
        if rows and rows[0][0] == "later":
            raise StateUnavailableError("the connection dropped")  # transient, half-way
        committed.append((rows, bumps))

    spool = Spool(tmp_path / "spool.jsonl")
    writer = Writer(write, spool, flush_s=3600)
    try:
        for row in (("bad", 1), ("good", 2), ("later", 3)):
            writer.put(row)
        writer.bump("modal", "total_requests", 1)
        assert not writer.flush()  # spooled: the database went away half-way
    finally:
        writer._stopped = True  # no close(), nor the exit flush: either would drain the spool again
        hot._WRITERS.discard(writer)
    assert committed == [([("good", 2)], [])]  # the good row alone; the counter not committed...
    lines = [json.loads(line) for line in spool.path.read_text().splitlines()]
    assert [x["bump"] for x in lines if "bump" in x] == [["modal", "total_requests", 1]]  # ...so spooled once
