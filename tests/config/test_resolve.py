"""Precedence with sources, the original package's environment variables, validation."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuctl import config
from gpuctl.errors import ConfigError


def test_defaults_follow_the_original_package(gpuctl_home: Path) -> None:
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


def test_environment_alone_works_like_the_original_package(gpuctl_home: Path) -> None:
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


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_numbers_are_refused(gpuctl_home: Path, value: str) -> None:
    # nan passes every `<`/`>` bound, so it would quietly switch budgets off
    with pytest.raises(ConfigError, match="finite number"):
        config.load_settings(env={"VASTAI_BUDGET_LIMIT": value}, home=gpuctl_home)


@pytest.mark.parametrize(
    ("dotted", "value", "expected"),
    [
        ("chat.markdown", "yes", True),
        ("chat.markdown", "off", False),
        ("modal.max_model_len", 8192.0, 8192),
        ("routing.priority", "modal, anthropic", ["modal", "anthropic"]),
        ("modal.gpu", "H100", "H100"),
    ],
)
def test_coerce_converts_each_type(dotted: str, value: object, expected: object) -> None:
    assert config.coerce(config.KEYS_BY_NAME[dotted], value, "test") == expected


@pytest.mark.parametrize(
    ("dotted", "value", "needle"),
    [
        ("chat.markdown", "maybe", "must be true or false"),
        ("modal.max_model_len", 1.5, "must be a whole number"),
        ("modal.max_model_len", 100, "must be at least 256"),
        ("chat.temperature", 3, "must be at most 2"),
        ("routing.priority", [], "routing.priority is empty"),
        ("endpoint.url", "ftp://x", r"must be an http\(s\) URL"),
    ],
)
def test_coerce_refuses_with_the_origin_named(dotted: str, value: object, needle: str) -> None:
    with pytest.raises(ConfigError, match=needle) as caught:
        config.coerce(config.KEYS_BY_NAME[dotted], value, "somewhere")
    assert caught.value.message.startswith("somewhere: ")


@pytest.mark.parametrize(
    ("value", "needle"),
    [
        ("modal,anthropic,modal", "routing.priority names modal more than once"),
        (["anthropic", "Anthropic"], "routing.priority names anthropic more than once"),
        ("modal,vastia", "unknown provider 'vastia' (did you mean 'vastai'?)"),
    ],
)
def test_priority_refuses_duplicates_and_unknown_names(value: object, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.coerce(config.KEYS_BY_NAME["routing.priority"], value, "env GPUCTL_PRIORITY")
    assert needle in caught.value.message and caught.value.message.startswith("env GPUCTL_PRIORITY: ")


def test_priority_names_are_read_in_any_case(gpuctl_home: Path) -> None:
    s = config.load_settings(env={"GPUCTL_PRIORITY": " Modal , ANTHROPIC "}, home=gpuctl_home)
    assert s["routing.priority"] == ["modal", "anthropic"]


def test_a_duplicate_in_a_profile_names_the_file(gpuctl_home: Path) -> None:
    config.create_profile(gpuctl_home, "dev")
    path = config.profile_path(gpuctl_home, "dev")
    path.write_text('[routing]\npriority = ["modal", "anthropic", "modal"]\n')
    with pytest.raises(ConfigError, match=r"dev\.toml: routing\.priority names modal more than once"):
        config.load_settings(env={"GPUCTL_PROFILE": "dev"}, home=gpuctl_home)


@pytest.mark.parametrize(("value", "stored"), [("H100", "H100"), ("a10g", "A10G"), ("h100:2", "H100:2"),
                                               ("A100 80GB", "A100-80GB")])
def test_the_modal_gpu_setting_takes_the_catalogs_spelling(value: str, stored: str) -> None:
    assert config.coerce(config.KEYS_BY_NAME["modal.gpu"], value, "test") == stored


@pytest.mark.parametrize(("value", "needle"), [("H900", "'H900' is not a Modal GPU (did you mean 'H200' or 'H100'?)"),
                                               ("H100:0", "must be 1..8"), ("RTX 3090", "is not a Modal GPU")])
def test_the_modal_gpu_setting_refuses_what_modal_does_not_offer(value: str, needle: str) -> None:
    with pytest.raises(ConfigError) as caught:
        config.coerce(config.KEYS_BY_NAME["modal.gpu"], value, "env MODAL_GPU_TYPE")
    assert caught.value.message.startswith("env MODAL_GPU_TYPE: modal.gpu: ") and needle in caught.value.message
    assert caught.value.hint in ("e.g. H100:2", "Modal GPUs: T4, L4, A10, L40S, A100-40GB, A100-80GB, RTX-PRO-6000, "
                                                "H100, H200, B200 (configs/prices.toml)")
