"""The dated price catalog: its rows, GPU/model/provider names, loading, overrides, staleness.

Owns reading `configs/prices.toml` and `configs/throughput.toml`, applying overrides (a
profile's [prices] table, a --prices FILE), resolving names with a did-you-mean, and finding
rows older than `STALE_AFTER_DAYS`. Loading is in `load_catalog`/`load_price_file`; the rest is
pure (callers pass `today`). It never prints or exits: a bad file raises `ConfigError` naming the
file and key, an unknown name `UsageError`.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

from gpuctl.costs.money import SECONDS_PER_HOUR, _plain, _to_decimal
from gpuctl.errors import ConfigError, UsageError

PROVIDERS = ("modal", "vastai", "anthropic")
GPU_PROVIDERS = ("modal", "vastai")
_PROVIDER_ALIASES = {"vast": "vastai", "vast.ai": "vastai", "claude": "anthropic"}

STALE_AFTER_DAYS = 90  # facts/PRICES.md: a price older than ~90 days deserves a warning


# ------------------------------------------------------------------------------ catalog rows


@dataclass(frozen=True)
class PriceRow:
    """One catalog row in a provider-neutral shape (for stale warnings, --json, tables)."""

    provider: str
    key: str  # GPU or model id
    unit: str  # "$/s", "$/h", "$/M tokens"
    amounts: Mapping[str, Decimal]
    seen: date | None  # None: an undated override (your own price)
    source: str
    note: str = ""

    def age_days(self, today: date) -> int | None:
        return None if self.seen is None else (today - self.seen).days

    def is_stale(self, today: date, max_age_days: int = STALE_AFTER_DAYS) -> bool:
        age = self.age_days(today)
        return age is not None and age > max_age_days

    def describe(self) -> str:
        amounts = ", ".join(f"{k} {format(v, 'f')}" for k, v in self.amounts.items())
        seen = f"seen {self.seen.isoformat()}" if self.seen else "undated"
        return f"{self.provider} {self.key}: {amounts} ({self.unit}; {seen}; {self.source})"

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "key": self.key,
            "unit": self.unit,
            "amounts": {k: format(v, "f") for k, v in self.amounts.items()},  # as written: "0.80"
            "seen": self.seen.isoformat() if self.seen else None,
            "source": self.source,
            "note": self.note,
        }


def stale_rows(rows: Iterable[PriceRow], today: date, max_age_days: int = STALE_AFTER_DAYS) -> list[PriceRow]:
    """The rows seen more than `max_age_days` before `today` (undated overrides never are)."""
    return [r for r in rows if r.is_stale(today, max_age_days)]


def stale_warning(row: PriceRow, today: date) -> str:
    """One stderr line for a stale price, with the fix in it."""
    return (
        f"price for {row.provider} {row.key} was last seen {row.seen} ({row.age_days(today)} days ago, "
        f"source: {row.source}); check it, or override it in the profile's [prices] or with --prices FILE"
    )


@dataclass(frozen=True)
class ModalPrice:
    gpu: str
    dollars_per_second: Decimal  # what Modal bills
    dollars_per_hour: Decimal  # Modal's published hourly figure ($/s × 3600, rounded to cents)
    seen: date | None
    source: str
    note: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def row(self) -> PriceRow:
        return PriceRow("modal", self.gpu, "$/s and $/h of GPU time",
                        {"dollars_per_second": self.dollars_per_second, "dollars_per_hour": self.dollars_per_hour},
                        self.seen, self.source, self.note)


@dataclass(frozen=True)
class VastPrice:
    gpu: str
    low: Decimal  # $/h, the range seen
    high: Decimal
    typical: Decimal  # $/h used when no live price is given (the midpoint of the range)
    seen: date | None
    source: str
    note: str = ""
    aliases: tuple[str, ...] = ()

    @property
    def row(self) -> PriceRow:
        return PriceRow("vastai", self.gpu, "$/h per GPU, on-demand",
                        {"low": self.low, "high": self.high, "typical": self.typical},
                        self.seen, self.source, self.note)


@dataclass(frozen=True)
class TokenPrice:
    model: str
    input: Decimal  # $ per million input tokens
    output: Decimal  # $ per million output tokens
    seen: date | None
    source: str
    note: str = ""
    # Prompt-size tiers: a request whose prompt is above the threshold pays the long rates.
    long_context_threshold: int | None = None
    long_input: Decimal | None = None
    long_output: Decimal | None = None

    def rates_for(self, prompt_tokens: int) -> tuple[Decimal, Decimal]:
        """($/M input, $/M output) for one request with this prompt size."""
        if (self.long_context_threshold is not None and prompt_tokens > self.long_context_threshold
                and self.long_input is not None and self.long_output is not None):
            return self.long_input, self.long_output
        return self.input, self.output

    @property
    def row(self) -> PriceRow:
        amounts = {"input": self.input, "output": self.output}
        if self.long_context_threshold is not None and self.long_input is not None and self.long_output is not None:
            amounts |= {"long_context_threshold": Decimal(self.long_context_threshold),
                        "long_input": self.long_input, "long_output": self.long_output}
        return PriceRow("anthropic", self.model, "$/M tokens", amounts, self.seen, self.source, self.note)


@dataclass(frozen=True)
class Throughput:
    """How fast one GPU generates: per-stream decode speed and how many streams at once."""

    provider: str
    gpu: str
    tokens_per_second: Decimal  # typical, used by the models
    tokens_per_second_low: Decimal
    tokens_per_second_high: Decimal
    max_concurrency: int
    source: str


@dataclass(frozen=True)
class StartupTime:
    """Seconds from no GPU to serving: Modal's cold start, Vast's boot + model load."""

    provider: str
    seconds: Decimal  # typical, used by the models
    seconds_low: Decimal
    seconds_high: Decimal
    what: str
    source: str


@dataclass(frozen=True, eq=False)
class Catalog:
    """Every price and throughput assumption, loaded once per command run."""

    modal: Mapping[str, ModalPrice]
    vastai: Mapping[str, VastPrice]
    anthropic: Mapping[str, TokenPrice]
    throughput: Mapping[str, Mapping[str, Throughput]] = field(default_factory=dict)  # provider → GPU →
    startup: Mapping[str, StartupTime] = field(default_factory=dict)  # provider →
    path: Path | None = None
    throughput_path: Path | None = None

    def rows(self) -> list[PriceRow]:
        return ([p.row for p in self.modal.values()] + [p.row for p in self.vastai.values()]
                + [p.row for p in self.anthropic.values()])

    def stale_rows(self, today: date, max_age_days: int = STALE_AFTER_DAYS) -> list[PriceRow]:
        return stale_rows(self.rows(), today, max_age_days)

    def modal_price(self, gpu: str) -> ModalPrice:
        return self.modal[resolve_gpu(self, "modal", gpu)]

    def vast_price(self, gpu: str) -> VastPrice:
        return self.vastai[resolve_gpu(self, "vastai", gpu)]

    def token_price(self, model: str) -> TokenPrice:
        return self.anthropic[resolve_model(self, model)]

    def throughput_for(self, provider: str, gpu: str) -> Throughput:
        provider = resolve_provider(provider)
        key = resolve_gpu(self, provider, gpu)
        found = self.throughput.get(provider, {}).get(key)
        if found is None:
            known = ", ".join(self.throughput.get(provider, {})) or "none"
            raise UsageError(
                f"no throughput assumption for {provider} GPU {key} (known: {known})",
                hint=f'add [{provider}.gpu."{key}"] with tokens_per_second and max_concurrency to configs/throughput.toml',
            )
        return found

    def startup_for(self, provider: str) -> StartupTime:
        provider = resolve_provider(provider)
        found = self.startup.get(provider)
        if found is None:
            raise UsageError(f"no start-up time assumption for {provider}",
                             hint=f"add [{provider}.startup] to configs/throughput.toml")
        return found


# ------------------------------------------------------------------------------ names


def _norm_gpu(name: str) -> str:
    return re.sub(r"[^a-z0-9]", "", name.casefold())


def _norm_model(name: str) -> str:
    n = re.sub(r"[\s._]+", "-", name.strip().casefold())
    return re.sub(r"-\d{8}$", "", n)  # dated snapshot ids price like their alias


def _did_you_mean(word: str, choices: Mapping[str, str]) -> str:
    """` (did you mean 'L4'?)` for a near miss among normalised names, else ''."""
    close = difflib.get_close_matches(word, list(choices), n=1, cutoff=0.5)
    return f" (did you mean {choices[close[0]]!r}?)" if close else ""


def resolve_provider(name: str) -> str:
    n = name.strip().casefold()
    n = _PROVIDER_ALIASES.get(n, n)
    if n not in PROVIDERS:
        close = difflib.get_close_matches(n, PROVIDERS, n=1, cutoff=0.5)
        hint = f" (did you mean {close[0]!r}?)" if close else ""
        raise UsageError(f"unknown provider {name!r}{hint}", hint=f"choose one of: {', '.join(PROVIDERS)}")
    return n


def resolve_gpu(catalog: Catalog, provider: str, name: str) -> str:
    """The catalog's name for a GPU, ignoring case, spaces, '-' and '_', and knowing aliases
    ("a10g" → "A10", "rtx_3090" → "RTX 3090"). Unknown → `UsageError` with a did-you-mean."""
    provider = resolve_provider(provider)
    if provider not in GPU_PROVIDERS:
        raise UsageError(f"{provider} bills tokens, not GPU time: it has no GPUs to choose")
    table: Mapping[str, ModalPrice | VastPrice] = catalog.modal if provider == "modal" else catalog.vastai
    index: dict[str, str] = {}
    for key, price in table.items():
        index[_norm_gpu(key)] = key
        for alias in price.aliases:
            index.setdefault(_norm_gpu(alias), key)
    found = index.get(_norm_gpu(name))
    if found is None:
        raise UsageError(
            f"unknown {provider} GPU {name!r}{_did_you_mean(_norm_gpu(name), index)}",
            hint=f"known: {', '.join(table)}",
        )
    return found


def resolve_model(catalog: Catalog, name: str) -> str:
    """The catalog's id for an Anthropic model (case-insensitive; a dated id like
    claude-haiku-4-5-20251001 prices as claude-haiku-4-5). Unknown → `UsageError`."""
    index = {_norm_model(k): k for k in catalog.anthropic}
    found = index.get(_norm_model(name))
    if found is None:
        raise UsageError(
            f"unknown Anthropic model {name!r}{_did_you_mean(_norm_model(name), index)}",
            hint=f"known: {', '.join(catalog.anthropic)}; add a row to the profile's [prices.anthropic]",
        )
    return found


# ------------------------------------------------------------------------------ loading


def default_configs_dir() -> Path:
    """The shipped configs/: beside the package in a checkout, under share/gpuctl in a wheel."""
    from gpuctl.bundle import asset_dir

    return asset_dir("configs")


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        with path.open("rb") as f:
            # parse_float=Decimal: prices never pass through binary floating point.
            return tomllib.load(f, parse_float=Decimal)
    except FileNotFoundError:
        raise ConfigError(f"{path}: file not found",
                          hint="reinstall gpuctl, or pass the file's path explicitly") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"{path}: invalid TOML: {exc}") from None
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read: {exc.strerror or exc}") from None


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
                close = difflib.get_close_matches(str(key), allowed, n=1, cutoff=0.6)
                hint = f" (did you mean {close[0]!r}?)" if close else ""
                dotted = f"{where}.{key}" if where else str(key)
                raise ConfigError(f"{origin}: unknown key {dotted}{hint}",
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
        d = _to_decimal(self.data[key])
        if d is None:
            raise self._fail(key, f"must be a number (got {self.data[key]!r})")
        if d < 0 or (positive and d == 0):
            raise self._fail(key, f"must be {'more than 0' if positive else 'at least 0'} (got {_plain(d)})")
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

    def aliases(self) -> tuple[str, ...] | None:
        if "aliases" not in self.data:
            return None
        v = self.data["aliases"]
        if not isinstance(v, list) or not all(isinstance(a, str) and a.strip() for a in v):
            raise self._fail("aliases", f"must be a list of names (got {v!r})")
        return tuple(v)


_ROW_META = ("seen", "source", "note", "aliases")
_MODAL_KEYS = ("dollars_per_second", "dollars_per_hour", *_ROW_META)
_VAST_KEYS = ("low", "high", "typical", *_ROW_META)
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


def _parse_vast(t: _Table, gpu: str, base: VastPrice | None, override_source: str | None) -> VastPrice:
    low = t.dec("low", required=False, positive=True)
    high = t.dec("high", required=False, positive=True)
    typical = t.dec("typical", required=False, positive=True)
    if low is None and high is None and typical is None:
        if base is None:
            raise ConfigError(f"{t.origin}: {t.where}.typical is missing")
        low, high, typical = base.low, base.high, base.typical
    if typical is None:
        typical = (low + high) / 2 if low is not None and high is not None else (low or high)
    assert typical is not None
    low = typical if low is None else low
    high = typical if high is None else high
    if not low <= typical <= high:
        raise ConfigError(f"{t.origin}: {t.where}: need low ≤ typical ≤ high "
                          f"(got {_plain(low)}, {_plain(typical)}, {_plain(high)})")
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
        vastai[key] = _parse_vast(t, key, vastai.get(key), override_source)
    for key, t in rows("anthropic", _TOKEN_KEYS):
        anthropic[key] = _parse_token(t, key, anthropic.get(key), override_source)

    return Catalog(modal=modal, vastai=vastai, anthropic=anthropic,
                   throughput=base.throughput if base else {}, startup=base.startup if base else {},
                   path=base.path if base else None, throughput_path=base.throughput_path if base else None)


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
                      throughput=tp, startup=st, path=path, throughput_path=throughput_path)
    if overrides:
        catalog = apply_overrides(catalog, overrides, label=overrides_label)
    if prices_file is not None:
        catalog = apply_overrides(catalog, load_price_file(prices_file), label=str(prices_file))
    return catalog

