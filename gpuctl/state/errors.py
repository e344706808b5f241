"""The state's own leaves of the error tree (gpuctl.errors), each naming the database and the fix.

- `StateDamagedError` (exit 3, a ConfigError): the database cannot be used as it is: not a
  database, damaged, at a newer schema than this gpuctl knows, or locked for too long.
- `StateUnavailableError` (exit 1): a shared (PostgreSQL) state cannot be reached, or the
  connection dropped inside a transaction (which was rolled back, never half-applied).

Pure: no driver imports here (the backends translate their own exceptions into these).
"""

from __future__ import annotations

from gpuctl.errors import ConfigError, GpuctlError


class StateDamagedError(ConfigError):
    """The state database is damaged, newer than this gpuctl, or locked: one line, exit 3."""


class StateUnavailableError(GpuctlError):
    """The shared state database cannot be reached (or dropped mid-transaction): exit 1."""


def newer_schema(where: str, found: int, known: int) -> StateDamagedError:
    return StateDamagedError(
        f"the state database {where} is at schema version {found}, newer than this gpuctl knows ({known})",
        hint="upgrade gpuctl (every host that shares the state must run the same or a newer one)",
    )
