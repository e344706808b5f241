"""The bundled Modal app (deploy/modal/vllm_app.py) and the deploy assets, checked offline.

The app file is imported the way `modal deploy` imports it, with no Modal token, an empty HOME
(no ~/.modal.toml) and no network; what Modal would deploy is read back from `serve.info()`,
and what info() cannot show (scaledown window, port, the vLLM command) from SETTINGS.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from gpuctl import bundle as deploy_assets
from gpuctl.errors import ConfigError
from gpuctl.modal.sdk import API_KEY_ENV, ModalDeploySpec

REPO = Path(__file__).resolve().parent.parent
APP_FILE = REPO / "deploy" / "modal" / "vllm_app.py"
_OUR_VARS_PREFIXES = ("GPUCTL_MODAL_", "GPUCTL_VLLM_")


@pytest.fixture
def load_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ModuleType]]:
    """Import the app file fresh with exactly the given GPUCTL_MODAL_* variables."""
    for var in list(os.environ):
        if var.startswith(_OUR_VARS_PREFIXES) or var in ("MODAL_IS_REMOTE", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
            monkeypatch.delenv(var)
    loaded: list[str] = []

    def load(**env: str) -> ModuleType:
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        name = f"gpuctl_test_vllm_app_{uuid.uuid4().hex}"
        spec = importlib.util.spec_from_file_location(name, APP_FILE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # Modal looks the defining module up while registering `serve`
        loaded.append(name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


def _secret_reprs(info: Any) -> list[str]:
    return list(info.secrets)


def test_default_app_is_the_seeds_deployment(load_app: Callable[..., ModuleType]) -> None:
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
    assert _flag(cmd, "--model") == "meta-llama/Llama-3.1-8B-Instruct"
    assert _flag(cmd, "--max-model-len") == "8192"
    assert _flag(cmd, "--max-num-seqs") == "16"  # vLLM's batch matches Modal's per-container inputs
    assert _flag(cmd, "--tensor-parallel-size") == "2"  # both GPUs used
    assert "--enforce-eager" not in cmd


def test_vllm_command_line(load_app: Callable[..., ModuleType]) -> None:
    app = load_app()
    cmd = app.vllm_command(app.SETTINGS, {API_KEY_ENV: "s3cret-key"})

    assert cmd[:2] == ["vllm", "serve"]
    assert _flag(cmd, "--model") == "Qwen/Qwen2.5-7B-Instruct"
    assert _flag(cmd, "--served-model-name") == "Qwen/Qwen2.5-7B-Instruct"
    assert _flag(cmd, "--max-model-len") == "4096"
    assert _flag(cmd, "--max-num-seqs") == "32"
    assert _flag(cmd, "--port") == "8000"
    assert _flag(cmd, "--host") == "0.0.0.0"
    assert _flag(cmd, "--gpu-memory-utilization") == "0.90"
    assert _flag(cmd, "--api-key") == "s3cret-key"  # read from the Modal secret's variable
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
    code = (
        "import importlib.util, json\n"
        f"spec = importlib.util.spec_from_file_location('vllm_app', {str(APP_FILE)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(json.dumps(m.SETTINGS))\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert json.loads(proc.stdout) == local.SETTINGS


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
    code = (
        "import importlib.util\n"
        f"spec = importlib.util.spec_from_file_location('vllm_app', {str(APP_FILE)!r})\n"
        "m = importlib.util.module_from_spec(spec); spec.loader.exec_module(m)\n"
        "print(m.serve.info().gpus)\n"
    )
    proc = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "[('L4', 1)]"


# -- deploy assets: the pin, the Vast.ai settings --------------------------------------------


def test_the_version_is_pinned_in_exactly_one_file() -> None:
    version = deploy_assets.vllm_pin().version
    holders = [
        path.relative_to(REPO).as_posix()
        for root in (REPO / "deploy", REPO / "gpuctl", REPO / "configs")
        for path in root.rglob("*")
        if path.is_file() and path.suffix in {".py", ".toml", ".json", ".yaml", ".yml"}
        and version in path.read_text(encoding="utf-8", errors="replace")
    ]
    assert holders == ["deploy/versions.toml"]


def test_deploy_assets_locate_the_files() -> None:
    assert deploy_assets.deploy_dir() == REPO / "deploy"
    assert deploy_assets.modal_app_file() == APP_FILE
    pin = deploy_assets.vllm_pin()
    assert pin.image == "vllm/vllm-openai"
    assert pin.tag == f"v{pin.version}"


def test_vast_settings_share_the_pin_and_the_limits(load_app: Callable[..., ModuleType]) -> None:
    settings = deploy_assets.vast_container_settings()
    assert settings["image"] == deploy_assets.vllm_pin().ref
    assert settings["disk_gb"] == 40
    assert settings["ports"] == [8000]
    assert settings["docker_options"] == "-p 8000:8000"

    args = deploy_assets.render_vllm_args(settings, model="Qwen/Qwen2.5-7B-Instruct", api_key="vast-key")
    assert _flag(args, "--model") == _flag(args, "--served-model-name") == "Qwen/Qwen2.5-7B-Instruct"
    assert _flag(args, "--api-key") == "vast-key"
    assert "--enforce-eager" in args
    assert not any("{" in arg for arg in args)
    # Same server limits as the Modal app, so both providers accept the same requests.
    app = load_app()
    modal_cmd = app.vllm_command(app.SETTINGS, {API_KEY_ENV: "k"})
    for flag in ("--max-model-len", "--max-num-seqs", "--port", "--gpu-memory-utilization", "--host"):
        assert _flag(args, flag) == _flag(modal_cmd, flag), flag


def test_missing_deploy_dir_is_a_config_error(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    import gpuctl.bundle

    monkeypatch.setattr(gpuctl.bundle, "_PACKAGE_PARENT", tmp_path)
    monkeypatch.setattr(gpuctl.bundle.sys, "prefix", str(tmp_path))
    monkeypatch.setattr(gpuctl.bundle.sys, "base_prefix", str(tmp_path))
    with pytest.raises(ConfigError) as caught:
        deploy_assets.vllm_pin()
    assert caught.value.hint is not None and "install" in caught.value.hint
    assert caught.value.exit_code == 3


def test_a_literal_tag_is_refused(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    (tmp_path / "deploy").mkdir()
    (tmp_path / "deploy" / "versions.toml").write_text(
        '[vllm]\nversion = "0.32.0"\nimage = "vllm/vllm-openai"\ntag = "v0.31.0"\n'
    )
    import gpuctl.bundle

    monkeypatch.setattr(gpuctl.bundle, "_PACKAGE_PARENT", tmp_path)
    with pytest.raises(ConfigError, match="template"):
        deploy_assets.vllm_pin()


def _flag(cmd: list[str], name: str) -> str:
    assert name in cmd, f"{name} missing from {cmd}"
    return cmd[cmd.index(name) + 1]
