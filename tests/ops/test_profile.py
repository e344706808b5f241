"""`gpuctl.ops.profile` without the CLI: each verb's data, on a temporary GPUCTL_HOME."""

from __future__ import annotations

from pathlib import Path

import pytest

from gpuctl import config
from gpuctl.errors import ConfigError, UsageError
from gpuctl.ops import profile as profiles


def test_an_empty_home_lists_nothing(gpuctl_home: Path) -> None:
    assert profiles.list_all(home=gpuctl_home) == {
        "profiles": [], "active": None, "active_source": "none", "home": str(gpuctl_home)}


def test_the_first_profile_created_becomes_active(gpuctl_home: Path) -> None:
    first = profiles.create("a", home=gpuctl_home)
    second = profiles.create("b", home=gpuctl_home)
    assert first == {"profile": "a", "file": config.profile_path(gpuctl_home, "a"), "active": True}
    assert second["active"] is False and second["file"].exists()
    listed = profiles.list_all(home=gpuctl_home)
    assert listed["profiles"] == [{"name": "a", "active": True}, {"name": "b", "active": False}]
    assert (listed["active"], listed["active_source"]) == ("a", "config.toml")
    assert profiles.list_all(flag="b", home=gpuctl_home)["active_source"] == "flag --profile"
    with pytest.raises(UsageError, match="already exists"):
        profiles.create("a", home=gpuctl_home)


def test_set_show_unset_and_secrets_come_back_masked(gpuctl_home: Path) -> None:
    profiles.create("dev", home=gpuctl_home)
    key = "sk-ant-api03-" + "x" * 40 + "f3a9"
    shown = profiles.set_value("anthropic.api_key", key, home=gpuctl_home)
    assert shown["profile"] == "dev" and shown["value"] != key and shown["value"].endswith("f3a9")
    assert profiles.set_value("modal.gpu", "A100-80GB", profile="dev", home=gpuctl_home)["value"] == "A100-80GB"
    values = profiles.show(home=gpuctl_home)["values"]
    assert values["modal"] == {"gpu": "A100-80GB"} and key not in str(values)
    assert profiles.unset_value("modal.gpu", home=gpuctl_home) == {"profile": "dev", "key": "modal.gpu", "removed": True}
    assert profiles.unset_value("modal.gpu", home=gpuctl_home)["removed"] is False


def test_show_resolved_names_every_source(gpuctl_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    profiles.create("dev", home=gpuctl_home)
    profiles.set_value("modal.gpu", "A100-80GB", home=gpuctl_home)
    monkeypatch.setenv("MODAL_MODEL", "org/model")
    data = profiles.show_resolved()
    assert data["profile"] == "dev" and data["file"] == config.profile_path(gpuctl_home, "dev")
    assert data["settings"]["modal.gpu"] == {"value": "A100-80GB", "source": "profile dev"}
    assert data["settings"]["modal.model"] == {"value": "org/model", "source": "env MODAL_MODEL"}


def test_plan_delete_removes_nothing_and_delete_removes_the_file(gpuctl_home: Path) -> None:
    profiles.create("dev", home=gpuctl_home)
    path = config.profile_path(gpuctl_home, "dev")
    assert profiles.plan_delete("dev", home=gpuctl_home) == {"dry_run": True, "would_delete": path}
    assert path.exists()
    assert profiles.delete("dev", home=gpuctl_home) == {"deleted": "dev"}
    assert not path.exists() and profiles.list_all(home=gpuctl_home)["active"] is None
    with pytest.raises(ConfigError, match="does not exist"):
        profiles.plan_delete("dev", home=gpuctl_home)
