"""Small helpers shared by tests: a port nothing listens on, settings from a dict."""

from __future__ import annotations

import socket
from pathlib import Path

from gpuctl.config import Settings, load_settings


def closed_port_url() -> str:
    """http://127.0.0.1:PORT where nothing listens (connection refused)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}"


def settings_for(home: Path, **env: str) -> Settings:
    return load_settings(env=env, home=home)
