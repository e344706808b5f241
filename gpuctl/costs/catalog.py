"""The dated price catalog: its rows, GPU/model/provider names, staleness.

Owns the row types (`ModalPrice`, `VastPrice`, `UnpricedGpu`, `TokenPrice`, `Throughput`,
`StartupTime`, and the provider-neutral `PriceRow`), the `Catalog` that holds them, resolving
names with a did-you-mean, and finding rows older than `STALE_AFTER_DAYS`. Its GPU rows, priced
or not, are gpuctl's one GPU list (`gpuctl.config.gpus` reads the names for settings and deploy). Pure (callers pass `today`); it
never reads a file (that is `gpuctl.costs.loading`), prints or exits: an unknown name raises
`UsageError`.
"""

from __future__ import annotations

import dataclasses
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import date
from decimal import Decimal
from pathlib import Path
from typing import Any

from gpuctl.config import PROVIDERS as ALL_PROVIDERS
from gpuctl.config import did_you_mean
from gpuctl.config.gpus import norm_gpu
from gpuctl.errors import UsageError

# How each priced provider bills; the provider names themselves are gpuctl.config's. A
# provider without price rows (a self-hosted endpoint) is not priced here.
BILLING = {"modal": "gpu time", "vastai": "gpu time", "anthropic": "tokens"}
PROVIDERS = tuple(p for p in ALL_PROVIDERS if p in BILLING)
GPU_PROVIDERS = tuple(p for p in PROVIDERS if BILLING[p] == "gpu time")
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

    @property
    def provenance(self) -> str:
        """Where an estimate's price came from: "seen 2026-10-04, modal.com/pricing"."""
        seen = f"seen {self.seen}" if self.seen else "undated override"
        return f"{seen}, {self.source}"

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
    unlisted_price: bool = False  # the catalog lists the GPU without a price: this is a live one
    # Set when no typical price is known and `typical` is a GPU tier's cap (`UnpricedGpu.capped_at`):
    # an upper bound, and this says whose ("the A40 tier's max_dph in configs/gpu_tiers.toml").
    upper_bound: str = ""

    @property
    def given(self) -> str:
        """How an estimate at a live $/h says where the price came from."""
        return f"(given; the catalog knows no typical price for {self.gpu})" if self.unlisted_price else "(given)"

    @property
    def bound(self) -> str:
        """How an estimate at a tier's cap says so: an upper bound, and how to get the real one."""
        return (f"at most: {self.upper_bound}, an upper bound (the catalog knows no typical price for {self.gpu}); "
                "pass --dph for the live price")

    @property
    def row(self) -> PriceRow:
        if self.upper_bound:
            return PriceRow("vastai", self.gpu, "$/h per GPU, at most (a GPU tier's cap)", {"max_dph": self.typical},
                            None, self.upper_bound, self.note)
        return PriceRow("vastai", self.gpu, "$/h per GPU, on-demand",
                        {"low": self.low, "high": self.high, "typical": self.typical},
                        self.seen, self.source, self.note)


@dataclass(frozen=True)
class UnpricedGpu:
    """A GPU the catalog lists (a Vast.ai tier rents it) without a known price: `source` says
    where one was looked for. Estimable only with a live price (--dph)."""

    provider: str
    gpu: str
    seen: date | None  # when a price was last looked for
    source: str
    note: str = ""
    aliases: tuple[str, ...] = ()

    def priced_at(self, dollars_per_hour: Decimal) -> VastPrice:
        """This GPU at a live offer's $/h (the whole range: nothing else is known)."""
        return VastPrice(self.gpu, dollars_per_hour, dollars_per_hour, dollars_per_hour, None,
                         f"the given $/h (the catalog knows no typical price for {self.gpu})", self.note, self.aliases,
                         unlisted_price=True)

    def capped_at(self, cap: Decimal, whose: str) -> VastPrice:
        """This GPU at the most a tier may pay for it (`whose` names the tier and file): what an
        estimate without --dph uses, labelled an upper bound (`VastPrice.bound`)."""
        return VastPrice(self.gpu, cap, cap, cap, None, whose, self.note, self.aliases, upper_bound=whose)


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
    unpriced: Mapping[str, Mapping[str, UnpricedGpu]] = field(default_factory=dict)  # provider → GPU →
    # An unpriced Vast.ai GPU → (the most a tier may pay for it, whose cap): `with_vast_caps`.
    vast_caps: Mapping[str, tuple[Decimal, str]] = field(default_factory=dict)
    path: Path | None = None
    throughput_path: Path | None = None

    def rows(self) -> list[PriceRow]:
        return ([p.row for p in self.modal.values()] + [p.row for p in self.vastai.values()]
                + [p.row for p in self.anthropic.values()])

    def stale_rows(self, today: date, max_age_days: int = STALE_AFTER_DAYS) -> list[PriceRow]:
        return stale_rows(self.rows(), today, max_age_days)

    def modal_price(self, gpu: str) -> ModalPrice:
        return self.modal[resolve_gpu(self, "modal", gpu)]

    def vast_price(self, gpu: str, *, live: Decimal | None = None) -> VastPrice:
        """The catalog's range for `gpu`; for a GPU it lists without a price, `live` (a live
        offer's $/h) is the price, and without one → `UsageError` saying so."""
        key = resolve_gpu(self, "vastai", gpu)
        if key in self.vastai:
            return self.vastai[key]
        row = self.unpriced["vastai"][key]
        if live is None and key in self.vast_caps:
            return row.capped_at(*self.vast_caps[key])
        if live is None:
            raise UsageError(f"no typical Vast.ai price is known for {key}: pass a live offer's $/h with --dph",
                             hint=f"the catalog lists {key} (a GPU tier rents it) without a price: {row.source}; "
                                  f'to keep one, add [prices.vastai."{key}"] typical = … to the profile')
        return row.priced_at(live)

    def with_vast_caps(self, caps: Iterable[tuple[str, Decimal, str]], *, only: str | None = None) -> Catalog:
        """This catalog, pricing each unpriced Vast.ai GPU that `caps` names ((GPU name, a tier's
        max_dph, whose cap)), or just the one `only` names, at the highest such cap when no live
        price is given."""
        found: dict[str, tuple[Decimal, str]] = dict(self.vast_caps)
        for name, cap, whose in caps:
            try:
                key = resolve_gpu(self, "vastai", name)
            except UsageError:
                continue  # a tier may name a GPU the catalog does not list: tiers.py says so itself
            if only is not None and key != only:
                continue
            if key in self.unpriced.get("vastai", {}) and (key not in found or cap > found[key][0]):
                found[key] = (cap, whose)
        return dataclasses.replace(self, vast_caps=found)

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


def _norm_model(name: str) -> str:
    n = re.sub(r"[\s._]+", "-", name.strip().casefold())
    return re.sub(r"-\d{8}$", "", n)  # dated snapshot ids price like their alias


def _near_name(word: str, choices: Mapping[str, str]) -> str:
    """` (did you mean 'L4'?)` for a near miss among normalised names, shown in the catalog's
    spelling. GPU names are short ("l5" is one edit from "l4", a ratio of 0.5), so the cutoff is
    lower than for setting names."""
    return did_you_mean(word, choices, cutoff=0.5, prefixes=False)


def resolve_provider(name: str) -> str:
    n = name.strip().casefold()
    n = _PROVIDER_ALIASES.get(n, n)
    if n not in PROVIDERS:
        raise UsageError(f"unknown provider {name!r}{did_you_mean(n, list(PROVIDERS))}",
                         hint=f"choose one of: {', '.join(PROVIDERS)}")
    return n


def resolve_gpu(catalog: Catalog, provider: str, name: str) -> str:
    """The catalog's name for a GPU, ignoring case, spaces, '-' and '_', and knowing aliases
    ("a10g" → "A10", "rtx_3090" → "RTX 3090"). Unknown → `UsageError` with a did-you-mean."""
    provider = resolve_provider(provider)
    if provider not in GPU_PROVIDERS:
        raise UsageError(f"{provider} bills tokens, not GPU time: it has no GPUs to choose")
    table: dict[str, ModalPrice | VastPrice | UnpricedGpu] = {
        **(catalog.modal if provider == "modal" else catalog.vastai), **catalog.unpriced.get(provider, {})}
    index: dict[str, str] = {}
    for key, price in table.items():
        index[norm_gpu(key)] = key
        for alias in price.aliases:
            index.setdefault(norm_gpu(alias), key)
    found = index.get(norm_gpu(name))
    if found is None:
        raise UsageError(
            f"unknown {provider} GPU {name!r}{_near_name(norm_gpu(name), index)}",
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
            f"unknown Anthropic model {name!r}{_near_name(_norm_model(name), index)}",
            hint=f"known: {', '.join(catalog.anthropic)}; add a row to the profile's [prices.anthropic]",
        )
    return found
