"""The gateway's access log: one JSON object per line per request (`serve.access_log`: stdout,
stderr, off, or a file appended to, created 0600).

A line carries what an operator asks of a request: method, path, status, latency, the provider
that answered and why others did not, time to first token, tokens, estimated cost, and the
client key's *name*. Never a key, never a prompt or an answer.

Lines are buffered and flushed at most every `FLUSH_S` (and at shutdown): a flush per line is
a system call per request, which showed in bench/bench_serve.py. A file or pipe is written by a
thread from a bounded queue, so a reader that stops reading never stalls the gateway.

Must not: raise into a request (a log that cannot be written is dropped, once said).
"""

from __future__ import annotations

import collections
import json
import logging
import os
import sys
import threading
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
    """Lines to a stream. A real file or pipe is written by a thread of its own from a bounded
    queue: a reader that stops reading (a stalled `| less`, a full pipe) must never block the
    event loop that answers requests. Past `MAX_QUEUED` waiting lines, new ones are dropped and
    counted. A stream without a file descriptor (a StringIO in tests) is written at once."""

    MAX_QUEUED = 10_000

    def __init__(self, target: str | TextIO | None, clock: Any = time.time) -> None:
        self.stream = open_target(target) if isinstance(target, str) else target
        self.owned = isinstance(target, str) and target not in ("stdout", "stderr", "off")
        self.clock = clock
        self.failed = False
        self.dropped = 0
        self.flushed = time.monotonic()
        self.queued: collections.deque[str] = collections.deque()
        self._wake = threading.Event()
        self._stop = threading.Event()
        self._writer: threading.Thread | None = None
        if self.stream is not None and _has_fd(self.stream):
            self._writer = threading.Thread(target=self._write_forever, name="gpuctl-access-log", daemon=True)
            self._writer.start()

    def write(self, fields: dict[str, Any]) -> None:
        stream = self.stream
        if stream is None:
            return
        line = json.dumps({"ts": round(self.clock(), 3), **fields}, separators=(",", ":"), default=str)
        if self._writer is not None:
            if len(self.queued) >= self.MAX_QUEUED:
                self.dropped += 1
                if self.dropped == 1:
                    logger.warning("the access log is not being read; lines are dropped until it is")
                return
            self.queued.append(line + "\n")
            return
        try:
            stream.write(line + "\n")
            now = time.monotonic()
            if now - self.flushed >= FLUSH_S:
                self.flushed = now
                stream.flush()
        except (OSError, ValueError):  # a closed pipe or file: the gateway keeps answering
            self._failed()

    def flush(self) -> None:
        """Push buffered lines out (the gateway calls this every `FLUSH_S`, and at shutdown);
        never waits on the stream: its writer thread does."""
        if self._writer is not None:
            self._wake.set()
        elif self.stream is not None:
            try:
                self.stream.flush()
            except (OSError, ValueError):
                self._failed()
        self.flushed = time.monotonic()

    def _write_forever(self) -> None:
        while not self._stop.is_set():
            self._wake.wait(FLUSH_S)
            self._wake.clear()
            self._write_queued()
        self._write_queued()

    def _write_queued(self) -> None:
        lines = []
        while self.queued:
            lines.append(self.queued.popleft())
        stream = self.stream
        if not lines or stream is None or self.failed:
            return
        try:
            stream.write("".join(lines))
            stream.flush()
        except (OSError, ValueError):
            self._failed()

    def _failed(self) -> None:
        if not self.failed:
            self.failed = True
            logger.warning("the access log cannot be written; lines are dropped from now on")

    def close(self, timeout: float = 2.0) -> None:
        """Write what is queued (for at most `timeout` seconds if the reader is stalled)."""
        if self._writer is not None:
            self._stop.set()
            self._wake.set()
            self._writer.join(timeout)
            if self._writer.is_alive():
                logger.warning("the access log's reader is stalled; its last lines are not written")
                return  # the thread owns the stream until its write returns
        else:
            self.flush()
        if self.owned and self.stream is not None:
            self.stream.close()
        self.stream = None


def _has_fd(stream: TextIO) -> bool:
    try:
        stream.fileno()
    except (OSError, ValueError, AttributeError):  # io.UnsupportedOperation is an OSError
        return False
    return True
