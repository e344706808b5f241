"""The router's cost on the request path, against bare httpx doing the same request.

Rows: one non-streaming request (p50 added), streaming 2,000 chunks (ratio), primary refused →
next provider (added), breaker open → skip (added), 32 concurrent chats (throughput ratio).
The fake vLLM server runs in its own process.
"""

from __future__ import annotations

import asyncio
import json
import socket
import tempfile
import time
from pathlib import Path
from typing import Any

import httpx
from httpx_sse import aconnect_sse

from bench.common import Row, fake_server, median, percentile

MODEL = "bench-model"
MESSAGES = [{"role": "user", "content": "Say hello"}]


def _transport(lean: bool) -> httpx.AsyncBaseTransport | None:
    """The baseline's transport: httpx's own (the rows of issue 12: gpuctl against plain
    httpx), or the one gpuctl's clients use for http:// (gpuctl/http/lean.py), which leaves
    the router's own cost alone in the ratio."""
    from gpuctl.http.lean import LeanTransport

    return LeanTransport() if lean else None


def _closed_port() -> str:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{sock.getsockname()[1]}"


def _manager(home: Path, priority: str, flags: dict[str, Any] | None = None, **env: str) -> Any:
    from gpuctl.config import load_settings
    from gpuctl.routing.manager import BackendManager

    settings = load_settings(env={"GPUCTL_PRIORITY": priority, **env}, home=home, flags=flags)
    return BackendManager(settings)


def _body(stream: bool) -> dict[str, Any]:
    body: dict[str, Any] = {"model": MODEL, "messages": MESSAGES, "temperature": 0.7, "max_tokens": 2048}
    if stream:
        body |= {"stream": True, "stream_options": {"include_usage": True}}
    return body


async def _bare_request(client: httpx.AsyncClient) -> None:
    response = await client.post("/v1/chat/completions", json=_body(False))
    response.raise_for_status()
    response.json()


async def _bare_stream(client: httpx.AsyncClient) -> int:
    parts = []
    async with aconnect_sse(client, "POST", "/v1/chat/completions", json=_body(True)) as source:
        async for event in source.aiter_sse():
            if event.data == "[DONE]":
                break
            for choice in json.loads(event.data).get("choices") or []:
                text = (choice.get("delta") or {}).get("content")
                if text:
                    parts.append(text)
    return len(parts)


async def _timed(coro_fn: Any) -> float:
    started = time.perf_counter()
    await coro_fn()
    return time.perf_counter() - started


async def _single(url: str, home: Path, n: int, lean: bool = False) -> tuple[float, float]:
    manager = _manager(home, "endpoint", GPUCTL_ENDPOINT_URL=url, GPUCTL_ENDPOINT_MODEL=MODEL)
    async with httpx.AsyncClient(base_url=url, transport=_transport(lean)) as bare:
        for _ in range(20):  # warm both: connections, catalog, SQLite pages
            await _bare_request(bare)
            await manager.chat_completion(MESSAGES)
        base, ours = [], []
        for _ in range(n):
            base.append(await _timed(lambda: _bare_request(bare)))
            ours.append(await _timed(lambda: manager.chat_completion(MESSAGES)))
    await manager.aclose()
    return percentile(base, 50), percentile(ours, 50)


async def _streaming(url: str, home: Path, n: int, lean: bool = False) -> tuple[float, float]:
    manager = _manager(home, "endpoint", GPUCTL_ENDPOINT_URL=url, GPUCTL_ENDPOINT_MODEL=MODEL)

    async def routed() -> None:
        stream = await manager.chat_completion(MESSAGES, stream=True)
        async for _ in stream:
            pass

    async with httpx.AsyncClient(base_url=url, transport=_transport(lean)) as bare:
        await _bare_stream(bare)
        await routed()
        base, ours = [], []
        for _ in range(n):
            base.append(await _timed(lambda: _bare_stream(bare)))
            ours.append(await _timed(routed))
    await manager.aclose()
    return median(base), median(ours)


async def _failover(url: str, home: Path, n: int) -> tuple[float, float, float]:
    """Direct request to the answering provider vs primary refused → it, vs primary breaker open."""
    direct = _manager(home / "a", "endpoint", GPUCTL_ENDPOINT_URL=url, GPUCTL_ENDPOINT_MODEL=MODEL)
    # a breaker that never opens, so every request pays the refused attempt
    refused = _manager(home / "b", "modal,endpoint", {"routing.failure_threshold": 10**9},
                       MODAL_WEB_URL=_closed_port(), GPUCTL_ENDPOINT_URL=url, GPUCTL_ENDPOINT_MODEL=MODEL)
    skipped = _manager(home / "c", "modal,endpoint", {"routing.failure_threshold": 1, "routing.cooldown_s": 10**6},
                       MODAL_WEB_URL=_closed_port(), GPUCTL_ENDPOINT_URL=url, GPUCTL_ENDPOINT_MODEL=MODEL)
    for manager in (direct, refused, skipped):
        for _ in range(5):
            await manager.chat_completion(MESSAGES)
    record = skipped.breaker("modal")  # the breaker of modal as set up now (its URL, key and model)
    assert record is not None and record.state == "open"
    d, r, s = [], [], []
    for _ in range(n):
        d.append(await _timed(lambda: direct.chat_completion(MESSAGES)))
        r.append(await _timed(lambda: refused.chat_completion(MESSAGES)))
        s.append(await _timed(lambda: skipped.chat_completion(MESSAGES)))
    for manager in (direct, refused, skipped):
        await manager.aclose()
    return percentile(d, 50), percentile(r, 50), percentile(s, 50)


async def _concurrent(url: str, home: Path, batches: int, width: int = 32, lean: bool = False) -> tuple[float, float]:
    manager = _manager(home, "endpoint", GPUCTL_ENDPOINT_URL=url, GPUCTL_ENDPOINT_MODEL=MODEL)
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=width)
    async with httpx.AsyncClient(base_url=url, limits=limits, transport=_transport(lean)) as bare:
        await asyncio.gather(*(_bare_request(bare) for _ in range(width)))
        await asyncio.gather(*(manager.chat_completion(MESSAGES) for _ in range(width)))
        base_t = ours_t = 0.0
        for _ in range(batches):
            started = time.perf_counter()
            await asyncio.gather(*(_bare_request(bare) for _ in range(width)))
            base_t += time.perf_counter() - started
            started = time.perf_counter()
            await asyncio.gather(*(manager.chat_completion(MESSAGES) for _ in range(width)))
            ours_t += time.perf_counter() - started
    await manager.aclose()
    total = batches * width
    return total / base_t, total / ours_t


def run(*, requests: int = 300, stream_chunks: int = 2000, stream_runs: int = 15, batches: int = 20) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        home = Path(tmp)
        with fake_server("vllm_server", "FakeVLLM", model=MODEL, answer="Hello there, friend.") as url:
            base, ours = asyncio.run(_single(url, home / "single", requests))
            added = (ours - base) * 1000
            rows.append(Row("one non-streaming chat through BackendManager (p50)",
                            f"bare httpx {base * 1000:.2f} ms", f"{added:+.2f} ms", "≤ 1 ms added", added <= 1.0))
            d, r, s = asyncio.run(_failover(url, home / "failover", max(50, requests // 3)))
            rows.append(Row("primary refused → answer from the next provider (p50)",
                            f"direct {d * 1000:.2f} ms", f"{(r - d) * 1000:+.2f} ms", "≤ 20 ms added",
                            (r - d) * 1000 <= 20))
            rows.append(Row("breaker open → skip (p50)", f"direct {d * 1000:.2f} ms",
                            f"{(s - d) * 1000:+.2f} ms", "≤ 1 ms", (s - d) * 1000 <= 1.0))
            base_rps, ours_rps = asyncio.run(_concurrent(url, home / "concurrent", batches))
            rows.append(Row("32 concurrent chats through BackendManager", f"bare httpx {base_rps:.0f} req/s",
                            f"{ours_rps:.0f} req/s = {ours_rps / base_rps:.2f}×", "≥ 0.9×", ours_rps >= 0.9 * base_rps))
            # The same against bare httpx on gpuctl's own http:// transport: the router's own cost.
            base, ours = asyncio.run(_single(url, home / "single-lean", requests, lean=True))
            rows.append(Row("… one chat, baseline on gpuctl's lean transport (p50)", f"bare {base * 1000:.2f} ms",
                            f"{(ours - base) * 1000:+.2f} ms", "informational", True))
            base_rps, ours_rps = asyncio.run(_concurrent(url, home / "concurrent-lean", batches, lean=True))
            rows.append(Row("… 32 concurrent, baseline on gpuctl's lean transport", f"bare {base_rps:.0f} req/s",
                            f"{ours_rps:.0f} req/s = {ours_rps / base_rps:.2f}×", "informational", True))
        answer = " ".join(f"w{i}" for i in range(stream_chunks))
        with fake_server("vllm_server", "FakeVLLM", model=MODEL, answer=answer) as url:
            base, ours = asyncio.run(_streaming(url, home / "stream", stream_runs))
            rows.append(Row(f"streaming {stream_chunks:,} chunks through the router", f"bare httpx SSE {base * 1000:.1f} ms",
                            f"{ours * 1000:.1f} ms = {ours / base:.2f}×", "≤ 1.2×", ours <= 1.2 * base))
            base, ours = asyncio.run(_streaming(url, home / "stream-lean", stream_runs, lean=True))
            rows.append(Row("… streaming, baseline on gpuctl's lean transport", f"bare SSE {base * 1000:.1f} ms",
                            f"{ours * 1000:.1f} ms = {ours / base:.2f}×", "informational", True))
    return rows
