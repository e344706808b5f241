"""The one TOML reader and the atomic writer (gpuctl.config.files)."""

from __future__ import annotations

import stat
from decimal import Decimal
from pathlib import Path

import pytest

from gpuctl.config import read_toml, write_toml_atomic
from gpuctl.errors import ConfigError


def test_reads_floats_as_asked(tmp_path: Path) -> None:
    path = tmp_path / "p.toml"
    path.write_text("[x]\nprice = 0.1\n")
    assert read_toml(path) == {"x": {"price": 0.1}}
    assert read_toml(path, parse_float=Decimal)["x"]["price"] == Decimal("0.1")


@pytest.mark.parametrize(
    ("content", "needle"),
    [
        (b"[x\n", r"invalid TOML: .*line 1"),
        (b"\xff\xfe = 1\n", "not UTF-8 text"),
    ],
)
def test_every_failure_is_one_config_error_naming_the_file(tmp_path: Path, content: bytes, needle: str) -> None:
    path = tmp_path / "bad.toml"
    path.write_bytes(content)
    with pytest.raises(ConfigError, match=needle) as caught:
        read_toml(path, hint="fix it")
    assert caught.value.message.startswith(f"{path}: ") and caught.value.hint == "fix it"


def test_a_missing_file_has_its_own_hint(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="file not found") as caught:
        read_toml(tmp_path / "none.toml", missing_hint="reinstall", hint="other")
    assert caught.value.hint == "reinstall"


def test_atomic_write_is_private_and_drops_none(tmp_path: Path) -> None:
    path = tmp_path / "sub" / "p.toml"
    write_toml_atomic(path, {"a": {"b": 1, "c": None}, "d": None})
    assert read_toml(path) == {"a": {"b": 1}}
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert [p.name for p in path.parent.iterdir()] == ["p.toml"]
