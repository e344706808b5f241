"""The dated price catalog and the cost math: what a GPU hour, a burst of traffic or a ledger of
real requests costs on Modal, Vast.ai and Anthropic.

Owns: reading `configs/prices.toml` and `configs/throughput.toml` (and price overrides from a
profile's [prices] table or a --prices file), resolving GPU and model names, and pure money
math in `Decimal`. Loading is in the `load_*` functions; everything else is pure (no I/O, no
clock: callers pass `today` and `now`). Nothing here prints, exits, opens the database or talks
to a provider; bad input raises `UsageError`, a bad file `ConfigError`. Rounding happens only in
`gpuctl.costs.money`, for display.

Rate bases (why two Modal rates): Modal bills per second (`dollars_per_second`, L4 0.000222)
and publishes an hourly figure rounded to cents (`dollars_per_hour`, L4 0.80 = 0.000222 × 3600 =
0.7992 rounded). Estimates stated in hours (`estimate_gpu_time`, `monthly_gpu_cost`) use the
published $/h, so they match Modal's page and the original system's README arithmetic
(2 h/day × 30 × $0.80 = $48.00, where 216,000 s × $0.000222 would be $47.952). Container time
that is modelled or replayed second by second (traffic models, `replay_usage`) is priced at
$/s, which is what Modal actually bills.

Layout (each module imports only those above it): `money` (parsing, the formulas, rounding and
showing money), `catalog` (rows, names, staleness), `loading` (the TOML files and overrides),
`estimate` (the Estimate result, cost by GPU time), `traffic` (the burst model, each provider's
traffic cost), `breakeven` (the volume from which a GPU beats the API), `comparison` (providers side
by side), `replay` (the ledger's real requests), `report` (`cost report`'s aggregation of the
ledger). Import from `gpuctl.costs`; the submodules are its implementation.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:  # every submodule's names, for type checkers; at run time they load on first use (PEP 562)
    from gpuctl.costs.breakeven import *  # noqa: F403
    from gpuctl.costs.catalog import *  # noqa: F403
    from gpuctl.costs.comparison import *  # noqa: F403
    from gpuctl.costs.estimate import *  # noqa: F403
    from gpuctl.costs.loading import *  # noqa: F403
    from gpuctl.costs.money import *  # noqa: F403
    from gpuctl.costs.replay import *  # noqa: F403
    from gpuctl.costs.report import *  # noqa: F403
    from gpuctl.costs.traffic import *  # noqa: F403

# name → submodule: `costs.load_catalog` imports only loading.py (and catalog.py, money.py), so
# a command that prices GPU time never compiles the traffic models or the replay.
_LAZY: dict[str, str] = {
    # money
    "DAYS_PER_MONTH": "money",
    "Number": "money",
    "SECONDS_PER_DAY": "money",
    "SECONDS_PER_HOUR": "money",
    "approx_money": "money",
    "exact_seconds": "money",
    "gpu_time_cost": "money",
    "hourly_cost": "money",
    "instance_cost": "money",
    "lifetime_cost": "money",
    "modal_cost": "money",
    "money_cell": "money",
    "money_str": "money",
    "money_text": "money",
    "monthly_gpu_cost": "money",
    "number": "money",
    "per_million_tokens": "money",
    "round_money": "money",
    "to_decimal": "money",
    "token_cost": "money",
    "whole_number": "money",
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
    "resolve_gpu": "catalog",
    "resolve_model": "catalog",
    "resolve_provider": "catalog",
    "stale_rows": "catalog",
    "stale_warning": "catalog",
    # loading
    "apply_overrides": "loading",
    "default_configs_dir": "loading",
    "load_catalog": "loading",
    "load_price_file": "loading",
    # estimate
    "Estimate": "estimate",
    "estimate_gpu_time": "estimate",
    # traffic
    "BurstDay": "traffic",
    "DEFAULT_BURSTS_PER_DAY": "traffic",
    "DEFAULT_INPUT_TOKENS": "traffic",
    "DEFAULT_KEEP_ALIVE_S": "traffic",
    "DEFAULT_MODAL_GPU": "traffic",
    "DEFAULT_MODEL": "traffic",
    "DEFAULT_OUTPUT_TOKENS": "traffic",
    "DEFAULT_SCALEDOWN_WINDOW_S": "traffic",
    "DEFAULT_VAST_GPU": "traffic",
    "OUTPUT_SHARE": "traffic",
    "Traffic": "traffic",
    "anthropic_traffic_cost": "traffic",
    "burst_day": "traffic",
    "modal_traffic_cost": "traffic",
    "vast_traffic_cost": "traffic",
    # breakeven
    "BreakEven": "breakeven",
    "break_even": "breakeven",
    # comparison
    "Comparison": "comparison",
    "ComparisonRow": "comparison",
    "DEFAULT_LEVELS": "comparison",
    "TrafficLevel": "comparison",
    "compare": "comparison",
    "estimate_traffic": "comparison",
    "requests_for_generation_hours": "comparison",
    # replay
    "EventLog": "replay",
    "LedgerLog": "replay",
    "NotExact": "replay",
    "RequestLog": "replay",
    "UpPeriod": "replay",
    "UsageEvent": "replay",
    "events_from_ledger": "replay",
    "replay_usage": "replay",
    "up_periods": "replay",
    # report
    "Group": "report",
    "PRICED_NOW": "report",
    "REPORT_BY": "report",
    "Report": "report",
    "VastLedger": "report",
    "build_report": "report",
    "check_by": "report",
    "in_period": "report",
    "split_instance": "report",
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


__all__ = sorted(_LAZY)  # _LAZY is the one list of the public names
