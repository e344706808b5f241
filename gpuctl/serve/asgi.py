"""The small, explicit ASGI pieces the gateway is made of (after Starlette's `routing.py` and
`responses.py`, without their per-request objects): reading a body within a limit, sending a
JSON or error answer, reading a header or a bearer token, and watching for a client that hangs
up while its answer is being prepared.

Must not: know a route, a gpuctl type or a setting.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable, MutableMapping
from typing import Any

from gpuctl.serve.errors import ApiError

Scope = MutableMapping[str, Any]
Message = MutableMapping[str, Any]
Receive = Callable[[], Awaitable[Message]]
Send = Callable[[Message], Awaitable[None]]
Headers = list[tuple[bytes, bytes]]

JSON = b"application/json"
CLOSE = (b"connection", b"close")


class ClientGone(Exception):
    """The client hung up (while sending its body, or while waiting for the answer)."""


def header(scope: Scope, name: bytes) -> bytes | None:
    """One request header (`name` in lower case), or None."""
    for key, value in scope["headers"]:
        if key == name:
            return bytes(value)
    return None


def bearer(scope: Scope) -> str | None:
    """The token of `Authorization: Bearer <token>`, or None."""
    value = header(scope, b"authorization")
    if value is None:
        return None
    scheme, _, token = value.decode("latin-1").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return token.strip() or None


async def read_body(scope: Scope, receive: Receive, limit: int, timeout_s: float = 30.0) -> bytes:
    """The whole request body, refused with 413 as soon as it passes `limit` bytes: a declared
    Content-Length over the limit before anything is read, a chunked body while it arrives;
    and with 408 when it has not all arrived within `timeout_s` (a client trickling a body
    must not hold a connection and its buffer for ever)."""
    try:
        async with asyncio.timeout(timeout_s):
            return await _read_body(scope, receive, limit)
    except TimeoutError:
        raise ApiError(408, f"the request body did not arrive within {timeout_s:g} s", code="request_timeout",
                       headers=[CLOSE]) from None


async def _read_body(scope: Scope, receive: Receive, limit: int) -> bytes:
    declared = header(scope, b"content-length")
    if declared is not None:
        try:
            size = int(declared)
        except ValueError:
            raise ApiError(400, "invalid Content-Length", code="invalid_request") from None
        if size > limit:
            raise too_large(limit)
    parts: list[bytes] = []
    total = 0
    while True:
        message = await receive()
        if message["type"] == "http.disconnect":
            raise ClientGone
        chunk = message.get("body", b"")
        total += len(chunk)
        if total > limit:
            raise too_large(limit)
        parts.append(chunk)
        if not message.get("more_body", False):
            return parts[0] if len(parts) == 1 else b"".join(parts)


def too_large(limit: int) -> ApiError:
    # Close the connection: the client may still be sending the rest of the body.
    return ApiError(413, f"the request body is larger than {limit} bytes (serve.max_body_bytes)",
                    code="request_too_large", headers=[CLOSE])


async def send_bytes(send: Send, status: int, body: bytes, headers: Headers | None = None,
                     content_type: bytes = JSON) -> None:
    start: Headers = [(b"content-type", content_type), (b"content-length", str(len(body)).encode())]
    if headers:
        start += headers
    await send({"type": "http.response.start", "status": status, "headers": start})
    await send({"type": "http.response.body", "body": body})


async def send_error(send: Send, error: ApiError, headers: Headers | None = None) -> None:
    await send_bytes(send, error.status, error.body(), [*error.headers, *(headers or [])])


class HangUpWatch:
    """Cancels the request's task when its client disconnects, so the upstream request is
    cancelled too (no GPU generating for nobody). Start it once the body is read (afterwards
    `receive` only ever says `http.disconnect`); stop it before the last byte is sent (after
    that, `receive` says so at once).

        watch = HangUpWatch(receive)
        try: ... await upstream ...
        except asyncio.CancelledError:
            if not watch.hung_up(): raise
        finally: watch.stop()
    """

    def __init__(self, receive: Receive) -> None:
        self.receive = receive
        self.gone = False
        self.task = asyncio.current_task()
        self.watcher: asyncio.Task[None] | None = asyncio.ensure_future(self._watch())

    async def _watch(self) -> None:
        while True:
            message = await self.receive()
            if message["type"] == "http.disconnect":
                self.gone = True
                if self.task is not None:
                    self.task.cancel()
                return

    def stop(self) -> None:
        if self.watcher is not None:
            self.watcher.cancel()
            self.watcher = None

    def hung_up(self) -> bool:
        """After a CancelledError: True (and the cancel absorbed) if it was the client leaving."""
        if self.gone and self.task is not None:
            with contextlib.suppress(Exception):
                self.task.uncancel()
            return True
        return False
