"""What one `gpuctl cleanup` run reports: an `Action` per instance or ledger row judged, the
`CleanupReport` of the run, and the error a run with failed actions raises (partial, exit 4,
or none done, exit 1). Pure data; `gpuctl.vastai.cleanup` makes them. Must not print.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

from gpuctl.errors import GpuctlError, PartialError, UsageError
from gpuctl.vastai.instances import ActionsFailed


@dataclass(frozen=True)
class Action:
    """What cleanup decided for one instance (or ledger row), and what came of it."""

    instance_id: int | None
    ledger_row: int | None
    label: str | None
    gpu: str | None
    remote_status: str | None
    action: str  # destroy | keep | mark_gone | mark_never_created | promote
    reason: str
    result: str = ""  # destroyed | already_gone | would_destroy | kept | marked | would_mark | promoted | would_promote | failed
    cost: str | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return dict(self.__dict__)


@dataclass(frozen=True)
class CleanupReport:
    dry_run: bool
    actions: tuple[Action, ...] = field(default=())
    skipped: bool = False
    message: str = ""
    spent: str | None = None  # what the instances cost (held rows excluded: `unconfirmed.charged`)
    budget_limit: str | None = None
    held: str | None = None  # what creates of unknown outcome hold against the budget (not spent)

    @property
    def failed(self) -> list[Action]:
        return [a for a in self.actions if a.result == "failed"]

    @property
    def done(self) -> list[Action]:
        """Actions that changed something (a decision to keep is not one)."""
        return [a for a in self.actions if a.result in ("destroyed", "already_gone", "marked", "promoted")]

    def as_dict(self) -> dict[str, Any]:
        count = {r: sum(a.result == r for a in self.actions)
                 for r in ("destroyed", "already_gone", "would_destroy", "kept", "marked", "promoted", "failed")}
        return {"skipped": self.skipped, "message": self.message, "dry_run": self.dry_run,
                "actions": [a.as_dict() for a in self.actions], "counts": count,
                "spent": self.spent, "budget_limit": self.budget_limit, "held": self.held}


def check_max_idle(minutes: float | None) -> None:
    """--max-idle: NaN or infinity would keep idle instances billing forever (NaN compares
    false with everything); negative is meaningless. 0 is fine: destroy whatever is idle."""
    if minutes is not None and (not math.isfinite(minutes) or minutes < 0):
        raise UsageError(f"--max-idle must be a finite number of minutes, 0 or more (got {minutes:g})")


def failure_error(report: CleanupReport, data: Any) -> GpuctlError | None:
    """What a run with failed actions raises: PartialError (exit 4) when some action was done,
    else ActionsFailed (exit 1: nothing succeeded), each carrying `data` for --json."""
    failed = report.failed
    if not failed:
        return None
    ids = ", ".join(str(a.instance_id) if a.instance_id is not None else f"ledger row {a.ledger_row}" for a in failed)
    message = f"{len(failed)} of {len(report.actions)} cleanup action(s) failed (instances {ids})"
    hint = "they may still bill: run `gpuctl cleanup` again, or destroy them at https://console.vast.ai"
    if report.done:
        return PartialError(message, hint=hint, data=data)
    return ActionsFailed(message, hint=hint, data=data)
