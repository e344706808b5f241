"""Helpers shared by tests (never import one test module from another): a port nothing
listens on, settings from a dict, the exit-code assertion, waiting for a loopback event."""

from __future__ import annotations

import socket
import time
from pathlib import Path
from typing import Any

from gpuctl.config import Settings, load_settings


def closed_port_url() -> str:
    """http://127.0.0.1:PORT where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def settings_for(home: Path, **env: str) -> Settings:
    return load_settings(env=env, home=home)


def assert_exit(result, code: int) -> None:  # type: ignore[no-untyped-def]
    """Assert the exit code first, showing both streams when it is wrong."""
    assert result.exit_code == code, (
        f"exit {result.exit_code} != {code}\n--- stdout\n{result.stdout}\n--- stderr\n{result.stderr}"
    )


def wait_for(condition: Any, timeout: float = 5.0, what: str = "condition") -> None:
    """Poll `condition()` every 10 ms until true (a loopback event, not a timed sleep)."""
    deadline = time.monotonic() + timeout
    while not condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.01)
