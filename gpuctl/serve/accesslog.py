"""The gateway's access log: one JSON object per line per request (`serve.access_log`: stdout,
stderr, off, or a file appended to, created 0600).

A line carries what an operator asks of a request: method, path, status, latency, the provider
that answered and why others did not, time to first token, tokens, estimated cost, and the
client key's *name*. Never a key, never a prompt or an answer.

Lines are buffered and flushed at most every `FLUSH_S` (and at shutdown): a flush per line is
a system call per request, which showed in bench/bench_serve.py.

Must not: raise into a request (a log that cannot be written is dropped, once said).
"""

from __future__ import annotations

import json
import logging
import os
import sys
import time
from typing import Any, TextIO

logger = logging.getLogger("gpuctl.serve")
FLUSH_S = 1.0


def open_target(target: str) -> TextIO | None:
    if target == "off":
        return None
    if target == "stdout":
        return sys.stdout
    if target == "stderr":
        return sys.stderr
    fd = os.open(os.path.expanduser(target), os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
    return os.fdopen(fd, "a")


class AccessLog:
    def __init__(self, target: str | TextIO | None, clock: Any = time.time) -> None:
        self.stream = open_target(target) if isinstance(target, str) else target
        self.owned = isinstance(target, str) and target not in ("stdout", "stderr", "off")
        self.clock = clock
        self.failed = False
        self.flushed = time.monotonic()

    def write(self, fields: dict[str, Any]) -> None:
        stream = self.stream
        if stream is None:
            return
        line = json.dumps({"ts": round(self.clock(), 3), **fields}, separators=(",", ":"), default=str)
        try:
            stream.write(line + "\n")
            now = time.monotonic()
            if now - self.flushed >= FLUSH_S:
                self.flushed = now
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or file: the gateway keeps answering
            self._failed()

    def flush(self) -> None:
        """Push buffered lines out (the gateway calls this every `FLUSH_S`, and at shutdown)."""
        if self.stream is not None:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self._failed()
            self.flushed = time.monotonic()

    def _failed(self) -> None:
        if not self.failed:
            self.failed = True
            logger.warning("the access log cannot be written; lines are dropped from now on")

    def close(self) -> None:
        self.flush()
        if self.owned and self.stream is not None:
            self.stream.close()
        self.stream = None
