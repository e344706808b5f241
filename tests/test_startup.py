"""`gpuctl --help` must not pay for the heavy SDKs: importing the CLI loads none of them."""

from __future__ import annotations

import subprocess
import sys

HEAVY = ("httpx", "modal", "anthropic", "httpx_sse", "prompt_toolkit", "sqlite3", "psycopg", "openai", "uvicorn",
         "starlette", "prometheus_client", "uvloop", "httptools")


def test_cli_import_and_help_load_no_heavy_modules() -> None:
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from gpuctl.cli.main import app\n"
        "r = CliRunner().invoke(app, ['--help'])\n"
        "assert r.exit_code == 0, r.output\n"
        f"loaded = [m for m in {HEAVY!r} if m in sys.modules]\n"
        "print(','.join(loaded))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"--help imported: {proc.stdout.strip()}"


def test_public_api_import_is_lazy() -> None:
    code = "import sys, gpuctl\nprint(','.join(m for m in ('httpx', 'modal', 'anthropic') if m in sys.modules))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == ""
