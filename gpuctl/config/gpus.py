"""The one GPU list: every GPU gpuctl knows is a row of the price catalog (configs/prices.toml),
[modal.<GPU>] or [vastai.<GPU>], with its aliases, priced or not (a Vast.ai GPU without a known
price has a row that says where it was looked for).

Why the catalog: a GPU is then added in the one place where its price, and the date and source
of that price, are written, so `deploy modal`, the Vast.ai tiers, `cost estimate` and the
`modal.gpu` setting cannot disagree (tests/costs/test_gpu_catalog.py holds configs/gpu_tiers.toml
and the Modal deploy to it).

Owns: the name normalisation (case, spaces, '-' and '_' ignored: "rtx_3090" is "RTX 3090"),
the names in the catalog's spelling, and `check_gpu` (unknown → UsageError with a did-you-mean).
Read on first use, never at import, once per file. Must not: price anything (gpuctl.costs reads
the rows' amounts and applies overrides), or print.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Mapping
from pathlib import Path

from gpuctl.config.files import read_toml
from gpuctl.config.keys import did_you_mean
from gpuctl.errors import ConfigError, UsageError

GPU_TABLES = {"modal": "Modal", "vastai": "Vast.ai"}  # provider → how its GPUs are named in messages
MODAL_MAX_GPUS = 8  # Modal's limit of GPUs per container ("H100:8")


def norm_gpu(name: str) -> str:
    """The comparison form of a GPU name: "RTX 3090", "rtx_3090" and "rtx-3090" are one GPU."""
    return re.sub(r"[^a-z0-9]", "", name.casefold())


def catalog_file() -> Path:
    from gpuctl.bundle import asset_dir  # bundle reads deploy/ too: only when a GPU is checked

    return asset_dir("configs") / "prices.toml"


@functools.cache
def _names(path: Path) -> Mapping[str, tuple[tuple[str, tuple[str, ...]], ...]]:
    data = read_toml(path, missing_hint="reinstall gpuctl, or restore configs/prices.toml")
    out: dict[str, tuple[tuple[str, tuple[str, ...]], ...]] = {}
    for provider in GPU_TABLES:
        table = data.get(provider) or {}
        out[provider] = tuple((str(name), tuple(str(a) for a in (row.get("aliases") or ()) if isinstance(a, str)))
                              for name, row in table.items() if isinstance(row, Mapping))
    return out


def gpu_rows(provider: str, path: Path | None = None) -> tuple[tuple[str, tuple[str, ...]], ...]:
    """(name, aliases) of every `provider` GPU, in the catalog's order and spelling."""
    return _names(path or catalog_file())[provider]


def gpu_names(provider: str, *, aliases: bool = False, path: Path | None = None) -> tuple[str, ...]:
    """Every `provider` GPU by its catalog name, each followed by its aliases when asked."""
    return tuple(n for name, more in gpu_rows(provider, path) for n in (name, *(more if aliases else ())))


def spelling(provider: str, name: str, path: Path | None = None) -> str | None:
    """The catalog's spelling of `name` (a name or an alias: "a10g" → "A10G"), or None."""
    index = {norm_gpu(n): n for n in reversed(gpu_names(provider, aliases=True, path=path))}
    return index.get(norm_gpu(name))


def check_gpu(provider: str, name: str, path: Path | None = None) -> str:
    """`name` in the catalog's spelling; `UsageError` with a did-you-mean when the catalog does
    not list it for `provider`."""
    found = spelling(provider, name, path)
    if found is None:
        choices = {norm_gpu(n): n for n in gpu_names(provider, aliases=True, path=path)}
        near = did_you_mean(norm_gpu(name), choices, n=2, cutoff=0.5, prefixes=False)
        raise UsageError(f"{name!r} is not a {GPU_TABLES[provider]} GPU{near}",
                         hint=f"{GPU_TABLES[provider]} GPUs: {', '.join(gpu_names(provider))} (configs/prices.toml)")
    return found


def check_gpu_setting(provider: str, value: str) -> str:
    """A GPU setting's value (`H100`, or `H100:2` for Modal) in the catalog's spelling.
    An unreadable catalog checks nothing: `gpuctl cost` reports the file itself, and routing
    must not stop for a price list."""
    name, sep, count = value.strip().partition(":")
    try:
        found = check_gpu(provider, name)
    except ConfigError:
        return value
    if not sep:
        return found
    if provider != "modal" or not count.isdigit() or not 1 <= int(count) <= MODAL_MAX_GPUS:
        what = f"1..{MODAL_MAX_GPUS}" if provider == "modal" else "not given (one GPU per instance)"
        raise UsageError(f"the GPU count in {value!r} must be {what}", hint="e.g. H100:2" if provider == "modal" else None)
    return f"{found}:{int(count)}"
