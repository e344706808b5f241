"""`gpuctl serve`'s cost on the wire, against the same requests sent to the upstream directly,
interleaved request by request in one run.

Three processes: the fast upstream (bench/fast_upstream.py), the real `python -m gpuctl serve`
(one worker, the `endpoint` provider pointed at the upstream, ledger and access log on, as in
production), and this client (stdlib http.client for latency, a raw asyncio client for
throughput: the cheapest clients, so the gateway is what is measured). Rows: added latency
non-stream p50 and p99, added time to first token, added total time of a 50-chunk stream,
throughput at 32 concurrent (with the client's CPU share), start to ready, peak RSS.
"""

from __future__ import annotations

import asyncio
import contextlib
import http.client
import json
import os
import select
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from urllib.parse import urlsplit

from bench.common import REPO, Row, median, percentile

MODEL = "bench-model"
WHOLE = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Say hello"}], "max_tokens": 16}).encode()
STREAM_CHUNKS = 50
STREAM = json.dumps({"model": MODEL, "messages": [{"role": "user", "content": "Count"}], "max_tokens": STREAM_CHUNKS,
                     "stream": True}).encode()
HEADERS = {"Content-Type": "application/json"}


@contextlib.contextmanager
def upstream() -> Iterator[str]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.fast_upstream"], cwd=REPO, stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        url = proc.stdout.readline().strip()
        if not url.startswith("http"):
            raise RuntimeError("the fast upstream did not start")
        yield url
    finally:
        if proc.stdin is not None:
            proc.stdin.close()
        proc.wait(10)
        if proc.stdout is not None:
            proc.stdout.close()


@contextlib.contextmanager
def gateway(upstream_url: str, home: Path) -> Iterator[tuple[str, subprocess.Popen[str], float]]:
    """`python -m gpuctl --json serve --port 0` over the upstream: (URL, process, seconds from
    start until /ready answered 200)."""
    home.mkdir(parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("GPUCTL_", "ANTHROPIC_", "MODAL_", "VAST"))}
    env.update(GPUCTL_HOME=str(home), GPUCTL_PRIORITY="endpoint", GPUCTL_ENDPOINT_URL=upstream_url,
               GPUCTL_ENDPOINT_MODEL=MODEL, GPUCTL_SERVE_MODEL=MODEL,
               GPUCTL_SERVE_ACCESS_LOG=str(home / "access.jsonl"), PYTHONUNBUFFERED="1")
    env.pop("PYTHONDONTWRITEBYTECODE", None)  # measure what users get: bytecode cached
    started = time.perf_counter()
    with open(home / "serve.err", "w") as err:
        proc = subprocess.Popen([sys.executable, "-m", "gpuctl", "--json", "serve", "--port", "0"], cwd=REPO,
                                env=env, stdout=subprocess.PIPE, stderr=err, text=True)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], 60)
        line = proc.stdout.readline() if ready else ""
        if not line:
            raise RuntimeError(f"gpuctl serve did not start: {(home / 'serve.err').read_text()[-1000:]}")
        url = json.loads(line)["url"]
        _wait_ready(url)
        yield url, proc, time.perf_counter() - started
    finally:
        proc.terminate()
        proc.wait(30)
        if proc.stdout is not None:
            proc.stdout.close()


def _wait_ready(url: str) -> None:
    parts = urlsplit(url)
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        conn = http.client.HTTPConnection(parts.hostname, parts.port, timeout=5)
        try:
            conn.request("GET", "/ready")
            if conn.getresponse().status == 200:
                return
        except OSError:
            pass
        finally:
            conn.close()
        time.sleep(0.002)
    raise RuntimeError("gpuctl serve never became ready")


def _connection(url: str) -> http.client.HTTPConnection:
    parts = urlsplit(url)
    return http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)


def _whole(conn: http.client.HTTPConnection) -> float:
    started = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=WHOLE, headers=HEADERS)
    response = conn.getresponse()
    body = response.read()
    elapsed = time.perf_counter() - started
    if response.status != 200 or b'"content"' not in body:
        raise RuntimeError(f"unexpected answer {response.status}: {body[:200]!r}")
    return elapsed


def _stream(conn: http.client.HTTPConnection) -> tuple[float, float]:
    """(time to the first token's event, time to `data: [DONE]`)."""
    started = time.perf_counter()
    conn.request("POST", "/v1/chat/completions", body=STREAM, headers=HEADERS)
    response = conn.getresponse()
    first = None
    tokens = 0
    while True:
        line = response.readline()
        if not line:
            raise RuntimeError("the stream ended without [DONE]")
        if b'"content":"tok' in line:
            tokens += 1
            if first is None:
                first = time.perf_counter() - started
        elif line.startswith(b"data: [DONE]"):
            break
    total = time.perf_counter() - started
    response.read()
    if tokens != STREAM_CHUNKS or first is None:
        raise RuntimeError(f"expected {STREAM_CHUNKS} token events, got {tokens}")
    return first, total


def _interleaved(direct: Callable[[], float], routed: Callable[[], float], n: int) -> tuple[list[float], list[float]]:
    base, ours = [], []
    for _ in range(n):
        base.append(direct())
        ours.append(routed())
    return base, ours


# ------------------------------------------------------------------ throughput


async def _load(url: str, seconds: float, width: int) -> int:
    """Requests completed in `seconds` by `width` keep-alive connections (a raw client)."""
    parts = urlsplit(url)
    request = (b"POST /v1/chat/completions HTTP/1.1\r\nHost: bench\r\nContent-Type: application/json\r\n"
               b"Content-Length: " + str(len(WHOLE)).encode() + b"\r\n\r\n" + WHOLE)
    deadline = time.perf_counter() + seconds
    done = 0

    async def worker() -> None:
        nonlocal done
        reader, writer = await asyncio.open_connection(parts.hostname, parts.port)
        try:
            while time.perf_counter() < deadline:
                writer.write(request)
                head = await reader.readuntil(b"\r\n\r\n")
                if not head.startswith(b"HTTP/1.1 200"):
                    raise RuntimeError(head[:200].decode(errors="replace"))
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                await reader.readexactly(length)
                done += 1
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(width)))
    return done


def _throughput(url: str, seconds: float, width: int = 32) -> tuple[float, float]:
    """(req/s, the client's CPU share of one core) for `seconds` of load."""
    cpu, wall = time.process_time(), time.perf_counter()
    done = _run_loop(_load(url, seconds, width))
    wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
    return done / wall, cpu / wall


def _run_loop(coro):  # type: ignore[no-untyped-def]
    try:
        import uvloop

        return uvloop.run(coro)
    except ImportError:
        return asyncio.run(coro)


def _rss_mb(pid: int) -> tuple[float, float]:
    """(resident now, peak) in MB, from /proc."""
    fields = {}
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        name, _, value = line.partition(":")
        fields[name] = value
    return int(fields["VmRSS"].split()[0]) / 1024, int(fields["VmHWM"].split()[0]) / 1024


def run(*, requests: int = 1000, streams: int = 200, seconds: float = 3.0, starts: int = 5) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp, upstream() as up:
        home = Path(tmp)
        start_times = []
        with gateway(up, home / "serve") as (url, proc, start_s):
            start_times.append(start_s)
            direct, routed = _connection(up), _connection(url)
            for _ in range(min(200, requests)):  # warm both: connections, imports, SQLite pages
                _whole(direct), _whole(routed), _stream(direct), _stream(routed)
            base, ours = _interleaved(lambda: _whole(direct), lambda: _whole(routed), requests)
            p50 = (percentile(ours, 50) - percentile(base, 50)) * 1000
            p99 = (percentile(ours, 99) - percentile(base, 99)) * 1000
            rows.append(Row("gpuctl serve: added latency, non-stream (p50)", f"direct {percentile(base, 50) * 1000:.2f} ms",
                            f"{p50:+.2f} ms", "≤ 1.0 ms", p50 <= 1.0))
            rows.append(Row("gpuctl serve: added latency, non-stream (p99)", f"direct {percentile(base, 99) * 1000:.2f} ms",
                            f"{p99:+.2f} ms", "≤ 3 ms", p99 <= 3.0))
            pairs = [(_stream(direct), _stream(routed)) for _ in range(streams)]
            ttft = (median([o[0] for _, o in pairs]) - median([b[0] for b, _ in pairs])) * 1000
            total = (median([o[1] for _, o in pairs]) - median([b[1] for b, _ in pairs])) * 1000
            rows.append(Row("gpuctl serve: added time to first token (p50)",
                            f"direct {median([b[0] for b, _ in pairs]) * 1000:.2f} ms", f"{ttft:+.2f} ms", "≤ 1.0 ms",
                            ttft <= 1.0))
            rows.append(Row(f"gpuctl serve: added total time, {STREAM_CHUNKS}-chunk stream (p50)",
                            f"direct {median([b[1] for b, _ in pairs]) * 1000:.2f} ms", f"{total:+.2f} ms", "≤ 3 ms",
                            total <= 3.0))
            direct.close(), routed.close()
            # Interleaved halves: direct, gateway, direct, gateway.
            halves = [(_throughput(up, seconds / 2), _throughput(url, seconds / 2)) for _ in range(2)]
            base_rps = sum(d[0] for d, _ in halves) / 2
            ours_rps = sum(g[0] for _, g in halves) / 2
            client_cpu = sum(g[1] for _, g in halves) / 2
            ok = ours_rps >= 500 or ours_rps >= 0.7 * base_rps
            rows.append(Row("gpuctl serve: throughput at 32 concurrent (client CPU "
                            f"{client_cpu * 100:.0f}% of a core)", f"direct {base_rps:.0f} req/s",
                            f"{ours_rps:.0f} req/s = {ours_rps / base_rps:.2f}×", "≥ 500 req/s, or ≥ 0.7× direct", ok))
            now_mb, peak_mb = _rss_mb(proc.pid)
        for i in range(starts - 1):
            with gateway(up, home / f"start{i}") as (_, _, start_s):
                start_times.append(start_s)
        bare = median([_python_start() for _ in range(max(1, starts))])
        start = median(start_times)
        rows.append(Row("gpuctl serve: start to ready (median of "
                        f"{len(start_times)})", f"bare python {bare * 1000:.0f} ms", f"{start * 1000:.0f} ms",
                        "≤ 1.5 s", start <= 1.5))
        rows.append(Row("gpuctl serve: RSS after the load (peak)", "LiteLLM 325 MB (issue 14)",
                        f"{now_mb:.0f} MB (peak {peak_mb:.0f} MB)", "≤ 120 MB", peak_mb <= 120))
    return rows


def _python_start() -> float:
    started = time.perf_counter()
    subprocess.run([sys.executable, "-c", "pass"], check=True)
    return time.perf_counter() - started
