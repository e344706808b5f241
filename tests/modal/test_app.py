"""The bundled Modal app (deploy/modal/vllm_app.py), checked offline.

The app file is imported the way `modal deploy` imports it, with no Modal token, an empty HOME
(no ~/.modal.toml) and no network; what Modal would deploy is read back from `serve.info()`,
and what info() cannot show (scaledown window, port, the vLLM command) from SETTINGS.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gpuctl import bundle as deploy_assets
from gpuctl.modal.deploy import ModalDeploySpec
from gpuctl.modal.sdk import API_KEY_ENV
from tests.support.modal_app import flag, import_app_in_fresh_process


def _secret_reprs(info: Any) -> list[str]:
    return list(info.secrets)


def test_default_app_is_the_original_deployment(load_app: Callable[..., ModuleType]) -> None:
    app = load_app()
    info = app.serve.info()

    assert app.app.name == "multi-agent-vllm-inference"  # URL: ...--multi-agent-vllm-inference-serve.modal.run
    assert info.gpus == [("L4", 1)]
    assert info.concurrency_info is not None and info.concurrency_info.max_inputs == 32
    assert info.timeout == 20 * 60
    # The container start budget must cover the web server's wait for vLLM.
    assert info.startup_timeout is not None and info.startup_timeout >= app.SETTINGS["startup_timeout_s"]
    assert {path: mount.name for path, mount in info.volumes.items()} == {
        "/root/.cache/huggingface": "gpuctl-hf-cache",
        "/root/.cache/vllm": "gpuctl-vllm-cache",
    }
    secrets = _secret_reprs(info)
    assert "modal.Secret.from_name('gpuctl-vllm-api-key')" in secrets
    baked = next(s for s in secrets if s.startswith("Secret.from_dict"))
    for var in ("GPUCTL_MODAL_GPU", "GPUCTL_MODAL_SCALEDOWN_S", "GPUCTL_VLLM_IMAGE", "HF_HOME"):
        assert var in baked
    # A public web server: vLLM's --api-key, not Modal proxy auth, guards it.
    assert info.web_info is not None and info.web_info.unauthenticated is True

    s = app.SETTINGS
    assert s["scaledown_window_s"] == 300
    assert s["min_containers"] == 0 and s["max_containers"] == 1
    assert s["port"] == 8000
    assert s["startup_timeout_s"] == 600
    assert s["model"] == s["served_model_name"] == "Qwen/Qwen2.5-7B-Instruct"
    assert s["max_model_len"] == 4096
    assert s["enforce_eager"] is True


def test_custom_environment_reaches_the_function(load_app: Callable[..., ModuleType]) -> None:
    app = load_app(
        GPUCTL_MODAL_APP_NAME="team-llm",
        GPUCTL_MODAL_MODEL="meta-llama/Llama-3.1-8B-Instruct",
        GPUCTL_MODAL_GPU="H100:2",
        GPUCTL_MODAL_SCALEDOWN_S="60",
        GPUCTL_MODAL_MIN_CONTAINERS="1",
        GPUCTL_MODAL_MAX_CONTAINERS="3",
        GPUCTL_MODAL_MAX_INPUTS="16",
        GPUCTL_MODAL_MAX_MODEL_LEN="8192",
        GPUCTL_MODAL_SECRET_NAME="team-llm-key",
        GPUCTL_MODAL_ENFORCE_EAGER="0",
    )
    info = app.serve.info()

    assert app.app.name == "team-llm"
    assert info.gpus == [("H100", 2)]
    assert info.concurrency_info is not None and info.concurrency_info.max_inputs == 16
    assert "modal.Secret.from_name('team-llm-key')" in _secret_reprs(info)
    assert app.SETTINGS["scaledown_window_s"] == 60
    assert (app.SETTINGS["min_containers"], app.SETTINGS["max_containers"]) == (1, 3)

    cmd = app.vllm_command(app.SETTINGS, {API_KEY_ENV: "key-abc"})
    assert flag(cmd, "--model") == "meta-llama/Llama-3.1-8B-Instruct"
    assert flag(cmd, "--max-model-len") == "8192"
    assert flag(cmd, "--max-num-seqs") == "16"  # vLLM's batch matches Modal's per-container inputs
    assert flag(cmd, "--tensor-parallel-size") == "2"  # both GPUs used
    assert "--enforce-eager" not in cmd


def test_vllm_command_line(load_app: Callable[..., ModuleType]) -> None:
    app = load_app()
    cmd = app.vllm_command(app.SETTINGS, {API_KEY_ENV: "s3cret-key"})

    assert cmd[:2] == ["vllm", "serve"]
    assert flag(cmd, "--model") == "Qwen/Qwen2.5-7B-Instruct"
    assert flag(cmd, "--served-model-name") == "Qwen/Qwen2.5-7B-Instruct"
    assert flag(cmd, "--max-model-len") == "4096"
    assert flag(cmd, "--max-num-seqs") == "32"
    assert flag(cmd, "--port") == "8000"
    assert flag(cmd, "--host") == "0.0.0.0"
    assert flag(cmd, "--gpu-memory-utilization") == "0.90"
    assert flag(cmd, "--api-key") == "s3cret-key"  # read from the Modal secret's variable
    assert "--enforce-eager" in cmd
    assert "--tensor-parallel-size" not in cmd


def test_vllm_command_refuses_an_unprotected_server(load_app: Callable[..., ModuleType]) -> None:
    app = load_app()
    with pytest.raises(RuntimeError, match=API_KEY_ENV):
        app.vllm_command(app.SETTINGS, {})


@pytest.mark.parametrize(
    ("var", "value", "message"),
    [
        ("GPUCTL_MODAL_SCALEDOWN_S", "1", "2..3600"),
        ("GPUCTL_MODAL_SCALEDOWN_S", "3601", "2..3600"),
        ("GPUCTL_MODAL_SCALEDOWN_S", "five", "whole number"),
        ("GPUCTL_MODAL_MODEL", "qwen", "org/name"),
        ("GPUCTL_MODAL_MIN_CONTAINERS", "2", "must not exceed"),
        ("GPUCTL_MODAL_ENFORCE_EAGER", "maybe", "1 or 0"),
    ],
)
def test_the_app_file_validates_its_settings(
    load_app: Callable[..., ModuleType], var: str, value: str, message: str
) -> None:
    with pytest.raises(ValueError, match=message):
        load_app(**{var: value})


def test_scaledown_window_bounds_are_accepted(load_app: Callable[..., ModuleType]) -> None:
    assert load_app(GPUCTL_MODAL_SCALEDOWN_S="2").SETTINGS["scaledown_window_s"] == 2
    assert load_app(GPUCTL_MODAL_SCALEDOWN_S="3600").SETTINGS["scaledown_window_s"] == 3600


def test_image_is_the_pinned_vllm_build(load_app: Callable[..., ModuleType], mocker: Any) -> None:
    import modal

    spy = mocker.spy(modal.Image, "from_registry")
    app = load_app()
    pin = deploy_assets.vllm_pin()

    assert app.SETTINGS["vllm_version"] == pin.version
    assert app.SETTINGS["vllm_image"] == pin.ref == f"vllm/vllm-openai:v{pin.version}"
    assert spy.call_args.args[0] == pin.ref


def test_container_reimport_computes_identical_settings(
    load_app: Callable[..., ModuleType], tmp_path: Path
) -> None:
    """Inside the container only the baked env is there: it must give the same SETTINGS."""
    local = load_app(GPUCTL_MODAL_GPU="A100-80GB", GPUCTL_MODAL_MAX_INPUTS="8", GPUCTL_MODAL_SCALEDOWN_S="120")
    env = {k: v for k, v in local.container_env(local.SETTINGS).items() if v is not None}
    env.update(PATH=os.environ.get("PATH", ""), HOME=str(tmp_path), MODAL_IS_REMOTE="1")
    assert json.loads(import_app_in_fresh_process(env, "json.dumps(m.SETTINGS)")) == local.SETTINGS


def test_container_pin_comes_from_the_baked_env(load_app: Callable[..., ModuleType]) -> None:
    app = load_app()
    baked = {"GPUCTL_VLLM_VERSION": "9.9.9", "GPUCTL_VLLM_IMAGE": "vllm/vllm-openai:v9.9.9", "GPUCTL_MODAL_ADD_PYTHON": "3.12"}
    assert app.load_settings(baked, remote=True)["vllm_image"] == "vllm/vllm-openai:v9.9.9"
    # Locally the baked names are ignored: versions.toml is the pin.
    assert app.load_settings(baked, remote=False)["vllm_image"] == deploy_assets.vllm_pin().ref
    with pytest.raises(RuntimeError, match="GPUCTL_VLLM_VERSION"):
        app.load_settings({}, remote=True)


def test_seam_spec_and_app_agree(load_app: Callable[..., ModuleType]) -> None:
    app = load_app()
    default = ModalDeploySpec()
    assert set(default.env()) == set(app.ENV_VARS.values())
    assert {key: app.SETTINGS[key] for key in app.DEFAULTS} == {
        key: getattr(default, key) for key in app.DEFAULTS
    }
    assert app.API_KEY_ENV == API_KEY_ENV

    custom = ModalDeploySpec(gpu="L40S", model="mistralai/Mistral-7B-Instruct-v0.3", scaledown_window_s=900,
                             min_containers=1, max_containers=4, max_inputs=24, enforce_eager=False)
    settings = load_app(**custom.env()).SETTINGS
    assert {key: settings[key] for key in app.DEFAULTS} == {key: getattr(custom, key) for key in app.DEFAULTS}


def test_importing_the_app_needs_no_token_and_no_home_config(tmp_path: Path) -> None:
    """What `modal deploy` does first, in a clean process: no token, empty HOME, no network."""
    env = {"PATH": os.environ.get("PATH", ""), "HOME": str(tmp_path)}
    assert import_app_in_fresh_process(env, "m.serve.info().gpus").strip() == "[('L4', 1)]"
