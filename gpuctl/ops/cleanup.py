"""`gpuctl cleanup`, for cron: one Vast.ai cleanup pass (`gpuctl.vastai.cleanup` holds the
rules), and the Modal apps kept warm, which bill while idle.

Modal scales itself; only an always-warm app bills while idle. Keeping one warm is the user's
choice, so cleanup reports it rather than stopping a live endpoint. The Vast.ai pass opens its
own state (`gpuctl.state.open_for`) only once it holds the cleanup lock, so a second cron run
returns at once without touching the ledger. Never prints, never exits.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from gpuctl.config import Settings
from gpuctl.errors import GpuctlError
from gpuctl.vastai.cleanup import CleanupReport, check_max_idle, failure_error, run_cleanup

__all__ = ["Cleaned", "check_max_idle", "cleanup"]


@dataclass(frozen=True)
class Cleaned:
    report: CleanupReport
    modal_warm: list[dict[str, Any]] = field(default_factory=list)  # see `ops.deploy.warm_deployments`

    def as_dict(self) -> dict[str, Any]:
        data = self.report.as_dict()
        data["modal_warm"] = self.modal_warm
        return data

    def error(self) -> GpuctlError | None:
        """What the run raises once shown: PartialError (exit 4) when some action was done,
        ActionsFailed (exit 1) when none was; each carries the data for --json."""
        return failure_error(self.report, self.as_dict())


def cleanup(settings: Settings, *, dry_run: bool = False, max_idle_minutes: float | None = None) -> Cleaned:
    """One cleanup pass, then the warm Modal apps; raises ProviderError when Vast.ai's list
    cannot be read (nothing is destroyed then)."""
    from gpuctl.ops.deploy import warm_deployments

    report = run_cleanup(settings, dry_run=dry_run, max_idle_minutes=max_idle_minutes)
    return Cleaned(report, warm_deployments(settings))
