"""Profiles, precedence with sources, the seed's environment variables, validation, atomic writes."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpuctl import config
from gpuctl.errors import ConfigError

REPO = Path(__file__).resolve().parents[1]


def test_defaults_follow_the_seed(gpuctl_home: Path) -> None:
    s = config.load_settings(env={}, home=gpuctl_home)
    assert s["modal.model"] == "Qwen/Qwen2.5-7B-Instruct"
    assert s["modal.gpu"] == "L4"
    assert s["modal.scaledown_window_minutes"] == 5
    assert s["modal.max_model_len"] == 4096 and s["modal.max_concurrent_inputs"] == 32
    assert s["vastai.budget_limit"] == 15 and s["vastai.session_budget_limit"] == 2
    assert s["vastai.keep_alive_minutes"] == 45
    assert s["routing.priority"] == ["modal", "vastai", "anthropic"]
    assert s["routing.health_interval_s"] == 60
    assert s["chat.temperature"] == 0.7 and s["chat.max_tokens"] == 2048
    assert s.profile is None and s.source("modal.gpu") == "default"


def test_environment_alone_works_like_the_seed(gpuctl_home: Path) -> None:
    env = {"MODAL_WEB_URL": "https://x--multi-agent-vllm-inference-serve.modal.run", "VASTAI_API_KEY": "k" * 20,
           "VASTAI_BUDGET_LIMIT": "10", "ANTHROPIC_API_KEY": "sk-ant-" + "a" * 30, "MODAL_SCALEDOWN_WINDOW_MINUTES": "10"}
    s = config.load_settings(env=env, home=gpuctl_home)
    assert s["modal.web_url"].startswith("https://x--")
    assert s.source("modal.web_url") == "env MODAL_WEB_URL"
    assert s["vastai.budget_limit"] == 10.0
    assert s["modal.scaledown_window_minutes"] == 10.0


def test_precedence_flag_env_profile_config_default(gpuctl_home: Path) -> None:
    config.create_profile(gpuctl_home, "dev")
    config.set_active_profile(gpuctl_home, "dev")
    config.write_toml_atomic(config.config_path(gpuctl_home), {"active_profile": "dev", "modal": {"model": "org/from-config"}})
    config.set_profile_value(gpuctl_home, "dev", "modal.gpu", "A100-80GB")
    s = config.load_settings(env={}, home=gpuctl_home)
    assert (s["modal.gpu"], s.source("modal.gpu")) == ("A100-80GB", "profile dev")
    assert (s["modal.model"], s.source("modal.model")) == ("org/from-config", "config.toml")
    s = config.load_settings(env={"MODAL_GPU_TYPE": "H100"}, home=gpuctl_home)
    assert (s["modal.gpu"], s.source("modal.gpu")) == ("H100", "env MODAL_GPU_TYPE")
    s = config.load_settings(env={"MODAL_GPU_TYPE": "H100"}, home=gpuctl_home, flags={"modal.gpu": "T4"})
    assert (s["modal.gpu"], s.source("modal.gpu")) == ("T4", "flag")


def test_empty_env_value_means_unset(gpuctl_home: Path) -> None:
    s = config.load_settings(env={"ANTHROPIC_BASE_URL": ""}, home=gpuctl_home)
    assert s["anthropic.base_url"] is None


def test_bad_env_value_names_the_variable(gpuctl_home: Path) -> None:
    with pytest.raises(ConfigError, match=r"env VASTAI_BUDGET_LIMIT: vastai\.budget_limit must be a finite number"):
        config.load_settings(env={"VASTAI_BUDGET_LIMIT": "lots"}, home=gpuctl_home)


def test_interrupted_write_never_tears_the_file(gpuctl_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config.create_profile(gpuctl_home, "dev")
    config.set_profile_value(gpuctl_home, "dev", "modal.gpu", "L4")
    path = config.profile_path(gpuctl_home, "dev")
    before = path.read_bytes()
    real_fsync = os.fsync

    def killed(fd: int) -> None:  # the process is "killed" after writing part of the new file
        real_fsync(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(config.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        config.set_profile_value(gpuctl_home, "dev", "modal.gpu", "H100")
    monkeypatch.setattr(config.os, "fsync", real_fsync)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["dev.toml"]  # no temp file left behind
    assert config.load_profile_file(path)["modal"]["gpu"] == "L4"


def test_every_example_profile_loads() -> None:
    files = sorted((REPO / "configs" / "profiles").glob("*.toml"))
    assert len(files) >= 3
    for path in files:
        data = config.load_profile_file(path)
        assert data, path


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_numbers_are_refused(gpuctl_home: Path, value: str) -> None:
    # nan passes every `<`/`>` bound, so it would quietly switch budgets off
    with pytest.raises(ConfigError, match="finite number"):
        config.load_settings(env={"VASTAI_BUDGET_LIMIT": value}, home=gpuctl_home)
