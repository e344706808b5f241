"""Every file in configs/ is loaded by the loader that reads it, so none can rot unnoticed."""

from __future__ import annotations

from pathlib import Path

from gpuctl import config, costs
from gpuctl.vastai.tiers import load_tiers_file

CONFIGS = Path(__file__).resolve().parents[2] / "configs"


def test_every_file_in_configs_is_known_and_loads() -> None:
    seen = set()
    for path in sorted(CONFIGS.rglob("*")):
        if path.is_dir():
            continue
        rel = path.relative_to(CONFIGS).as_posix()
        if rel.startswith("profiles/"):
            assert config.load_profile_file(path), rel
        elif rel == "prices.toml":
            catalog = costs.load_catalog(path, throughput_path=CONFIGS / "throughput.toml")
            assert catalog.modal and catalog.vastai and catalog.anthropic
        elif rel == "throughput.toml":
            catalog = costs.load_catalog(CONFIGS / "prices.toml", throughput_path=path)
            assert catalog.throughput_for("modal", "L4").tokens_per_second > 0
        elif rel == "gpu_tiers.toml":
            tiers = load_tiers_file(path)
            assert len(tiers) == 10 and tiers[0].name == "RTX 3090" and tiers[-1].name == "H100"
        else:
            raise AssertionError(f"configs/{rel} has no loader and no test")
        seen.add(rel)
    assert {"prices.toml", "throughput.toml", "gpu_tiers.toml"} <= seen
