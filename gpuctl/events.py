"""Structured events, named as the original package logged them (`modal_chat_completion`,
`vllm_health_check_failed`, ...).

Code anywhere calls `log_event(name, **fields)`; `cli/main.py` decides where events go (stderr at
-v, and the JSON-lines file `GPUCTL_HOME/logs/gpuctl.jsonl`). Secrets are masked before writing.
"""

from __future__ import annotations

import json
import logging
import os
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from gpuctl.redact import redact_mapping

logger = logging.getLogger("gpuctl.events")


def log_event(event: str, **fields: Any) -> None:
    """Record one event. Cheap when nobody listens."""
    if logger.isEnabledFor(logging.INFO):
        logger.info(event, extra={"gpuctl_event": event, "gpuctl_fields": fields})


class JsonLinesHandler(logging.Handler):
    """Appends one JSON object per event to a 0600 file, opened on first use."""

    def __init__(self, path: Path) -> None:
        super().__init__(level=logging.INFO)
        self.path = path
        self.broken = False

    def handleError(self, record: logging.LogRecord) -> None:
        # One line, once: an unwritable log must not bury the command's output in stack dumps.
        if not self.broken:
            self.broken = True
            import sys

            sys.stderr.write(f"Warning: cannot write the event log {self.path}; events are not recorded\n")

    def emit(self, record: logging.LogRecord) -> None:
        event = getattr(record, "gpuctl_event", None)
        if event is None or self.broken:
            return
        fields = getattr(record, "gpuctl_fields", {})
        line = {"event": event, **redact_mapping({k: _plain(v) for k, v in fields.items()}),
                "timestamp": datetime.fromtimestamp(record.created, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")}
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
            with os.fdopen(fd, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(line, default=str) + "\n")
        except OSError:
            self.handleError(record)


def _plain(value: Any) -> Any:
    if isinstance(value, (str, int, float, bool)) or value is None:
        return value
    if isinstance(value, dict):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return str(value)


def event_log_path(home: Path) -> Path:
    return home / "logs" / "gpuctl.jsonl"
