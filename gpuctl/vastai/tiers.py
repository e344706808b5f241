"""The GPU tier list: load `configs/gpu_tiers.toml` (or the profile's own file), validate it,
and narrow it for `--gpu` / `--max-dph`.

Owns: the `Tier` shape and every check on a tiers file (unknown keys with a did-you-mean,
types, ranges). Must not: talk to Vast.ai (that is `offers`), or read settings anywhere but
`load_tiers`.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from gpuctl.config import Settings, did_you_mean, read_toml
from gpuctl.costs.money import money_str
from gpuctl.errors import ConfigError, UsageError

_FIELDS = ("name", "gpu_names", "min_vram_gb", "max_dph", "min_reliability", "min_inet_down", "min_cuda")


@dataclass(frozen=True)
class Tier:
    """One rung of the fallback ladder; every bound is inclusive."""

    name: str
    gpu_names: tuple[str, ...]  # as Vast.ai spells them in offers
    min_vram_gb: float
    max_dph: Decimal  # $/h, disk storage included
    min_reliability: float  # 0..1
    min_inet_down: float  # Mb/s
    min_cuda: float

    def as_dict(self) -> dict[str, Any]:
        return {"name": self.name, "gpu_names": list(self.gpu_names), "min_vram_gb": self.min_vram_gb,
                "max_dph": money_str(self.max_dph), "min_reliability": self.min_reliability,
                "min_inet_down": self.min_inet_down, "min_cuda": self.min_cuda}


def default_tiers_file() -> Path:
    """configs/gpu_tiers.toml as shipped (beside the package, or under share/gpuctl)."""
    from gpuctl.bundle import asset_dir

    return asset_dir("configs") / "gpu_tiers.toml"


def tiers_file(settings: Settings) -> Path:
    value = str(settings.get("vastai.gpu_tiers") or "default").strip()
    if value == "default":
        return default_tiers_file()
    return Path(value).expanduser()


def load_tiers(settings: Settings) -> list[Tier]:
    """The tiers in force: `vastai.gpu_tiers` ('default' or a TOML path)."""
    return load_tiers_file(tiers_file(settings))


def load_tiers_file(path: Path) -> list[Tier]:
    data = read_toml(path, parse_float=Decimal,
                     missing_hint="set vastai.gpu_tiers to 'default' or to an existing TOML file")
    return parse_tiers(data, str(path))


def parse_tiers(data: Mapping[str, Any], origin: str) -> list[Tier]:
    extra = [k for k in data if k != "tier"]
    if extra:
        raise ConfigError(f"{origin}: unknown table {extra[0]!r}{did_you_mean(extra[0], ['tier'])}",
                          hint="a tiers file is a list of [[tier]] tables")
    raw = data.get("tier")
    if not isinstance(raw, list) or not raw:
        raise ConfigError(f"{origin}: no [[tier]] tables", hint="see configs/gpu_tiers.toml for the shape")
    tiers = [_parse_tier(item, f"{origin}: tier {i + 1}") for i, item in enumerate(raw)]
    seen: set[str] = set()
    for tier in tiers:
        key = _norm(tier.name)
        if key in seen:
            raise ConfigError(f"{origin}: tier {tier.name!r} appears twice")
        seen.add(key)
    return tiers


def _parse_tier(item: Any, where: str) -> Tier:
    if not isinstance(item, Mapping):
        raise ConfigError(f"{where}: must be a table")
    for key in item:
        if key not in _FIELDS:
            raise ConfigError(f"{where}: unknown key {key!r}{did_you_mean(str(key), list(_FIELDS))}",
                              hint="keys: " + ", ".join(_FIELDS))
    name = item.get("name")
    if not isinstance(name, str) or not name.strip():
        raise ConfigError(f"{where}: `name` must be text")
    where = f"{where} ({name})"
    names = item.get("gpu_names", [name])
    if not isinstance(names, list) or not names or not all(isinstance(n, str) and n.strip() for n in names):
        raise ConfigError(f"{where}: `gpu_names` must be a non-empty list of GPU names")
    max_dph = _number(item, "max_dph", where)
    if max_dph <= 0:
        raise ConfigError(f"{where}: `max_dph` must be more than 0")
    reliability = _number(item, "min_reliability", where)
    if not 0 <= reliability <= 1:
        raise ConfigError(f"{where}: `min_reliability` must be between 0 and 1")
    vram, inet, cuda = (_number(item, k, where) for k in ("min_vram_gb", "min_inet_down", "min_cuda"))
    for key, value in (("min_vram_gb", vram), ("min_inet_down", inet), ("min_cuda", cuda)):
        if value < 0:
            raise ConfigError(f"{where}: `{key}` must not be negative")
    return Tier(name=name.strip(), gpu_names=tuple(n.strip() for n in names), min_vram_gb=float(vram),
                max_dph=max_dph, min_reliability=float(reliability), min_inet_down=float(inet),
                min_cuda=float(cuda))


def _number(item: Mapping[str, Any], key: str, where: str) -> Decimal:
    if key not in item:
        raise ConfigError(f"{where}: `{key}` is missing")
    value = item[key]
    if isinstance(value, bool) or not isinstance(value, int | Decimal | float):
        raise ConfigError(f"{where}: `{key}` must be a number, got {value!r}")
    try:
        d = value if isinstance(value, Decimal) else Decimal(str(value))
    except InvalidOperation:
        raise ConfigError(f"{where}: `{key}` must be a number, got {value!r}") from None
    if not d.is_finite():
        raise ConfigError(f"{where}: `{key}` must be a finite number")
    return d


def _norm(name: str) -> str:
    return re.sub(r"[\s_\-]+", "", name).lower()


def select_tiers(tiers: Sequence[Tier], *, gpu: str | None = None, max_dph: Decimal | None = None) -> list[Tier]:
    """The tiers `--gpu` names (by tier name or Vast GPU name), each capped at `--max-dph`."""
    chosen = list(tiers)
    if gpu is not None:
        want = _norm(gpu)
        chosen = [t for t in tiers if want in {_norm(t.name), *(_norm(n) for n in t.gpu_names)}]
        if not chosen:
            names = [t.name for t in tiers]
            raise UsageError(f"no GPU tier named {gpu!r}{did_you_mean(gpu, names)}",
                             hint="tiers: " + ", ".join(names) + " (add your own with vastai.gpu_tiers)")
    if max_dph is not None:
        if max_dph <= 0:
            raise UsageError(f"--max-dph must be more than 0 (got {max_dph})")
        chosen = [Tier(**{**t.__dict__, "max_dph": min(t.max_dph, max_dph)}) for t in chosen]
    return chosen
