"""Reading the price catalog: `configs/prices.toml`, `configs/throughput.toml`, and the
overrides (a profile's [prices] table, a --prices FILE) applied on top.

Owns the file reading (`load_catalog`, `load_price_file`) and the parsing of price and
throughput tables into `gpuctl.costs.catalog` rows, exactly (floats in TOML are read as
`Decimal`). It never prints or exits: a bad file raises `ConfigError` naming the file and key.
"""

from __future__ import annotations

import re
from collections.abc import Iterator, Mapping, Sequence
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from gpuctl.config import did_you_mean, read_toml
from gpuctl.costs.catalog import (
    GPU_PROVIDERS,
    PROVIDERS,
    Catalog,
    ModalPrice,
    StartupTime,
    Throughput,
    TokenPrice,
    UnpricedGpu,
    VastPrice,
    resolve_gpu,
    resolve_model,
)
from gpuctl.costs.money import MAX_MAGNITUDE, SECONDS_PER_HOUR, plain, to_decimal
from gpuctl.errors import ConfigError, UsageError


def default_configs_dir() -> Path:
    """The shipped configs/: beside the package in a checkout, under share/gpuctl in a wheel."""
    from gpuctl.bundle import asset_dir

    return asset_dir("configs")


def _read_toml(path: Path) -> dict[str, Any]:
    # parse_float=Decimal: prices never pass through binary floating point.
    return read_toml(path, parse_float=Decimal, missing_hint="reinstall gpuctl, or pass the file's path explicitly")


def load_price_file(path: Path) -> dict[str, Any]:
    """A --prices FILE, shaped like configs/prices.toml, for `load_catalog(overrides=...)`."""
    return _read_toml(path)


class _Table:
    """One TOML table being parsed: typed getters that raise `ConfigError` naming file and key."""

    def __init__(self, origin: str, where: str, data: object, allowed: Sequence[str]) -> None:
        self.origin = origin
        self.where = where
        if not isinstance(data, Mapping):
            raise ConfigError(f"{origin}: {where} must be a table (got {type(data).__name__})")
        self.data: Mapping[str, Any] = data
        for key in data:
            if key not in allowed:
                dotted = f"{where}.{key}" if where else str(key)
                raise ConfigError(f"{origin}: unknown key {dotted}{did_you_mean(str(key), list(allowed))}",
                                  hint=f"allowed{' in ' + where if where else ''}: {', '.join(allowed)}")

    def has(self, key: str) -> bool:
        return key in self.data

    def _fail(self, key: str, what: str) -> ConfigError:
        return ConfigError(f"{self.origin}: {self.where}.{key} {what}")

    def dec(self, key: str, *, required: bool = True, positive: bool = False) -> Decimal | None:
        if key not in self.data:
            if required:
                raise self._fail(key, "is missing")
            return None
        d = to_decimal(self.data[key], max_magnitude=MAX_MAGNITUDE)
        if d is None:
            raise self._fail(key, f"must be a number (got {self.data[key]!r})")
        if d < 0 or (positive and d == 0):
            raise self._fail(key, f"must be {'more than 0' if positive else 'at least 0'} (got {plain(d)})")
        return d

    def req_dec(self, key: str, *, positive: bool = False) -> Decimal:
        d = self.dec(key, positive=positive)
        assert d is not None
        return d

    def int_(self, key: str, *, required: bool = True, minimum: int = 0) -> int | None:
        if key not in self.data:
            if required:
                raise self._fail(key, "is missing")
            return None
        v = self.data[key]
        if isinstance(v, bool) or not isinstance(v, int) or v < minimum:
            raise self._fail(key, f"must be a whole number ≥ {minimum} (got {v!r})")
        return v

    def str_(self, key: str, *, required: bool = True, default: str = "") -> str:
        if key not in self.data:
            if required:
                raise self._fail(key, "is missing")
            return default
        v = self.data[key]
        if not isinstance(v, str) or (required and not v.strip()):
            raise self._fail(key, f"must be a non-empty string (got {v!r})")
        return v

    def date_(self, key: str, *, required: bool = True) -> date | None:
        if key not in self.data:
            if required:
                raise self._fail(key, "is missing (the date the price was seen, e.g. 2026-10-04)")
            return None
        v = self.data[key]
        if isinstance(v, datetime):
            return v.date()
        if isinstance(v, date):
            return v
        if isinstance(v, str):
            try:
                return date.fromisoformat(v)
            except ValueError:
                pass
        raise self._fail(key, f"must be a date like 2026-10-04 (got {v!r})")

    def flag(self, key: str) -> bool:
        v = self.data.get(key, False)
        if not isinstance(v, bool):
            raise self._fail(key, f"must be true or false (got {v!r})")
        return v

    def aliases(self) -> tuple[str, ...] | None:
        if "aliases" not in self.data:
            return None
        v = self.data["aliases"]
        if not isinstance(v, list) or not all(isinstance(a, str) and a.strip() for a in v):
            raise self._fail("aliases", f"must be a list of names (got {v!r})")
        return tuple(v)


_ROW_META = ("seen", "source", "note", "aliases")
_MODAL_KEYS = ("dollars_per_second", "dollars_per_hour", *_ROW_META)
_VAST_KEYS = ("low", "high", "typical", "unpriced", *_ROW_META)
_TOKEN_KEYS = ("input", "output", "long_context_threshold", "long_input", "long_output", "seen", "source", "note")


def _meta(t: _Table, override_source: str | None) -> tuple[date | None, str, str]:
    """seen/source/note: required in the catalog; an override's default to undated, its origin."""
    if override_source is None:
        seen = t.date_("seen")
        return seen, t.str_("source"), t.str_("note", required=False)
    return (t.date_("seen", required=False), t.str_("source", required=False, default=override_source),
            t.str_("note", required=False))


def _parse_modal(t: _Table, gpu: str, base: ModalPrice | None, override_source: str | None) -> ModalPrice:
    dps = t.dec("dollars_per_second", required=False, positive=True)
    dph = t.dec("dollars_per_hour", required=False, positive=True)
    if dps is None and dph is None:
        if base is None:
            raise ConfigError(f"{t.origin}: {t.where}.dollars_per_second is missing")
        dps, dph = base.dollars_per_second, base.dollars_per_hour
    # An override giving one rate implies the other (exactly; no rounding).
    if dps is None:
        assert dph is not None
        dps = dph / SECONDS_PER_HOUR
    if dph is None:
        dph = dps * SECONDS_PER_HOUR
    seen, source, note = _meta(t, override_source)
    aliases = t.aliases()
    return ModalPrice(gpu, dps, dph, seen, source, note,
                      aliases if aliases is not None else (base.aliases if base else ()))


def _parse_vast(t: _Table, gpu: str, base: VastPrice | UnpricedGpu | None,
                override_source: str | None) -> VastPrice | UnpricedGpu:
    low = t.dec("low", required=False, positive=True)
    high = t.dec("high", required=False, positive=True)
    typical = t.dec("typical", required=False, positive=True)
    given = low is not None or high is not None or typical is not None
    if t.flag("unpriced"):
        # A GPU the catalog lists (a tier rents it) with no published range: only --dph prices it.
        if given or isinstance(base, VastPrice):
            raise ConfigError(f"{t.origin}: {t.where}: `unpriced = true` goes without low/high/typical"
                              + (", and cannot remove the catalog's price" if isinstance(base, VastPrice) else ""))
        seen, source, note = _meta(t, override_source)
        aliases = t.aliases()
        return UnpricedGpu("vastai", gpu, seen, source, note,
                           aliases if aliases is not None else (base.aliases if base else ()))
    if not given:
        if not isinstance(base, VastPrice):
            raise ConfigError(f"{t.origin}: {t.where}.typical is missing",
                              hint="give typical (or low and high) in $/h, or `unpriced = true` for a GPU whose "
                                   "price is not known")
        low, high, typical = base.low, base.high, base.typical
    if typical is None:
        typical = (low + high) / 2 if low is not None and high is not None else (low or high)
    assert typical is not None
    low = typical if low is None else low
    high = typical if high is None else high
    if not low <= typical <= high:
        raise ConfigError(f"{t.origin}: {t.where}: need low ≤ typical ≤ high "
                          f"(got {plain(low)}, {plain(typical)}, {plain(high)})")
    seen, source, note = _meta(t, override_source)
    aliases = t.aliases()
    return VastPrice(gpu, low, high, typical, seen, source, note,
                     aliases if aliases is not None else (base.aliases if base else ()))


def _parse_token(t: _Table, model: str, base: TokenPrice | None, override_source: str | None) -> TokenPrice:
    required = base is None
    inp = t.dec("input", required=required)
    out = t.dec("output", required=required)
    inp = inp if inp is not None else (base.input if base else None)
    out = out if out is not None else (base.output if base else None)
    assert inp is not None and out is not None
    threshold = t.int_("long_context_threshold", required=False, minimum=1)
    long_in = t.dec("long_input", required=False)
    long_out = t.dec("long_output", required=False)
    if threshold is None and long_in is None and long_out is None and base is not None:
        threshold, long_in, long_out = base.long_context_threshold, base.long_input, base.long_output
    if (threshold is None) != (long_in is None) or (threshold is None) != (long_out is None):
        raise ConfigError(f"{t.origin}: {t.where}: long_context_threshold, long_input and long_output "
                          "go together")
    seen, source, note = _meta(t, override_source)
    return TokenPrice(model, inp, out, seen, source, note, threshold, long_in, long_out)


def _parse_prices(data: Mapping[str, Any], origin: str, *, base: Catalog | None = None,
                  override_source: str | None = None) -> Catalog:
    """Price tables into a Catalog. With `base`, rows replace the base's rows (overrides)."""
    _Table(origin, "", data, PROVIDERS)
    modal = dict(base.modal) if base else {}
    vastai = dict(base.vastai) if base else {}
    anthropic = dict(base.anthropic) if base else {}
    unpriced = dict(base.unpriced.get("vastai", {})) if base else {}

    def key_for(provider: str, key: str) -> str:
        """An override naming a known GPU/model in any spelling replaces that row."""
        if base is None:
            return key
        try:
            if provider == "anthropic":
                return resolve_model(base, key)
            return resolve_gpu(base, provider, key)
        except UsageError:
            return key

    def rows(provider: str, allowed: Sequence[str]) -> Iterator[tuple[str, _Table]]:
        if provider not in data:
            return
        table = data[provider]
        if not isinstance(table, Mapping):
            raise ConfigError(f"{origin}: {provider} must be a table of rows (got {type(table).__name__})")
        for raw_key, raw in table.items():
            bare = re.fullmatch(r"[A-Za-z0-9_-]+", str(raw_key))
            where = f"{provider}.{raw_key}" if bare else f'{provider}."{raw_key}"'
            yield key_for(provider, str(raw_key)), _Table(origin, where, raw, allowed)

    for key, t in rows("modal", _MODAL_KEYS):
        modal[key] = _parse_modal(t, key, modal.get(key), override_source)
    for key, t in rows("vastai", _VAST_KEYS):
        row = _parse_vast(t, key, vastai.get(key) or unpriced.get(key), override_source)
        if isinstance(row, UnpricedGpu):
            unpriced[key] = row
        else:  # a price for a listed GPU without one (an override) replaces the unpriced row
            vastai[key] = row
            unpriced.pop(key, None)
    for key, t in rows("anthropic", _TOKEN_KEYS):
        anthropic[key] = _parse_token(t, key, anthropic.get(key), override_source)

    return Catalog(modal=modal, vastai=vastai, anthropic=anthropic,
                   throughput=base.throughput if base else {}, startup=base.startup if base else {},
                   path=base.path if base else None, throughput_path=base.throughput_path if base else None,
                   unpriced={"vastai": unpriced})


def _parse_throughput(data: Mapping[str, Any], origin: str, prices: Catalog) -> tuple[
        dict[str, dict[str, Throughput]], dict[str, StartupTime]]:
    _Table(origin, "", data, GPU_PROVIDERS)
    throughput: dict[str, dict[str, Throughput]] = {}
    startup: dict[str, StartupTime] = {}
    for provider, section in data.items():
        s = _Table(origin, provider, section, ("startup", "gpu"))
        if s.has("startup"):
            t = _Table(origin, f"{provider}.startup", section["startup"],
                       ("what", "seconds", "seconds_low", "seconds_high", "source"))
            secs = t.req_dec("seconds")
            startup[provider] = StartupTime(
                provider, secs, t.dec("seconds_low", required=False) or secs,
                t.dec("seconds_high", required=False) or secs, t.str_("what", required=False, default="start-up"),
                t.str_("source"))
        gpus = section.get("gpu", {})
        if not isinstance(gpus, Mapping):
            raise ConfigError(f"{origin}: {provider}.gpu must be a table of GPUs")
        for raw_key, raw in gpus.items():
            where = f'{provider}.gpu."{raw_key}"'
            try:
                key = resolve_gpu(prices, provider, str(raw_key))
            except UsageError as exc:
                raise ConfigError(f"{origin}: {where}: {exc.message}", hint=exc.hint) from None
            t = _Table(origin, where, raw, ("tokens_per_second", "tokens_per_second_low",
                                            "tokens_per_second_high", "max_concurrency", "source"))
            tps = t.req_dec("tokens_per_second", positive=True)
            conc = t.int_("max_concurrency", minimum=1)
            assert conc is not None
            throughput.setdefault(provider, {})[key] = Throughput(
                provider, key, tps, t.dec("tokens_per_second_low", required=False) or tps,
                t.dec("tokens_per_second_high", required=False) or tps, conc, t.str_("source"))
    return throughput, startup


def apply_overrides(catalog: Catalog, overrides: Mapping[str, Any], *, label: str) -> Catalog:
    """A new catalog whose rows are replaced by `overrides` (shaped like prices.toml).

    Each row replaces the catalog's row of the same GPU/model (any spelling) or adds one. An
    override row may give only some amounts: Modal $/h ↔ $/s are derived from each other, a
    Vast `typical` alone is the whole range; what it leaves out keeps the catalog's value. Its
    `source` defaults to `label`, its `seen` to undated (your own price is never reported
    stale). A bad row → `ConfigError` starting with `label` and naming the key.
    """
    return _parse_prices(overrides, label, base=catalog, override_source=label)


def load_catalog(
    path: Path | None = None,
    *,
    overrides: Mapping[str, Any] | None = None,
    overrides_label: str = "price overrides",
    prices_file: Path | None = None,
    throughput_path: Path | None = None,
) -> Catalog:
    """Read the price catalog (default: configs/prices.toml next to the gpuctl package) and
    the throughput assumptions (default: throughput.toml beside it), then apply `overrides`
    (a profile's [prices] table; source `overrides_label`) and then `prices_file` (--prices
    FILE, which wins over the profile). See `apply_overrides`. Any bad file or row →
    `ConfigError` naming the file (or label) and the key.
    """
    path = path or default_configs_dir() / "prices.toml"
    throughput_path = throughput_path or path.parent / "throughput.toml"
    catalog = _parse_prices(_read_toml(path), str(path))
    tp, st = _parse_throughput(_read_toml(throughput_path), str(throughput_path), catalog)
    catalog = Catalog(modal=catalog.modal, vastai=catalog.vastai, anthropic=catalog.anthropic,
                      throughput=tp, startup=st, path=path, throughput_path=throughput_path, unpriced=catalog.unpriced)
    if overrides:
        catalog = apply_overrides(catalog, overrides, label=overrides_label)
    if prices_file is not None:
        catalog = apply_overrides(catalog, load_price_file(prices_file), label=str(prices_file))
    return catalog

