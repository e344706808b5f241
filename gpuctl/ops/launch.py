"""`gpuctl launch`: plan a Vast.ai launch (offers, choice, budgets), then rent and watch it.

Two steps on one Vast.ai client, because the command asks the user in between: `session`
opens the client (a missing API key fails here, before anything is shown), `plan` reads only,
`start` rents (`gpuctl.vastai.launch` holds the safety argument). The state is the caller's
(the command context). Never prints, never exits.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gpuctl.config import Settings
from gpuctl.state import State
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.instances import open_client
from gpuctl.vastai.launch import LEGACY_NOTE, LaunchResult, launch
from gpuctl.vastai.plan import LaunchPlan, check_max_dph, check_plan, plan_launch

# Besides the session, the command needs the flag check before any API call, the plan check
# before it asks, and the note.
__all__ = ["LEGACY_NOTE", "LaunchSession", "Launched", "check_max_dph", "check_plan", "session"]


@dataclass(frozen=True)
class Launched:
    """A launch's data: its plan, and the instance (None for a dry run)."""

    plan: LaunchPlan
    instance: LaunchResult | None = None

    def as_dict(self) -> dict[str, Any]:
        data: dict[str, Any] = {"dry_run": self.instance is None, "plan": self.plan.as_dict()}
        if self.instance is not None:
            data["instance"] = self.instance.as_dict()
        return data


@dataclass(frozen=True)
class LaunchSession:
    settings: Settings
    client: VastAIClient

    def plan(self, state: State, *, gpu: str | None = None, max_dph: float | Decimal | None = None,
             progress: Callable[[str], None] = lambda m: None) -> Launched:
        """The offers, the choice and the budget verdict; nothing is created (a dry run's data)."""
        return Launched(plan_launch(self.settings, self.client, state, gpu=gpu, max_dph=max_dph, progress=progress))

    def start(self, state: State, planned: Launched, *, wait: bool = True, keep: bool = False,
              progress: Callable[[str], None] = lambda m: None) -> Launched:
        """Rent from the confirmed plan; retries stay within its price and tier."""
        result = launch(self.settings, planned.plan, client=self.client, state=state, wait=wait, keep=keep,
                        progress=progress)
        return Launched(planned.plan, result)


@contextlib.contextmanager
def session(settings: Settings) -> Iterator[LaunchSession]:
    """The Vast.ai client for one launch (CredentialsError without an API key), closed after."""
    with open_client(settings) as client:
        yield LaunchSession(settings, client)
