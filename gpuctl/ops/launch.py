"""`gpuctl launch`: plan a Vast.ai launch (offers, choice, budgets), then rent and watch it.

Two steps on one Vast.ai client, because the command asks the user in between: `session`
opens the client (a missing API key fails here, before anything is shown), `plan` reads only,
`start` rents (`gpuctl.vastai.launch` holds the safety argument). The state is the caller's
(the command context).

`launch_yes` is the same launch as `gpuctl launch --yes` for code that has no terminal (the
gateway's admin API, a script): plan, refuse a plan over budget or without an offer, rent,
and go on down the tiers within the budget; progress arrives through a callback (raise from it
to abort: what was created is destroyed). Never prints, never exits.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gpuctl.config import Settings
from gpuctl.state import State
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.instances import open_client
from gpuctl.vastai.launch import Escalate, Escalation, LaunchResult, launch, legacy_note_due
from gpuctl.vastai.plan import LaunchPlan, check_max_dph, check_plan, plan_launch

# Besides the session, the command needs the flag check before any API call, the plan check
# before it asks, the one question a dearer tier may need, and the note.
__all__ = ["Escalation", "LaunchSession", "Launched", "check_max_dph", "check_plan", "launch_yes",
           "legacy_note", "session"]


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

    def check(self) -> None:
        """Raise (with this plan as the error's data) unless a real launch would proceed: no
        acceptable offer, or over a budget. A dry run that would not proceed is an error too."""
        check_plan(self.plan, data=self.as_dict())


@dataclass(frozen=True)
class LaunchSession:
    settings: Settings
    client: VastAIClient

    def plan(self, state: State, *, gpu: str | None = None, max_dph: float | Decimal | None = None,
             progress: Callable[[str], None] = lambda m: None, forget_excluded: bool = False) -> Launched:
        """The offers, the choice and the budget verdict; nothing is created (a dry run's data).
        `forget_excluded`: as if no machine were excluded (the launch then forgets them)."""
        return Launched(plan_launch(self.settings, self.client, state, gpu=gpu, max_dph=max_dph, progress=progress,
                                    forget_excluded=forget_excluded))

    def start(self, state: State, planned: Launched, *, wait: bool = True, keep: bool = False,
              escalate: Escalate = False, progress: Callable[[str], None] = lambda m: None) -> Launched:
        """Rent from the confirmed plan. After a failed box the next offer is tried; past what the
        plan confirmed (its tier, its $/h + 25% or --max-dph) only as `escalate` allows: True
        (`--yes`: anything within the budgets), False (stop), or a question asked once."""
        result = launch(self.settings, planned.plan, client=self.client, state=state, wait=wait, keep=keep,
                        escalate=escalate, progress=progress)
        return Launched(planned.plan, result)


@contextlib.contextmanager
def session(settings: Settings) -> Iterator[LaunchSession]:
    """The Vast.ai client for one launch (CredentialsError without an API key), closed after."""
    with open_client(settings) as client:
        yield LaunchSession(settings, client)


def launch_yes(settings: Settings, state: State, *, gpu: str | None = None, max_dph: float | Decimal | None = None,
               dry_run: bool = False, wait: bool = True,
               progress: Callable[[str], None] = lambda m: None) -> Launched:
    """`gpuctl launch --yes` for code: the plan (a dry run stops there), then the launch with the
    whole tier fallback within the budgets and `max_dph`. Raises what the command would:
    UsageError (a bad `max_dph`), CredentialsError, BudgetError / ProviderError (with `data`)."""
    check_max_dph(max_dph)
    with session(settings) as vast:
        planned = vast.plan(state, gpu=gpu, max_dph=max_dph, progress=progress)
        planned.check()
        if dry_run:
            return planned
        return vast.start(state, planned, wait=wait, escalate=True, progress=progress)


def legacy_note(settings: Settings, *, now: float | None = None) -> str | None:
    """The legacy-provider note, at most once a day (None when it was shown already)."""
    return legacy_note_due(settings.home, time.time() if now is None else now)
