"""GPU tiers: the shipped file loads and is ordered as documented; profiles override it; bad
files are config errors; `--gpu` and `--max-dph` select from it."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gpuctl.config import load_settings
from gpuctl.errors import ConfigError, UsageError
from gpuctl.vastai.tiers import (
    default_tiers_file,
    load_tiers,
    load_tiers_file,
    parse_tiers,
    select_tiers,
)

ORDER = ["RTX 3090", "RTX 4090", "RTX A5000", "RTX A6000", "A40", "L40S", "L40", "A100 PCIe", "A100 SXM", "H100"]


def test_shipped_tiers_are_the_ten_in_order() -> None:
    tiers = load_tiers_file(default_tiers_file())
    assert [t.name for t in tiers] == ORDER
    assert all(t.min_vram_gb >= 24 and 0 < t.max_dph <= Decimal("2.66") for t in tiers)  # fits the $2 session
    assert all(0.9 <= t.min_reliability <= 1 and t.min_inet_down > 0 and t.min_cuda > 0 for t in tiers)
    assert tiers[0].max_dph == Decimal("0.35") and isinstance(tiers[0].max_dph, Decimal)
    assert "A100 SXM4" in tiers[8].gpu_names and "H100 SXM" in tiers[9].gpu_names


def test_profile_overrides_the_tiers_file(tmp_path: Path) -> None:
    mine = tmp_path / "tiers.toml"
    mine.write_text('[[tier]]\nname = "RTX 3090"\nmin_vram_gb = 24\nmax_dph = 0.2\nmin_reliability = 0.9\n'
                    "min_inet_down = 100\nmin_cuda = 12.0\n")
    settings = load_settings(env={}, home=tmp_path, flags={"vastai.gpu_tiers": str(mine)})
    (tier,) = load_tiers(settings)
    assert tier.max_dph == Decimal("0.2") and tier.gpu_names == ("RTX 3090",)
    assert len(load_tiers(load_settings(env={}, home=tmp_path))) == 10


@pytest.mark.parametrize(("text", "needle"), [
    ('[[tier]]\nname = "X"\nmin_vram_gb = 24\nmax_dph = 0.2\nmin_reliability = 0.9\nmin_inet_down = 1\nmin_cuda = 12\nmax_dhp = 1\n', "did you mean 'max_dph'"),
    ('[[tier]]\nname = "X"\nmin_vram_gb = 24\nmax_dph = 0\nmin_reliability = 0.9\nmin_inet_down = 1\nmin_cuda = 12\n', "more than 0"),
    ('[[tier]]\nname = "X"\nmin_vram_gb = 24\nmax_dph = 0.2\nmin_reliability = 1.5\nmin_inet_down = 1\nmin_cuda = 12\n', "between 0 and 1"),
    ('[[tier]]\nname = "X"\nmin_vram_gb = 24\nmax_dph = 0.2\nmin_reliability = 0.9\nmin_inet_down = 1\n', "`min_cuda` is missing"),
    ('[[tier]]\nname = "X"\nmin_vram_gb = "big"\nmax_dph = 0.2\nmin_reliability = 0.9\nmin_inet_down = 1\nmin_cuda = 1\n', "must be a number"),
    ("[gpu]\nx = 1\n", "unknown table"),
    ("", "no [[tier]]"),
])
def test_bad_tiers_files_are_config_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_tiers_file(path)
    assert needle in err.value.message and str(path) in err.value.message


def test_duplicate_tier_and_missing_file() -> None:
    one = {"name": "A", "min_vram_gb": 1, "max_dph": Decimal(1), "min_reliability": 0, "min_inet_down": 0, "min_cuda": 0}
    with pytest.raises(ConfigError, match="twice"):
        parse_tiers({"tier": [one, {**one, "name": "a"}]}, "x")
    with pytest.raises(ConfigError, match="not found"):
        load_tiers_file(Path("/nonexistent/tiers.toml"))


def test_select_by_gpu_name_and_cap_by_max_dph() -> None:
    tiers = load_tiers_file(default_tiers_file())
    assert [t.name for t in select_tiers(tiers, gpu="rtx-4090")] == ["RTX 4090"]
    assert [t.name for t in select_tiers(tiers, gpu="A100 SXM4")] == ["A100 SXM"]  # the Vast spelling works too
    capped = select_tiers(tiers, max_dph=Decimal("0.5"))
    assert [t.max_dph for t in capped[:2]] == [Decimal("0.35"), Decimal("0.5")]
    with pytest.raises(UsageError, match="did you mean 'RTX 4090'"):
        select_tiers(tiers, gpu="RTX 4909")
    with pytest.raises(UsageError, match="more than 0"):
        select_tiers(tiers, max_dph=Decimal(0))
