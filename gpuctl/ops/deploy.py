"""The `deploy modal` and `destroy modal` verbs: plan, deploy, save the URL, wait; stop and forget.

Takes settings, does the work through gpuctl/modal/ (deploy.py: the spec and the ledger rows;
sdk.py: the seam around the modal SDK), returns data. Never prints: progress goes through the
`progress` callback the CLI passes. Prices come from gpuctl.costs (the catalog's per-GPU $/h,
`monthly_gpu_cost`); here they are only multiplied by GPU and container counts.

The plan is built and validated from settings before anything is sent; `--dry-run` stops
there. The vLLM API key is generated once and stored in the profile (0600) *before* the deploy,
so a crash after deploying never leaves an endpoint whose key nobody has.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

from gpuctl import costs
from gpuctl.config import (
    Settings,
    new_api_key,
    set_profile_value,
    unset_profile_value,
    writable_profile,
)
from gpuctl.costs.money import money_str
from gpuctl.errors import GpuctlError, ProviderError
from gpuctl.events import log_event
from gpuctl.modal.deploy import (
    ModalDeploySpec,
    close_deployments,
    deploy_failed,
    deploy_succeeded,
    deployed_app_names,
    parse_gpu,
    record_deployment,
    spec_from_settings,
    warm_rows,
)
from gpuctl.modal.sdk import ModalSDK
from gpuctl.state import State, open_for, state_exists

READY_TIMEOUT_S = 20 * 60  # image pull + weights download on a first deploy
POLL_S = 5.0
HOURS_PER_DAY_WARM = 24  # a warm container bills around the clock


@dataclass(frozen=True)
class DeployPlan:
    """What `deploy modal` would do and what it costs: `--dry-run` shows exactly this."""

    spec: ModalDeploySpec
    image: str
    dollars_per_hour: Decimal | None  # per container, all its GPUs
    price_note: str
    profile: str | None

    @property
    def warm_dollars_per_hour(self) -> Decimal:
        """What the `min_containers` always-warm containers bill per hour ("0" with no price)."""
        return (self.dollars_per_hour or Decimal(0)) * self.spec.min_containers

    @property
    def warm_cost_per_month(self) -> Decimal | None:
        """What `min_containers` always-warm GPUs cost per month, whatever the traffic."""
        if self.dollars_per_hour is None:
            return None
        return costs.monthly_gpu_cost(dollars_per_hour=self.warm_dollars_per_hour, hours_per_day=HOURS_PER_DAY_WARM)

    def as_dict(self) -> dict[str, Any]:
        s = self.spec
        return {
            "app_name": s.app_name, "model": s.model, "gpu": s.gpu, "image": self.image,
            "scaledown_window_s": s.scaledown_window_s, "min_containers": s.min_containers,
            "max_containers": s.max_containers, "max_inputs_per_container": s.max_inputs,
            "max_model_len": s.max_model_len, "enforce_eager": s.enforce_eager,
            "dollars_per_hour": money_str(self.dollars_per_hour),
            "price_note": self.price_note,
            "warm_cost_per_month": money_str(self.warm_cost_per_month),
            "profile": self.profile,
        }


def plan_modal_deploy(settings: Settings) -> DeployPlan:
    """The exact deployment the settings describe, validated, with its price. No network."""
    from gpuctl.bundle import vllm_pin

    spec = spec_from_settings(settings)
    name, count = parse_gpu(spec.gpu)
    price, note = _price(settings, name, count)
    return DeployPlan(spec, vllm_pin().ref, price, note, settings.profile)


def _price(settings: Settings, gpu: str, count: int) -> tuple[Decimal | None, str]:
    """One container's $/h (all its GPUs) and where the price comes from."""
    try:
        catalog = costs.load_catalog(overrides=settings.extra.get("prices") or None)
        row = catalog.modal_price(gpu)
    except GpuctlError as exc:
        return None, f"no price: {exc.message}"
    seen = row.seen.isoformat() if row.seen else "undated"
    # A container bills for all its GPUs: the catalog's per-GPU $/h × the count (no time involved).
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
    with open_for(settings) as state:
        row = record_deployment(state, plan.spec, profile=profile, warm_dollars_per_hour=plan.warm_dollars_per_hour)
    try:
        url = sdk.deploy(plan.spec, _app_file())
    except GpuctlError as exc:
        # A timeout or a lost connection may have deployed anyway; a refusal changed nothing.
        unknown = isinstance(exc, ProviderError) and exc.kind in ("timeout", "connect")
        with open_for(settings) as state:
            deploy_failed(state, row, exc.message, unknown=unknown)
        raise
    set_profile_value(settings.home, profile, "modal.web_url", url)
    with open_for(settings) as state:
        deploy_succeeded(state, row, plan.spec.app_name, url)
    log_event("modal_deployed", app_name=plan.spec.app_name, gpu=plan.spec.gpu, modal_web_url=url)
    from gpuctl.providers.openai_compat import VLLMEndpoint

    endpoint = VLLMEndpoint(url, provider="modal").endpoint
    if not wait:
        return DeployResult(url, endpoint, profile, False, 0.0, "not waited for (--no-wait)")
    ready, waited, detail = wait_until_ready(url, api_key, plan.spec.model, progress=progress, sleep=sleep,
                                             clock=clock, timeout_s=ready_timeout_s)
    return DeployResult(url, endpoint, profile, ready, waited, detail)


def _app_file() -> Path:
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


# ---------------------------------------------------------------- what gpuctl deployed


def _existing_state(settings: Settings) -> State | None:
    """The state if it exists: reading what was deployed must not create a database."""
    return open_for(settings) if state_exists(settings) else None


def warm_deployments(settings: Settings) -> list[dict[str, Any]]:
    """Modal apps gpuctl deployed with containers kept warm: they bill every hour, idle or not."""
    state = _existing_state(settings)
    if state is None:
        return []
    with state:
        return warm_rows(state)


def apps_to_stop(settings: Settings) -> list[str]:
    """The profile's app, then every other Modal app the ledger shows gpuctl deployed."""
    names = [settings["modal.app_name"]]
    state = _existing_state(settings)
    if state is not None:
        with state:
            names += [name for name in deployed_app_names(state) if name not in names]
    return names


def destroy_modal(settings: Settings, *, sdk: ModalSDK | None = None) -> dict[str, Any]:
    """Stop the app — and every other Modal app gpuctl's ledger shows deployed — so nothing
    keeps billing; then clear `modal.web_url` from the profile."""
    sdk = sdk or ModalSDK()
    sdk.check_credentials()
    names = apps_to_stop(settings)
    with open_for(settings) as state:
        stopped = {name: sdk.stop(name) for name in names}
        for name in names:
            close_deployments(state, name)
    cleared = False
    if settings.profile is not None:
        cleared = unset_profile_value(settings.home, settings.profile, "modal.web_url")
    for name, was_running in stopped.items():
        log_event("modal_stopped", app_name=name, was_running=was_running)
    return {"app_name": names[0], "stopped": stopped[names[0]], "apps": stopped, "web_url_cleared": cleared,
            "note": None if settings.source("modal.web_url").startswith(("profile", "default"))
            else f"modal.web_url still comes from {settings.source('modal.web_url')}; unset it there"}
