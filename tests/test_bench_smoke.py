"""Each benchmark script starts and finishes at a toy size, so `make bench` does not rot.

Nothing here is timed: the figures only mean something from `make bench` on a quiet machine.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_runs_tiny() -> None:
    proc = subprocess.run([sys.executable, "-m", "bench", "--tiny"], cwd=REPO, capture_output=True, text=True,
                          timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    rows = [line for line in proc.stdout.splitlines() if line.startswith("| ") and "---" not in line]
    assert len(rows) >= 1 + 4 + 5 + 2 + 4 + 7  # header + startup + router + fidelity + render + serve rows
    for needle in ("--help", "non-streaming", "streaming", "refused", "breaker open", "32 concurrent", "rendering",
                   "10 tools mapped to Anthropic", "passed through to vLLM",
                   "gpuctl serve: added latency", "time to first token", "start to ready", "RSS"):
        assert any(needle in row for row in rows), needle
