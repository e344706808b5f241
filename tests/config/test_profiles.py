"""Profile files: atomic writes, the example profiles, the key generator."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from gpuctl import config
from gpuctl.config import files

REPO = Path(__file__).resolve().parents[2]


def test_interrupted_write_never_tears_the_file(gpuctl_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config.create_profile(gpuctl_home, "dev")
    config.set_profile_value(gpuctl_home, "dev", "modal.gpu", "L4")
    path = config.profile_path(gpuctl_home, "dev")
    before = path.read_bytes()
    real_fsync = os.fsync

    def killed(fd: int) -> None:  # the process is "killed" after writing part of the new file
        real_fsync(fd)
        raise KeyboardInterrupt

    monkeypatch.setattr(files.os, "fsync", killed)
    with pytest.raises(KeyboardInterrupt):
        config.set_profile_value(gpuctl_home, "dev", "modal.gpu", "H100")
    monkeypatch.setattr(files.os, "fsync", real_fsync)
    assert path.read_bytes() == before
    assert [p.name for p in path.parent.iterdir()] == ["dev.toml"]  # no temp file left behind
    assert config.load_profile_file(path)["modal"]["gpu"] == "L4"


def test_every_example_profile_loads() -> None:
    examples = sorted((REPO / "configs" / "profiles").glob("*.toml"))
    assert len(examples) >= 3
    for path in examples:
        data = config.load_profile_file(path)
        assert data, path


def test_new_api_keys_are_long_and_different() -> None:
    a, b = config.new_api_key(), config.new_api_key()
    assert a != b and len(a) >= 40 and a.replace("-", "").replace("_", "").isalnum()


def test_writable_profile_creates_and_activates_default(gpuctl_home: Path) -> None:
    settings = config.load_settings(env={}, home=gpuctl_home)
    assert config.writable_profile(settings) == "default"
    assert config.list_profiles(gpuctl_home) == ["default"]
    assert config.active_profile_name(gpuctl_home, env={}) == ("default", "config.toml")
