"""`gpuctl profile` through the real app: sources shown, bad profiles, round trips, masking, file modes.

The library side (precedence, validation, profile files, TOML I/O) is tested in tests/config/."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from gpuctl import config
from tests.support import assert_exit

REPO = Path(__file__).resolve().parents[1]


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


def test_create_from_file(cli, gpuctl_home: Path) -> None:
    src = REPO / "configs" / "profiles" / "all-three.toml"
    assert_exit(cli("profile", "create", "prod", "--from", str(src)), 0)
    s = config.load_settings(home=gpuctl_home, env={}, profile="prod")
    assert s["routing.failure_threshold"] == 3 and s.source("routing.failure_threshold") == "profile prod"


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
