"""Deploying and stopping the bundled Modal vLLM app: plan, deploy, save the URL, wait for it.

The plan is built and validated from settings before anything is sent; `--dry-run` stops
there. The vLLM API key is generated once and stored in the profile (0600) *before* the deploy,
so a crash after deploying never leaves an endpoint whose key nobody has.
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

from gpuctl.config import (
    Settings,
    new_api_key,
    set_profile_value,
    unset_profile_value,
    writable_profile,
)
from gpuctl.costs.money import monthly_gpu_cost
from gpuctl.errors import GpuctlError, ProviderError
from gpuctl.events import log_event
from gpuctl.modal.sdk import ModalDeploySpec, ModalSDK, parse_gpu, validate_spec

READY_TIMEOUT_S = 20 * 60  # image pull + weights download on a first deploy
POLL_S = 5.0


@dataclass(frozen=True)
class DeployPlan:
    spec: ModalDeploySpec
    image: str
    dollars_per_hour: Decimal | None  # per container, all its GPUs
    price_note: str
    profile: str | None

    @property
    def warm_cost_per_month(self) -> Decimal | None:
        """What `min_containers` always-warm GPUs cost per month, whatever the traffic."""
        if self.dollars_per_hour is None:
            return None
        return monthly_gpu_cost(dollars_per_hour=self.dollars_per_hour * self.spec.min_containers, hours_per_day=24)

    def as_dict(self) -> dict[str, Any]:
        s = self.spec
        return {
            "app_name": s.app_name, "model": s.model, "gpu": s.gpu, "image": self.image,
            "scaledown_window_s": s.scaledown_window_s, "min_containers": s.min_containers,
            "max_containers": s.max_containers, "max_inputs_per_container": s.max_inputs,
            "max_model_len": s.max_model_len, "enforce_eager": s.enforce_eager,
            "dollars_per_hour": None if self.dollars_per_hour is None else str(self.dollars_per_hour),
            "price_note": self.price_note,
            "warm_cost_per_month": None if self.warm_cost_per_month is None else str(self.warm_cost_per_month),
            "profile": self.profile,
        }


def plan_modal_deploy(settings: Settings) -> DeployPlan:
    """The exact deployment the settings describe, validated, with its price. No network."""
    from gpuctl.bundle import vllm_pin

    window_s = math.ceil(float(settings["modal.scaledown_window_minutes"]) * 60)
    spec = ModalDeploySpec(
        app_name=settings["modal.app_name"], model=settings["modal.model"], gpu=settings["modal.gpu"],
        scaledown_window_s=window_s, min_containers=settings["modal.min_containers"],
        max_containers=settings["modal.max_containers"], max_inputs=settings["modal.max_concurrent_inputs"],
        max_model_len=settings["modal.max_model_len"],
    )
    validate_spec(spec)
    name, count = parse_gpu(spec.gpu)
    spec = ModalDeploySpec(**{**spec.__dict__, "gpu": name if count == 1 else f"{name}:{count}"})
    price, note = _price(settings, name, count)
    return DeployPlan(spec, vllm_pin().ref, price, note, settings.profile)


def _price(settings: Settings, gpu: str, count: int) -> tuple[Decimal | None, str]:
    from gpuctl import costs

    try:
        catalog = costs.load_catalog(overrides=settings.extra.get("prices") or None)
        row = catalog.modal_price(gpu)
    except GpuctlError as exc:
        return None, f"no price: {exc.message}"
    seen = row.seen.isoformat() if row.seen else "undated"
    return row.dollars_per_hour * count, f"{row.dollars_per_second}/s per GPU, seen {seen} ({row.source})"


@dataclass(frozen=True)
class DeployResult:
    url: str
    endpoint: str
    profile: str
    ready: bool
    waited_s: float
    detail: str

    def as_dict(self) -> dict[str, Any]:
        return self.__dict__.copy()


def deploy_modal(
    settings: Settings,
    plan: DeployPlan,
    *,
    wait: bool = True,
    sdk: ModalSDK | None = None,
    progress: Callable[[str], None] = lambda message: None,
    sleep: Callable[[float], None] = time.sleep,
    clock: Callable[[], float] = time.monotonic,
    ready_timeout_s: float = READY_TIMEOUT_S,
) -> DeployResult:
    """Deploy the plan, save `modal.web_url` (and the API key) in the profile, optionally wait."""
    sdk = sdk or ModalSDK()
    sdk.check_credentials()
    profile = writable_profile(settings)
    api_key = settings.get("modal.api_key")
    if not api_key:
        api_key = new_api_key()
        set_profile_value(settings.home, profile, "modal.api_key", api_key)
    progress("Storing the endpoint's API key in a Modal secret…")
    sdk.ensure_secret(plan.spec.secret_name, api_key)
    if settings.source("modal.app_name") == "flag":  # `destroy modal` must find it later
        set_profile_value(settings.home, profile, "modal.app_name", plan.spec.app_name)
    progress(f"Deploying {plan.spec.app_name} ({plan.spec.gpu}, {plan.image})…")
    # In the ledger before Modal hears of it: a deploy that times out may still have happened.
    row = record_deployment(settings, plan, profile)
    try:
        url = sdk.deploy(plan.spec, _app_file())
    except GpuctlError as exc:
        unknown = isinstance(exc, ProviderError) and exc.kind in ("timeout", "connect")
        deploy_failed(settings, row, exc.message, unknown=unknown)
        raise
    set_profile_value(settings.home, profile, "modal.web_url", url)
    deploy_succeeded(settings, row, plan.spec.app_name, url)
    log_event("modal_deployed", app_name=plan.spec.app_name, gpu=plan.spec.gpu, modal_web_url=url)
    from gpuctl.providers.openai_compat import VLLMEndpoint

    endpoint = VLLMEndpoint(url, provider="modal").endpoint
    if not wait:
        return DeployResult(url, endpoint, profile, False, 0.0, "not waited for (--no-wait)")
    ready, waited, detail = wait_until_ready(url, api_key, plan.spec.model, progress=progress, sleep=sleep,
                                             clock=clock, timeout_s=ready_timeout_s)
    return DeployResult(url, endpoint, profile, ready, waited, detail)


def _app_file():  # type: ignore[no-untyped-def]
    from gpuctl.bundle import modal_app_file

    return modal_app_file()


def wait_until_ready(url: str, api_key: str | None, model: str, *, progress: Callable[[str], None],
                     sleep: Callable[[float], None], clock: Callable[[], float], timeout_s: float,
                     poll_s: float = POLL_S) -> tuple[bool, float, str]:
    """Poll until the endpoint can generate (a 1-token completion), or the time is up."""
    from gpuctl.providers.openai_compat import probe_vllm

    started = clock()
    detail = ""
    while True:
        try:
            health = probe_vllm(url, api_key, model, provider="modal")
        except ProviderError as exc:
            raise ProviderError(f"modal: the endpoint refused gpuctl's API key ({exc.message})", provider="modal",
                                kind="auth", hint="redeploy with `gpuctl deploy modal` to refresh the Modal secret") from None
        waited = clock() - started
        if health.status == "ready":
            return True, waited, "ready: the model answered a 1-token completion"
        detail = health.detail or health.status
        if waited >= timeout_s:
            return False, waited, f"not ready after {waited:.0f}s: {detail}"
        progress(f"cold start: starting a GPU container and loading weights… ({detail})")
        sleep(poll_s)


# ---------------------------------------------------------------- the ledger
# A Modal deployment is a ledger row too (provider "modal", remote id = app name). Its `dph` is
# what it bills whatever the traffic: the GPU price × min_containers ("0" when it scales to
# zero), so `gpuctl cleanup` can warn about a GPU kept warm over a weekend.


def _state(settings: Settings):  # type: ignore[no-untyped-def]
    from gpuctl.config import ensure_home
    from gpuctl.state import open_state

    return open_state(ensure_home(settings.home))


def _close_rows(state: Any, app_name: str) -> None:
    for row in state.live_instances("modal"):
        if row.remote_id == app_name:
            state.mark_instance_destroyed(row.id)


def record_deployment(settings: Settings, plan: DeployPlan, profile: str) -> int:
    """A `deploying` row, written before the deploy call; returns its id."""
    spec = plan.spec
    warm = (plan.dollars_per_hour or Decimal(0)) * spec.min_containers
    with _state(settings) as state:
        row = state.add_instance_intent(provider="modal", label=f"gpuctl:{profile}", profile=profile, gpu=spec.gpu,
                                        dph=str(warm))
        state.update_instance(row, remote_id=spec.app_name, status="deploying",
                              status_msg=f"min_containers={spec.min_containers}, max_containers={spec.max_containers}")
        return row


def deploy_succeeded(settings: Settings, row: int, app_name: str, url: str) -> None:
    """The new deployment replaces the app's earlier rows (same app name)."""
    with _state(settings) as state:
        for old in state.live_instances("modal"):
            if old.remote_id == app_name and old.id != row:
                state.mark_instance_destroyed(old.id)
        state.update_instance(row, status="deployed", endpoint=url, ready_at=state.clock())


def deploy_failed(settings: Settings, row: int, error: str, *, unknown: bool) -> None:
    """A refused deploy changed nothing (the earlier app, if any, still runs): drop the row. A
    timeout may have deployed anyway: keep it live so `destroy modal` stops that app too."""
    with _state(settings) as state:
        if unknown:
            state.update_instance(row, status="unknown", status_msg=f"deploy outcome unknown: {error}"[:500])
        else:
            state.mark_instance_destroyed(row)


def warm_deployments(settings: Settings) -> list[dict[str, Any]]:
    """Modal apps gpuctl deployed with containers kept warm: they bill every hour, idle or not."""
    from gpuctl.state import state_path

    if not state_path(settings.home).exists():
        return []
    with _state(settings) as state:
        rows = [r for r in state.live_instances("modal") if r.dph and Decimal(r.dph) > 0]
    return [{"app_name": r.remote_id, "gpu": r.gpu, "dollars_per_hour": r.dph, "since": r.created_at,
             "detail": r.status_msg} for r in rows]


def apps_to_stop(settings: Settings) -> list[str]:
    """The profile's app, then every other Modal app the ledger shows gpuctl deployed."""
    from gpuctl.state import state_path

    names = [settings["modal.app_name"]]
    if state_path(settings.home).exists():
        with _state(settings) as state:
            names += [r.remote_id for r in state.live_instances("modal") if r.remote_id and r.remote_id not in names]
    return names


def destroy_modal(settings: Settings, *, sdk: ModalSDK | None = None) -> dict[str, Any]:
    """Stop the app — and every other Modal app gpuctl's ledger shows deployed — so nothing
    keeps billing; then clear `modal.web_url` from the profile."""
    sdk = sdk or ModalSDK()
    sdk.check_credentials()
    names = apps_to_stop(settings)
    with _state(settings) as state:
        stopped = {name: sdk.stop(name) for name in names}
        for name in names:
            _close_rows(state, name)
    cleared = False
    if settings.profile is not None:
        cleared = unset_profile_value(settings.home, settings.profile, "modal.web_url")
    for name, was_running in stopped.items():
        log_event("modal_stopped", app_name=name, was_running=was_running)
    return {"app_name": names[0], "stopped": stopped[names[0]], "apps": stopped, "web_url_cleared": cleared,
            "note": None if settings.source("modal.web_url").startswith(("profile", "default"))
            else f"modal.web_url still comes from {settings.source('modal.web_url')}; unset it there"}
