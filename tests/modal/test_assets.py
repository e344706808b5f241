"""The deploy assets the Modal app shares with Vast.ai (gpuctl/bundle.py): the one vLLM pin and
the server limits both providers run with."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from gpuctl import bundle as deploy_assets
from gpuctl.errors import ConfigError
from gpuctl.modal.sdk import API_KEY_ENV
from tests.support.modal_app import APP_FILE, REPO, flag


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
    assert flag(args, "--model") == flag(args, "--served-model-name") == "Qwen/Qwen2.5-7B-Instruct"
    assert flag(args, "--api-key") == "vast-key"
    assert "--enforce-eager" in args
    assert not any("{" in arg for arg in args)
    # Same server limits as the Modal app, so both providers accept the same requests.
    app = load_app()
    modal_cmd = app.vllm_command(app.SETTINGS, {API_KEY_ENV: "k"})
    for name in ("--max-model-len", "--max-num-seqs", "--port", "--gpu-memory-utilization", "--host"):
        assert flag(args, name) == flag(modal_cmd, name), name


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


