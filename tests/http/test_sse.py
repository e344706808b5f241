"""The SSE reader and the stall watchdog (gpuctl.http.sse), without a server."""

from __future__ import annotations

import asyncio

import httpx
import pytest

from gpuctl.http.sse import StallWatchdog, sse_data_blocks


def _blocks(*parts: bytes) -> list[list[str]]:
    """Feed `parts` as separate network reads through the SSE reader."""

    class Stream(httpx.AsyncByteStream):
        async def __aiter__(self):  # type: ignore[no-untyped-def]
            for part in parts:
                yield part

    async def go() -> list[list[str]]:
        response = httpx.Response(200, stream=Stream(), headers={"content-type": "text/event-stream"})
        return [b async for b in sse_data_blocks(response)]

    return asyncio.run(go())


def test_sse_reader_groups_events_by_read_and_handles_line_endings() -> None:
    assert _blocks(b"data: a\n\ndata: b\n\n") == [["a", "b"]]
    assert _blocks(b"data: a\r\n\r\n", b"data: b\r\r") == [["a"], ["b"]]
    # an event cut across reads, even inside a CRLF, and inside a UTF-8 character
    assert _blocks(b"data: h\xc3", b"\xa9llo\r", b"\n\r\n") == [["h\u00e9llo"]]
    # several data lines join with LF; comments and other fields are ignored; no space after ':'
    assert _blocks(b": ping\nevent: x\nid: 1\ndata: one\ndata:two\n\n") == [["one\ntwo"]]
    # a final event without its blank line is incomplete and dropped
    assert _blocks(b"data: a\n\ndata: b") == [["a"]]


def test_watchdog_cancels_a_wait_longer_than_the_gap() -> None:
    async def go() -> bool:
        watchdog = StallWatchdog()
        watchdog.waiting(0.02)
        try:
            await asyncio.sleep(1)  # the server never answers
        except asyncio.CancelledError:
            return watchdog.stalled()
        finally:
            watchdog.close()
        return False

    assert asyncio.run(go()) is True


def test_watchdog_never_fires_while_the_consumer_is_busy() -> None:
    async def go() -> int:
        watchdog = StallWatchdog()
        reads = 0
        try:
            for _ in range(3):
                watchdog.waiting(0.05)
                await asyncio.sleep(0.001)  # each read arrives well within the gap
                reads += 1
                watchdog.idle()
                await asyncio.sleep(0.08)  # the consumer takes longer than the gap: not a stall
        finally:
            watchdog.close()
        return reads

    assert asyncio.run(go()) == 3


def test_a_cancellation_from_elsewhere_is_not_a_stall() -> None:
    async def reader(started: asyncio.Event) -> None:
        watchdog = StallWatchdog()
        watchdog.waiting(60.0)
        started.set()
        try:
            await asyncio.sleep(5)
        except asyncio.CancelledError:
            assert not watchdog.stalled()
            raise
        finally:
            watchdog.close()

    async def go() -> None:
        started = asyncio.Event()
        task = asyncio.create_task(reader(started))
        await started.wait()
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(go())
