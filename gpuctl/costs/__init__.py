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

Layout (dependencies point down the list): `money` (Decimal helpers, units, basic formulas),
`catalog` (rows, names, loading, overrides, staleness), `estimate` (the Estimate result, cost by
GPU time), `traffic` (traffic models, break-even, comparisons), `replay` (the ledger's real
requests). Import from `gpuctl.costs`; the submodules are its implementation.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # the names, for type checkers; at run time they load on first use (PEP 562)
    from gpuctl.costs.catalog import (
        GPU_PROVIDERS,
        PROVIDERS,
        STALE_AFTER_DAYS,
        Catalog,
        ModalPrice,
        PriceRow,
        StartupTime,
        Throughput,
        TokenPrice,
        VastPrice,
        apply_overrides,
        default_configs_dir,
        load_catalog,
        load_price_file,
        resolve_gpu,
        resolve_model,
        resolve_provider,
        stale_rows,
        stale_warning,
    )
    from gpuctl.costs.estimate import (
        Estimate,
        estimate_gpu_time,
    )
    from gpuctl.costs.money import (
        DAYS_PER_MONTH,
        SECONDS_PER_DAY,
        SECONDS_PER_HOUR,
        Number,
        gpu_time_cost,
        instance_cost,
        modal_cost,
        money_str,
        monthly_gpu_cost,
        round_money,
        token_cost,
    )
    from gpuctl.costs.replay import (
        UpPeriod,
        UsageEvent,
        events_from_ledger,
        replay_usage,
        up_periods,
    )
    from gpuctl.costs.traffic import (
        DEFAULT_BURSTS_PER_DAY,
        DEFAULT_INPUT_TOKENS,
        DEFAULT_KEEP_ALIVE_S,
        DEFAULT_MODAL_GPU,
        DEFAULT_MODEL,
        DEFAULT_OUTPUT_TOKENS,
        DEFAULT_SCALEDOWN_WINDOW_S,
        DEFAULT_VAST_GPU,
        OUTPUT_SHARE,
        SEED_LEVELS,
        BreakEven,
        BurstDay,
        Comparison,
        ComparisonRow,
        Traffic,
        TrafficLevel,
        anthropic_traffic_cost,
        break_even,
        burst_day,
        compare,
        estimate_traffic,
        modal_traffic_cost,
        requests_for_generation_hours,
        vast_traffic_cost,
    )

# name → submodule: `costs.load_catalog` imports only catalog.py (and money.py), so a command
# that prices GPU time never compiles the traffic models or the replay.
_LAZY: dict[str, str] = {
    # money
    "DAYS_PER_MONTH": "money",
    "Number": "money",
    "SECONDS_PER_DAY": "money",
    "SECONDS_PER_HOUR": "money",
    "gpu_time_cost": "money",
    "instance_cost": "money",
    "modal_cost": "money",
    "money_str": "money",
    "monthly_gpu_cost": "money",
    "round_money": "money",
    "token_cost": "money",
    # catalog
    "Catalog": "catalog",
    "GPU_PROVIDERS": "catalog",
    "ModalPrice": "catalog",
    "PROVIDERS": "catalog",
    "PriceRow": "catalog",
    "STALE_AFTER_DAYS": "catalog",
    "StartupTime": "catalog",
    "Throughput": "catalog",
    "TokenPrice": "catalog",
    "VastPrice": "catalog",
    "apply_overrides": "catalog",
    "default_configs_dir": "catalog",
    "load_catalog": "catalog",
    "load_price_file": "catalog",
    "resolve_gpu": "catalog",
    "resolve_model": "catalog",
    "resolve_provider": "catalog",
    "stale_rows": "catalog",
    "stale_warning": "catalog",
    # estimate
    "Estimate": "estimate",
    "estimate_gpu_time": "estimate",
    # traffic
    "BreakEven": "traffic",
    "BurstDay": "traffic",
    "Comparison": "traffic",
    "ComparisonRow": "traffic",
    "DEFAULT_BURSTS_PER_DAY": "traffic",
    "DEFAULT_INPUT_TOKENS": "traffic",
    "DEFAULT_KEEP_ALIVE_S": "traffic",
    "DEFAULT_MODAL_GPU": "traffic",
    "DEFAULT_MODEL": "traffic",
    "DEFAULT_OUTPUT_TOKENS": "traffic",
    "DEFAULT_SCALEDOWN_WINDOW_S": "traffic",
    "DEFAULT_VAST_GPU": "traffic",
    "OUTPUT_SHARE": "traffic",
    "SEED_LEVELS": "traffic",
    "Traffic": "traffic",
    "TrafficLevel": "traffic",
    "anthropic_traffic_cost": "traffic",
    "break_even": "traffic",
    "burst_day": "traffic",
    "compare": "traffic",
    "estimate_traffic": "traffic",
    "modal_traffic_cost": "traffic",
    "requests_for_generation_hours": "traffic",
    "vast_traffic_cost": "traffic",
    # replay
    "UpPeriod": "replay",
    "UsageEvent": "replay",
    "events_from_ledger": "replay",
    "replay_usage": "replay",
    "up_periods": "replay",
}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'gpuctl.costs' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"gpuctl.costs.{module}"), name)
    globals()[name] = value  # cache: the next access is a plain attribute
    return value


def __dir__() -> list[str]:
    return sorted(__all__)


__all__ = [
    "DAYS_PER_MONTH",
    "DEFAULT_BURSTS_PER_DAY",
    "DEFAULT_INPUT_TOKENS",
    "DEFAULT_KEEP_ALIVE_S",
    "DEFAULT_MODAL_GPU",
    "DEFAULT_MODEL",
    "DEFAULT_OUTPUT_TOKENS",
    "DEFAULT_SCALEDOWN_WINDOW_S",
    "DEFAULT_VAST_GPU",
    "GPU_PROVIDERS",
    "OUTPUT_SHARE",
    "PROVIDERS",
    "SECONDS_PER_DAY",
    "SECONDS_PER_HOUR",
    "SEED_LEVELS",
    "STALE_AFTER_DAYS",
    "BreakEven",
    "BurstDay",
    "Catalog",
    "Comparison",
    "ComparisonRow",
    "Estimate",
    "ModalPrice",
    "Number",
    "PriceRow",
    "StartupTime",
    "Throughput",
    "TokenPrice",
    "Traffic",
    "TrafficLevel",
    "UpPeriod",
    "UsageEvent",
    "VastPrice",
    "anthropic_traffic_cost",
    "apply_overrides",
    "break_even",
    "burst_day",
    "compare",
    "default_configs_dir",
    "estimate_gpu_time",
    "estimate_traffic",
    "events_from_ledger",
    "gpu_time_cost",
    "instance_cost",
    "load_catalog",
    "load_price_file",
    "modal_cost",
    "modal_traffic_cost",
    "money_str",
    "monthly_gpu_cost",
    "replay_usage",
    "requests_for_generation_hours",
    "resolve_gpu",
    "resolve_model",
    "resolve_provider",
    "round_money",
    "stale_rows",
    "stale_warning",
    "token_cost",
    "up_periods",
    "vast_traffic_cost",
]
