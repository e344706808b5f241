"""The one place for money: the parser every caller shares, $/h × time, the strings for people,
and the layering of `gpuctl.costs` (each module imports only those below it)."""

from __future__ import annotations

import ast
from decimal import Decimal
from pathlib import Path

import pytest

from gpuctl.costs.money import (
    MAX_MAGNITUDE,
    approx_money,
    exact_seconds,
    hourly_cost,
    lifetime_cost,
    money_cell,
    money_str,
    money_text,
    to_decimal,
)

D = Decimal


@pytest.mark.parametrize(("value", "expected"), [
    (0.14, D("0.14")),  # through repr: not 0.14000000000000001332...
    (0.1, D("0.1")),
    (3, D(3)),
    (" 2.5 ", D("2.5")),
    ("1e3", D("1E+3")),
    (D("0.000222"), D("0.000222")),
])
def test_to_decimal_is_exact(value: object, expected: Decimal) -> None:
    got = to_decimal(value)
    assert got == expected and str(got) == str(expected)


@pytest.mark.parametrize("value", [None, True, False, "", "abc", "NaN", "nan", "inf", "-Infinity",
                                   float("nan"), float("inf"), D("NaN"), D("sNaN"), D("-Infinity"), [1], {}])
def test_to_decimal_refuses_what_is_no_finite_number(value: object) -> None:
    assert to_decimal(value) is None


def test_to_decimal_bounds_only_when_asked() -> None:
    big = D(10) ** 13
    assert to_decimal(big) == big  # a ledger sum or a setting is taken as it is
    assert to_decimal(big, max_magnitude=MAX_MAGNITUDE) is None  # user input to the cost math is not
    assert to_decimal(-(D(10) ** 12), max_magnitude=MAX_MAGNITUDE) is None
    assert to_decimal(D(10) ** 12 - 1, max_magnitude=MAX_MAGNITUDE) == D(10) ** 12 - 1


def test_exact_seconds_is_to_the_millisecond() -> None:
    assert exact_seconds(354.990730451000026509) == D("354.991")
    assert str(exact_seconds(10.0)) == "10.0"


def test_hourly_cost_and_lifetime() -> None:
    assert hourly_cost(D("0.80"), D(1800)) == D("0.40")
    # The original system's README arithmetic: 2 h/day × 30 days at $0.80/h.
    assert hourly_cost(D("0.80"), D(2 * 30 * 3600)) == D("48.00")
    assert hourly_cost(D("0.14"), D(45 * 60)) == D("0.105")
    assert lifetime_cost(D("0.80"), 0, 1800) == D("0.40")
    assert lifetime_cost(D("0.80"), 1800, 0) == 0  # a clock step backwards costs nothing
    assert lifetime_cost(D("0.50"), 1_800_000_000.25, 1_800_003_600.25) == D("0.50")


def test_the_vastai_budget_names_are_the_money_helpers() -> None:
    from gpuctl.vastai import budget

    assert budget.dec is to_decimal and budget.money is money_text and budget.lifetime_cost is lifetime_cost
    assert budget.projection(D("0.14"), 45) == D("0.105")
    assert str(budget.projection(D("0.14"), 45.0)) == "0.105"


@pytest.mark.parametrize(("value", "cell", "text", "approx", "json"), [
    (D("48"), "$48.00", "48.00", "~$48.00", "48.00"),
    (D("0.105"), "$0.11", "0.105", "~$0.10", "0.105"),  # chat uses Python's half-even, tables half-up
    (D("1234.5"), "$1,234.50", "1234.50", "~$1234.50", "1234.50"),
    (D("0.0012"), "$0.0012", "0.0012", "~$0.0012", "0.0012"),
    (D("0.3996"), "$0.40", "0.40", "~$0.40", "0.3996"),
    (D(0), "$0.00", "0.00", "$0.00", "0.00"),
    (None, "—", "?", "cost n/a", None),
])
def test_the_ways_money_is_shown(value: Decimal | None, cell: str, text: str, approx: str, json: str | None) -> None:
    assert money_cell(value) == cell
    assert money_text(value) == text
    assert approx_money(value) == approx
    assert money_str(value) == json


# money ← catalog ← loading ← estimate ← traffic ← breakeven ← comparison ← replay ← report
LAYERS = ["money", "catalog", "loading", "estimate", "traffic", "breakeven", "comparison", "replay", "report"]
COSTS = Path(__file__).resolve().parents[2] / "gpuctl" / "costs"


@pytest.mark.parametrize("module", LAYERS)
def test_each_costs_module_imports_only_the_ones_below_it(module: str) -> None:
    tree = ast.parse((COSTS / f"{module}.py").read_text(encoding="utf-8"))
    below = set(LAYERS[: LAYERS.index(module)])
    used = {node.module.removeprefix("gpuctl.costs.") for node in ast.walk(tree)
            if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("gpuctl.costs.")}
    assert used <= below, f"{module} imports {sorted(used - below)}, which are not below it"
    # Nor the package facade (it would load every module lazily, and hide the layering).
    facade = [node for node in ast.walk(tree) if isinstance(node, ast.ImportFrom) and node.module == "gpuctl.costs"]
    assert not facade
    assert sorted(p.stem for p in COSTS.glob("*.py") if p.stem != "__init__") == sorted(LAYERS)
