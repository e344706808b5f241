"""One launch's creates of unknown outcome (a 5xx, a timeout, a dropped connection): looking
for a create's label in the instance list for a while (a create still in flight at Vast may be
listed late), and the later looks that destroy one that shows up after all (a second box
nobody asked for), settling its row with its cost. What is never seen stays `unconfirmed` in the
ledger for cleanup (`gpuctl.vastai.unconfirmed` has its rule).

Kept apart from `attempt.py` (which decides to hold a row and goes on) because watching the
list for what may exist is a unit of its own. Must not: create anything, mark a row
never-created, print or exit.
"""

from __future__ import annotations

from collections.abc import Callable

from gpuctl.errors import ProviderError
from gpuctl.events import log_event
from gpuctl.state import State
from gpuctl.vastai.api_types import Instance
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.instances import destroy_remote, mark_destroyed


class HeldCreates:
    """The creates of unknown outcome of one launch not seen yet (ledger row → label)."""

    def __init__(self, client: VastAIClient, state: State, *, clock: Callable[[], float],
                 sleep: Callable[[float], None], progress: Callable[[str], None], lookup_s: float,
                 poll_s: float) -> None:
        self.client, self.state, self.clock, self.sleep, self.progress = client, state, clock, sleep, progress
        self.lookup_s, self.poll_s = lookup_s, poll_s
        self.rows: dict[int, str] = {}

    def hold(self, row_id: int, label: str) -> None:
        self.rows[row_id] = label

    def look_for(self, label: str) -> tuple[Instance | None, str | None]:
        """Our label in the instance list, polled for up to `lookup_s`: a create still in
        flight at Vast may be listed late. Returns (instance or None, the last list error)."""
        deadline = self.clock() + self.lookup_s
        while True:
            list_error = None
            try:
                found = self.find(label)
            except ProviderError as exc:
                found, list_error = None, exc.message
            if found is not None or self.clock() >= deadline:
                return found, list_error
            self.progress(f"The create's outcome is unknown: looking for {label} in the instance list…")
            self.sleep(self.poll_s)

    def find(self, label: str) -> Instance | None:
        """One look. None only means "not listed now", never "not created"."""
        return next((i for i in self.client.list_instances() if i.label == label), None)

    def recheck(self) -> list[tuple[int, int, str | None]]:
        """One more look for this launch's unconfirmed creates: one that is listed now is
        destroyed (a second box nobody asked for) and its row settled with its cost. Returns
        (ledger row, instance id, cost) of each one destroyed; the others stay for cleanup."""
        if not self.rows:
            return []
        try:
            listed = {i.label: i for i in self.client.list_instances() if i.label in self.rows.values()}
        except ProviderError:
            return []  # cleanup will look again
        done: list[tuple[int, int, str | None]] = []
        for row_id, label in list(self.rows.items()):
            inst = listed.get(label)
            row = self.state.get_instance(row_id)
            if inst is None or row is None:
                continue
            del self.rows[row_id]
            self.state.set_instance_remote_id(row_id, str(inst.id))
            self.progress(f"Instance {inst.id} (the create of unknown outcome) is listed after all: destroying it…")
            try:
                destroy_remote(self.client, inst.id)
            except ProviderError as exc:  # a row with an id now: cleanup destroys it as an abandoned launch
                self.state.update_instance(row_id, status="failed",
                                           status_msg=f"listed late; destroy failed: {exc.message}"[:500])
                continue
            cost = mark_destroyed(self.state, row, self.clock(), dph=inst.dph_total,
                                  note="a create of unknown outcome, listed late: destroyed")
            log_event("vastai_unconfirmed_destroyed", instance_id=inst.id, ledger_row=row_id,
                      cost=None if cost is None else str(cost))
            done.append((row_id, inst.id, None if cost is None else str(cost)))
        return done

