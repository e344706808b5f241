"""`gpuctl.chat` and the chat/profile ops are the conversation without a terminal: importing them
loads no terminal library and nothing of `gpuctl.cli` (a gateway can use them as they are)."""

from __future__ import annotations

import subprocess
import sys

TERMINAL = ("rich", "prompt_toolkit", "typer", "click", "gpuctl.cli")


def test_the_conversation_imports_no_terminal_code() -> None:
    code = (
        "import sys\n"
        "import gpuctl.chat.session, gpuctl.chat.transcript, gpuctl.ops.chat, gpuctl.ops.profile\n"
        f"print(','.join(m for m in {TERMINAL!r} if m in sys.modules))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "", f"terminal code imported: {proc.stdout.strip()}"
