"""Where the bundled Modal app is, and reading a `vllm serve` command line (for tests/modal/)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP_FILE = REPO / "deploy" / "modal" / "vllm_app.py"


def flag(cmd: list[str], name: str) -> str:
    """The value after `name` in a command line; fails the test when the flag is missing."""
    assert name in cmd, f"{name} missing from {cmd}"
    return cmd[cmd.index(name) + 1]
