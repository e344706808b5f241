"""`gpuctl destroy [vastai] [ID | LABEL | --all] [--force]`: which Vast.ai instances to destroy,
then destroying them (`gpuctl.vastai.destroy` holds the rules: only what gpuctl created, and
neither the list nor the ledger alone is trusted).

`request` reads the arguments (usage errors before anything is opened); then, on one Vast.ai
client because the command shows the targets and asks in between, `session` opens the client
(a missing API key fails here), `plan` reads the list and the ledger, `execute` destroys. The
state is the caller's (the command context). `destroy modal` is `gpuctl.ops.deploy`'s.
Never prints, never exits.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from dataclasses import dataclass

from gpuctl.config import Settings
from gpuctl.errors import UsageError
from gpuctl.state import State
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.destroy import DestroyPlan, DestroyReport, execute_destroy, plan_destroy
from gpuctl.vastai.instances import is_gpuctl_label, open_client
from gpuctl.vastai.launch import legacy_note_due

__all__ = ["DestroyRequest", "DestroySession", "legacy_note", "request", "session"]


@dataclass(frozen=True)
class DestroyRequest:
    """What the user named: one instance id, one gpuctl label, or --all."""

    instance_id: int | None = None
    label: str | None = None
    all_: bool = False
    force: bool = False


def request(target: str, instance_id: str | None, *, all_: bool, force: bool) -> DestroyRequest:
    """`gpuctl destroy 12345`, `gpuctl destroy gpuctl:dev:1a2b…`, `gpuctl destroy [vastai] ID`
    or `gpuctl destroy --all`; anything else is a usage error."""
    label = None
    if target.isdigit() or is_gpuctl_label(target):
        if instance_id is not None or all_:
            raise UsageError(f"{target!r} names one instance: no other argument or --all",
                             hint="`gpuctl destroy [vastai] [ID | LABEL | --all] [--force]`")
        instance_id, label = (target, None) if target.isdigit() else (None, target)
    elif target.lower() not in ("vastai", "vast"):
        raise UsageError(f"unknown target {target!r}", hint="modal, vastai, a Vast.ai instance id, or a gpuctl label")
    if instance_id is not None and not instance_id.isdigit():
        raise UsageError(f"a Vast.ai instance id is a number, got {instance_id!r}")
    if label is None and (instance_id is None) == (not all_):
        raise UsageError("name one Vast.ai instance id, or pass --all (not both)",
                         hint="e.g. `gpuctl destroy 12345` or `gpuctl destroy --all --yes`")
    return DestroyRequest(int(instance_id) if instance_id else None, label, all_, force)


@dataclass(frozen=True)
class DestroySession:
    settings: Settings
    client: VastAIClient

    def plan(self, state: State, asked: DestroyRequest) -> DestroyPlan:
        """The targets, read from the instance list and the ledger; nothing is destroyed."""
        return plan_destroy(self.client, state, instance_id=asked.instance_id, all_=asked.all_, label=asked.label,
                            force=asked.force)

    def execute(self, state: State, planned: DestroyPlan) -> DestroyReport:
        """Destroy every target; PartialError or ActionsFailed (with the results as `data`) when
        some or all failed; DestroyInterrupted on Ctrl-C, saying what state each target is in."""
        return execute_destroy(self.client, state, planned, home=self.settings.home)


@contextlib.contextmanager
def session(settings: Settings) -> Iterator[DestroySession]:
    """The Vast.ai client for one destroy (CredentialsError without an API key), closed after."""
    with open_client(settings) as client:
        yield DestroySession(settings, client)


def legacy_note(settings: Settings, *, now: float | None = None) -> str | None:
    """The legacy-provider note, at most once a day (None when it was shown already)."""
    return legacy_note_due(settings.home, time.time() if now is None else now)
