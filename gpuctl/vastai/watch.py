"""Watching one new Vast.ai instance until vLLM on it can generate.

First the status polls (a few failed ones in a row are tolerated), each one kept in step in the
ledger (as a status cleanup knows) and its live price recorded (a host can raise it); a CDI
injection failure, an exited container, or loading past `LOADING_TIMEOUT_S` means a bad host.
Then, once `running` maps the port, the one vLLM readiness probe
(`providers.openai_compat.probe_vllm`: /health and a 1-token completion with the model name)
until `HEALTH_TIMEOUT_S`, still checking that the container has not exited.

Every poll also checks that nobody else took the instance away: `gpuctl destroy` (or cleanup)
marks the ledger row destroyed, and asks a watching launch to stop before its destroy request
(`instances.request_destroy`); either is `WatchFailed(destroyed=True)`: the launch stops and
never rents a replacement. An instance that vanishes otherwise is an ordinary failure. A live
price the launch does not accept (`price_check`: above its cap, or past a budget) fails the
attempt too; the machine is not to blame.

Every way this fails is raised as `WatchFailed`: why, and whether the machine is to blame. The
attempt (`attempt.py`) destroys the instance and settles its row. Must not: create or destroy
anything, print or exit. Time and the probe are injectable.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import NoReturn

from gpuctl.errors import ProviderError
from gpuctl.providers.base import Health
from gpuctl.providers.openai_compat import PROBE_TIMEOUT_S
from gpuctl.state import State
from gpuctl.vastai.api_types import Instance
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.instances import PROVIDER, destroy_requested, record_live_price

# The original system's limit: an instance still loading after 10 minutes is on a bad host.
LOADING_TIMEOUT_S = 10 * 60
# After `running`: weights download + load (7-15 minute cold starts on the original system).
HEALTH_TIMEOUT_S = 20 * 60
MAX_SHOW_ERRORS = 3  # consecutive failed status polls before the attempt is given up
CDI_MARKER = "failed to inject cdi devices"

# (endpoint, vLLM API key, model) → Health; raises ProviderError(kind="auth") when vLLM refuses
# the key (the one answer that waiting will not change).
Probe = Callable[[str, str | None, str | None], Health]
# The live $/h → why the launch does not accept it (None: it does).
PriceCheck = Callable[[Decimal], str | None]


def probe_vllm(endpoint: str, api_key: str | None, model: str | None, *, timeout: float = PROBE_TIMEOUT_S) -> Health:
    """The shared vLLM readiness probe (`providers.openai_compat.probe_vllm`) for a Vast.ai box."""
    from gpuctl.providers.openai_compat import probe_vllm as probe

    return probe(endpoint, api_key, model, provider=PROVIDER, timeout=timeout)


def ledger_status(actual_status: str | None) -> str:
    """Vast's `actual_status` as a ledger status cleanup knows: created, loading or running
    (Vast has more, e.g. `scheduling`, `offline`; `exited` is acted on before it is stored)."""
    if actual_status == "running":
        return "running"
    if actual_status in (None, "created"):
        return "created"
    return "loading"


class WatchFailed(Exception):
    """The instance will not serve: `reason` for the ledger and the user, `exclude` when its
    machine is to blame (not rented again for a day), `fatal` when no other offer would do better,
    `destroyed` when another gpuctl command destroyed it (stop; never replace it), `exit_msg`
    the container's own exit message (the same one from two machines is the configuration's)."""

    def __init__(self, reason: str, *, exclude: bool, fatal: ProviderError | None = None, destroyed: bool = False,
                 exit_msg: str | None = None) -> None:
        super().__init__(reason)
        self.reason, self.exclude, self.fatal, self.destroyed = reason, exclude, fatal, destroyed
        self.exit_msg = exit_msg


@dataclass(frozen=True)
class WatchSetup:
    """What every watch of one launch shares."""

    client: VastAIClient
    state: State
    port: int  # vLLM's container port, mapped to a host port once `running`
    vllm_key: str | None
    model: str
    clock: Callable[[], float]
    sleep: Callable[[float], None]
    progress: Callable[[str], None]
    probe: Probe | None = None  # None: `probe_vllm`
    poll_s: float = 5.0
    loading_timeout_s: float = LOADING_TIMEOUT_S
    health_timeout_s: float = HEALTH_TIMEOUT_S


class Watch:
    """One instance (ledger row `row_id` labelled `label`, created from an offer on `machine_id`
    at `offer_dph`); `price_check` judges a live price above that."""

    def __init__(self, setup: WatchSetup, *, row_id: int, instance_id: int, machine_id: int, label: str = "",
                 offer_dph: Decimal | None = None, price_check: PriceCheck | None = None) -> None:
        self.setup, self.row_id, self.instance_id, self.machine_id = setup, row_id, instance_id, machine_id
        self.label, self.offer_dph, self.price_check = label, offer_dph, price_check
        self.errors: list[str] = []  # the failed status polls in a row

    def until_ready(self) -> str:
        """The endpoint once vLLM answers; raises WatchFailed (or an auth ProviderError from a
        status poll) otherwise."""
        endpoint = self.until_running()
        self.setup.state.update_instance(self.row_id, status="running", endpoint=endpoint)
        self.until_vllm_answers(endpoint)
        return endpoint

    def check_not_destroyed(self) -> None:
        """WatchFailed(destroyed=True) if `gpuctl destroy` (or cleanup) took this instance:
        its row is marked destroyed, or a destroy of its label was requested."""
        s = self.setup
        row = s.state.get_instance(self.row_id)
        if self.label and destroy_requested(s.state, self.label):
            why = "destroyed by `gpuctl destroy` while the launch watched it"
        elif row is None or not row.live:
            why = f"destroyed while the launch watched it ({(row.status_msg if row else None) or 'its ledger row is closed'})"
        else:
            return
        raise WatchFailed(f"instance {self.instance_id} was {why}; not replaced", exclude=False, destroyed=True)

    def vanished(self) -> NoReturn:
        """The show answers null: gone by another gpuctl command's hand, or by the host's."""
        s = self.setup
        self.check_not_destroyed()
        # A destroy marks the row just after its request, and a shared state's cache may lag a
        # second: look again one poll later before blaming the host.
        s.sleep(s.poll_s)
        self.check_not_destroyed()
        # Believe "gone" only after a destroy: it is idempotent, and a show that answers null by
        # mistake must not leave a billing instance marked destroyed.
        raise WatchFailed("the instance disappeared from the account", exclude=False)

    def show(self) -> Instance:
        """One status poll; a few transient API errors in a row are tolerated."""
        s = self.setup
        while True:
            self.check_not_destroyed()
            try:
                inst = s.client.get_instance(self.instance_id)
            except ProviderError as exc:
                if exc.kind == "auth":
                    raise
                self.errors.append(exc.message)
                if len(self.errors) >= MAX_SHOW_ERRORS:
                    raise WatchFailed(f"its status could not be read ({exc.message})", exclude=False) from None
                s.sleep(s.poll_s)
                continue
            self.errors.clear()
            if inst is None:
                self.vanished()
            if inst.dph_total is not None:  # a host can raise the price: budgets charge the higher
                self.check_price(inst.dph_total)
            return inst

    def check_price(self, live: Decimal) -> None:
        """Record the live price; one above the offer's that the launch does not accept fails
        the attempt (the host is not to blame for asking more, but it is not rented at that)."""
        s = self.setup
        row = s.state.get_instance(self.row_id)
        assert row is not None
        record_live_price(s.state, row, live)
        if self.price_check is not None and self.offer_dph is not None and live > self.offer_dph:
            refused = self.price_check(live)
            if refused is not None:
                raise WatchFailed(refused, exclude=False)

    def check_boot(self, inst: Instance) -> None:
        msg = inst.status_msg or ""
        if CDI_MARKER in msg.lower():
            raise WatchFailed(f"CDI injection failure on machine {self.machine_id} (a bad host)", exclude=True)
        if inst.actual_status == "exited" or inst.intended_status == "stopped":
            self.check_not_destroyed()  # a box being destroyed may show as exited first
            raise WatchFailed(f"the container exited ({msg or 'no message'})", exclude=True, exit_msg=msg or None)

    def until_running(self) -> str:
        """Status polls until `running` with vLLM's port mapped: the endpoint."""
        s = self.setup
        created = s.clock()
        last: tuple[str | None, str | None] = ("created", None)
        while True:
            inst = self.show()
            status, msg = inst.actual_status, inst.status_msg
            if (status, msg) != last:
                # Only statuses cleanup knows go in the ledger; Vast's own word goes in the note.
                note = msg if ledger_status(status) == (status or "created") else f"Vast status {status}: {msg or ''}"
                s.state.update_instance(self.row_id, status=ledger_status(status), status_msg=note)
                last = (status, msg)
            self.check_boot(inst)
            endpoint = inst.endpoint(s.port) if status == "running" else None
            if endpoint:
                return endpoint
            waited = s.clock() - created
            if waited > s.loading_timeout_s:
                raise WatchFailed(f"stuck in {status or 'created'} for over {s.loading_timeout_s / 60:g} minutes "
                                  f"({msg or 'no message'})", exclude=True)
            # the spinner shows the elapsed time itself
            s.progress(f"Instance {self.instance_id}: {status or 'created'} — {msg or 'waiting for the host'}")
            s.sleep(s.poll_s)

    def until_vllm_answers(self, endpoint: str) -> None:
        """The readiness probe until vLLM generates, within the health deadline."""
        s = self.setup
        probe = s.probe or probe_vllm
        running = s.clock()
        while True:
            try:
                health = probe(endpoint, s.vllm_key, s.model)
            except ProviderError as exc:
                if exc.kind == "auth":
                    fatal = ProviderError(f"vLLM on instance {self.instance_id} refused gpuctl's API key "
                                          f"({exc.message})", provider=PROVIDER, kind="auth",
                                          hint="unset vastai.vllm_api_key and launch again to generate a fresh key")
                    raise WatchFailed("vLLM refused gpuctl's API key", exclude=False, fatal=fatal) from None
                # anything else may pass: keep waiting, within the deadline
                health = Health(provider=PROVIDER, status="unhealthy", endpoint=endpoint, detail=exc.message)
            if health.status == "ready":
                return
            detail = health.detail or health.status
            waited = s.clock() - running
            if waited > s.health_timeout_s:
                raise WatchFailed(f"vLLM did not answer within {s.health_timeout_s / 60:g} minutes of the container "
                                  f"starting ({detail})", exclude=True)
            s.progress(f"Instance {self.instance_id}: running; waiting for vLLM to load {s.model} ({detail})")
            s.sleep(s.poll_s)
            self.check_boot(self.show())
