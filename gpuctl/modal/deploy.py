"""Modal's side of a deploy: what to deploy (the spec, its GPU names and limits), and where gpuctl
remembers what it deployed (the instance ledger rows with provider "modal").

Owns: `ModalDeploySpec` and the settings that fill it, `parse_gpu`/`validate_spec` (everything
Modal or vLLM would reject, checked before anything is sent or spent), and the ledger rows of a
deployment over an open `State`. Modal's GPU names (`VALID_GPUS`) are the price catalog's
[modal.*] rows and their aliases (`gpuctl.config.gpus`, the one GPU list).

Must not: import `modal` or call the SDK (that is sdk.py, which depends on this module, never the
reverse), open the state (the caller passes it: ops/deploy.py opens it with `state.open_for`),
price anything (gpuctl.costs, through ops/deploy.py), print, or read the clock.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, replace
from decimal import Decimal
from typing import TYPE_CHECKING, Any

from gpuctl.config import close_matches
from gpuctl.config.gpus import MODAL_MAX_GPUS, gpu_names, norm_gpu, spelling
from gpuctl.errors import UsageError

if TYPE_CHECKING:  # annotations only
    from gpuctl.config import Settings
    from gpuctl.state import State

PROVIDER = "modal"

MAX_GPU_COUNT = MODAL_MAX_GPUS


def __getattr__(name: str) -> Any:
    # `VALID_GPUS`: Modal's GPU names (modal.com/pricing; "A10G" is Modal's older name for A10),
    # read from the one GPU list when first asked for, never at import.
    if name == "VALID_GPUS":
        return gpu_names("modal", aliases=True)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
MIN_SCALEDOWN_S = 2
MAX_SCALEDOWN_S = 60 * 60
MIN_MODEL_LEN = 256

_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
# Modal object names: letters, digits, '-', '_', '.', at most 64 characters.
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")


@dataclass(frozen=True)
class ModalDeploySpec:
    """What to deploy. The defaults are the original deployment (app `multi-agent-vllm-inference`,
    Qwen2.5-7B-Instruct on one L4, scale to zero after 5 min); the CLI fills them from the profile."""

    app_name: str = "multi-agent-vllm-inference"
    model: str = "Qwen/Qwen2.5-7B-Instruct"
    gpu: str = "L4"
    scaledown_window_s: int = 300
    min_containers: int = 0
    max_containers: int = 1
    max_inputs: int = 32
    max_model_len: int = 4096
    secret_name: str = "gpuctl-vllm-api-key"
    enforce_eager: bool = True
    tool_call_parser: str = ""  # "": deploy/tool_parsers.toml by model; "none": off

    def env(self) -> dict[str, str]:
        """The GPUCTL_MODAL_* variables deploy/modal/vllm_app.py reads (no secrets among them)."""
        return {
            "GPUCTL_MODAL_APP_NAME": self.app_name,
            "GPUCTL_MODAL_MODEL": self.model,
            "GPUCTL_MODAL_GPU": self.gpu,
            "GPUCTL_MODAL_SCALEDOWN_S": str(self.scaledown_window_s),
            "GPUCTL_MODAL_MIN_CONTAINERS": str(self.min_containers),
            "GPUCTL_MODAL_MAX_CONTAINERS": str(self.max_containers),
            "GPUCTL_MODAL_MAX_INPUTS": str(self.max_inputs),
            "GPUCTL_MODAL_MAX_MODEL_LEN": str(self.max_model_len),
            "GPUCTL_MODAL_SECRET_NAME": self.secret_name,
            "GPUCTL_MODAL_ENFORCE_EAGER": "1" if self.enforce_eager else "0",
            "GPUCTL_MODAL_TOOL_CALL_PARSER": self.tool_call_parser,
        }


def is_valid_name(value: str) -> bool:
    """A name Modal accepts for an app or a secret."""
    return bool(_NAME_RE.match(value))


def parse_gpu(gpu: str) -> tuple[str, int]:
    """`h100:2` → ("H100", 2). UsageError, with a did-you-mean, for names Modal does not offer."""
    name, sep, count_text = gpu.strip().partition(":")
    found = spelling("modal", name)
    if found is None:
        known = gpu_names("modal", aliases=True)
        close = close_matches(norm_gpu(name), {norm_gpu(g): g for g in known}, n=2, cutoff=0.5)
        suggestion = f"; did you mean {' or '.join(close)}?" if close else ""
        raise UsageError(
            f"Unknown Modal GPU {gpu!r}{suggestion}",
            hint=f"Modal GPUs: {', '.join(known)}; add :N for N GPUs (e.g. H100:2).",
        )
    count = 1
    if sep:
        if not count_text.isdigit() or not 1 <= int(count_text) <= MAX_GPU_COUNT:
            raise UsageError(f"GPU count in {gpu!r} must be 1..{MAX_GPU_COUNT}", hint="e.g. H100:2")
        count = int(count_text)
    return found, count


def validate_spec(spec: ModalDeploySpec) -> ModalDeploySpec:
    """Check everything Modal or vLLM would reject, before anything is sent or spent.

    Returns the spec with Modal's spelling of the GPU (`h100:1` → `H100`, `h100:2` → `H100:2`).
    """
    name, count = parse_gpu(spec.gpu)
    if not MIN_SCALEDOWN_S <= spec.scaledown_window_s <= MAX_SCALEDOWN_S:
        raise UsageError(
            f"Scaledown window must be 2 s to 60 min, got {spec.scaledown_window_s} s",
            hint="e.g. --scaledown-window 5 (minutes); fractions are fine: 0.5 is 30 s.",
        )
    if not _MODEL_RE.match(spec.model):
        raise UsageError(
            f"Model id must look like org/name (a Hugging Face id), got {spec.model!r}",
            hint="e.g. --model Qwen/Qwen2.5-7B-Instruct",
        )
    for label, value in (("App name", spec.app_name), ("Secret name", spec.secret_name)):
        if not is_valid_name(value):
            raise UsageError(
                f"{label} {value!r} is not a valid Modal name",
                hint="Use 1-64 letters, digits, '-', '_' or '.'.",
            )
    _check_scaling(spec)
    return replace(spec, gpu=name if count == 1 else f"{name}:{count}")


def _check_scaling(spec: ModalDeploySpec) -> None:
    if spec.min_containers < 0:
        raise UsageError(f"--min-containers must be 0 or more, got {spec.min_containers}")
    if spec.max_containers < 1:
        raise UsageError(f"--max-containers must be 1 or more, got {spec.max_containers}")
    if spec.min_containers > spec.max_containers:
        raise UsageError(
            f"--min-containers ({spec.min_containers}) exceeds --max-containers ({spec.max_containers})",
            hint="Raise --max-containers, or lower --min-containers.",
        )
    if spec.max_inputs < 1:
        raise UsageError(f"Concurrent inputs per container must be 1 or more, got {spec.max_inputs}")
    if spec.max_model_len < MIN_MODEL_LEN:
        raise UsageError(f"Max model length must be {MIN_MODEL_LEN} or more, got {spec.max_model_len}")


def spec_from_settings(settings: Settings) -> ModalDeploySpec:
    """The spec the resolved `modal.*` settings describe, validated (GPU in Modal's spelling)."""
    # Modal counts the window in whole seconds; rounding up never scales down before the user asked.
    window_s = math.ceil(float(settings["modal.scaledown_window_minutes"]) * 60)
    return validate_spec(ModalDeploySpec(
        app_name=settings["modal.app_name"], model=settings["modal.model"], gpu=settings["modal.gpu"],
        scaledown_window_s=window_s, min_containers=settings["modal.min_containers"],
        max_containers=settings["modal.max_containers"], max_inputs=settings["modal.max_concurrent_inputs"],
        max_model_len=settings["modal.max_model_len"], tool_call_parser=settings.get("modal.tool_call_parser") or "",
    ))


# ---------------------------------------------------------------- the ledger
# A Modal deployment is a ledger row too (provider "modal", remote id = app name). Its `dph` is
# what it bills whatever the traffic: the GPU price × min_containers ("0" when it scales to
# zero), so `gpuctl cleanup` can warn about a GPU kept warm over a weekend.


def record_deployment(state: State, spec: ModalDeploySpec, *, profile: str, warm_dollars_per_hour: Decimal) -> int:
    """A `deploying` row, written before the deploy call (a deploy that times out may still have
    happened); returns its id."""
    row = state.add_instance_intent(provider=PROVIDER, label=f"gpuctl:{profile}", profile=profile, gpu=spec.gpu,
                                    dph=str(warm_dollars_per_hour))
    state.update_instance(row, remote_id=spec.app_name, status="deploying", warm_containers=spec.min_containers,
                          status_msg=f"min_containers={spec.min_containers}, max_containers={spec.max_containers}")
    return row


def deploy_succeeded(state: State, row: int, app_name: str, url: str) -> None:
    """The new deployment replaces the app's earlier rows (same app name)."""
    for old in state.live_instances(PROVIDER):
        if old.remote_id == app_name and old.id != row:
            state.mark_instance_destroyed(old.id)
    state.update_instance(row, status="deployed", endpoint=url, ready_at=state.clock())


def deploy_failed(state: State, row: int, error: str, *, unknown: bool) -> None:
    """A refused deploy changed nothing (the earlier app, if any, still runs): drop the row. A
    timeout may have deployed anyway: keep it live so `destroy modal` stops that app too."""
    if unknown:
        state.update_instance(row, status="unknown", status_msg=f"deploy outcome unknown: {error}"[:500])
    else:
        state.mark_instance_destroyed(row)


def close_deployments(state: State, app_name: str) -> None:
    """The app is stopped: its live rows end."""
    for row in state.live_instances(PROVIDER):
        if row.remote_id == app_name:
            state.mark_instance_destroyed(row.id)


def warm_rows(state: State) -> list[dict[str, Any]]:
    """Live deployments with containers kept warm: they bill every hour, idle or not."""
    rows = [r for r in state.live_instances(PROVIDER) if r.dph and Decimal(r.dph) > 0]
    return [{"app_name": r.remote_id, "gpu": r.gpu, "dollars_per_hour": r.dph, "since": r.created_at,
             "warm_containers": r.warm_containers, "detail": r.status_msg} for r in rows]


def deployed_app_names(state: State) -> list[str]:
    """The app names of every live Modal row, oldest first, each once."""
    names: list[str] = []
    for row in state.live_instances(PROVIDER):
        if row.remote_id and row.remote_id not in names:
            names.append(row.remote_id)
    return names
