"""Vast.ai launches started through the admin API: each a task with an id that owns its
instance, whatever becomes of the request that started it.

`gpuctl.ops.launch` is synchronous (it polls Vast.ai for minutes), so a launch runs in a thread
of its own with its own state connection, exactly as `gpuctl launch --yes` runs it: the same
plan, budgets, retries and clean-up on failure. The request gets 202 and the id at once; the
client that asked may hang up or time out, and the launch goes on until its instance serves or
is destroyed. Only one launch runs at a time, across every worker (a lock file); each launch's
progress is a small JSON file under GPUCTL_HOME/serve/launches/, so any worker can answer
`GET /api/admin/vllm/launch/{id}`. Stopping one (DELETE, or the gateway shutting down) works as
Ctrl-C does for `gpuctl launch`: what was created is destroyed.

Must not: block the event loop, or run a second launch while one runs.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import json
import logging
import os
import re
import secrets
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from gpuctl.config import Settings
from gpuctl.errors import EXIT_INTERRUPTED, GpuctlError
from gpuctl.serve.errors import ApiError, api_error

logger = logging.getLogger("gpuctl.serve")
ID_RE = re.compile(r"^[0-9a-f]{16}$")
KEEP_MESSAGES = 20


class Stopped(KeyboardInterrupt):
    """Raised inside the launch (from its progress callback) to stop it as Ctrl-C would."""


class LaunchLock:
    """One launch at a time across processes: a non-blocking flock, taken by the request and
    released by the launch's thread when it ends (the kernel drops it if the process dies)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self.fd: int | None = None

    def take(self, launch_id: str) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            os.close(fd)
            if exc.errno in (errno.EWOULDBLOCK, errno.EAGAIN, errno.EACCES):
                return False
            raise
        os.ftruncate(fd, 0)
        os.write(fd, launch_id.encode())
        self.fd = fd
        return True

    def holder(self) -> str | None:
        """The id of the launch holding the lock (as it wrote it)."""
        try:
            text = self.path.read_text().strip()
        except OSError:
            return None
        return text if ID_RE.match(text) else None

    def release(self) -> None:
        if self.fd is not None:
            fcntl.flock(self.fd, fcntl.LOCK_UN)
            os.close(self.fd)
            self.fd = None


@dataclass
class Launch:
    """One launch's record, as `GET /api/admin/vllm/launch/{id}` shows it."""

    id: str
    request: dict[str, Any]
    started_at: float
    status: str = "planning"  # planning | launching | ready | failed | stopped
    message: str = "searching Vast.ai offers"
    progress: list[str] = field(default_factory=list)
    result: dict[str, Any] | None = None
    error: dict[str, Any] | None = None
    finished_at: float | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"id": self.id, "status": self.status, "running": self.finished_at is None,
                "message": self.message, "progress": list(self.progress), "request": self.request,
                "started_at": self.started_at, "finished_at": self.finished_at, "result": self.result,
                "error": self.error}


class Launches:
    """The admin API's launches. `settings` reads the current settings; `changed` is called
    (from the launch's thread) when an instance came up or went away, so routing can reload."""

    def __init__(self, home: Path, settings: Callable[[], Settings], changed: Callable[[], None],
                 clock: Callable[[], float] = time.time) -> None:
        self.dir = home / "serve" / "launches"
        self.lock = LaunchLock(home / "locks" / "serve-launch.lock")
        self.settings = settings
        self.changed = changed
        self.clock = clock
        self.stop_flags: dict[str, threading.Event] = {}
        self.threads: dict[str, threading.Thread] = {}

    def start(self, *, gpu: str | None, max_dph: float | None) -> dict[str, Any]:
        """Start a launch in the background and return its record (the 202 body); 409 while
        another runs (in any worker)."""
        settings = self.settings()
        from gpuctl.ops import launch as ops

        ops.check_max_dph(max_dph)
        if not settings.get("vastai.api_key"):
            from gpuctl.errors import CredentialsError

            raise CredentialsError("Vast.ai is not configured", hint="set VASTAI_API_KEY for the gateway")
        launch_id = secrets.token_hex(8)
        if not self.lock.take(launch_id):
            running = self.lock.holder()
            raise ApiError(409, f"launch {running or '?'} is still running: one launch at a time",
                           "conflict", "launch_running", extra={"running": running})
        record = Launch(launch_id, {"gpu": gpu, "max_dph": max_dph}, self.clock())
        self._save(record)
        stop = self.stop_flags[launch_id] = threading.Event()
        thread = threading.Thread(target=self._run, args=(settings, record, stop), name=f"gpuctl-launch-{launch_id}",
                                  daemon=True)
        self.threads[launch_id] = thread
        accepted = record.as_dict()
        thread.start()
        return accepted

    def plan(self, *, gpu: str | None, max_dph: float | None) -> dict[str, Any]:
        """A dry run (call it in a thread): the offers, the choice and the budget verdict."""
        from gpuctl.ops import launch as ops
        from gpuctl.state import open_for

        ops.check_max_dph(max_dph)
        settings = self.settings()
        with ops.session(settings) as vast, open_for(settings) as state:
            planned = vast.plan(state, gpu=gpu, max_dph=max_dph)
        data = planned.as_dict()
        try:
            ops.check_plan(planned.plan)
        except GpuctlError as exc:
            data.update(would_launch=False, why_not=exc.message)
        else:
            data.update(would_launch=True, why_not=None)
        return data

    def get(self, launch_id: str) -> dict[str, Any] | None:
        if not ID_RE.match(launch_id):
            return None
        try:
            data: dict[str, Any] = json.loads((self.dir / f"{launch_id}.json").read_text())
            return data
        except (OSError, ValueError):
            return None

    def running(self) -> str | None:
        """The id of the launch running now (in any worker), or None."""
        free = self.lock.take("0" * 16)
        if free:
            self.lock.release()
            return None
        return self.lock.holder()

    def stop(self, launch_id: str) -> dict[str, Any] | None:
        """Ask a running launch to stop (it destroys what it created); its record, or None."""
        record = self.get(launch_id)
        if record is None:
            return None
        if record.get("finished_at") is None:
            flag = self.stop_flags.get(launch_id)
            if flag is not None:
                flag.set()
            else:  # another worker runs it: it looks for this file at every progress step
                with contextlib.suppress(OSError):
                    (self.dir / f"{launch_id}.stop").touch(mode=0o600)
            record["message"] = "stopping: what was created is being destroyed"
        return record

    def shutdown(self, timeout: float) -> None:
        """Stop every launch of this process and wait (call it in a thread) up to `timeout`."""
        for flag in self.stop_flags.values():
            flag.set()
        deadline = time.monotonic() + timeout
        for thread in list(self.threads.values()):
            thread.join(max(0.0, deadline - time.monotonic()))

    # ---------------------------------------------------------------- the launch's thread

    def _run(self, settings: Settings, record: Launch, stop: threading.Event) -> None:
        from gpuctl.ops import launch as ops
        from gpuctl.state import open_for

        stop_file = self.dir / f"{record.id}.stop"

        def progress(message: str) -> None:
            if stop.is_set() or stop_file.exists():
                raise Stopped
            record.message = message
            record.progress = [*record.progress[-(KEEP_MESSAGES - 1):], message]
            self._save(record)

        created = False
        try:
            with ops.session(settings) as vast, open_for(settings) as state:
                planned = vast.plan(state, gpu=record.request["gpu"], max_dph=record.request["max_dph"],
                                    progress=progress)
                ops.check_plan(planned.plan)
                record.status, created = "launching", True
                self._save(record)
                # As `gpuctl launch --yes`: the whole tier fallback, within the budgets and max_dph.
                launched = vast.start(state, planned, wait=True, keep=False, escalate=True, progress=progress)
            record.status, record.result = "ready", launched.as_dict()
            record.message = "vLLM answers; the gateway routes to it now"
        except KeyboardInterrupt as exc:  # Stopped, or LaunchInterrupted's cause
            record.status, record.message = "stopped", "stopped before anything was created"
            record.error = {"message": str(exc) or record.message, "type": "stopped"}
        except GpuctlError as exc:
            stopped = exc.exit_code == EXIT_INTERRUPTED  # the launch's own "interrupted: destroyed …"
            record.status = "stopped" if stopped else "failed"
            record.message = exc.message
            error = api_error(exc)
            record.error = {"message": exc.message, "hint": exc.hint, "type": error.type, "status": error.status}
        except Exception as exc:  # a bug: the launch's own clean-up ran; say so plainly
            logger.exception("launch %s failed", record.id)
            record.status, record.message = "failed", f"internal error: {type(exc).__name__}"
            record.error = {"message": record.message, "type": "server_error"}
        finally:
            record.finished_at = self.clock()
            self._save(record)
            self.lock.release()
            self.stop_flags.pop(record.id, None)
            with contextlib.suppress(OSError):
                stop_file.unlink()
            if created:
                self.changed()

    def _save(self, record: Launch) -> None:
        self.dir.mkdir(parents=True, exist_ok=True, mode=0o700)
        path = self.dir / f"{record.id}.json"
        tmp = path.with_suffix(".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as fh:
            json.dump(record.as_dict(), fh, default=str)
        os.replace(tmp, path)
