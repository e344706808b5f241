"""A lean HTTP/1.1 transport for httpx on plain `http://`: asyncio and httptools (the parser
uvicorn uses), with keep-alive connections, the request's timeouts, and httpx's own errors.

Why: for a vLLM on the same host or LAN, httpcore, anyio and h11 cost half of the gateway's
CPU per request (bench/bench_serve.py); this does the same work for a fraction of it. It
keeps httpx's client (URLs, headers, decoding, the retry wrapper) and replaces only the
connection underneath. `https://` stays on httpcore, whose TLS handling has years of
production behind it (over the internet the round trip dwarfs the client's cost anyway), and
so do proxies. `GPUCTL_HTTP_LEAN=0` turns it off.

Must not: retry (the wrapper in `client.py` does), reuse a connection whose answer was not read
to its end, or block.
"""

from __future__ import annotations

import asyncio
import collections
import os
import select
import time
import weakref
from collections.abc import AsyncIterator

import httptools
import httpx

HIGH_WATER = 256 * 1024  # unread body bytes before the connection stops reading
MAX_IDLE = 32  # kept-alive connections per host
# An idle connection older than this is closed, not reused: under the 5 s keep-alive of uvicorn
# and vLLM, so a request never goes out on a connection the server is closing that moment.
KEEPALIVE_EXPIRY_S = 4.0
# Methods a server may be asked twice: a request that died on a kept-alive connection before any
# answer is sent again only for these. A POST may have reached the server (a chat that bills).
# (PUT is not among them: Vast.ai's create is a PUT, and http/client.py never repeats it either.)
IDEMPOTENT = frozenset({"GET", "HEAD", "OPTIONS", "DELETE", "TRACE"})
SETTLE_S = 1.0  # how long the end of a message that was read to its last byte may take


def enabled() -> bool:
    return os.environ.get("GPUCTL_HTTP_LEAN", "1").lower() not in ("0", "false", "no", "off")


class _Connection(asyncio.Protocol):
    """One TCP connection and the response being read on it."""

    def __init__(self) -> None:
        self.parser = httptools.HttpResponseParser(self)
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.paused = False
        self.idle_since = 0.0
        self.waiter: asyncio.Future[None] | None = None
        self.reset()

    def reset(self) -> None:
        self.received = False  # any byte of this answer yet (a kept-alive connection may be dead)
        self.status = 0
        self.reason = b""
        self.headers: list[tuple[bytes, bytes]] = []
        self.head_done = False
        self.interim = False  # parsing a 1xx (100 Continue, 103 Early Hints): not the answer
        self.until_close = False  # a body without length or chunks ends when the server closes
        self.keep_alive = False
        self.chunks: collections.deque[bytes] = collections.deque()
        self.buffered = 0
        self.complete = False
        self.error: httpx.TransportError | None = None

    # -- asyncio.Protocol

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        self.received = True
        try:
            self.parser.feed_data(data)
        except httptools.HttpParserError as exc:
            self.fail(httpx.RemoteProtocolError(f"malformed HTTP response: {exc}"))
            self.close()
            return
        if self.buffered > HIGH_WATER and not self.paused and self.transport is not None:
            self.paused = True
            self.transport.pause_reading()

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        if self.head_done and self.until_close and self.error is None and exc is None:
            self.complete = True  # HTTP/1.0 style: a clean close is the end of the body (a reset is not)
        if not self.complete:
            self.fail(httpx.RemoteProtocolError("Server disconnected without sending a response." if not self.head_done
                                                else "peer closed connection without sending complete message body"))
        self.wake()

    # -- httptools callbacks

    def on_status(self, status: bytes) -> None:
        self.reason += status

    def on_header(self, name: bytes, value: bytes) -> None:
        self.headers.append((name, value))

    def on_headers_complete(self) -> None:
        self.status = self.parser.get_status_code()
        if 100 <= self.status < 200 and self.status != 101:
            # An interim answer; the real one follows on the same connection.
            self.interim, self.headers, self.reason = True, [], b""
            return
        names = {name.lower() for name, _ in self.headers}
        chunked = any(n.lower() == b"transfer-encoding" and b"chunked" in v.lower() for n, v in self.headers)
        self.until_close = (b"content-length" not in names and not chunked and self.status not in (204, 304))
        # Asked now: llhttp answers for the message being parsed, not after it ended.
        self.keep_alive = self.parser.should_keep_alive()
        self.head_done = True
        self.wake()

    def on_body(self, body: bytes) -> None:
        self.chunks.append(body)
        self.buffered += len(body)
        self.wake()

    def on_message_complete(self) -> None:
        if self.interim:
            self.interim = False
            return
        self.complete = True
        self.wake()

    # -- for the transport

    def fail(self, error: httpx.TransportError) -> None:
        if self.error is None:
            self.error = error
        self.wake()

    def wake(self) -> None:
        waiter = self.waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def wait(self, timeout: float | None) -> None:
        """Until the next event on this connection, or httpx.ReadTimeout."""
        loop = asyncio.get_running_loop()
        self.waiter = loop.create_future()
        try:
            if timeout is None:
                await self.waiter
            else:
                async with asyncio.timeout(timeout):
                    await self.waiter
        except TimeoutError:
            raise httpx.ReadTimeout(f"no answer within {timeout:g}s") from None
        finally:
            self.waiter = None

    def take(self) -> bytes:
        chunk = self.chunks.popleft()
        self.buffered -= len(chunk)
        if self.paused and self.buffered < HIGH_WATER // 2 and self.transport is not None:
            self.paused = False
            self.transport.resume_reading()
        return chunk

    def reusable(self) -> bool:
        return self.complete and not self.closed and self.error is None and self.keep_alive

    def close(self) -> None:
        if self.transport is not None and not self.closed:
            self.transport.close()
        self.closed = True


class _Body(httpx.AsyncByteStream):
    def __init__(self, transport: LeanTransport, key: tuple[str, int], conn: _Connection,
                 timeout: float | None) -> None:
        self.owner, self.key, self.conn, self.timeout = transport, key, conn, timeout
        self.done = False

    async def __aiter__(self) -> AsyncIterator[bytes]:
        conn = self.conn
        try:
            while True:
                while conn.chunks:
                    yield conn.take()
                if conn.complete:
                    self.done = True
                    return
                if conn.error is not None:
                    raise conn.error
                await conn.wait(self.timeout)
        except GeneratorExit:
            raise  # the reader stopped (an SSE reader at `[DONE]`): `aclose` decides
        except BaseException:
            conn.close()  # cancelled or failed mid-body: never reuse it
            raise

    async def aclose(self) -> None:
        conn, self.conn = self.conn, None  # type: ignore[assignment]
        if conn is None:
            return
        if conn.complete and conn.reusable():
            self.owner.release(self.key, conn)  # a reader may stop before the end: discarded
        elif conn.chunks or conn.closed or conn.error is not None:
            conn.close()  # an answer not read to its end: the server may still be sending
        else:
            # Everything that arrived was read (an SSE stream at `[DONE]`), but the end of the
            # message (the last chunk's terminator) is still on its way: settle it apart.
            self.owner.settle(self.key, conn)


class LeanTransport(httpx.AsyncBaseTransport):
    """httpx's transport interface over `_Connection`s, pooled per host and port."""

    def __init__(self) -> None:
        self.idle: dict[tuple[str, int], list[_Connection]] = {}
        self.closed = False
        self.settling: set[asyncio.Task[None]] = set()
        # Every connection, idle or answering: closing the client closes them all, as httpcore's
        # pool does (an answer nobody closed must not leak its socket past the client).
        self.everyone: weakref.WeakSet[_Connection] = weakref.WeakSet()

    def release(self, key: tuple[str, int], conn: _Connection) -> None:
        pool = self.idle.setdefault(key, [])
        if self.closed or len(pool) >= MAX_IDLE:
            conn.close()
            return
        conn.reset()
        conn.idle_since = time.monotonic()
        pool.append(conn)

    def settle(self, key: tuple[str, int], conn: _Connection) -> None:
        task = asyncio.ensure_future(self._settle(key, conn))
        self.settling.add(task)
        task.add_done_callback(self.settling.discard)

    async def _settle(self, key: tuple[str, int], conn: _Connection) -> None:
        """Keep the connection if its message ends with no more body (up to SETTLE_S); more
        body means the server is still generating for a reader that left: close, so it stops."""
        try:
            while not conn.complete and not conn.chunks and conn.error is None and not conn.closed:
                await conn.wait(SETTLE_S)
        except (httpx.ReadTimeout, asyncio.CancelledError):
            pass
        if conn.complete and not conn.chunks and conn.reusable():
            self.release(key, conn)
        else:
            conn.close()

    async def _connect(self, host: str, port: int, timeout: float | None) -> _Connection:
        loop = asyncio.get_running_loop()
        try:
            async with asyncio.timeout(timeout):
                _, conn = await loop.create_connection(_Connection, host, port)
        except TimeoutError:
            raise httpx.ConnectTimeout(f"connecting to {host}:{port} took longer than {timeout:g}s") from None
        except OSError as exc:
            raise httpx.ConnectError(str(exc) or type(exc).__name__) from None
        self.everyone.add(conn)
        return conn

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        url = request.url
        if url.scheme != "http":
            raise httpx.UnsupportedProtocol(f"the lean transport is for http://, not {url.scheme}://")
        if request.method == "HEAD":  # an answer without a body its headers announce: not parsed here
            raise httpx.UnsupportedProtocol("the lean transport does not send HEAD requests")
        timeouts = request.extensions.get("timeout") or {}
        key = (url.host, url.port or 80)
        body = await request.aread()
        head = self._head(request)
        conn = self._idle(key)
        if conn is not None:
            try:
                return await self._exchange(key, conn, head + body, timeouts)
            except httpx.RemoteProtocolError:
                if conn.received or request.method not in IDEMPOTENT:
                    raise
                # A kept-alive connection that died with no answer: a GET goes once more on
                # a new connection (a POST may have reached the server: never sent twice).
        conn = await self._connect(url.host, key[1], timeouts.get("connect"))
        return await self._exchange(key, conn, head + body, timeouts)

    def _idle(self, key: tuple[str, int]) -> _Connection | None:
        """A kept-alive connection still good to use: not closed, not idle past its expiry, and
        with nothing to read (an idle connection that is readable got the server's close, or
        bytes nobody asked for: either way it is done), as httpcore checks."""
        pool = self.idle.get(key)
        now = time.monotonic()
        while pool:
            candidate = pool.pop()
            transport = candidate.transport
            if candidate.closed or transport is None or transport.is_closing():
                continue
            if now - candidate.idle_since > KEEPALIVE_EXPIRY_S or _readable(transport):
                candidate.close()
                continue
            return candidate
        return None

    @staticmethod
    def _head(request: httpx.Request) -> bytes:
        url = request.url
        head = [request.method.encode(), b" ", url.raw_path, b" HTTP/1.1\r\n"]
        sized = False
        for name, value in request.headers.raw:
            lower = name.lower()
            if lower == b"transfer-encoding":
                continue  # a streamed body was read whole above: it goes with its length
            sized = sized or lower == b"content-length"
            head += (name, b": ", value, b"\r\n")
        body = request.content  # read by the caller first
        if not sized and (body or request.method in ("POST", "PUT", "PATCH")):
            head.append(b"Content-Length: %d\r\n" % len(body))
        head.append(b"\r\n")
        return b"".join(head)

    async def _exchange(self, key: tuple[str, int], conn: _Connection, data: bytes,
                        timeouts: dict[str, float | None]) -> httpx.Response:
        read = timeouts.get("read")
        try:
            assert conn.transport is not None
            conn.transport.write(data)
            while not conn.head_done:
                if conn.error is not None:
                    raise conn.error
                await conn.wait(read)
        except BaseException:
            conn.close()
            raise
        return httpx.Response(conn.status, headers=conn.headers, stream=_Body(self, key, conn, read),
                              extensions={"http_version": b"HTTP/1.1", "reason_phrase": conn.reason})

    async def aclose(self) -> None:
        self.closed = True
        for task in list(self.settling):
            task.cancel()
        for conn in list(self.everyone):
            conn.close()
        self.idle.clear()


def _readable(transport: asyncio.Transport) -> bool:
    sock = transport.get_extra_info("socket")
    if sock is None:
        return False
    try:
        poller = select.poll()  # not select(): it refuses descriptors past 1023
        poller.register(sock.fileno(), select.POLLIN)
        return bool(poller.poll(0))
    except (OSError, ValueError):
        return True
