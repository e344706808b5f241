"""`gpuctl cost estimate` through the real app: no credentials needed, the seed's arithmetic in
--json (decimal strings to the catalog's precision), traffic and ledger replays worked out by hand, stale prices on
stderr, price overrides, and one `Error:` line (exit 2) for every bad input."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import ROUND_HALF_UP, Decimal
from pathlib import Path

import pytest

from gpuctl import costs
from gpuctl.ops import cost as cost_report
from gpuctl.state import UsageRecord, open_state
from tests.support import assert_exit

D = Decimal
NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()  # the day the prices were collected


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    """Pin "now" so stale-price checks and --since windows don't drift with the calendar."""
    now = [NOW]
    monkeypatch.setattr(cost_report, "clock", lambda: now[0])
    yield now


def data_of(result) -> dict:  # type: ignore[no-untyped-def]
    doc = json.loads(result.stdout)
    assert doc["status"] == "success" and doc["exit_code"] == 0 and doc["command"] == "cost estimate"
    return doc["data"]


# ------------------------------------------------------------------ no flags


def test_no_flags_prints_the_comparison_without_credentials(cli) -> None:
    result = cli("cost", "estimate")
    assert_exit(result, 0)
    out = result.stdout
    for needle in ("$ per month (30 days) at the original system's traffic levels", "$ per million tokens",
                   "Break-even", "Assumptions", "GPU-h/day", "low      2–3", "medium   4–5",
                   "high     7–8", "Modal L4", "Vast.ai RTX 3090", "Anthropic claude-haiku-4-5",
                   "scaledown window (s)", "35 output tok/s per stream"):
        assert needle in out, needle
    assert result.stderr == ""  # prices are fresh on the pinned day: no warning


def test_no_flags_json_matches_the_library_and_is_exact(cli) -> None:
    data = data_of(cli("cost", "estimate", "--json"))
    expected = costs.compare(costs.load_catalog()).as_dict()
    assert data["kind"] == "levels"
    assert data["rows"] == expected["rows"] and data["break_even"] == expected["break_even"]
    assert [r["level_range"] for r in data["rows"]] == [["2", "3"], ["4", "5"], ["7", "8"]]
    for row in data["rows"]:
        assert [e["provider"] for e in row["estimates"]] == ["modal", "vastai", "anthropic"]
        for e in row["estimates"]:
            assert isinstance(e["per_month"], str) and isinstance(e["per_million_tokens"], str)
    assert {b["provider"] for b in data["break_even"]} == {"modal", "vastai"}
    assert data["stale_prices"] == []
    # The table shows the same numbers, rounded to cents.
    human = cli("cost", "estimate").stdout
    first = data["rows"][0]["estimates"]
    assert f"${costs.round_money(D(first[0]['per_month'])):,}" in human
    assert f"${costs.round_money(D(first[2]['per_month'])):,}" in human


def test_fresh_install_real_clock_exits_zero(cli, monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    monkeypatch.setattr(cost_report, "clock", time.time)
    assert_exit(cli("cost", "estimate"), 0)


# ------------------------------------------------------------------ by GPU time


def test_modal_two_hours_a_day_is_48_00_exactly(cli) -> None:
    result = cli("cost", "estimate", "--provider", "modal", "--gpu", "L4", "--hours-per-day", "2", "--json")
    assert_exit(result, 0)
    data = data_of(result)
    assert data["kind"] == "gpu_time" and data["per_month"] == "48.00" and data["total"] == "48.00"
    est = data["estimate"]
    assert est["per_month"] == "48.00" and est["total"] == "48.00"
    assert est["provider"] == "modal" and est["key"] == "L4" and est["gpu_hours"] == "60"
    assert est["assumptions"]["hours_per_day"] == "2"
    # --json may also come first (a global flag).
    assert data_of(cli("--json", "cost", "estimate", "--provider", "modal", "--hours-per-day", "2"))["estimate"][
        "per_month"] == "48.00"
    human = cli("cost", "estimate", "--provider", "modal", "--gpu", "L4", "--hours-per-day", "2")
    assert_exit(human, 0)
    assert "$48.00" in human.stdout and "2 h/day × 30 days" in human.stdout


def test_vast_45_minutes_at_14_cents_shows_11_cents_and_is_0_105(cli) -> None:
    args = ("cost", "estimate", "--provider", "vastai", "--gpu", "RTX 3090", "--dph", "0.14", "--hours", "0.75")
    human = cli(*args)
    assert_exit(human, 0)
    assert "$0.11" in human.stdout and "0.105" not in human.stdout
    est = data_of(cli(*args, "--json"))["estimate"]
    assert est["total"] == "0.105" and est["per_month"] is None


def test_gpu_time_provider_inferred_from_an_unambiguous_gpu(cli) -> None:
    assert data_of(cli("cost", "estimate", "--gpu", "L4", "--hours-per-day", "2", "--json"))["per_month"] == "48.00"
    result = cli("cost", "estimate", "--gpu", "H100", "--hours-per-day", "2")  # both rent H100s
    assert_exit(result, 2)
    assert "add --provider" in result.stderr


def test_vast_eight_hours_a_day_and_days(cli) -> None:
    base = ("cost", "estimate", "--provider", "vast", "--gpu", "rtx_3090", "--dph", "0.14", "--hours-per-day", "8")
    assert data_of(cli(*base, "--json"))["estimate"]["total"] == "33.60"
    est = data_of(cli(*base, "--days", "7", "--json"))["estimate"]
    assert est["total"] == "7.84" and est["per_month"] == "33.60"  # 0.14 × 8 × 7


# ------------------------------------------------------------------ by traffic


def _hand_modal_traffic(requests: D, out_tokens: int, bursts: D = D(8), days: int = 30) -> D:
    """The burst model by hand, shipped L4 assumptions: 35 tok/s, 32 streams, 20 s cold start,
    300 s scaledown window, $0.000222/s."""
    t = D(out_tokens) / 35
    waves = max(D(1), requests / bursts / 32)
    per_burst = 20 + 300 + waves * t
    return bursts * per_burst * days * D("0.000222")


def _json_places(d: D) -> D:
    """--json carries money to the catalog's precision (7 places), not 28 digits."""
    return d.quantize(D("0.0000001"), rounding=ROUND_HALF_UP)


def test_by_traffic_prices_each_provider(cli) -> None:
    data = data_of(cli("cost", "estimate", "--requests-per-day", "500", "--tokens-per-request", "1000", "--json"))
    assert data["kind"] == "traffic"
    (row,) = data["rows"]
    by = {e["provider"]: e for e in row["estimates"]}
    assert set(by) == {"modal", "vastai", "anthropic"}
    # 1000 tokens split 3:1 → 750 in, 250 out; Haiku $1/M in, $5/M out: $0.002 a request.
    assert by["anthropic"]["total"] == "30.00" and by["anthropic"]["per_million_tokens"] == "2.00"
    assert D(by["modal"]["total"]) == _json_places(_hand_modal_traffic(D(500), 250))
    assert row["tokens_per_day"] == "500000"
    assert data["assumptions"]["input_tokens_per_request"] == "750"
    assert data["assumptions"]["output_tokens_per_request"] == "250"
    human = cli("cost", "estimate", "--requests-per-day", "500", "--tokens-per-request", "1000")
    assert_exit(human, 0)
    assert "your traffic" in human.stdout and "$30.00" in human.stdout and "$17.79" in human.stdout


def test_by_traffic_one_provider_bursts_and_gpu(cli) -> None:
    data = data_of(cli("cost", "estimate", "--provider", "modal", "--gpu", "L4", "--requests-per-day", "16",
                       "--bursts-per-day", "16", "--tokens-per-request", "1000", "--json"))
    (row,) = data["rows"]
    assert [e["provider"] for e in row["estimates"]] == ["modal"]
    assert D(row["estimates"][0]["total"]) == _json_places(_hand_modal_traffic(D(16), 250, bursts=D(16)))
    assert data["break_even"] == []  # no API in the comparison


def test_by_traffic_live_vast_price(cli) -> None:
    data = data_of(cli("cost", "estimate", "--provider", "vastai", "--requests-per-day", "8", "--dph", "0.36",
                       "--json"))
    (est,) = data["rows"][0]["estimates"]
    # 8 requests in 8 bursts (default 350 output tokens): each burst is boot 660 s + 350/40 tok/s
    # = 8.75 s of generation + keep-alive 2700 s, at $0.36/h = $0.0001/s.
    per_day = 8 * (D(660) + D(350) / 40 + 2700)
    assert D(est["total"]) == per_day * 30 * D("0.0001")
    assert "(given)" in est["assumptions"]["price"]


# ------------------------------------------------------------------ from the ledger


def _ts(day: int, hour: int, minute: int = 0, second: int = 0) -> float:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC).timestamp()


def test_from_usage_replays_the_ledger(cli, gpuctl_home: Path) -> None:
    t0 = _ts(25, 10)
    with open_state(gpuctl_home) as st:
        for ts in (t0, t0 + 60, t0 + 7200):  # two inside one scaledown window, one far apart
            st.record_usage(UsageRecord(ts=ts, provider="modal", model="m", prompt_tokens=1000,
                                        completion_tokens=200, latency_s=10.0, cost="0.00222"))
        st.record_usage(UsageRecord(ts=t0 + 100, provider="modal", ok=False, error="timeout", latency_s=5.0))
        st.record_usage(UsageRecord(ts=_ts(20, 10) - 86400 * 30, provider="modal", prompt_tokens=10 ** 6,
                                    completion_tokens=1, latency_s=1.0))  # before --since
    data = data_of(cli("cost", "estimate", "--from-usage", "--since", "30d", "--json"))
    assert data["kind"] == "replay"
    by = {e["provider"]: e for e in data["rows"][0]["estimates"]}
    # Modal: [t0, t0+60+10+300] and [t0+7200, +10+300], each with a 20 s cold start = 720 s.
    assert by["modal"]["gpu_seconds"] == "720" and by["modal"]["total"] == "0.15984"
    assert by["modal"]["assumptions"]["container_periods"] == "2"
    # Vast.ai (45 min keep-alive, 660 s boot): the 2 h gap relaunches: 660+2770 + 660+2710 s at $0.225/h.
    assert by["vastai"]["gpu_seconds"] == "6800" and by["vastai"]["total"] == "0.425"
    # Anthropic: 3 × (1000 × $1 + 200 × $5) / 1M.
    assert by["anthropic"]["total"] == "0.006"
    assert by["modal"]["per_month"] == "0.15984"  # 30 days → per month is the same
    assert data["assumptions"]["requests"] == "3"
    human = cli("cost", "estimate", "--from-usage")
    assert_exit(human, 0)
    assert "Replay of 3 requests" in human.stdout and "$0.16" in human.stdout


def test_from_usage_empty_ledger(cli) -> None:
    result = cli("cost", "estimate", "--from-usage", "--since", "7d")
    assert_exit(result, 0)
    assert "no answered requests" in result.stdout


# ------------------------------------------------------------------ stale prices, overrides


def test_stale_prices_warn_once_each_on_stderr(cli, fixed_clock: list[float]) -> None:
    fixed_clock[0] = datetime(2027, 6, 1, tzinfo=UTC).timestamp()
    result = cli("cost", "estimate", "--json")
    assert_exit(result, 0)
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 3, result.stderr
    assert all(line.startswith("Warning: price for ") and "days ago" in line for line in lines)
    assert {line.split()[3] for line in lines} == {"modal", "vastai", "anthropic"}
    assert len(json.loads(result.stdout)["data"]["stale_prices"]) == 3  # stdout stays one JSON document


def test_override_file_with_old_seen_warns_and_reprices(cli, tmp_path: Path) -> None:
    prices = tmp_path / "prices.toml"
    prices.write_text('[modal.L4]\ndollars_per_hour = 1.00\nseen = 2026-01-02\nsource = "my invoice"\n')
    result = cli("cost", "estimate", "--provider", "modal", "--hours-per-day", "2", "--prices", str(prices), "--json")
    assert_exit(result, 0)
    assert data_of(result)["estimate"]["total"] == "60.00"  # $1.00 × 2 h × 30
    (line,) = result.stderr.strip().splitlines()
    assert "modal L4" in line and "2026-01-02" in line and "my invoice" in line


def test_undated_override_never_warns(cli, tmp_path: Path) -> None:
    prices = tmp_path / "p.toml"
    prices.write_text('[vastai."RTX 3090"]\ntypical = 0.14\n')
    result = cli("cost", "estimate", "--provider", "vastai", "--hours-per-day", "8", "--prices", str(prices), "--json")
    assert_exit(result, 0)
    assert data_of(result)["estimate"]["total"] == "33.60" and result.stderr == ""


def test_profile_prices_and_settings_feed_the_models(cli, gpuctl_home: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    (gpuctl_home / "profiles").mkdir(parents=True)
    (gpuctl_home / "profiles" / "cheap.toml").write_text(
        '[modal]\nscaledown_window_minutes = 2\n[anthropic]\nmodel = "claude-sonnet-4-6"\n'
        '[prices.vastai."RTX 3090"]\ntypical = 0.14\n')
    monkeypatch.setenv("GPUCTL_PROFILE", "cheap")
    est = data_of(cli("cost", "estimate", "--provider", "vastai", "--hours-per-day", "8", "--json"))["estimate"]
    assert est["total"] == "33.60" and "profile cheap" in est["assumptions"]["price"]
    data = data_of(cli("cost", "estimate", "--requests-per-day", "10", "--json"))
    by = {e["provider"]: e for e in data["rows"][0]["estimates"]}
    assert by["anthropic"]["key"] == "claude-sonnet-4-6"
    assert by["modal"]["assumptions"]["scaledown_window_s"] == "120"


# ------------------------------------------------------------------ bad input


@pytest.mark.parametrize(("args", "needle"), [
    (["--provider", "modal", "--hours", "-1"], "must not be negative"),
    (["--provider", "modal", "--hours-per-day", "-2"], "must not be negative"),
    (["--provider", "modal", "--hours-per-day", "25"], "at most 24"),
    (["--provider", "modal", "--hours-per-day", "two"], "must be a number"),
    (["--provider", "modal", "--gpu", "L5", "--hours-per-day", "2"], "did you mean 'L4'"),
    (["--gpu", "H10O"], "did you mean 'H100'"),
    (["--provider", "modl"], "did you mean 'modal'"),
    (["--provider", "aws", "--hours", "1"], "unknown provider 'aws'"),
    (["--provider", "anthropic", "--hours", "1"], "bills tokens"),
    (["--hours-per-day", "2"], "add --provider"),
    (["--provider", "modal", "--hours", "1", "--days", "3"], "one-off"),
    (["--from-usage", "--days", "3"], "the period is --since"),
    (["--provider", "modal", "--hours", "1", "--hours-per-day", "1"], "not both"),
    (["--hours-per-day", "2", "--requests-per-day", "5"], "choose one of"),
    (["--requests-per-day", "-5"], "must not be negative"),
    (["--requests-per-day", "5", "--tokens-per-request", "0"], "at least 1"),
    (["--requests-per-day", "5", "--bursts-per-day", "0"], "more than 0"),
    (["--tokens-per-request", "500"], "add --requests-per-day"),
    (["--provider", "vastai", "--hours", "1", "--dph", "-0.1"], "more than 0"),
    (["--provider", "modal", "--hours-per-day", "2", "--days", "0"], "more than 0"),
    (["--requests-per-day", "1000000000"], "more than 64"),
    (["--from-usage", "--since", "yesterday"], "--since must be like"),
    (["--since", "7d"], "goes with --from-usage"),
    (["--prices", "/nonexistent/prices.toml"], "file not found"),
])
def test_bad_input_is_one_line_exit_2(cli, args: list[str], needle: str) -> None:
    result = cli("cost", "estimate", *args)
    assert_exit(result, 2)
    assert result.stdout == ""
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr
    assert "Traceback" not in result.stderr
    assert len(result.stderr.splitlines()) <= 2  # the error, and at most a hint


def test_bad_input_with_json_is_an_error_envelope(cli) -> None:
    result = cli("cost", "estimate", "--provider", "modal", "--gpu", "L5", "--hours-per-day", "2", "--json")
    assert_exit(result, 2)
    doc = json.loads(result.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 2 and "did you mean 'L4'" in doc["errors"][0]["message"]


def test_bad_prices_file_is_a_config_error(cli, tmp_path: Path) -> None:
    bad = tmp_path / "bad.toml"
    bad.write_text("[modal.L4]\ndollars_per_hour = -1\n")
    result = cli("cost", "estimate", "--prices", str(bad))
    assert_exit(result, 3)
    assert str(bad) in result.stderr and "dollars_per_hour" in result.stderr
