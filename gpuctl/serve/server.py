"""Running the gateway: uvicorn (httptools, uvloop) on a socket gpuctl binds itself, in this
process or in `--workers N` processes, with the signals a service manager sends.

One worker: SIGTERM or SIGINT stops accepting, lets streams in flight finish for up to
`serve.drain_s` (then cancels them: the ledger marks them stopped), runs the shutdown (stops
launches, closes providers, flushes and closes the ledger) and returns, so the command exits
0; a second SIGINT skips the drain. SIGHUP reloads the profile in place.

Several workers: uvicorn's supervisor. SIGTERM/SIGINT drain every worker the same way; SIGHUP
replaces the workers one by one (each new one reads the profile), which is the reload. Metrics
are summed over the workers through `PROMETHEUS_MULTIPROC_DIR` (a fresh temporary directory
unless one is given). The socket is bound before anything starts, so the URL (even for
port 0) is known and printed before the first request.

Must not: print (the command renders `on_ready`), or handle a request.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import shutil
import signal
import socket
import tempfile
import threading
from collections.abc import Callable, Iterator
from typing import Any

import uvicorn

from gpuctl.config import Settings
from gpuctl.errors import ConfigError
from gpuctl.serve.app import FLAGS_ENV, App
from gpuctl.serve.gateway import Gateway, OnReady
from gpuctl.serve.metrics import MULTIPROC_ENV
from gpuctl.serve.options import ServeOptions

BACKLOG = 2048


def bind(options: ServeOptions) -> socket.socket:
    """The listening socket (port 0: any free port), or a ConfigError saying why not."""
    family = socket.AF_INET6 if ":" in options.host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((options.host, options.port))
    except OSError as exc:
        sock.close()
        raise ConfigError(f"cannot listen on {options.host}:{options.port}: {exc.strerror}",
                          hint="another process may use that port: pick one with --port") from None
    # Listening now: a client that connects while the workers start waits in the backlog
    # instead of being refused.
    sock.listen(BACKLOG)
    sock.set_inheritable(True)
    return sock


def bound(options: ServeOptions, sock: socket.socket) -> ServeOptions:
    """The options with the port the socket really has (port 0 picks one)."""
    from dataclasses import replace

    return replace(options, port=int(sock.getsockname()[1]))


def config(app: Any, options: ServeOptions, **extra: Any) -> uvicorn.Config:
    return uvicorn.Config(
        app, loop="uvloop", http="httptools", lifespan="on", ws="none", interface="asgi3",
        # gpuctl writes its own JSON access log; uvicorn's goes quiet but for warnings.
        access_log=False, log_config=None, log_level="warning", server_header=False,
        # uvicorn types it an int, and uses it as asyncio.wait_for's timeout: a float is exact.
        timeout_graceful_shutdown=options.drain_s,  # type: ignore[arg-type]
        timeout_keep_alive=5, backlog=BACKLOG, **extra)


class Server(uvicorn.Server):
    """uvicorn's server with gpuctl's signals: exit 0 after a drain, SIGHUP reloads."""

    def __init__(self, cfg: uvicorn.Config, on_hup: Callable[[], None]) -> None:
        super().__init__(cfg)
        self.on_hup = on_hup

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        # uvicorn re-raises the signal after its shutdown (the process would die by it, not
        # exit 0); gpuctl keeps the shutdown and returns instead.
        if threading.current_thread() is not threading.main_thread():
            yield
            return
        loop = asyncio.get_running_loop()

        def hup(signum: int, frame: object) -> None:
            loop.call_soon_threadsafe(self.on_hup)

        previous = {sig: signal.signal(sig, self.handle_exit) for sig in (signal.SIGINT, signal.SIGTERM)}
        previous[signal.SIGHUP] = signal.signal(signal.SIGHUP, hup)
        try:
            yield
        finally:
            for sig, handler in previous.items():
                signal.signal(sig, handler)


def run(settings: Settings, options: ServeOptions, sock: socket.socket, *, on_ready: OnReady | None = None,
        gateway: Gateway | None = None) -> None:
    """Serve until told to stop (see the module doc). `options.port` is the bound port."""
    if options.workers > 1:
        run_workers(options, sock)
        return
    gw = gateway or Gateway(settings, options, on_ready=on_ready)
    server = Server(config(App(gw), options), on_hup=gw.schedule_reload)
    server.run(sockets=[sock])


def run_workers(options: ServeOptions, sock: socket.socket) -> None:
    """`--workers N`: uvicorn's supervisor over N processes, each building its own gateway
    from the settings (`app.worker_app`) and the flags left in the environment."""
    from uvicorn.supervisors import Multiprocess

    made_dir = None
    if not os.environ.get(MULTIPROC_ENV):
        made_dir = os.environ[MULTIPROC_ENV] = tempfile.mkdtemp(prefix="gpuctl-metrics-")
    os.environ[FLAGS_ENV] = json.dumps(options.flags())
    try:
        cfg = config("gpuctl.serve.app:worker_app", options, factory=True, workers=options.workers)
        Multiprocess(cfg, sockets=[sock]).run()
    finally:
        os.environ.pop(FLAGS_ENV, None)
        if made_dir is not None:
            os.environ.pop(MULTIPROC_ENV, None)
            shutil.rmtree(made_dir, ignore_errors=True)
