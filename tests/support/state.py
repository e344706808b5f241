"""The state backends the state tests run against (parametrised in tests/state/conftest.py):
the SQLite file and a PostgreSQL database, each openable here and from a subprocess."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from gpuctl.state import Location, State, open_location, parse_location


@dataclass(frozen=True)
class StateBackend:
    kind: str  # "sqlite" | "postgresql"
    url: str  # state.url: sqlite:///path or postgresql://...
    home: Path  # a GPUCTL_HOME (the spool lives there)

    @property
    def location(self) -> Location:
        return parse_location(self.url, self.home)

    def open(self, *, clock: Callable[[], float] = time.time, home: Path | None = None) -> State:
        return open_location(self.location, home or self.home, clock=clock)

    def env(self, home: Path | None = None) -> dict[str, str]:
        """What a gpuctl process needs to use this state (another host: another home)."""
        return {"GPUCTL_STATE_URL": self.url, "GPUCTL_HOME": str(home or self.home)}


# A subprocess opens the same state: `python -c OPEN_IN_CHILD + code URL HOME ...`.
OPEN_IN_CHILD = (
    "import sys\nfrom pathlib import Path\nfrom gpuctl.state import open_location, parse_location\n"
    "def open_child():\n"
    "    home = Path(sys.argv[2])\n"
    "    return open_location(parse_location(sys.argv[1], home), home)\n"
)
