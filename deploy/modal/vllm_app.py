"""The Modal app gpuctl deploys: vLLM's OpenAI-compatible server on a serverless GPU.

Owns: the image (the vLLM build pinned in deploy/versions.toml), the GPU function `serve`, its
scaling (scale to zero by default), the weight and compile-cache Volumes, and the exact
`vllm serve` command line (tool calling on, with the model's parser from
deploy/tool_parsers.toml unless GPUCTL_MODAL_TOOL_CALL_PARSER says otherwise).

Must not: deploy or touch the network at import (gpuctl and its tests import this file offline),
import gpuctl (it is not installed in the container), or read settings from anywhere but
environment variables and deploy/versions.toml.

How settings travel. `gpuctl deploy modal` sets GPUCTL_MODAL_* variables and runs
`modal deploy` on this file. Modal imports the file twice: once on this machine to build the
deployment, once inside every container to find `serve`. Both imports must compute the same
SETTINGS, so the values computed locally are handed to the container through the function's
`env=` (see `container_env`): the container reads exactly what the local import resolved,
defaults included, instead of re-deriving them.

The vLLM version is baked the same way. Locally it is read from deploy/versions.toml (the one
pin); the container, where only this file is mounted, reads the resolved image reference back
from GPUCTL_VLLM_* variables. We chose baking over mounting versions.toml into the image
because it adds no file to keep in sync with a container path, and the container sees the very
value that chose its image.

By hand (gpuctl does the same):
    GPUCTL_MODAL_GPU=L4 modal deploy deploy/modal/vllm_app.py
"""

from __future__ import annotations

import os
import re
import subprocess
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import modal

PORT = 8000
MINUTES = 60
# The Modal secret must hold this key; vLLM then requires `Authorization: Bearer <key>` on /v1/*.
API_KEY_ENV = "VLLM_API_KEY"

# Caches live in Volumes so a cold container neither re-downloads ~15 GB of weights nor
# recompiles vLLM's kernels. Names are shared by every gpuctl app in the workspace on purpose:
# two apps serving the same model reuse one download.
HF_CACHE_DIR = "/root/.cache/huggingface"
VLLM_CACHE_DIR = "/root/.cache/vllm"
HF_CACHE_VOLUME = "gpuctl-hf-cache"
VLLM_CACHE_VOLUME = "gpuctl-vllm-cache"

VERSIONS_FILE = Path(__file__).resolve().parent.parent / "versions.toml"
# Model → vLLM tool-call parser (read locally, like the pin; the resolved one is baked).
TOOL_PARSERS_FILE = Path(__file__).resolve().parent.parent / "tool_parsers.toml"

# Variable → setting. gpuctl's ModalDeploySpec.env() (gpuctl/modal/deploy.py) writes these
# names (a test keeps the two lists equal).
ENV_VARS: dict[str, str] = {
    "app_name": "GPUCTL_MODAL_APP_NAME",
    "model": "GPUCTL_MODAL_MODEL",
    "gpu": "GPUCTL_MODAL_GPU",
    "scaledown_window_s": "GPUCTL_MODAL_SCALEDOWN_S",
    "min_containers": "GPUCTL_MODAL_MIN_CONTAINERS",
    "max_containers": "GPUCTL_MODAL_MAX_CONTAINERS",
    "max_inputs": "GPUCTL_MODAL_MAX_INPUTS",
    "max_model_len": "GPUCTL_MODAL_MAX_MODEL_LEN",
    "secret_name": "GPUCTL_MODAL_SECRET_NAME",
    "enforce_eager": "GPUCTL_MODAL_ENFORCE_EAGER",
    "tool_call_parser": "GPUCTL_MODAL_TOOL_CALL_PARSER",
}
# The pin, as baked for the container (never read locally: versions.toml wins there).
PIN_ENV_VARS: dict[str, str] = {
    "vllm_version": "GPUCTL_VLLM_VERSION",
    "vllm_image": "GPUCTL_VLLM_IMAGE",
    "modal_add_python": "GPUCTL_MODAL_ADD_PYTHON",
}
# The tool-call parser the local import resolved (deploy/tool_parsers.toml is not mounted in
# the container either); "none" when absent.
PARSER_ENV_VAR = "GPUCTL_MODAL_TOOL_PARSER"

# The original deployment, Qwen2.5-7B on an L4. The app name keeps its URL:
# https://<workspace>--multi-agent-vllm-inference-serve.modal.run
DEFAULTS: dict[str, Any] = {
    "app_name": "multi-agent-vllm-inference",
    "model": "Qwen/Qwen2.5-7B-Instruct",
    "gpu": "L4",
    "scaledown_window_s": 5 * MINUTES,
    "min_containers": 0,  # scale to zero: nothing is billed while idle
    "max_containers": 1,
    "max_inputs": 32,
    "max_model_len": 4096,
    "secret_name": "gpuctl-vllm-api-key",
    # --enforce-eager skips CUDA graph capture: public reports put vLLM's cold start on Modal at
    # >4 min without it and <1 min with it. The price is decode throughput (eager kernels launch
    # one by one), which matters less than start-up when containers scale to zero. Turn it off
    # for an always-warm (min_containers >= 1), throughput-bound deployment.
    "enforce_eager": True,
    # vLLM's --tool-call-parser; "" = look the model up in deploy/tool_parsers.toml, "none" = off.
    "tool_call_parser": "",
}

_INT_SETTINGS = ("scaledown_window_s", "min_containers", "max_containers", "max_inputs", "max_model_len")
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off"}
_MODEL_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$")
_NAME_RE = re.compile(r"^[A-Za-z0-9._-]{1,64}$")
_GPU_RE = re.compile(r"^[A-Za-z0-9-]+(:[1-8])?$")
_PARSER_RE = re.compile(r"^[a-z0-9_-]{1,40}$")  # vLLM's parser names: llama3_json, granite-20b-fc


def read_pin(path: Path = VERSIONS_FILE) -> dict[str, str]:
    """The vLLM pin from versions.toml: version, image reference and Modal's add_python."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        raise RuntimeError(f"{path} is missing: it pins the vLLM version this app runs") from None
    vllm = data["vllm"]
    version = str(vllm["version"])
    tag = str(vllm.get("tag", "v{version}")).format(version=version)
    return {
        "vllm_version": version,
        "vllm_image": f"{vllm['image']}:{tag}",
        "modal_add_python": str(data.get("modal", {}).get("add_python", "3.12")),
    }


def lookup_tool_parser(model: str, path: Path = TOOL_PARSERS_FILE) -> str:
    """The parser deploy/tool_parsers.toml names for `model` (exact id, then the longest
    prefix, both ignoring case), or "none" (no tool calling). gpuctl/bundle.py reads the same
    table the same way for Vast.ai."""
    try:
        with path.open("rb") as f:
            data = tomllib.load(f)
    except FileNotFoundError:
        return "none"
    wanted = model.lower()
    found = {m.lower(): v for m, v in data.get("models", {}).items()}.get(wanted)
    if found is None:
        prefixes = {p: v for p, v in data.get("prefixes", {}).items() if wanted.startswith(p.lower())}
        found = prefixes[max(prefixes, key=len)] if prefixes else "none"
    return str(found)


def load_settings(environ: Mapping[str, str], *, remote: bool) -> dict[str, Any]:
    """Resolve every setting from the environment (defaults for what is unset) and validate.

    `remote` is True inside a Modal container: the pin then comes from the baked variables,
    because versions.toml is not mounted there.
    """
    settings: dict[str, Any] = dict(DEFAULTS)
    for key, var in ENV_VARS.items():
        raw = environ.get(var, "").strip()
        if not raw:
            continue
        if key in _INT_SETTINGS:
            try:
                settings[key] = int(raw)
            except ValueError:
                raise ValueError(f"{var} must be a whole number, got {raw!r}") from None
        elif key == "enforce_eager":
            if raw.lower() not in _TRUE | _FALSE:
                raise ValueError(f"{var} must be 1 or 0, got {raw!r}")
            settings[key] = raw.lower() in _TRUE
        else:
            settings[key] = raw
    if remote:
        missing = [var for var in PIN_ENV_VARS.values() if not environ.get(var)]
        if missing:
            raise RuntimeError(f"{', '.join(missing)} not set in the container: redeploy with gpuctl")
        settings.update({key: environ[var] for key, var in PIN_ENV_VARS.items()})
        settings["tool_parser"] = environ.get(PARSER_ENV_VAR) or "none"
    else:
        settings.update(read_pin())
        # The parser asked for (GPUCTL_MODAL_TOOL_CALL_PARSER), else the model's from the table.
        settings["tool_parser"] = settings["tool_call_parser"] or lookup_tool_parser(settings["model"])
    # Fixed settings, kept here because FunctionInfo does not expose them to tests.
    settings["served_model_name"] = settings["model"]  # clients send the Hugging Face id
    settings["port"] = PORT
    settings["startup_timeout_s"] = 10 * MINUTES  # first boot downloads the weights
    settings["timeout_s"] = 20 * MINUTES  # longest single request, a long streamed answer
    settings["gpu_memory_utilization"] = 0.90
    settings["api_key_env"] = API_KEY_ENV
    validate_settings(settings)
    return settings


def validate_settings(settings: Mapping[str, Any]) -> None:
    """Refuse settings Modal or vLLM would reject later, with the variable to fix."""
    problems: list[str] = []
    window = settings["scaledown_window_s"]
    if not 2 <= window <= 60 * MINUTES:
        problems.append(f"GPUCTL_MODAL_SCALEDOWN_S must be 2..3600 seconds, got {window}")
    if settings["min_containers"] < 0:
        problems.append("GPUCTL_MODAL_MIN_CONTAINERS must be 0 or more")
    if settings["max_containers"] < 1:
        problems.append("GPUCTL_MODAL_MAX_CONTAINERS must be 1 or more")
    if settings["min_containers"] > settings["max_containers"]:
        problems.append("GPUCTL_MODAL_MIN_CONTAINERS must not exceed GPUCTL_MODAL_MAX_CONTAINERS")
    if settings["max_inputs"] < 1:
        problems.append("GPUCTL_MODAL_MAX_INPUTS must be 1 or more")
    if settings["max_model_len"] < 256:
        problems.append("GPUCTL_MODAL_MAX_MODEL_LEN must be 256 or more")
    if not _MODEL_RE.match(settings["model"]):
        problems.append(f"GPUCTL_MODAL_MODEL must look like org/name, got {settings['model']!r}")
    if not _GPU_RE.match(settings["gpu"]):
        problems.append(f"GPUCTL_MODAL_GPU must look like L4 or H100:2, got {settings['gpu']!r}")
    if not _PARSER_RE.match(settings["tool_parser"]):
        problems.append(f"GPUCTL_MODAL_TOOL_CALL_PARSER must be a vLLM parser name or none, got "
                        f"{settings['tool_parser']!r}")
    for key in ("app_name", "secret_name"):
        if not _NAME_RE.match(settings[key]):
            problems.append(f"{ENV_VARS[key]} may hold only letters, digits, '-', '_', '.' (1-64)")
    if problems:
        raise ValueError("; ".join(problems))


def container_env(settings: Mapping[str, Any]) -> dict[str, str | None]:
    """The variables that make the container's import resolve exactly these settings."""
    env: dict[str, str | None] = {}
    for key, var in ENV_VARS.items():
        value = settings[key]
        env[var] = ("1" if value else "0") if isinstance(value, bool) else str(value)
    env.update({var: str(settings[key]) for key, var in PIN_ENV_VARS.items()})
    env[PARSER_ENV_VAR] = settings["tool_parser"]
    # Where the Volumes are mounted; set explicitly so neither library guesses from $HOME.
    env["HF_HOME"] = HF_CACHE_DIR
    env["VLLM_CACHE_ROOT"] = VLLM_CACHE_DIR
    return env


def gpu_count(gpu: str) -> int:
    """`H100:2` → 2, `L4` → 1."""
    _, _, count = gpu.partition(":")
    return int(count) if count else 1


def vllm_command(settings: Mapping[str, Any], environ: Mapping[str, str] | None = None) -> list[str]:
    """The `vllm serve` argv for these settings. The API key comes from the Modal secret's env.

    The key is on vLLM's command line only inside the container (single tenant, ours); it
    never appears on the deploying machine's command line or in the app definition.
    """
    env = os.environ if environ is None else environ
    api_key = env.get(settings["api_key_env"], "")
    if not api_key:
        # The URL is public (no Modal proxy auth): never start an unprotected server.
        raise RuntimeError(
            f"{settings['api_key_env']} is empty: the Modal secret {settings['secret_name']!r} "
            "must hold it (gpuctl deploy modal creates it)"
        )
    cmd = [
        "vllm", "serve",
        "--model", settings["model"],
        "--served-model-name", settings["served_model_name"],
        "--host", "0.0.0.0",  # Modal's proxy connects from outside the container's loopback
        "--port", str(settings["port"]),
        "--max-model-len", str(settings["max_model_len"]),
        # One sequence slot per input Modal may route here, so @modal.concurrent's limit and
        # vLLM's batch agree: beyond it, Modal scales out instead of vLLM queueing.
        "--max-num-seqs", str(settings["max_inputs"]),
        "--gpu-memory-utilization", f"{settings['gpu_memory_utilization']:.2f}",
        "--api-key", api_key,
    ]
    if gpu_count(settings["gpu"]) > 1:
        cmd += ["--tensor-parallel-size", str(gpu_count(settings["gpu"]))]
    if settings["enforce_eager"]:
        cmd.append("--enforce-eager")
    if settings["tool_parser"] != "none":
        # Without these vLLM refuses every request that has `tools` (400).
        cmd += ["--enable-auto-tool-choice", "--tool-call-parser", settings["tool_parser"]]
    return cmd


# Modal sets MODAL_IS_REMOTE=1 inside its containers (modal.config does the same check).
SETTINGS: dict[str, Any] = load_settings(os.environ, remote=os.environ.get("MODAL_IS_REMOTE") == "1")

app = modal.App(SETTINGS["app_name"])

# The exact image Vast.ai runs too. Its entrypoint is `vllm serve`; clear it so Modal's own
# runtime starts the container and `serve` below launches vLLM.
image = modal.Image.from_registry(
    SETTINGS["vllm_image"], add_python=SETTINGS["modal_add_python"]
).entrypoint([])

hf_cache = modal.Volume.from_name(HF_CACHE_VOLUME, create_if_missing=True)
vllm_cache = modal.Volume.from_name(VLLM_CACHE_VOLUME, create_if_missing=True)


@app.function(
    image=image,
    gpu=SETTINGS["gpu"],
    volumes={HF_CACHE_DIR: hf_cache, VLLM_CACHE_DIR: vllm_cache},
    # required_keys: Modal refuses the deploy if the secret lacks the key, instead of a
    # container failing at start.
    secrets=[modal.Secret.from_name(SETTINGS["secret_name"], required_keys=[API_KEY_ENV])],
    env=container_env(SETTINGS),
    scaledown_window=SETTINGS["scaledown_window_s"],
    min_containers=SETTINGS["min_containers"],
    max_containers=SETTINGS["max_containers"],
    timeout=SETTINGS["timeout_s"],
)
@modal.concurrent(max_inputs=SETTINGS["max_inputs"])
# No requires_proxy_auth: the URL is public and vLLM's --api-key guards /v1/*. startup_timeout
# defaults to 5 s; a cold vLLM needs minutes to load weights.
@modal.web_server(port=PORT, startup_timeout=SETTINGS["startup_timeout_s"])
def serve() -> None:
    # Returns at once: Modal polls the port until vLLM answers (or startup_timeout passes).
    # The handle is kept so the running server is not reported as a leaked Popen.
    _SERVERS.append(subprocess.Popen(vllm_command(SETTINGS)))


_SERVERS: list[subprocess.Popen[bytes]] = []
