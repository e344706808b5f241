"""Server-sent events: the reader of an httpx response's SSE body and the stall watchdog.

Owns: splitting an `text/event-stream` body into the `data` of each event, grouped by the
network read it arrived in, and bounding the wait for the next event without a timer per event.
Both sit on the streaming hot path (bench/bench_router.py streams 2,000 chunks against bare
httpx SSE): no per-event allocation or timer beyond what is here.

Must not: parse the events' JSON (each provider knows its own payloads), map errors to the error
tree, or log. Imported only on code paths that stream.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import httpx


async def sse_data_blocks(response: httpx.Response) -> AsyncIterator[list[str]]:
    """The `data` of each complete server-sent event, grouped by the network read it arrived in.

    A small reader of the SSE format (WHATWG "server-sent events"): lines end in LF, CRLF or CR;
    `data:` lines (one optional space after the colon) accumulate, joined by LF; a blank line
    dispatches the event; comments (`:`) and other fields (`event`, `id`, `retry`) are ignored,
    since vLLM sends none. A final event without its blank line is dropped, as the format says.
    """
    tail = ""
    data: list[str] = []

    def take(lines: list[str]) -> list[str]:
        ready: list[str] = []
        for line in lines:
            line = line.rstrip("\r\n")
            if not line:
                if data:
                    ready.append(data[0] if len(data) == 1 else "\n".join(data))
                    data.clear()
            elif line.startswith("data:"):
                data.append(line[6:] if line.startswith("data: ") else line[5:])
        return ready

    async for text in response.aiter_text():
        lines = (tail + text).splitlines(keepends=True)
        # The last line may be cut mid-way (or a CR may be the first half of CRLF): keep it.
        tail = lines.pop() if lines and not lines[-1].endswith("\n") else ""
        ready = take(lines)
        if ready:
            yield ready
    if tail.endswith("\r"):  # the stream ended on a bare CR: that line was complete
        ready = take(tail.splitlines(keepends=True))
        if ready:
            yield ready


class StallWatchdog:
    """Cancels the reading task when one wait for the next SSE event lasts longer than `gap`.

    One timer re-armed lazily instead of an `asyncio.timeout` per event: on a 2,000-chunk stream
    the per-event timers cost ~15% of the CPU (bench/bench_router.py). It only fires while we
    wait on the server, never while the consumer is busy with a chunk. Create it inside the
    task that reads; call `waiting(gap)` before each read, `idle()` after it, `close()` at the end.
    """

    def __init__(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._task = asyncio.current_task()
        self._since = self._loop.time()
        self._gap = 0.0
        self._waiting = False
        self._fired = False
        self._handle: asyncio.TimerHandle | None = None

    def waiting(self, gap: float) -> None:
        self._since = self._loop.time()
        self._gap = gap
        self._waiting = True
        if self._handle is None:
            self._handle = self._loop.call_at(self._since + gap, self._check)

    def idle(self) -> None:
        self._waiting = False

    def _check(self) -> None:
        now = self._loop.time()
        if self._waiting and now >= self._since + self._gap and self._task is not None:
            self._fired = True
            self._handle = None
            self._task.cancel()
            return
        deadline = self._since + self._gap if self._waiting else now + self._gap
        self._handle = self._loop.call_at(max(deadline, now + 0.001), self._check)

    def stalled(self) -> bool:
        """True if the cancellation came from us (and is absorbed), False if from elsewhere."""
        if not self._fired or self._task is None:
            return False
        self._fired = False
        return self._task.uncancel() == 0

    def close(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
