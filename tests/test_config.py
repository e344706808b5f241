"""Profiles, precedence with sources, the seed's environment variables, validation, atomic writes."""

from __future__ import annotations

import json
import os
import stat
from pathlib import Path

import pytest

from gpuctl import config
from gpuctl.errors import ConfigError
from tests.support import assert_exit

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


def test_done_when_profile_resolved_reports_env_source(cli, gpuctl_home: Path) -> None:
    assert_exit(cli("profile", "create", "dev"), 0)
    assert_exit(cli("profile", "set", "modal.gpu", "A100-80GB"), 0)
    result = cli("profile", "show", "--resolved", "--json", env={"MODAL_GPU_TYPE": "H100"})
    assert_exit(result, 0)
    doc = json.loads(result.stdout)
    assert doc["data"]["settings"]["modal.gpu"] == {"value": "H100", "source": "env MODAL_GPU_TYPE"}
    # global flag position works too
    result = cli("--json", "profile", "show", "--resolved")
    assert json.loads(result.stdout)["data"]["settings"]["modal.gpu"] == {"value": "A100-80GB", "source": "profile dev"}


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        ("[modal\ngpu = 'L4'\n", "line 1"),
        ('[modal]\ngpu_typo = "L4"\n', "modal.gpu_typo (did you mean 'gpu'?)"),
        ("[vastai]\nbudget_limit = -1\n", "vastai.budget_limit must not be negative"),
        ('[routing]\npriority = ["modal", "vastia"]\n', "unknown provider 'vastia' (did you mean 'vastai'?)"),
        ('[modal]\nmax_model_len = "big"\n', "modal.max_model_len must be a whole number"),
        ("[modl]\ngpu = 'L4'\n", "unknown section [modl] (did you mean 'modal'?)"),
    ],
)
def test_bad_profiles_exit_3_with_one_line(cli, gpuctl_home: Path, content: str, needle: str) -> None:
    path = config.profile_path(gpuctl_home, "bad")
    path.parent.mkdir(parents=True)
    path.write_text(content)
    before = path.read_bytes()
    result = cli("--profile", "bad", "profile", "show", "--resolved")
    assert_exit(result, 3)
    error_lines = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(error_lines) == 1, result.stderr
    assert str(path) in error_lines[0] and needle in error_lines[0]
    assert "Traceback" not in result.stderr
    # nothing is overwritten, even by a write attempt
    assert_exit(cli("--profile", "bad", "profile", "set", "modal.gpu", "T4"), 3)
    assert path.read_bytes() == before


def test_bad_env_value_names_the_variable(gpuctl_home: Path) -> None:
    with pytest.raises(ConfigError, match=r"env VASTAI_BUDGET_LIMIT: vastai\.budget_limit must be a finite number"):
        config.load_settings(env={"VASTAI_BUDGET_LIMIT": "lots"}, home=gpuctl_home)


def test_profile_commands_round_trip(cli, gpuctl_home: Path) -> None:
    assert_exit(cli("profile", "create", "a"), 0)
    assert_exit(cli("profile", "create", "b"), 0)
    listed = json.loads(cli("--json", "profile", "list").stdout)["data"]
    assert [p["name"] for p in listed["profiles"]] == ["a", "b"] and listed["active"] == "a"
    assert_exit(cli("profile", "use", "b"), 0)
    assert_exit(cli("profile", "set", "routing.priority", "anthropic,modal"), 0)
    assert config.load_settings(home=gpuctl_home, env={})["routing.priority"] == ["anthropic", "modal"]
    assert_exit(cli("profile", "set", "routing.priority", '["modal"]'), 0)
    assert config.load_settings(home=gpuctl_home, env={})["routing.priority"] == ["modal"]
    assert_exit(cli("profile", "unset", "routing.priority"), 0)
    assert config.load_settings(home=gpuctl_home, env={}).source("routing.priority") == "default"
    assert_exit(cli("profile", "set", "modal.gpu_typo", "x"), 2)
    assert_exit(cli("profile", "create", "a"), 2)  # never overwrites
    assert_exit(cli("profile", "delete", "a"), 2)  # no TTY, no --yes: refuses
    assert_exit(cli("profile", "delete", "a", "--yes"), 0)
    assert config.list_profiles(gpuctl_home) == ["b"]


def test_show_masks_secrets(cli, gpuctl_home: Path) -> None:
    key = "sk-ant-api03-" + "x" * 40 + "f3a9"
    assert_exit(cli("profile", "create", "dev"), 0)
    assert_exit(cli("profile", "set", "anthropic.api_key", key), 0)
    for args in (("profile", "show"), ("--json", "profile", "show"), ("profile", "show", "--resolved"),
                 ("--json", "profile", "show", "--resolved")):
        result = cli(*args)
        assert_exit(result, 0)
        assert key not in result.stdout + result.stderr
        assert "f3a9" in result.stdout
    assert "sk-ant-…f3a9" in cli("profile", "show").stdout


def test_profile_files_are_0600(cli, gpuctl_home: Path) -> None:
    assert_exit(cli("profile", "create", "dev"), 0)
    assert_exit(cli("profile", "set", "vastai.api_key", "abcdefghijklmnop"), 0)
    for path in (config.profile_path(gpuctl_home, "dev"), config.config_path(gpuctl_home)):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600


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


def test_create_from_file(cli, gpuctl_home: Path) -> None:
    src = REPO / "configs" / "profiles" / "all-three.toml"
    assert_exit(cli("profile", "create", "prod", "--from", str(src)), 0)
    s = config.load_settings(home=gpuctl_home, env={}, profile="prod")
    assert s["routing.failure_threshold"] == 3 and s.source("routing.failure_threshold") == "profile prod"


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "NaN"])
def test_non_finite_numbers_are_refused(gpuctl_home: Path, value: str) -> None:
    # nan passes every `<`/`>` bound, so it would quietly switch budgets off
    with pytest.raises(ConfigError, match="finite number"):
        config.load_settings(env={"VASTAI_BUDGET_LIMIT": value}, home=gpuctl_home)


def test_profile_may_not_name_the_active_profile(cli, gpuctl_home: Path) -> None:
    path = config.profile_path(gpuctl_home, "p")
    path.parent.mkdir(parents=True)
    path.write_text('active_profile = "x"\n')
    result = cli("profile", "show", "p")
    assert_exit(result, 3)
    assert "active_profile belongs in config.toml" in result.stderr


def test_gpuctl_home_that_is_a_file_is_a_config_error(cli, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")
    result = cli("profile", "create", "dev", env={"GPUCTL_HOME": str(not_a_dir)})
    assert_exit(result, 3)
    assert "not a directory" in result.stderr and "Traceback" not in result.stderr


def test_url_credentials_are_masked_in_human_output(cli, gpuctl_home: Path) -> None:
    assert_exit(cli("profile", "create", "dev"), 0)
    result = cli("profile", "set", "endpoint.url", "https://user:hunter2pass@llm.example")
    assert_exit(result, 0)
    assert "hunter2pass" not in result.stderr + result.stdout
    for args in (("profile", "show"), ("profile", "show", "--resolved")):
        shown = cli(*args)
        assert "hunter2pass" not in shown.stdout + shown.stderr


def test_profile_create_with_a_broken_config_writes_nothing(cli, gpuctl_home: Path) -> None:
    gpuctl_home.mkdir(parents=True)
    config.config_path(gpuctl_home).write_text("active_profile = \n")
    assert_exit(cli("profile", "create", "q"), 3)
    assert not config.profile_path(gpuctl_home, "q").exists()
