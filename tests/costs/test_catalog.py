"""The price catalog: the shipped configs load and agree with facts/PRICES.md, names resolve
with did-you-mean, stale rows are found, overrides replace rows, bad files say file and key."""

from __future__ import annotations

import json
from datetime import date
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from gpuctl.costs import (
    Catalog,
    default_configs_dir,
    estimate_gpu_time,
    load_catalog,
    load_price_file,
    resolve_gpu,
    resolve_model,
    stale_warning,
)
from gpuctl.errors import EXIT_CONFIG, EXIT_USAGE, ConfigError, UsageError

D = Decimal
CONFIGS = default_configs_dir()


@pytest.fixture(scope="module")
def shipped() -> Catalog:
    return load_catalog()


# ------------------------------------------------------------------ the shipped files


def test_default_catalog_is_the_repo_configs(shipped: Catalog) -> None:
    assert shipped.path == CONFIGS / "prices.toml"
    assert shipped.throughput_path == CONFIGS / "throughput.toml"
    assert (CONFIGS / "prices.toml").is_file() and (CONFIGS / "throughput.toml").is_file()


def test_every_row_of_prices_md_is_in_the_catalog(shipped: Catalog) -> None:
    modal = {k: (p.dollars_per_second, p.dollars_per_hour) for k, p in shipped.modal.items()}
    assert modal == {
        "T4": (D("0.000164"), D("0.59")), "L4": (D("0.000222"), D("0.80")),
        "A10": (D("0.000306"), D("1.10")), "L40S": (D("0.000542"), D("1.95")),
        "A100-40GB": (D("0.000583"), D("2.10")), "A100-80GB": (D("0.000694"), D("2.50")),
        "RTX-PRO-6000": (D("0.000842"), D("3.03")), "H100": (D("0.001097"), D("3.95")),
        "H200": (D("0.001261"), D("4.54")), "B200": (D("0.001736"), D("6.25")),
    }
    vast = {k: (p.low, p.high) for k, p in shipped.vastai.items()}
    assert vast == {
        "RTX 3090": (D("0.15"), D("0.30")), "RTX 4090": (D("0.30"), D("0.70")),
        "RTX A6000": (D("0.40"), D("0.60")), "A100 80GB": (D("0.75"), D("1.70")),
        "H100": (D("1.85"), D("2.60")),
    }
    api = {k: (p.input, p.output) for k, p in shipped.anthropic.items()}
    opus = (D("5.00"), D("25.00"))
    assert api == {
        "claude-haiku-4-5": (D("1.00"), D("5.00")), "claude-haiku-5-5": (D("0.10"), D("0.50")),
        "claude-sonnet-4-6": (D("3.00"), D("15.00")), "claude-sonnet-5-5": (D("2.00"), D("10.00")),
        "claude-opus-4-5": opus, "claude-opus-4-6": opus, "claude-opus-4-7": opus, "claude-opus-4-8": opus,
        "claude-opus-5": opus, "claude-opus-5-5": (D("4.00"), D("20.00")),
    }
    h55 = shipped.anthropic["claude-haiku-5-5"]
    assert (h55.long_context_threshold, h55.long_input, h55.long_output) == (100_000, D("0.50"), D("2.50"))
    assert "0.14" in shipped.vastai["RTX 3090"].note  # the seed's own example, as a note


def test_every_row_is_dated_and_sourced(shipped: Catalog) -> None:
    rows = shipped.rows()
    assert len(rows) == 10 + 5 + 10
    for row in rows:
        assert isinstance(row.seen, date), row.key
        assert date(2026, 5, 1) <= row.seen <= date(2026, 11, 26), row.key
        assert row.source.strip(), row.key


def test_modal_hourly_is_the_per_second_price_rounded(shipped: Catalog) -> None:
    # The published $/h is $/s × 3600 rounded to cents: a typo in either column shows here.
    for gpu, p in shipped.modal.items():
        assert (p.dollars_per_second * 3600).quantize(D("0.01"), ROUND_HALF_UP) == p.dollars_per_hour, gpu


def test_vast_typical_is_the_midpoint(shipped: Catalog) -> None:
    for gpu, p in shipped.vastai.items():
        assert p.typical == (p.low + p.high) / 2, gpu


def test_throughput_assumptions_are_the_seeds(shipped: Catalog) -> None:
    l4 = shipped.throughput_for("modal", "l4")
    assert (l4.tokens_per_second_low, l4.tokens_per_second_high, l4.max_concurrency) == (20, 50, 32)
    assert l4.tokens_per_second == 35 and "seed README" in l4.source
    r3090 = shipped.throughput_for("vastai", "RTX_3090")
    assert (r3090.tokens_per_second_low, r3090.tokens_per_second_high) == (25, 55)
    cold = shipped.startup_for("modal")
    assert (cold.seconds_low, cold.seconds_high) == (10, 30) and "seed README" in cold.source
    boot = shipped.startup_for("vastai")
    assert (boot.seconds_low, boot.seconds_high) == (7 * 60, 15 * 60)


def test_seed_monthly_example_through_the_shipped_catalog(shipped: Catalog) -> None:
    est = estimate_gpu_time(shipped, provider="modal", gpu="L4", hours_per_day=2)
    assert est.per_month == D("48.00") and str(est.per_month) == "48.00"
    data = est.as_dict()
    assert data["per_month"] == "48.00" and data["total"] == "48.00"
    assert "seen 2026-10-04" in data["assumptions"]["price"]
    json.dumps(data)  # strings all the way down


def test_missing_throughput_is_a_usage_error_with_the_fix(shipped: Catalog) -> None:
    with pytest.raises(UsageError, match="no throughput assumption for vastai GPU RTX A6000") as exc:
        # every Modal GPU has a row; a catalog GPU without one still gets the fix in the hint
        from dataclasses import replace

        trimmed = replace(shipped, throughput={"vastai": {k: v for k, v in shipped.throughput["vastai"].items()
                                                         if k != "RTX A6000"}})
        trimmed.throughput_for("vastai", "rtx a6000")
    assert exc.value.hint and "throughput.toml" in exc.value.hint


def test_every_priced_gpu_has_a_throughput_row(shipped: Catalog) -> None:
    for provider, prices in (("modal", shipped.modal), ("vastai", shipped.vastai)):
        for gpu in prices:
            row = shipped.throughput_for(provider, gpu)
            assert row.tokens_per_second > 0 and row.source


# ------------------------------------------------------------------ names


@pytest.mark.parametrize(
    ("provider", "name", "expected"),
    [
        ("modal", "a10g", "A10"),
        ("modal", "A10G", "A10"),
        ("modal", "l4", "L4"),
        ("modal", "a100 80gb", "A100-80GB"),
        ("modal", "rtx pro 6000", "RTX-PRO-6000"),
        ("vastai", "rtx 3090", "RTX 3090"),
        ("vastai", "RTX_3090", "RTX 3090"),
        ("vast", "rtx-3090", "RTX 3090"),
        ("vastai", "A6000", "RTX A6000"),
        ("vastai", "a100-80gb", "A100 80GB"),
    ],
)
def test_gpu_names_resolve(shipped: Catalog, provider: str, name: str, expected: str) -> None:
    assert resolve_gpu(shipped, provider, name) == expected


def test_unknown_gpu_says_did_you_mean(shipped: Catalog) -> None:
    with pytest.raises(UsageError) as exc:
        resolve_gpu(shipped, "modal", "L5")
    assert str(exc.value) == "unknown modal GPU 'L5' (did you mean 'L4'?)"
    assert exc.value.exit_code == EXIT_USAGE
    assert exc.value.hint and "L4" in exc.value.hint


def test_unknown_provider_and_token_provider(shipped: Catalog) -> None:
    with pytest.raises(UsageError, match="did you mean 'modal'"):
        resolve_gpu(shipped, "modl", "L4")
    with pytest.raises(UsageError, match="bills tokens"):
        resolve_gpu(shipped, "anthropic", "L4")


def test_model_names_resolve(shipped: Catalog) -> None:
    assert resolve_model(shipped, "Claude-Haiku-4-5") == "claude-haiku-4-5"
    assert resolve_model(shipped, "claude-haiku-4-5-20251001") == "claude-haiku-4-5"
    assert resolve_model(shipped, "claude-haiku-4.5") == "claude-haiku-4-5"
    with pytest.raises(UsageError, match="did you mean 'claude-sonnet-4-6'"):
        resolve_model(shipped, "claude-sonet-4-6")


# ------------------------------------------------------------------ staleness


def test_stale_rows_are_older_than_90_days(shipped: Catalog) -> None:
    # On the day the facts were collected only the thin 2026-05/06 Vast rows are stale.
    assert sorted(r.key for r in shipped.stale_rows(date(2026, 11, 26))) == ["RTX 4090", "RTX A6000"]
    # Modal rows were seen 2026-10-04: 90 days later is fine, 91 is stale.
    modal_l4 = shipped.modal["L4"].row
    assert not modal_l4.is_stale(date(2027, 1, 2)) and modal_l4.age_days(date(2027, 1, 2)) == 90
    assert modal_l4.is_stale(date(2027, 1, 3))
    stale = {(r.provider, r.key) for r in shipped.stale_rows(date(2027, 1, 3))}
    assert ("modal", "L4") in stale and ("anthropic", "claude-haiku-4-5") not in stale
    line = stale_warning(modal_l4, date(2027, 1, 3))
    assert "modal L4" in line and "2026-10-04" in line and "91 days" in line and "--prices" in line
    assert "\n" not in line


def test_estimate_knows_the_prices_it_used(shipped: Catalog) -> None:
    est = estimate_gpu_time(shipped, provider="modal", gpu="L4", hours_per_day=2)
    assert [r.key for r in est.prices] == ["L4"]
    assert est.stale_rows(date(2026, 11, 26)) == []
    assert [r.key for r in est.stale_rows(date(2027, 6, 1))] == ["L4"]
    # A live price given by the user is not a catalog price: nothing to warn about.
    live = estimate_gpu_time(shipped, provider="vastai", gpu="RTX 4090", hours=1, dollars_per_hour="0.40")
    assert live.prices == () and live.stale_rows(date(2030, 1, 1)) == []


# ------------------------------------------------------------------ overrides


def test_override_replaces_a_row_in_any_spelling() -> None:
    # A profile's [prices] table arrives as plain TOML values (floats), as config.py reads it.
    cat = load_catalog(overrides={"vastai": {"rtx_3090": {"typical": 0.14}}}, overrides_label="profile cheap")
    row = cat.vastai["RTX 3090"]
    assert (row.low, row.typical, row.high) == (D("0.14"), D("0.14"), D("0.14"))
    assert row.seen is None and row.source == "profile cheap"
    assert "rtx_3090" not in cat.vastai  # replaced, not added
    assert row.row not in cat.stale_rows(date(2099, 1, 1))  # your own price is never stale
    est = estimate_gpu_time(cat, provider="vastai", gpu="RTX 3090", hours_per_day=8)
    assert est.per_month == D("33.60")
    # Everything else is untouched.
    assert cat.vastai["RTX 4090"].typical == D("0.50") and cat.modal["L4"].dollars_per_hour == D("0.80")


def test_override_derives_the_other_modal_rate_and_keeps_unset_fields() -> None:
    cat = load_catalog(overrides={
        "modal": {"L4": {"dollars_per_hour": D("0.72"), "seen": date(2027, 1, 1), "source": "my invoice"}},
        "anthropic": {"claude-haiku-4-5": {"output": 4}},
    })
    l4 = cat.modal["L4"]
    assert l4.dollars_per_hour == D("0.72") and l4.dollars_per_second == D("0.0002")
    assert (l4.seen, l4.source) == (date(2027, 1, 1), "my invoice")
    haiku = cat.anthropic["claude-haiku-4-5"]
    assert (haiku.input, haiku.output) == (D("1.00"), D(4))


def test_override_can_add_a_model() -> None:
    cat = load_catalog(overrides={"anthropic": {"claude-new-9": {"input": "0.5", "output": "2"}}})
    assert (cat.anthropic["claude-new-9"].input, cat.anthropic["claude-new-9"].output) == (D("0.5"), D(2))


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        ({"modal": {"L4": {"dollars_per_hour": -1}}}, "modal.L4.dollars_per_hour must be more than 0"),
        ({"modal": {"L4": {"dolars_per_hour": 1}}}, "unknown key modal.L4.dolars_per_hour (did you mean 'dollars_per_hour'?)"),
        ({"vastai": {"RTX 3090": {"low": 1, "high": 2, "typical": 3}}}, 'vastai."RTX 3090": need low ≤ typical ≤ high'),
        ({"anthropic": {"claude-new-9": {"input": 1}}}, "anthropic.claude-new-9.output is missing"),
        ({"modal": {"L4": {"seen": "last week", "dollars_per_hour": 1}}}, "modal.L4.seen must be a date"),
        ({"gcp": {}}, "unknown key gcp"),
        ({"modal": ["L4"]}, "modal must be a table"),
    ],
)
def test_bad_override_names_the_origin_and_key(overrides: dict[str, object], message: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_catalog(overrides=overrides, overrides_label="profile default [prices]")
    assert str(exc.value).startswith("profile default [prices]: ")
    assert message in str(exc.value)
    assert exc.value.exit_code == EXIT_CONFIG and "\n" not in str(exc.value)


def test_prices_file_override_wins_over_the_profile(tmp_path: Path) -> None:
    f = tmp_path / "mine.toml"
    f.write_text('[vastai."RTX 3090"]\ntypical = 0.14\nseen = 2026-11-20\nsource = "live offer 123"\n')
    cat = load_catalog(overrides={"vastai": {"RTX 3090": {"typical": 0.2}}, "modal": {"L4": {"dollars_per_hour": 1}}},
                       prices_file=f)
    assert cat.vastai["RTX 3090"].typical == D("0.14") and cat.vastai["RTX 3090"].seen == date(2026, 11, 20)
    assert cat.vastai["RTX 3090"].source == "live offer 123"
    assert cat.modal["L4"].dollars_per_hour == 1  # the profile's row that the file left alone
    assert load_price_file(f) == {"vastai": {"RTX 3090": {"typical": D("0.14"), "seen": date(2026, 11, 20),
                                                          "source": "live offer 123"}}}
    bad = tmp_path / "bad.toml"
    bad.write_text("[vastai\n")
    with pytest.raises(ConfigError, match=r"bad\.toml: invalid TOML"):
        load_price_file(bad)
    with pytest.raises(ConfigError, match=r"missing\.toml: file not found"):
        load_price_file(tmp_path / "missing.toml")


# ------------------------------------------------------------------ bad catalog files


def _write(tmp_path: Path, prices: str, throughput: str = "") -> Path:
    (tmp_path / "prices.toml").write_text(prices)
    (tmp_path / "throughput.toml").write_text(throughput)
    return tmp_path / "prices.toml"


def test_catalog_row_without_seen_names_file_and_key(tmp_path: Path) -> None:
    path = _write(tmp_path, '[modal.L4]\ndollars_per_second = 0.000222\ndollars_per_hour = 0.80\nsource = "x"\n')
    with pytest.raises(ConfigError) as exc:
        load_catalog(path)
    assert str(exc.value).startswith(f"{path}: modal.L4.seen is missing")


def test_catalog_bad_number_and_bad_toml(tmp_path: Path) -> None:
    path = _write(tmp_path, '[anthropic.m]\ninput = "lots"\noutput = 1\nseen = 2026-11-26\nsource = "x"\n')
    with pytest.raises(ConfigError, match=r"anthropic\.m\.input must be a number"):
        load_catalog(path)
    path = _write(tmp_path, "[modal.L4\n")
    with pytest.raises(ConfigError, match=r"prices\.toml: invalid TOML"):
        load_catalog(path)
    with pytest.raises(ConfigError, match="file not found"):
        load_catalog(tmp_path / "nope.toml")


def test_throughput_for_an_unknown_gpu_is_a_config_error(tmp_path: Path) -> None:
    path = _write(
        tmp_path,
        '[modal.L4]\ndollars_per_second = 0.000222\ndollars_per_hour = 0.80\nseen = 2026-10-04\nsource = "x"\n',
        '[modal.gpu.L5]\ntokens_per_second = 35\nmax_concurrency = 32\nsource = "x"\n',
    )
    with pytest.raises(ConfigError) as exc:
        load_catalog(path)
    assert "throughput.toml" in str(exc.value) and "modal.gpu.\"L5\"" in str(exc.value)
    assert "did you mean 'L4'" in str(exc.value)


def test_explicit_throughput_path(tmp_path: Path) -> None:
    path = _write(tmp_path, '[modal.L4]\ndollars_per_second = 0.000222\ndollars_per_hour = 0.80\nseen = 2026-10-04\nsource = "x"\n')
    other = tmp_path / "tp.toml"
    other.write_text('[modal.gpu.l4]\ntokens_per_second = 10\nmax_concurrency = 4\nsource = "mine"\n')
    cat = load_catalog(path, throughput_path=other)
    assert cat.throughput_for("modal", "L4").tokens_per_second == 10
    assert cat.throughput_path == other


# ------------------------------------------------------------------ the package


def test_every_public_name_resolves() -> None:
    from gpuctl import costs

    for name in costs.__all__:
        assert getattr(costs, name) is not None, name
    with pytest.raises(AttributeError):
        costs.no_such_name  # noqa: B018


def test_loading_the_catalog_does_not_import_the_traffic_models() -> None:
    import subprocess
    import sys

    code = ("import sys\nfrom gpuctl import costs\ncosts.load_catalog()\n"
            "print(','.join(sorted(m for m in sys.modules if m.startswith('gpuctl.costs.'))))")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "gpuctl.costs.catalog,gpuctl.costs.loading,gpuctl.costs.money"
