"""Shared benchmark plumbing: timing, statistics, result rows, machine description, fake servers.

Every target is a ratio (or a difference) against a baseline measured in the same run, because
the machines we run on are shared and noisy. Fake servers run in a separate process so their
work does not share our GIL.
"""

from __future__ import annotations

import json
import os
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Row:
    """One line of the results table."""

    what: str
    baseline: str
    measured: str
    target: str
    ok: bool

    def as_markdown(self) -> str:
        mark = "yes" if self.ok else "**no**"
        return f"| {self.what} | {self.baseline} | {self.measured} | {self.target} | {mark} |"


def median(values: list[float]) -> float:
    return statistics.median(values)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    index = min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))
    return ordered[index]


def wall_times(command: list[str], runs: int, *, env: dict[str, str] | None = None,
               warmup: bool = True) -> list[float]:
    """Wall time of `runs` fresh processes (after one warm-up run, unless `warmup=False`)."""
    full_env = {**os.environ, **(env or {})}
    # Measure what users get: bytecode cached after the first run (a shell may disable that).
    full_env.pop("PYTHONDONTWRITEBYTECODE", None)
    if warmup:
        subprocess.run(command, capture_output=True, env=full_env, check=False)
    out = []
    for _ in range(runs):
        started = time.perf_counter()
        proc = subprocess.run(command, capture_output=True, env=full_env, check=False)
        out.append(time.perf_counter() - started)
        if proc.returncode != 0:
            raise RuntimeError(f"{' '.join(command)} failed: {proc.stderr.decode()[-400:]}")
    return out


def interleaved(fns: dict[str, Callable[[], float]], rounds: int) -> dict[str, list[float]]:
    """Run each measurement in turn, `rounds` times, so drift on the machine hits all alike."""
    results: dict[str, list[float]] = {name: [] for name in fns}
    for _ in range(rounds):
        for name, fn in fns.items():
            results[name].append(fn())
    return results


def machine() -> dict[str, str]:
    cpu = platform.processor() or platform.machine()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return {"cpu": cpu, "cores": str(os.cpu_count()), "python": platform.python_version(),
            "platform": platform.platform(), "date": time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime())}


_SERVER_SCRIPT = """
import json, sys, threading
sys.path.insert(0, {repo!r})
from tests.fakes.{module} import {cls}
kwargs = json.loads(sys.argv[1])
fake = {cls}(**kwargs).start()
print(fake.url, flush=True)
sys.stdin.read()  # run until the parent closes our stdin
fake.stop()
"""


@contextmanager
def fake_server(module: str, cls: str, **kwargs: object) -> Iterator[str]:
    """Start a loopback fake (tests/fakes/<module>.py) in its own process; yield its URL."""
    script = _SERVER_SCRIPT.format(repo=str(REPO), module=module, cls=cls)
    proc = subprocess.Popen([sys.executable, "-c", script, json.dumps(kwargs)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError(f"fake {cls} did not start")
        yield url
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
