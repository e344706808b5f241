"""Without PostgreSQL server binaries the PostgreSQL tests skip with one clear line, except in
CI, where they must run: there they fail instead of skipping silently."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
ONE_PG_TEST = "tests/state/test_state.py::test_migrations_apply_once"


def _pytest(**env: str) -> subprocess.CompletedProcess[str]:
    full = {k: v for k, v in os.environ.items() if k != "CI"} | {"GPUCTL_TEST_NO_POSTGRES": "1", **env}
    return subprocess.run([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", ONE_PG_TEST],
                          cwd=REPO, env=full, capture_output=True, text=True, timeout=120)


def test_without_server_binaries_the_postgres_tests_skip_with_one_line() -> None:
    proc = _pytest()
    assert proc.returncode == 0, proc.stdout[-2000:]
    assert "1 passed, 1 skipped" in proc.stdout  # the SQLite half ran
    lines = [line for line in proc.stdout.splitlines() if line.startswith("PostgreSQL tests skipped")]
    assert lines == ["PostgreSQL tests skipped: no initdb/pg_ctl here (apt-get install postgresql to run them)"]


def test_in_ci_a_missing_server_fails_instead_of_skipping() -> None:
    proc = _pytest(CI="true")
    assert proc.returncode == 1, proc.stdout[-2000:]
    assert "missing in CI" in proc.stdout and "skipped" not in proc.stdout.splitlines()[-1]
