"""Where the bundled Modal app is, and reading a `vllm serve` command line (for tests/modal/)."""

from __future__ import annotations

from pathlib import Path

REPO = Path(__file__).resolve().parents[2]
APP_FILE = REPO / "deploy" / "modal" / "vllm_app.py"


def flag(cmd: list[str], name: str) -> str:
    """The value after `name` in a command line; fails the test when the flag is missing."""
    assert name in cmd, f"{name} missing from {cmd}"
    return cmd[cmd.index(name) + 1]


def import_app_in_fresh_process(env: dict[str, str], expression: str) -> str:
    """Import the app file in a new interpreter with exactly `env` (as `modal deploy` and a
    container do) and return what `print(expression)` wrote; `m` is the imported module."""
    import subprocess
    import sys

    code = (
        "import importlib.util, json\n"
        f"spec = importlib.util.spec_from_file_location('vllm_app', {str(APP_FILE)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        f"print({expression})\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    return proc.stdout
