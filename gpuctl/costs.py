"""The dated price catalog and the cost math: what a GPU hour, a burst of traffic or a ledger of
real requests costs on Modal, Vast.ai and Anthropic.

Owns: reading `configs/prices.toml` and `configs/throughput.toml` (and price overrides from a
profile's [prices] table or a --prices file), resolving GPU and model names, and pure money
math in `Decimal`. Loading is in the `load_*` functions; everything else is pure (no I/O, no
clock: callers pass `today`). Nothing here prints, exits, opens the database or talks to a
provider; bad input raises `UsageError`, a bad file `ConfigError`. Rounding happens only in
`round_money`, for display.

Rate bases (why two Modal rates): Modal bills per second (`dollars_per_second`, L4 0.000222)
and publishes an hourly figure rounded to cents (`dollars_per_hour`, L4 0.80 = 0.000222 × 3600 =
0.7992 rounded). Estimates stated in hours (`estimate_gpu_time`, `monthly_gpu_cost`) use the
published $/h, so they match Modal's page and the seed's own arithmetic (2 h/day × 30 × $0.80 =
$48.00, where 216,000 s × $0.000222 would be $47.952). Container time that is modelled or
replayed second by second (traffic models, `replay_usage`) is priced at $/s, which is what
Modal actually bills.
"""

from __future__ import annotations

import difflib
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import date, datetime
from decimal import ROUND_CEILING, ROUND_FLOOR, ROUND_HALF_UP, Decimal, InvalidOperation
from pathlib import Path
from typing import Any

from gpuctl.errors import ConfigError, UsageError

PROVIDERS = ("modal", "vastai", "anthropic")
GPU_PROVIDERS = ("modal", "vastai")
_PROVIDER_ALIASES = {"vast": "vastai", "vast.ai": "vastai", "claude": "anthropic"}

DAYS_PER_MONTH = 30  # the seed's monthly basis (2 h/day × 30 days)
SECONDS_PER_HOUR = 3600
SECONDS_PER_DAY = 86400
STALE_AFTER_DAYS = 90  # facts/PRICES.md: a price older than ~90 days deserves a warning

# Defaults from the seed README; the CLI passes the active profile's values instead.
DEFAULT_SCALEDOWN_WINDOW_S = 300  # MODAL_SCALEDOWN_WINDOW_MINUTES=5
DEFAULT_KEEP_ALIVE_S = 2700  # the seed's Vast example: "45 minutes keep-alive"
DEFAULT_MODAL_GPU = "L4"
DEFAULT_VAST_GPU = "RTX 3090"
DEFAULT_MODEL = "claude-haiku-4-5"
# Assumptions (not from the seed), shown in every estimate: a support-chat turn carries the
# conversation as prompt, so input outweighs output about 3:1; traffic comes in a working day's
# worth of bursts (one an hour for 8 hours).
DEFAULT_INPUT_TOKENS = 1050
DEFAULT_OUTPUT_TOKENS = 350
DEFAULT_BURSTS_PER_DAY = 8
# A single --tokens-per-request total is split input:output by this share of output tokens.
OUTPUT_SHARE = Decimal("0.25")

_MILLION = Decimal(1_000_000)
_CENT = Decimal("0.01")
_RATIO_PLACES = Decimal("0.0001")  # $/M tokens is a derived ratio: to 1/100 of a cent


# ------------------------------------------------------------------------------ numbers

Number = Decimal | int | str | float


def _to_decimal(value: object) -> Decimal | None:
    """Exact conversion, or None. Floats go through repr so 0.14 stays 0.14."""
    if isinstance(value, bool):
        return None
    try:
        if isinstance(value, Decimal):
            d = value
        elif isinstance(value, int):
            d = Decimal(value)
        elif isinstance(value, float):
            d = Decimal(repr(value))
        elif isinstance(value, str):
            d = Decimal(value.strip())
        else:
            return None
    except InvalidOperation:
        return None
    return d if d.is_finite() else None


def _num(value: Number, what: str, *, minimum: Decimal | int | None = 0,
         maximum: Decimal | int | None = None, positive: bool = False) -> Decimal:
    """A validated Decimal from user input; one-line `UsageError` otherwise."""
    d = _to_decimal(value)
    if d is None:
        raise UsageError(f"{what} must be a number (got {value!r})")
    if positive and d <= 0:
        raise UsageError(f"{what} must be more than 0 (got {_plain(d)})")
    if minimum is not None and d < minimum:
        raise UsageError(f"{what} must not be negative (got {_plain(d)})" if minimum == 0
                         else f"{what} must be at least {minimum} (got {_plain(d)})")
    if maximum is not None and d > maximum:
        raise UsageError(f"{what} must be at most {maximum} (got {_plain(d)})")
    return d


def _int(value: int, what: str, *, minimum: int = 0) -> int:
    if isinstance(value, bool) or not isinstance(value, int):
        d = _to_decimal(value)
        if d is None or d != d.to_integral_value():
            raise UsageError(f"{what} must be a whole number (got {value!r})")
        value = int(d)
    if value < minimum:
        raise UsageError(f"{what} must be at least {minimum} (got {value})")
    return value


def round_money(d: Decimal, places: int = 2) -> Decimal:
    """For display only: half-up to `places` (0.105 → 0.11, 0.3996 → 0.40)."""
    return d.quantize(Decimal(1).scaleb(-places), rounding=ROUND_HALF_UP)


def _tidy_money(d: Decimal) -> Decimal:
    """The same value with no trailing zeros past the cents: 0.1050 → 0.105, 48 → 48.00."""
    n = d.normalize()
    exp = n.as_tuple().exponent
    if isinstance(exp, int) and exp > -2:
        return n.quantize(_CENT)
    return n


def money_str(d: Decimal | None) -> str | None:
    """Exact money as a JSON string: '48.00', '0.105', '0.3996'."""
    return None if d is None else format(_tidy_money(d), "f")


def _usd(d: Decimal) -> str:
    """A price for people: at least cents, exact beyond ('0.30', '0.000222', '0.225')."""
    return money_str(d) or "0.00"


def _plain(d: Decimal | None) -> str | None:
    """An exact decimal as a plain string without exponent or trailing zeros: '28800', '2.5'."""
    if d is None:
        return None
    n = d.normalize()
    return format(n, "f") if n != 0 else "0"


def _ceil(d: Decimal) -> Decimal:
    return d.to_integral_value(rounding=ROUND_CEILING)


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
    """configs/ next to the gpuctl package (the repository layout)."""
    return Path(__file__).resolve().parent.parent / "configs"


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


# ------------------------------------------------------------------------------ basic math


def modal_cost(dollars_per_second: Number, seconds: Number) -> Decimal:
    """Per-second billing: 1800 s × $0.000222 = $0.3996 (shown $0.40)."""
    return _num(dollars_per_second, "price per second") * _num(seconds, "seconds")


def gpu_time_cost(*, dollars_per_hour: Number, hours: Number) -> Decimal:
    """Hourly rate × hours: 0.75 h × $0.14 = $0.105."""
    return _num(dollars_per_hour, "price per hour") * _num(hours, "hours")


def monthly_gpu_cost(*, dollars_per_hour: Number, hours_per_day: Number, days: Number = DAYS_PER_MONTH) -> Decimal:
    """$/h × hours/day × days: $0.80 × 2 × 30 = $48.00."""
    return (_num(dollars_per_hour, "price per hour")
            * _num(hours_per_day, "hours per day", maximum=24)
            * _num(days, "days", minimum=None, positive=True))


def token_cost(price: TokenPrice, input_tokens: int, output_tokens: int, *, prompt_tokens: int | None = None) -> Decimal:
    """One request's token bill. `prompt_tokens` picks the price tier (default: input_tokens),
    so pass per-request counts for a model with prompt-size tiers."""
    inp = _int(input_tokens, "input tokens")
    out = _int(output_tokens, "output tokens")
    rate_in, rate_out = price.rates_for(inp if prompt_tokens is None else prompt_tokens)
    return (inp * rate_in + out * rate_out) / _MILLION


def instance_cost(*, dollars_per_hour: Number, started_at: Number, ended_at: Number) -> Decimal:
    """A Vast instance's bill for its lifetime (epoch seconds): it bills while it exists."""
    start = _num(started_at, "start time", minimum=None)
    end = _num(ended_at, "end time", minimum=None)
    if end < start:
        raise UsageError(f"end time {_plain(end)} is before start time {_plain(start)}")
    return _num(dollars_per_hour, "price per hour") * (end - start) / SECONDS_PER_HOUR


# ------------------------------------------------------------------------------ estimates


@dataclass(frozen=True)
class Estimate:
    """One provider's cost for one scenario. Money is exact; round only to display."""

    provider: str
    key: str  # the GPU or model priced
    total: Decimal  # for the period (`days`, or the one-off hours)
    per_month: Decimal | None  # per 30 days; None for a one-off period
    days: Decimal | None  # the period in days; None for a one-off
    gpu_seconds: Decimal | None  # billed GPU time in the period; None when billed by tokens
    tokens: Decimal | None = None  # input + output tokens served in the period
    per_million_tokens: Decimal | None = None  # total / tokens × 10⁶, the same basis for everyone
    assumptions: Mapping[str, str] = field(default_factory=dict)
    prices: tuple[PriceRow, ...] = ()  # catalog rows used (for the stale warning)

    def stale_rows(self, today: date, max_age_days: int = STALE_AFTER_DAYS) -> list[PriceRow]:
        return stale_rows(self.prices, today, max_age_days)

    def as_dict(self) -> dict[str, Any]:
        """For --json: exact decimals as strings, plus the assumptions and prices used."""
        return {
            "provider": self.provider,
            "key": self.key,
            "total": money_str(self.total),
            "per_month": money_str(self.per_month),
            "days": _plain(self.days),
            "gpu_seconds": _plain(self.gpu_seconds),
            "gpu_hours": _plain(None if self.gpu_seconds is None
                                else (self.gpu_seconds / SECONDS_PER_HOUR).quantize(_RATIO_PLACES, ROUND_HALF_UP)),
            "tokens": _plain(self.tokens),
            "per_million_tokens": money_str(self.per_million_tokens),
            "assumptions": dict(self.assumptions),
            "prices": [r.as_dict() for r in self.prices],
        }


def _per_million(total: Decimal, tokens: Decimal | None) -> Decimal | None:
    if not tokens:
        return None
    return (total * _MILLION / tokens).quantize(_RATIO_PLACES, rounding=ROUND_HALF_UP)


def _price_note(row: PriceRow) -> str:
    seen = f"seen {row.seen}" if row.seen else "undated override"
    return f"{seen}, {row.source}"


def estimate_gpu_time(
    catalog: Catalog,
    *,
    provider: str,
    gpu: str,
    hours_per_day: Number | None = None,
    hours: Number | None = None,
    days: Number = DAYS_PER_MONTH,
    dollars_per_hour: Number | None = None,
) -> Estimate:
    """Cost of GPU time, stated in hours: either `hours_per_day` for `days` (a monthly
    estimate) or a one-off `hours`. Modal: its published $/h (see the module docstring: this
    is what makes 2 h/day × 30 = $48.00); Vast.ai: `dollars_per_hour` (a live offer, --dph) or
    the catalog's typical $/h. Anthropic bills tokens, not time → `UsageError`."""
    provider = resolve_provider(provider)
    if provider == "anthropic":
        raise UsageError("anthropic bills tokens, not GPU time",
                         hint="estimate it by traffic: --requests-per-day N --tokens-per-request T")
    if (hours_per_day is None) == (hours is None):
        raise UsageError("give either hours per day or one-off hours, not both" if hours is not None
                         else "give hours per day (or one-off hours) to estimate GPU time")
    live = None if dollars_per_hour is None else _num(dollars_per_hour, "price per hour", positive=True)

    prices: tuple[PriceRow, ...] = ()
    assumptions: dict[str, str] = {}
    if provider == "modal":
        mp = catalog.modal_price(gpu)
        key = mp.gpu
        if live is None:
            rate = mp.dollars_per_hour
            prices = (mp.row,)
            assumptions["price"] = (f"{key} ${_usd(rate)}/h, Modal's published hourly rate "
                                    f"(bills ${_usd(mp.dollars_per_second)}/s; {_price_note(mp.row)})")
            assumptions["rate_basis"] = ("published $/h: hour-based estimates match Modal's page and the seed "
                                         "($0.80 × 2 h × 30 = $48.00); per-second billing would be "
                                         "$/s × 3600 × hours")
        else:
            rate = live
            assumptions["price"] = f"{key} ${_usd(rate)}/h (given)"
    else:
        try:
            vp: VastPrice | None = catalog.vast_price(gpu)
        except UsageError:
            if live is None:
                raise
            vp = None  # a live offer for a GPU the catalog doesn't list: the name is a label
        key = vp.gpu if vp else gpu
        if live is None:
            assert vp is not None
            rate = vp.typical
            prices = (vp.row,)
            assumptions["price"] = (f"{key} ${_usd(rate)}/h typical (range ${_usd(vp.low)}–${_usd(vp.high)}; "
                                    f"{_price_note(vp.row)}); the live offer is the truth: pass its $/h")
        else:
            rate = live
            assumptions["price"] = f"{key} ${_usd(rate)}/h (given)"
        assumptions["billing"] = "Vast.ai bills the whole time the instance exists"

    if hours is not None:
        h = _num(hours, "hours")
        total = gpu_time_cost(dollars_per_hour=rate, hours=h)
        assumptions["hours"] = _plain(h) or "0"
        return Estimate(provider, key, _tidy_money(total), None, None, h * SECONDS_PER_HOUR,
                        assumptions=assumptions, prices=prices)

    assert hours_per_day is not None
    hpd = _num(hours_per_day, "hours per day", maximum=24)
    d = _num(days, "days", minimum=None, positive=True)
    total = monthly_gpu_cost(dollars_per_hour=rate, hours_per_day=hpd, days=d)
    per_month = monthly_gpu_cost(dollars_per_hour=rate, hours_per_day=hpd, days=DAYS_PER_MONTH)
    assumptions["hours_per_day"] = _plain(hpd) or "0"
    assumptions["days"] = _plain(d) or "0"
    return Estimate(provider, key, _tidy_money(total), _tidy_money(per_month), d, hpd * d * SECONDS_PER_HOUR,
                    assumptions=assumptions, prices=prices)


# ------------------------------------------------------------------------------ traffic models


@dataclass(frozen=True)
class Traffic:
    """A day's traffic: `requests_per_day` in `bursts_per_day` bursts. The requests of a burst
    arrive together and share one GPU, `concurrency` at a time (None: the GPU's max)."""

    requests_per_day: Decimal
    input_tokens: int  # per request
    output_tokens: int  # per request
    bursts_per_day: Decimal = Decimal(DEFAULT_BURSTS_PER_DAY)
    concurrency: int | None = None
    days: Decimal = Decimal(DAYS_PER_MONTH)

    @classmethod
    def build(
        cls,
        *,
        requests_per_day: Number,
        tokens_per_request: int | None = None,
        input_tokens: int | None = None,
        output_tokens: int | None = None,
        bursts_per_day: Number | None = None,
        concurrency: int | None = None,
        days: Number = DAYS_PER_MONTH,
    ) -> Traffic:
        """Validated traffic from CLI-shaped values. A single `tokens_per_request` total is
        split input:output 3:1 (OUTPUT_SHARE); give input/output tokens to set both."""
        r = _num(requests_per_day, "requests per day")
        if tokens_per_request is not None:
            if input_tokens is not None or output_tokens is not None:
                raise UsageError("give tokens per request, or input and output tokens, not both")
            total = _int(tokens_per_request, "tokens per request", minimum=1)
            out = int((total * OUTPUT_SHARE).to_integral_value(rounding=ROUND_HALF_UP))
            out = min(max(out, 1), total)
            inp = total - out
        else:
            inp = DEFAULT_INPUT_TOKENS if input_tokens is None else _int(input_tokens, "input tokens")
            out = DEFAULT_OUTPUT_TOKENS if output_tokens is None else _int(output_tokens, "output tokens", minimum=1)
        b = (Decimal(DEFAULT_BURSTS_PER_DAY) if bursts_per_day is None
             else _num(bursts_per_day, "bursts per day", positive=True))
        c = None if concurrency is None else _int(concurrency, "concurrency", minimum=1)
        d = _num(days, "days", minimum=None, positive=True)
        return cls(r, inp, out, b, c, d)

    def __post_init__(self) -> None:
        if self.requests_per_day < 0:
            raise UsageError(f"requests per day must not be negative (got {_plain(self.requests_per_day)})")
        if self.input_tokens < 0:
            raise UsageError(f"input tokens must not be negative (got {self.input_tokens})")
        if self.output_tokens < 1:
            # Generation time is output tokens / speed: a request must generate something.
            raise UsageError(f"output tokens must be at least 1 (got {self.output_tokens})")
        if self.bursts_per_day <= 0:
            raise UsageError(f"bursts per day must be more than 0 (got {_plain(self.bursts_per_day)})")
        if self.days <= 0:
            raise UsageError(f"days must be more than 0 (got {_plain(self.days)})")
        if self.concurrency is not None and self.concurrency < 1:
            raise UsageError(f"concurrency must be at least 1 (got {self.concurrency})")

    @property
    def tokens_per_request(self) -> int:
        return self.input_tokens + self.output_tokens

    def describe(self) -> dict[str, str]:
        return {
            "requests_per_day": _plain(self.requests_per_day) or "0",
            "input_tokens_per_request": str(self.input_tokens),
            "output_tokens_per_request": str(self.output_tokens),
            "bursts_per_day": _plain(self.bursts_per_day) or "0",
            "days": _plain(self.days) or "0",
        }


@dataclass(frozen=True)
class BurstDay:
    """One day of the burst model on one GPU (seconds)."""

    bursts: Decimal  # bursts that actually happen: min(bursts/day, requests/day)
    requests_per_burst: Decimal
    waves: Decimal  # request-times a burst keeps the GPU busy: max(1, requests_per_burst / concurrency)
    active_s: Decimal  # generating
    billed_s: Decimal  # billed: per burst start-up + active + tail, at most the whole day


def burst_day(*, requests_per_day: Decimal, bursts_per_day: Decimal, concurrency: int,
              seconds_per_request: Decimal, overhead_s: Decimal) -> BurstDay:
    """The burst model. A burst of n requests runs `concurrency` at a time, so it keeps the GPU
    generating for max(1, n / concurrency) request-times (a fluid count of waves: the cost grows
    smoothly with traffic); each burst also pays `overhead_s` (start-up + idle tail). Bursts are
    spread over the day, so when they would overlap the GPU simply stays up: billed time is
    capped at 24 h/day."""
    r = requests_per_day
    if r <= 0:
        return BurstDay(Decimal(0), Decimal(0), Decimal(0), Decimal(0), Decimal(0))
    bursts = min(bursts_per_day, r)
    n = r / bursts
    waves = max(Decimal(1), n / concurrency)
    active = bursts * waves * seconds_per_request
    billed = min(Decimal(SECONDS_PER_DAY), bursts * (overhead_s + waves * seconds_per_request))
    return BurstDay(bursts, n, waves, active, billed)


def _seconds_per_request(traffic: Traffic, throughput: Throughput) -> Decimal:
    # Decode time only: prompt processing is much faster than generation and not modelled.
    return Decimal(traffic.output_tokens) / throughput.tokens_per_second


def _concurrency(traffic: Traffic, throughput: Throughput) -> int:
    return min(traffic.concurrency or throughput.max_concurrency, throughput.max_concurrency)


def _check_capacity(day: BurstDay, provider: str, gpu: str) -> None:
    if day.active_s > SECONDS_PER_DAY:
        raise UsageError(
            f"this traffic needs {_plain(round_money(day.active_s / SECONDS_PER_HOUR, 1))} GPU-hours of generation "
            f"a day: more than one {provider} {gpu} can serve",
            hint="lower the requests per day, or raise the concurrency if the GPU allows it",
        )


def _throughput_notes(throughput: Throughput, startup: StartupTime, conc: int, t: Decimal) -> dict[str, str]:
    return {
        "throughput": (f"{_plain(throughput.tokens_per_second)} output tok/s per stream "
                       f"(range {_plain(throughput.tokens_per_second_low)}–{_plain(throughput.tokens_per_second_high)}), "
                       f"up to {throughput.max_concurrency} streams; {throughput.source}"),
        "concurrency": str(conc),
        "seconds_per_request": _plain(t) or "0",
        "startup": (f"{_plain(startup.seconds)} s {startup.what} "
                    f"(range {_plain(startup.seconds_low)}–{_plain(startup.seconds_high)} s); {startup.source}"),
    }


def modal_traffic_cost(
    traffic: Traffic,
    *,
    price: ModalPrice,
    throughput: Throughput,
    startup: StartupTime,
    scaledown_window_s: Number = DEFAULT_SCALEDOWN_WINDOW_S,
) -> Estimate:
    """Modal bills each burst's container time per second: cold start + generation + the
    scaledown-window tail after the last request. Requests of a burst share one container
    (max_containers=1) up to the concurrency."""
    window = _num(scaledown_window_s, "scaledown window")
    t = _seconds_per_request(traffic, throughput)
    conc = _concurrency(traffic, throughput)
    day = burst_day(requests_per_day=traffic.requests_per_day, bursts_per_day=traffic.bursts_per_day,
                    concurrency=conc, seconds_per_request=t, overhead_s=startup.seconds + window)
    _check_capacity(day, "modal", price.gpu)
    total = day.billed_s * traffic.days * price.dollars_per_second
    per_month = day.billed_s * DAYS_PER_MONTH * price.dollars_per_second
    tokens = traffic.requests_per_day * traffic.tokens_per_request * traffic.days
    assumptions = {
        "price": f"{price.gpu} ${_usd(price.dollars_per_second)}/s, billed per second of container time "
                 f"({_price_note(price.row)})",
        **traffic.describe(),
        **_throughput_notes(throughput, startup, conc, t),
        "scaledown_window_s": _plain(window) or "0",
        "model": "per burst: cold start + generation + scaledown-window tail; one container; "
                 "capped at 24 h/day; CPU and memory not included",
        "billed_seconds_per_day": _plain(day.billed_s) or "0",
    }
    return Estimate("modal", price.gpu, _tidy_money(total), _tidy_money(per_month), traffic.days,
                    day.billed_s * traffic.days, tokens, _per_million(total, tokens), assumptions, (price.row,))


def vast_traffic_cost(
    traffic: Traffic,
    *,
    price: VastPrice,
    throughput: Throughput,
    startup: StartupTime,
    keep_alive_s: Number = DEFAULT_KEEP_ALIVE_S,
    dollars_per_hour: Number | None = None,
) -> Estimate:
    """Vast.ai bills the whole time an instance is kept: per burst, boot + generation +
    keep-alive after the last request (then it is destroyed), capped at 24 h/day (a box kept
    between every burst is simply up all day). Price: `dollars_per_hour` (a live offer) or the
    catalog's typical $/h."""
    keep = _num(keep_alive_s, "keep-alive")
    live = None if dollars_per_hour is None else _num(dollars_per_hour, "price per hour", positive=True)
    rate = price.typical if live is None else live
    t = _seconds_per_request(traffic, throughput)
    conc = _concurrency(traffic, throughput)
    day = burst_day(requests_per_day=traffic.requests_per_day, bursts_per_day=traffic.bursts_per_day,
                    concurrency=conc, seconds_per_request=t, overhead_s=startup.seconds + keep)
    _check_capacity(day, "vastai", price.gpu)
    total = day.billed_s * traffic.days * rate / SECONDS_PER_HOUR
    per_month = day.billed_s * DAYS_PER_MONTH * rate / SECONDS_PER_HOUR
    tokens = traffic.requests_per_day * traffic.tokens_per_request * traffic.days
    price_note = (f"{price.gpu} ${_usd(rate)}/h (given)" if live is not None else
                  f"{price.gpu} ${_usd(rate)}/h typical (range ${_usd(price.low)}–${_usd(price.high)}; "
                  f"{_price_note(price.row)})")
    assumptions = {
        "price": price_note,
        **traffic.describe(),
        **_throughput_notes(throughput, startup, conc, t),
        "keep_alive_s": _plain(keep) or "0",
        "model": "per burst: boot + generation + keep-alive after the last request, then destroyed; "
                 "capped at 24 h/day; storage while stopped not included",
        "billed_seconds_per_day": _plain(day.billed_s) or "0",
    }
    return Estimate("vastai", price.gpu, _tidy_money(total), _tidy_money(per_month), traffic.days,
                    day.billed_s * traffic.days, tokens, _per_million(total, tokens), assumptions,
                    (price.row,) if live is None else ())


def anthropic_traffic_cost(traffic: Traffic, *, price: TokenPrice) -> Estimate:
    """Anthropic bills tokens: input and output per million, per request (prompt-size tiers
    are applied per request)."""
    per_request = token_cost(price, traffic.input_tokens, traffic.output_tokens)
    total = per_request * traffic.requests_per_day * traffic.days
    per_month = per_request * traffic.requests_per_day * DAYS_PER_MONTH
    tokens = traffic.requests_per_day * traffic.tokens_per_request * traffic.days
    rate_in, rate_out = price.rates_for(traffic.input_tokens)
    assumptions = {
        "price": f"{price.model} ${_usd(rate_in)}/M input, ${_usd(rate_out)}/M output ({_price_note(price.row)})",
        **traffic.describe(),
        "cost_per_request": money_str(per_request) or "0",
        "model": "tokens only; no batch discount, no prompt caching",
    }
    return Estimate("anthropic", price.model, _tidy_money(total), _tidy_money(per_month), traffic.days,
                    None, tokens, _per_million(total, tokens), assumptions, (price.row,))


# ------------------------------------------------------------------------------ break-even


@dataclass(frozen=True)
class BreakEven:
    """The traffic from which a GPU provider is cheaper than the API (and stays cheaper up to
    what one GPU can serve), for a given request shape and burst pattern."""

    provider: str
    gpu: str
    versus: str  # the Anthropic model
    requests_per_day: Decimal | None  # None: the API stays cheaper up to capacity
    tokens_per_day: Decimal | None
    capacity_requests_per_day: Decimal  # what one GPU can serve under these assumptions
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "gpu": self.gpu,
            "versus": self.versus,
            "requests_per_day": _plain(self.requests_per_day),
            "tokens_per_day": _plain(self.tokens_per_day),
            "capacity_requests_per_day": _plain(self.capacity_requests_per_day),
            "note": self.note,
        }


def break_even(
    *,
    provider: str,
    gpu: str,
    versus: str,
    api_cost_per_request: Decimal,
    gpu_cost_per_second: Decimal,
    tokens_per_request: int,
    bursts_per_day: Decimal,
    concurrency: int,
    seconds_per_request: Decimal,
    overhead_s: Decimal,
) -> BreakEven:
    """Solve the burst model for the requests/day where GPU cost ≤ API cost from there on.

    Both daily costs are piecewise linear in requests/day R: the API is a × R; the GPU's
    billed seconds are R × (o + t) while R ≤ bursts (one request per burst), flat B × (o + t)
    until a burst fills the concurrency, then B × o + R × t / c, capped at a day. Between the
    breakpoints the difference is linear, so scanning the pieces from one GPU's capacity
    downwards finds the last crossing exactly.
    """
    a, rate, b, c, t, o = api_cost_per_request, gpu_cost_per_second, bursts_per_day, concurrency, seconds_per_request, overhead_s
    day_s = Decimal(SECONDS_PER_DAY)

    def gpu_cost(r: Decimal) -> Decimal:
        return rate * burst_day(requests_per_day=r, bursts_per_day=b, concurrency=c,
                                seconds_per_request=t, overhead_s=o).billed_s

    def diff(r: Decimal) -> Decimal:  # > 0: the GPU is cheaper
        return a * r - gpu_cost(r)

    # Capacity: generation time within a day.
    capacity = day_s / t if b * t > day_s else day_s * c / t
    points = {Decimal(0), b, b * c, capacity}
    # Where billed time reaches a whole day (a kink of the cap).
    if o + t > 0:
        points.add(day_s / (o + t))
    if b * (o + t) < day_s:
        points.add((day_s - b * o) * c / t)
    grid = sorted(p for p in points if 0 <= p <= capacity)

    cap_requests = capacity.to_integral_value(rounding=ROUND_FLOOR)

    def result(r: Decimal | None, note: str) -> BreakEven:
        return BreakEven(provider, gpu, versus, r, None if r is None else r * tokens_per_request, cap_requests, note)

    never = f"the API stays cheaper up to one {gpu}'s capacity ({_plain(cap_requests)} requests/day)"
    if diff(capacity) < 0:
        return result(None, never)
    crossing, piece_lo = Decimal(0), Decimal(0)
    for lo, hi in zip(reversed(grid[:-1]), reversed(grid[1:]), strict=True):
        d_lo, d_hi = diff(lo), diff(hi)
        if d_lo >= 0:
            continue
        crossing, piece_lo = lo + (-d_lo) * (hi - lo) / (d_hi - d_lo), lo
        break
    r = max(Decimal(1), _ceil(crossing))
    # The division can be off in its last digit: settle on the smallest whole R that holds.
    if r - 1 >= max(Decimal(1), piece_lo) and diff(r - 1) >= 0:
        r -= 1
    while diff(r) < 0 and r <= cap_requests:
        r += 1
    if r > cap_requests:
        return result(None, never)
    return result(r, f"from {_plain(r)} requests/day (in {_plain(b)} bursts) {provider} {gpu} costs less than {versus}")


def _api_per_request(price: TokenPrice, traffic: Traffic) -> Decimal:
    return token_cost(price, traffic.input_tokens, traffic.output_tokens)


# ------------------------------------------------------------------------------ comparisons


@dataclass(frozen=True)
class TrafficLevel:
    label: str
    low_hours: Decimal  # GPU-hours of generation a day
    high_hours: Decimal

    @property
    def hours(self) -> Decimal:
        """The level's midpoint, which the comparison prices."""
        return (self.low_hours + self.high_hours) / 2


# The seed's traffic levels ("2-3 / 4-5 / 7-8 hours actual GPU time per day"). We price the
# midpoint of each and compute the cost; the seed's own $ column contradicts its formula.
SEED_LEVELS: tuple[TrafficLevel, ...] = (
    TrafficLevel("low", Decimal(2), Decimal(3)),
    TrafficLevel("medium", Decimal(4), Decimal(5)),
    TrafficLevel("high", Decimal(7), Decimal(8)),
)


@dataclass(frozen=True)
class ComparisonRow:
    label: str
    estimates: tuple[Estimate, ...]
    gpu_hours_per_day: Decimal | None = None  # the level's generation hours (levels only)
    level_range: tuple[Decimal, Decimal] | None = None
    requests_per_day: Decimal | None = None
    tokens_per_day: Decimal | None = None

    @property
    def cheapest(self) -> Estimate | None:
        if not self.estimates:
            return None
        return min(self.estimates, key=lambda e: e.per_month if e.per_month is not None else e.total)

    def as_dict(self) -> dict[str, Any]:
        cheapest = self.cheapest
        return {
            "label": self.label,
            "gpu_hours_per_day": _plain(self.gpu_hours_per_day),
            "level_range": None if self.level_range is None else [_plain(x) for x in self.level_range],
            "requests_per_day": _plain(self.requests_per_day),
            "tokens_per_day": _plain(self.tokens_per_day),
            "cheapest": cheapest.provider if cheapest else None,
            "estimates": [e.as_dict() for e in self.estimates],
        }


@dataclass(frozen=True)
class Comparison:
    """Providers side by side: at the seed's levels (`compare`), for one traffic
    (`estimate_traffic`) or for the ledger's real requests (`replay_usage`)."""

    kind: str  # "levels" | "traffic" | "replay"
    rows: tuple[ComparisonRow, ...]
    break_even: tuple[BreakEven, ...] = ()
    assumptions: Mapping[str, str] = field(default_factory=dict)

    @property
    def prices(self) -> tuple[PriceRow, ...]:
        seen: dict[tuple[str, str], PriceRow] = {}
        for row in self.rows:
            for est in row.estimates:
                for p in est.prices:
                    seen.setdefault((p.provider, p.key), p)
        return tuple(seen.values())

    def stale_rows(self, today: date, max_age_days: int = STALE_AFTER_DAYS) -> list[PriceRow]:
        return stale_rows(self.prices, today, max_age_days)

    def as_dict(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "assumptions": dict(self.assumptions),
            "rows": [r.as_dict() for r in self.rows],
            "break_even": [b.as_dict() for b in self.break_even],
            "prices": [p.as_dict() for p in self.prices],
        }


@dataclass(frozen=True)
class _Setup:
    """The three providers' prices and assumptions, resolved once."""

    modal: ModalPrice
    modal_start: StartupTime
    vast: VastPrice
    vast_start: StartupTime
    api: TokenPrice
    window: Decimal
    keep: Decimal
    vast_dph: Decimal | None
    modal_tp: Throughput | None  # None when replaying (recorded latencies replace throughput)
    vast_tp: Throughput | None

    @property
    def vast_rate_per_hour(self) -> Decimal:
        return self.vast_dph if self.vast_dph is not None else self.vast.typical


def _setup(catalog: Catalog, *, modal_gpu: str, vast_gpu: str, model: str, scaledown_window_s: Number,
           keep_alive_s: Number, vast_dollars_per_hour: Number | None, need_throughput: bool = True) -> _Setup:
    modal = catalog.modal_price(modal_gpu)
    vast = catalog.vast_price(vast_gpu)
    return _Setup(
        modal=modal,
        modal_start=catalog.startup_for("modal"),
        vast=vast,
        vast_start=catalog.startup_for("vastai"),
        api=catalog.token_price(model),
        window=_num(scaledown_window_s, "scaledown window"),
        keep=_num(keep_alive_s, "keep-alive"),
        vast_dph=None if vast_dollars_per_hour is None else _num(vast_dollars_per_hour, "price per hour", positive=True),
        modal_tp=catalog.throughput_for("modal", modal.gpu) if need_throughput else None,
        vast_tp=catalog.throughput_for("vastai", vast.gpu) if need_throughput else None,
    )


def _tp(tp: Throughput | None) -> Throughput:
    assert tp is not None, "throughput is resolved for every traffic model"
    return tp


def _estimates(s: _Setup, traffic: Traffic, providers: Sequence[str]) -> tuple[Estimate, ...]:
    out: list[Estimate] = []
    for p in providers:
        if p == "modal":
            out.append(modal_traffic_cost(traffic, price=s.modal, throughput=_tp(s.modal_tp), startup=s.modal_start,
                                          scaledown_window_s=s.window))
        elif p == "vastai":
            out.append(vast_traffic_cost(traffic, price=s.vast, throughput=_tp(s.vast_tp), startup=s.vast_start,
                                         keep_alive_s=s.keep, dollars_per_hour=s.vast_dph))
        else:
            out.append(anthropic_traffic_cost(traffic, price=s.api))
    return tuple(out)


def _break_evens(s: _Setup, traffic: Traffic, providers: Sequence[str]) -> tuple[BreakEven, ...]:
    if "anthropic" not in providers:
        return ()
    a = _api_per_request(s.api, traffic)
    out: list[BreakEven] = []
    for p in providers:
        if p == "modal":
            tp, rate, overhead, gpu = _tp(s.modal_tp), s.modal.dollars_per_second, s.modal_start.seconds + s.window, s.modal.gpu
        elif p == "vastai":
            tp, overhead, gpu = _tp(s.vast_tp), s.vast_start.seconds + s.keep, s.vast.gpu
            rate = s.vast_rate_per_hour / SECONDS_PER_HOUR
        else:
            continue
        out.append(break_even(
            provider=p, gpu=gpu, versus=s.api.model, api_cost_per_request=a, gpu_cost_per_second=rate,
            tokens_per_request=traffic.tokens_per_request, bursts_per_day=traffic.bursts_per_day,
            concurrency=_concurrency(traffic, tp), seconds_per_request=_seconds_per_request(traffic, tp),
            overhead_s=overhead))
    return tuple(out)


def _providers(providers: Sequence[str] | None) -> tuple[str, ...]:
    if not providers:
        return PROVIDERS
    return tuple(dict.fromkeys(resolve_provider(p) for p in providers))


def estimate_traffic(
    catalog: Catalog,
    traffic: Traffic,
    *,
    modal_gpu: str = DEFAULT_MODAL_GPU,
    vast_gpu: str = DEFAULT_VAST_GPU,
    model: str = DEFAULT_MODEL,
    scaledown_window_s: Number = DEFAULT_SCALEDOWN_WINDOW_S,
    keep_alive_s: Number = DEFAULT_KEEP_ALIVE_S,
    vast_dollars_per_hour: Number | None = None,
    providers: Sequence[str] | None = None,
) -> Comparison:
    """`cost estimate --requests-per-day N --tokens-per-request T`: each provider's traffic
    model for this traffic, plus the break-even volume of each GPU against the API."""
    provs = _providers(providers)
    s = _setup(catalog, modal_gpu=modal_gpu, vast_gpu=vast_gpu, model=model, scaledown_window_s=scaledown_window_s,
               keep_alive_s=keep_alive_s, vast_dollars_per_hour=vast_dollars_per_hour)
    row = ComparisonRow("your traffic", _estimates(s, traffic, provs),
                        requests_per_day=traffic.requests_per_day,
                        tokens_per_day=traffic.requests_per_day * traffic.tokens_per_request)
    return Comparison("traffic", (row,), _break_evens(s, traffic, provs), traffic.describe())


def requests_for_generation_hours(hours: Decimal, *, bursts_per_day: Decimal, concurrency: int,
                                  seconds_per_request: Decimal) -> Decimal:
    """The requests/day that keep one GPU generating `hours` a day under the burst model
    (the inverse of `burst_day`'s active time)."""
    active = hours * SECONDS_PER_HOUR
    if active >= bursts_per_day * seconds_per_request:
        return active * concurrency / seconds_per_request
    return active / seconds_per_request  # fewer requests than bursts: one per burst


def compare(
    catalog: Catalog,
    *,
    modal_gpu: str = DEFAULT_MODAL_GPU,
    vast_gpu: str = DEFAULT_VAST_GPU,
    model: str = DEFAULT_MODEL,
    input_tokens: int = DEFAULT_INPUT_TOKENS,
    output_tokens: int = DEFAULT_OUTPUT_TOKENS,
    bursts_per_day: Number = DEFAULT_BURSTS_PER_DAY,
    concurrency: int | None = None,
    scaledown_window_s: Number = DEFAULT_SCALEDOWN_WINDOW_S,
    keep_alive_s: Number = DEFAULT_KEEP_ALIVE_S,
    vast_dollars_per_hour: Number | None = None,
    levels: Sequence[TrafficLevel] = SEED_LEVELS,
    days: Number = DAYS_PER_MONTH,
) -> Comparison:
    """`cost estimate` with no flags: Modal vs Vast.ai vs Anthropic at the seed's traffic levels.

    A level is GPU-hours of generation a day on the Modal GPU (the seed's "actual GPU time"),
    priced at its midpoint (2.5, 4.5, 7.5). It is turned into requests/day under the burst
    model (`requests_for_generation_hours`) and that same traffic — same requests, same
    tokens — is priced on all three providers, so $ per million tokens is on one basis.
    The break-even is the requests/day (and tokens/day) from which each GPU beats the API.
    """
    base = Traffic.build(requests_per_day=0, input_tokens=input_tokens, output_tokens=output_tokens,
                         bursts_per_day=bursts_per_day, concurrency=concurrency, days=days)
    s = _setup(catalog, modal_gpu=modal_gpu, vast_gpu=vast_gpu, model=model, scaledown_window_s=scaledown_window_s,
               keep_alive_s=keep_alive_s, vast_dollars_per_hour=vast_dollars_per_hour)
    t = _seconds_per_request(base, _tp(s.modal_tp))
    conc = _concurrency(base, _tp(s.modal_tp))
    rows: list[ComparisonRow] = []
    for level in levels:
        hours = _num(level.hours, "GPU-hours per day", maximum=24)
        r = requests_for_generation_hours(hours, bursts_per_day=base.bursts_per_day, concurrency=conc,
                                          seconds_per_request=t)
        traffic = Traffic(r, base.input_tokens, base.output_tokens, base.bursts_per_day, base.concurrency, base.days)
        rows.append(ComparisonRow(
            f"{level.label} ({_plain(level.low_hours)}–{_plain(level.high_hours)} GPU-h/day)",
            _estimates(s, traffic, PROVIDERS), hours, (level.low_hours, level.high_hours),
            r, r * base.tokens_per_request))
    assumptions = {
        **{k: v for k, v in base.describe().items() if k != "requests_per_day"},
        "levels": "GPU-hours/day of generation on the Modal GPU, priced at each level's midpoint; the same "
                  "requests and tokens are then priced on every provider",
        "concurrency": str(conc),
    }
    return Comparison("levels", tuple(rows), _break_evens(s, base, PROVIDERS), assumptions)


# ------------------------------------------------------------------------------ replay


@dataclass(frozen=True)
class UsageEvent:
    """One real request from the ledger."""

    started_at: Decimal  # epoch seconds
    latency_s: Decimal
    input_tokens: int
    output_tokens: int

    @classmethod
    def build(cls, *, started_at: Number, latency_s: Number | None, input_tokens: int, output_tokens: int) -> UsageEvent:
        return cls(_num(started_at, "request time", minimum=None),
                   Decimal(0) if latency_s is None else _num(latency_s, "latency"),
                   _int(input_tokens, "input tokens"), _int(output_tokens, "output tokens"))

    @property
    def ended_at(self) -> Decimal:
        return self.started_at + self.latency_s


def events_from_ledger(records: Iterable[Any]) -> list[UsageEvent]:
    """UsageEvents from ledger rows (anything with ts, latency_s, prompt_tokens,
    completion_tokens and ok, like state.UsageRecord). Failed attempts are skipped. `ts` is
    taken as the time the request started."""
    out: list[UsageEvent] = []
    for rec in records:
        if not getattr(rec, "ok", True):
            continue
        out.append(UsageEvent.build(started_at=rec.ts, latency_s=getattr(rec, "latency_s", None),
                                    input_tokens=getattr(rec, "prompt_tokens", 0) or 0,
                                    output_tokens=getattr(rec, "completion_tokens", 0) or 0))
    return out


@dataclass(frozen=True)
class UpPeriod:
    """One stretch a GPU would have been up: from the first request to the last request's
    end + the idle window, plus one start-up."""

    start: Decimal
    end: Decimal  # last request end + window
    requests: int
    startup_s: Decimal

    @property
    def billed_s(self) -> Decimal:
        return self.startup_s + (self.end - self.start)


def up_periods(events: Sequence[UsageEvent], *, window_s: Number, startup_s: Number) -> list[UpPeriod]:
    """Merge requests into the periods a scale-to-zero GPU would be up. Each request keeps it
    up until its end + `window_s`; a request arriving after that finds it gone and pays
    `startup_s` again (Modal: scaledown window and cold start; Vast: keep-alive, then destroyed
    and relaunched, and boot). Start-up time is added to the period; request times are not
    shifted by it."""
    window = _num(window_s, "window")
    startup = _num(startup_s, "start-up time")
    periods: list[UpPeriod] = []
    start = up_until = Decimal(0)
    count = 0
    for ev in sorted(events, key=lambda e: e.started_at):
        if count and ev.started_at <= up_until:
            up_until = max(up_until, ev.ended_at + window)
            count += 1
            continue
        if count:
            periods.append(UpPeriod(start, up_until, count, startup))
        start, up_until, count = ev.started_at, ev.ended_at + window, 1
    if count:
        periods.append(UpPeriod(start, up_until, count, startup))
    return periods


def replay_usage(
    events: Sequence[UsageEvent],
    *,
    catalog: Catalog,
    modal_gpu: str = DEFAULT_MODAL_GPU,
    vast_gpu: str = DEFAULT_VAST_GPU,
    model: str = DEFAULT_MODEL,
    scaledown_window_s: Number = DEFAULT_SCALEDOWN_WINDOW_S,
    keep_alive_s: Number = DEFAULT_KEEP_ALIVE_S,
    vast_dollars_per_hour: Number | None = None,
    period_days: Number | None = None,
    providers: Sequence[str] | None = None,
) -> Comparison:
    """`cost estimate --from-usage`: what exactly this traffic would have cost on Modal (this
    scaledown window, per-second billing, a cold start per period), on a kept Vast.ai box
    (up from a request until the last + keep-alive; destroyed and relaunched, with a boot, after
    a longer gap) and on Anthropic (tokens, per request). The recorded latencies are the
    generation times. `period_days` (e.g. 30 for --since 30d) scales totals to per_month."""
    provs = _providers(providers)
    s = _setup(catalog, modal_gpu=modal_gpu, vast_gpu=vast_gpu, model=model, scaledown_window_s=scaledown_window_s,
               keep_alive_s=keep_alive_s, vast_dollars_per_hour=vast_dollars_per_hour, need_throughput=False)
    days = None if period_days is None else _num(period_days, "period in days", minimum=None, positive=True)
    tokens = Decimal(sum(e.input_tokens + e.output_tokens for e in events))

    def per_month(total: Decimal) -> Decimal | None:
        return None if days is None else _tidy_money(total * DAYS_PER_MONTH / days)

    common = {"requests": str(len(events)), "period_days": _plain(days) or "unknown",
              "generation_time": "the recorded latency of each request"}
    estimates: list[Estimate] = []
    for p in provs:
        if p == "modal":
            periods = up_periods(events, window_s=s.window, startup_s=s.modal_start.seconds)
            billed = sum((x.billed_s for x in periods), Decimal(0))
            total = billed * s.modal.dollars_per_second
            estimates.append(Estimate("modal", s.modal.gpu, _tidy_money(total), per_month(total), days, billed,
                                      tokens, _per_million(total, tokens), {
                                          **common,
                                          "price": f"{s.modal.gpu} ${_usd(s.modal.dollars_per_second)}/s "
                                                   f"({_price_note(s.modal.row)})",
                                          "scaledown_window_s": _plain(s.window) or "0",
                                          "startup": f"{_plain(s.modal_start.seconds)} s cold start per period; "
                                                     f"{s.modal_start.source}",
                                          "container_periods": str(len(periods)),
                                      }, (s.modal.row,)))
        elif p == "vastai":
            periods = up_periods(events, window_s=s.keep, startup_s=s.vast_start.seconds)
            billed = sum((x.billed_s for x in periods), Decimal(0))
            rate = s.vast_rate_per_hour
            total = billed * rate / SECONDS_PER_HOUR
            estimates.append(Estimate("vastai", s.vast.gpu, _tidy_money(total), per_month(total), days, billed,
                                      tokens, _per_million(total, tokens), {
                                          **common,
                                          "price": f"{s.vast.gpu} ${_usd(rate)}/h "
                                                   + ("(given)" if s.vast_dph is not None
                                                      else f"typical ({_price_note(s.vast.row)})"),
                                          "keep_alive_s": _plain(s.keep) or "0",
                                          "startup": f"{_plain(s.vast_start.seconds)} s boot per launch; "
                                                     f"{s.vast_start.source}",
                                          "launches": str(len(periods)),
                                      }, (s.vast.row,) if s.vast_dph is None else ()))
        else:
            total = sum((token_cost(s.api, e.input_tokens, e.output_tokens) for e in events), Decimal(0))
            estimates.append(Estimate("anthropic", s.api.model, _tidy_money(total), per_month(total), days, None,
                                      tokens, _per_million(total, tokens), {
                                          **common,
                                          "price": f"{s.api.model} ${_usd(s.api.input)}/M input, "
                                                   f"${_usd(s.api.output)}/M output ({_price_note(s.api.row)})",
                                      }, (s.api.row,)))
    row = ComparisonRow(f"replay of {len(events)} requests", tuple(estimates),
                        requests_per_day=None if days is None else Decimal(len(events)) / days,
                        tokens_per_day=None if days is None else tokens / days)
    return Comparison("replay", (row,), (), common)


__all__ = [
    "DAYS_PER_MONTH", "DEFAULT_BURSTS_PER_DAY", "DEFAULT_KEEP_ALIVE_S", "DEFAULT_MODEL", "DEFAULT_SCALEDOWN_WINDOW_S",
    "SEED_LEVELS", "STALE_AFTER_DAYS", "BreakEven", "BurstDay", "Catalog", "Comparison", "ComparisonRow",
    "Estimate", "ModalPrice", "PriceRow", "StartupTime", "Throughput", "TokenPrice", "Traffic", "TrafficLevel",
    "UpPeriod", "UsageEvent", "VastPrice", "anthropic_traffic_cost", "apply_overrides", "break_even", "burst_day", "compare",
    "default_configs_dir", "estimate_gpu_time", "estimate_traffic", "events_from_ledger", "gpu_time_cost",
    "instance_cost", "load_catalog", "load_price_file", "modal_cost", "modal_traffic_cost", "money_str",
    "monthly_gpu_cost", "replay_usage", "requests_for_generation_hours", "resolve_gpu", "resolve_model",
    "resolve_provider", "round_money", "stale_rows", "stale_warning", "token_cost", "up_periods",
    "vast_traffic_cost",
]
