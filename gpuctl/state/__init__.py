"""The only package that opens the database: instances, the usage ledger, breaker state,
conversations, per-provider metrics, and the locks that must hold across processes and hosts.

Two backends, one schema: by default the SQLite file `GPUCTL_HOME/state.db` (WAL mode, so a
cron `gpuctl cleanup` and a running `gpuctl chat` share it; zero setup), or with `state.url`
(`GPUCTL_STATE_URL`) = `postgresql://...` one PostgreSQL database that several hosts share:
one budget, one set of breakers, one ledger for `cleanup` and `cost report`. The modules:
`store` (State and its SQL), `memory` (the request path's part of it), `hot` (batching and
caches for the shared backend), `sqlite` / `pg` (the backends; `pg_migrate` and `pg_faults`
beside the latter: its migrations on open, and its deadlines on a hung server), `schema` (the migrations),
`rows` (the dataclasses), `url` (state.url), `errors`, `transfer` (`gpuctl state migrate`).
Callers import everything from `gpuctl.state`. Time is injectable (`clock`) so tests never sleep.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from gpuctl.state.errors import StateDamagedError, StateUnavailableError
from gpuctl.state.rows import (
    LIVE_STATUSES,
    BreakerRecord,
    ConversationRow,
    ConversationSummary,
    InstanceRow,
    MessageRow,
    UsageGroup,
    UsageRecord,
    UsageSummary,
    UsageTimes,
    rows_as_dicts,
)
from gpuctl.state.schema import MIGRATIONS
from gpuctl.state.store import State, StateInfo
from gpuctl.state.url import Location, parse_location

__all__ = [
    "LIVE_STATUSES",
    "MIGRATIONS",
    "BreakerRecord",
    "ConversationRow",
    "ConversationSummary",
    "InstanceRow",
    "Location",
    "MessageRow",
    "State",
    "StateDamagedError",
    "StateInfo",
    "StateUnavailableError",
    "UsageGroup",
    "UsageRecord",
    "UsageSummary",
    "UsageTimes",
    "location_for",
    "open_for",
    "open_location",
    "open_state",
    "rows_as_dicts",
    "state_exists",
    "state_path",
]


def state_path(home: Path) -> Path:
    return home / "state.db"


def open_state(home: Path, *, clock: Callable[[], float] = time.time) -> State:
    """The SQLite state of a GPUCTL_HOME (tests and tools; commands use `open_for`)."""
    return State(state_path(home), clock=clock)


def location_for(settings: Any) -> Location:
    """Where the state of these settings lives (`state.url`, else GPUCTL_HOME/state.db)."""
    return parse_location(settings.get("state.url"), settings.home)


def state_exists(settings: Any) -> bool:
    """Whether there is a state to read without creating one: the SQLite file exists, or a
    shared database is configured."""
    location = location_for(settings)
    return location.path is None or location.path.exists()


def open_location(location: Location, home: Path, *, clock: Callable[[], float] = time.time,
                  settings: Any = None) -> State:
    """The state at `location`, with the timeouts and host name of `settings` if given."""
    get = settings.get if settings is not None else (lambda _key, default=None: default)
    return State(location=location, clock=clock, host=get("state.host"),
                 lock_timeout_s=float(get("state.lock_timeout_s", 30.0)),
                 connect_timeout_s=float(get("state.connect_timeout_s", 5.0)), spool_dir=home / "spool")


def open_for(settings: Any, *, clock: Callable[[], float] = time.time) -> State:
    """The one way code gets the state for resolved settings (the command context, the backend
    manager, the original package's orchestrators): the backend `state.url` names (SQLite in
    GPUCTL_HOME by default), GPUCTL_HOME created if needed, with a clear error when it cannot
    be; a damaged or newer database is one line (StateDamagedError, exit 3)."""
    from gpuctl.config import ensure_home

    home = ensure_home(settings.home)
    return open_location(location_for(settings), home, clock=clock, settings=settings)
