"""The ASGI application: the route table, the lifespan, and the one place a request's errors
become answers and its access-log line is written.

Routes are an exact-path table (one prefix route: a launch's progress); no middleware, no
per-request objects beyond the ASGI dicts: the gateway's own time per request is what
bench/bench_serve.py measures against a direct call. Any exception before the answer starts
becomes an error in OpenAI's shape (an unexpected one a 500 with the traceback in the log,
never in the response).

`worker_app()` is the factory each `--workers` process imports: it reads the settings and the
flags the parent left in the environment.

Must not: do any route's work (chat, admin), or print.
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
from collections.abc import Awaitable, Callable
from typing import Any

from gpuctl.errors import GpuctlError
from gpuctl.serve import admin, chat
from gpuctl.serve.asgi import ClientGone, Receive, Scope, Send, send_bytes, send_error
from gpuctl.serve.errors import ApiError, api_error
from gpuctl.serve.gateway import Gateway

logger = logging.getLogger("gpuctl.serve")
FLAGS_ENV = "GPUCTL_SERVE_FLAGS"

Handler = Callable[[Gateway, Scope, Receive, Send], Awaitable[dict[str, Any]]]


async def health(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> dict[str, Any]:
    """Liveness: the process answers. No provider is asked anything."""
    await send_bytes(send, 200, b'{"status":"ok"}')
    return {"status": 200}


async def ready(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> dict[str, Any]:
    ok, data = await gw.ready()
    status = 200 if ok else 503
    await send_bytes(send, status, json.dumps(data, default=str).encode())
    return {"status": status}


async def metrics(gw: Gateway, scope: Scope, receive: Receive, send: Send) -> dict[str, Any]:
    body, content_type = gw.metrics.render()
    await send_bytes(send, 200, body, content_type=content_type)
    return {"status": 200}


ROUTES: dict[str, dict[str, Handler]] = {
    "/v1/chat/completions": {"POST": chat.chat_completions},
    "/v1/models": {"GET": chat.models},
    "/v1/completions": {"POST": chat.completions},
    "/health": {"GET": health},
    "/ready": {"GET": ready},
    "/metrics": {"GET": metrics},
    "/api/admin/vllm/status": {"GET": admin.status},
    "/api/admin/vllm/launch": {"POST": admin.launch},
    "/api/admin/vllm/destroy": {"POST": admin.destroy},
    "/api/admin/cost": {"GET": admin.cost},
}
LAUNCH_ROUTE: dict[str, Handler] = {"GET": admin.launch_progress, "DELETE": admin.launch_progress}
CHAT_PATHS = frozenset({"/v1/chat/completions"})


class App:
    """The ASGI callable over one `Gateway`."""

    def __init__(self, gateway: Gateway) -> None:
        self.gateway = gateway

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        kind = scope["type"]
        if kind == "http":
            await self.http(scope, receive, send)
        elif kind == "lifespan":
            await self.lifespan(receive, send)
        # websocket: not served (uvicorn refuses the upgrade when we return)

    async def http(self, scope: Scope, receive: Receive, send: Send) -> None:
        started = time.perf_counter()
        path, method = scope["path"], scope["method"]
        gw = self.gateway
        log: dict[str, Any] = {}
        try:
            handler = route(path, method)
            log = await handler(gw, scope, receive, send)
        except ClientGone:
            log = {"status": chat.CLIENT_CLOSED}
        except Exception as exc:
            error = api_error(exc)
            if not isinstance(exc, ApiError | GpuctlError):  # a bug: its traceback goes to the log only
                logger.error("%s %s failed", method, path, exc_info=exc)
            elif path in CHAT_PATHS:  # refused before routing: still a request to count
                gw.metrics.requests.labels("none", "overloaded" if error.status == 429 else "rejected").inc()
            log = {"status": error.status, "error": error.message, "key": scope.get("gpuctl.key")}
            with contextlib.suppress(RuntimeError):  # the answer had started: uvicorn closes the connection
                await send_error(send, error)
        gw.access.write({"method": method, "path": path, **log,
                         "latency_ms": round((time.perf_counter() - started) * 1000, 2)})

    async def lifespan(self, receive: Receive, send: Send) -> None:
        while True:
            message = await receive()
            if message["type"] == "lifespan.startup":
                try:
                    await self.gateway.startup()
                except Exception as exc:  # a broken state or profile: uvicorn exits, saying why
                    text = getattr(exc, "message", None) or f"{type(exc).__name__}: {exc}"
                    await send({"type": "lifespan.startup.failed", "message": text})
                    return
                await send({"type": "lifespan.startup.complete"})
            elif message["type"] == "lifespan.shutdown":
                try:
                    await self.gateway.shutdown()
                finally:
                    await send({"type": "lifespan.shutdown.complete"})
                return


def route(path: str, method: str) -> Handler:
    methods = ROUTES.get(path)
    if methods is None and path.startswith(admin.LAUNCH_PREFIX):
        methods = LAUNCH_ROUTE
    if methods is None:
        shown = path if len(path) <= 200 else path[:199] + "…"  # an error names the path, never echoes a body
        raise ApiError(404, f"no such route: {method[:20]} {shown}", code="unknown_url")
    handler = methods.get(method)
    if handler is None:
        raise ApiError(405, f"{method[:20]} is not allowed on {path}", code="method_not_allowed",
                       headers=[(b"allow", ", ".join(methods).encode())])
    return handler


def worker_app() -> App:
    """The app of one `--workers` process (uvicorn imports it by name in each worker)."""
    from gpuctl.config import load_settings
    from gpuctl.serve.options import options_from_flags

    flags = json.loads(os.environ.get(FLAGS_ENV) or "{}")
    settings = load_settings(profile=flags.get("profile"))
    return App(Gateway(settings, options_from_flags(settings, flags)))
