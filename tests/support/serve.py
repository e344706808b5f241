"""A real `gpuctl serve` gateway for tests: uvicorn (httptools, uvloop) on 127.0.0.1, port 0,
in a thread of the test process, over settings built from a dict, with its access log kept in
memory. Clients are the official `openai` SDK (or httpx for raw bytes)."""

from __future__ import annotations

import contextlib
import io
import json
import os
import select
import subprocess
import sys
import threading
from collections.abc import Iterator
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import httpx
import openai
import uvicorn

from gpuctl.config import load_settings
from gpuctl.serve.accesslog import AccessLog
from gpuctl.serve.app import App
from gpuctl.serve.gateway import Gateway
from gpuctl.serve.options import serve_options
from gpuctl.serve.server import bind, bound, config
from gpuctl.state import UsageRecord
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import wait_for
from tests.support.routing import KEY, ledger

MODEL = "Qwen/Qwen2.5-7B-Instruct"
CLIENT_KEY = "sk-test-client-key-0123456789"
ADMIN_TOKEN = "admin-token-0123456789abcdef"


@dataclass
class Running:
    url: str
    gateway: Gateway
    server: uvicorn.Server
    log: io.StringIO

    @property
    def base_url(self) -> str:
        return self.url + "/v1"

    def client(self, api_key: str = CLIENT_KEY, **kw: Any) -> openai.OpenAI:
        return openai.OpenAI(base_url=self.base_url, api_key=api_key, **{"max_retries": 0, "timeout": 10, **kw})

    def http(self, **kw: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=10, **kw)

    def ledger(self) -> list[UsageRecord]:
        """The ledger once every row the gateway handed to its writer is stored."""
        assert self.gateway.writer is not None
        self.gateway.writer.flush()
        return ledger(self.gateway.settings.home)

    def access_lines(self) -> list[dict[str, Any]]:
        return [json.loads(line) for line in self.log.getvalue().splitlines() if line.strip()]


@contextlib.contextmanager
def running_gateway(home: Path, env: dict[str, str], *, flags: dict[str, Any] | None = None,
                    **options: Any) -> Iterator[Running]:
    """Start a gateway over `env` (no other environment is read) and stop it after."""
    settings = load_settings(env=env, home=home, flags=flags)
    opts = replace(serve_options(settings, port=0), **options)
    sock = bind(opts)
    opts = bound(opts, sock)
    log = io.StringIO()
    gateway = Gateway(settings, opts, access_log=AccessLog(log))
    server = uvicorn.Server(config(App(gateway), opts))
    thread = threading.Thread(target=server.run, kwargs={"sockets": [sock]}, name="gpuctl-serve-test", daemon=True)
    thread.start()
    try:
        wait_for(lambda: server.started or not thread.is_alive(), 10.0, "the gateway to start")
        assert server.started, "the gateway did not start"
        yield Running(opts.url, gateway, server, log)
    finally:
        server.should_exit = True
        thread.join(15)
        sock.close()
        assert not thread.is_alive(), "the gateway did not stop"


def chain_env(vllm: FakeVLLM | None, claude: FakeAnthropic | None = None, **extra: str) -> dict[str, str]:
    """Modal (the fake vLLM) → Anthropic (the fake), with one client key named alice."""
    env = {"GPUCTL_PRIORITY": "modal,vastai,anthropic", "GPUCTL_SERVE_API_KEYS": f"alice:{CLIENT_KEY}",
           "GPUCTL_EVENT_LOG": "0"}
    if vllm is not None:
        env["MODAL_WEB_URL"] = vllm.url
    if claude is not None:
        env["ANTHROPIC_API_KEY"] = KEY
        env["ANTHROPIC_BASE_URL"] = claude.url
    return {**env, **extra}


@dataclass
class Spawned:
    """`python -m gpuctl --json serve --port 0` in a process of its own."""

    proc: subprocess.Popen[str]
    started: dict[str, Any]

    @property
    def url(self) -> str:
        return str(self.started["url"])


@contextlib.contextmanager
def spawned_gateway(home: Path, env: dict[str, str], *args: str, timeout: float = 30.0) -> Iterator[Spawned]:
    """Start the real command; its first stdout line (the --json start-up event) gives the URL."""
    full = {**{k: v for k, v in os.environ.items() if not k.startswith(("GPUCTL_", "ANTHROPIC_", "MODAL_", "VAST"))},
            "GPUCTL_HOME": str(home), "GPUCTL_EVENT_LOG": "0", "PYTHONUNBUFFERED": "1", **env}
    proc = subprocess.Popen([sys.executable, "-m", "gpuctl", "--json", "serve", "--port", "0", *args],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=full)
    try:
        assert proc.stdout is not None
        ready, _, _ = select.select([proc.stdout], [], [], timeout)
        line = proc.stdout.readline() if ready else ""
        if not line:
            proc.kill()
            raise AssertionError(f"gpuctl serve did not start: {proc.communicate(timeout=10)[1][-2000:]}")
        yield Spawned(proc, json.loads(line))
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
