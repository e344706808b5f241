"""Cost math, checked against numbers worked out by hand: the seed's arithmetic, the traffic
models (one request, two in one window, two far apart), the break-even, the ledger replay,
and one-line usage errors for bad input."""

from __future__ import annotations

import json
from dataclasses import dataclass
from datetime import date
from decimal import Decimal
from pathlib import Path

import pytest

from gpuctl.costs import (
    DEFAULT_LEVELS,
    Catalog,
    ModalPrice,
    StartupTime,
    Throughput,
    TokenPrice,
    Traffic,
    UsageEvent,
    VastPrice,
    anthropic_traffic_cost,
    break_even,
    burst_day,
    compare,
    estimate_gpu_time,
    estimate_traffic,
    events_from_ledger,
    gpu_time_cost,
    instance_cost,
    load_catalog,
    modal_cost,
    modal_traffic_cost,
    money_str,
    monthly_gpu_cost,
    replay_usage,
    round_money,
    token_cost,
    up_periods,
    vast_traffic_cost,
)
from gpuctl.errors import EXIT_USAGE, UsageError

D = Decimal
SEEN = date(2026, 10, 4)

# Exact numbers for hand arithmetic (independent of the shipped configs, which may be re-priced).
L4 = ModalPrice("L4", D("0.000222"), D("0.80"), SEEN, "test")
L4_TP = Throughput("modal", "L4", D(35), D(20), D(50), 32, "seed README")
COLD = StartupTime("modal", D(20), D(10), D(30), "cold start", "seed README")
R3090 = VastPrice("RTX 3090", D("0.30"), D("0.42"), D("0.36"), SEEN, "test")  # $0.36/h = $0.0001/s
R3090_TP = Throughput("vastai", "RTX 3090", D(40), D(25), D(55), 32, "seed README")
BOOT = StartupTime("vastai", D(660), D(420), D(900), "boot", "seed README")
HAIKU = TokenPrice("claude-haiku-4-5", D("1.00"), D("5.00"), date(2026, 11, 26), "test")
TIERED = TokenPrice("claude-haiku-5-5", D("0.10"), D("0.50"), date(2026, 11, 26), "test",
                    long_context_threshold=100_000, long_input=D("0.50"), long_output=D("2.50"))

PRICES_TOML = """
[modal.L4]
dollars_per_second = 0.000222
dollars_per_hour = 0.80
seen = 2026-10-04
source = "test"

[vastai."RTX 3090"]
low = 0.30
high = 0.42
typical = 0.36
seen = 2026-10-01
source = "test"

[anthropic.claude-haiku-4-5]
input = 1.00
output = 5.00
seen = 2026-11-26
source = "test"

[anthropic.claude-haiku-5-5]
input = 0.10
output = 0.50
long_context_threshold = 100000
long_input = 0.50
long_output = 2.50
seen = 2026-11-26
source = "test"
"""

THROUGHPUT_TOML = """
[modal.startup]
seconds = 20
source = "seed README"

[modal.gpu.L4]
tokens_per_second = 35
max_concurrency = 32
source = "seed README"

[vastai.startup]
seconds = 660
source = "seed README"

[vastai.gpu."RTX 3090"]
tokens_per_second = 40
max_concurrency = 32
source = "seed README"
"""


@pytest.fixture
def catalog(tmp_path: Path) -> Catalog:
    (tmp_path / "prices.toml").write_text(PRICES_TOML)
    (tmp_path / "throughput.toml").write_text(THROUGHPUT_TOML)
    return load_catalog(tmp_path / "prices.toml")


def one_day(requests: int, bursts: int, *, concurrency: int | None = None) -> Traffic:
    # 350 output tokens: 10 s at the L4's 35 tok/s, 8.75 s at the 3090's 40 tok/s.
    return Traffic.build(requests_per_day=requests, input_tokens=1050, output_tokens=350,
                         bursts_per_day=bursts, concurrency=concurrency, days=1)


# ------------------------------------------------------------------ the seed's arithmetic


def test_l4_per_second_price() -> None:
    assert modal_cost(D("0.000222"), 1) == D("0.000222")
    assert L4.dollars_per_second * 3600 == D("0.7992")  # published, rounded: $0.80/h


def test_l4_thirty_minutes() -> None:
    # Billed per second: 1800 s × $0.000222 = $0.3996, shown as the seed's $0.40.
    per_second = modal_cost(D("0.000222"), 30 * 60)
    assert per_second == D("0.3996")
    assert round_money(per_second) == D("0.40")
    # Stated in hours at the published rate: exactly $0.40.
    assert gpu_time_cost(dollars_per_hour=D("0.80"), hours=D("0.5")) == D("0.40")


def test_l4_two_hours_a_day_for_a_month(catalog: Catalog) -> None:
    assert monthly_gpu_cost(dollars_per_hour=D("0.80"), hours_per_day=2) == D("48.00")
    est = estimate_gpu_time(catalog, provider="modal", gpu="L4", hours_per_day=2)
    assert est.per_month == D("48.00") and str(est.per_month) == "48.00"
    assert est.total == D("48.00") and est.days == 30
    assert est.gpu_seconds == 2 * 30 * 3600
    assert est.as_dict()["per_month"] == "48.00"
    assert "published" in est.assumptions["rate_basis"]
    # Per-second billing of the same hours would be $47.952: why hour estimates use $/h.
    assert modal_cost(D("0.000222"), est.gpu_seconds) == D("47.952")


def test_l4_thirty_minutes_one_off(catalog: Catalog) -> None:
    est = estimate_gpu_time(catalog, provider="modal", gpu="l4", hours=D("0.5"))
    assert est.total == D("0.40") and est.per_month is None and est.days is None
    assert est.as_dict()["total"] == "0.40"


def test_vast_45_minutes_at_014(catalog: Catalog) -> None:
    assert gpu_time_cost(dollars_per_hour=D("0.14"), hours=D("0.75")) == D("0.105")
    est = estimate_gpu_time(catalog, provider="vastai", gpu="RTX 3090", hours="0.75", dollars_per_hour="0.14")
    assert est.total == D("0.105")
    assert est.as_dict()["total"] == "0.105"  # exact in --json
    assert round_money(est.total) == D("0.11")  # cents on screen
    assert est.gpu_seconds == 2700
    assert instance_cost(dollars_per_hour=D("0.14"), started_at=1000, ended_at=1000 + 2700) == D("0.105")


def test_vast_eight_hours_a_day_at_014(catalog: Catalog) -> None:
    assert monthly_gpu_cost(dollars_per_hour=D("0.14"), hours_per_day=8, days=30) == D("33.60")
    est = estimate_gpu_time(catalog, provider="vast", gpu="rtx_3090", hours_per_day=8, dollars_per_hour=0.14)
    assert est.per_month == D("33.60") and est.as_dict()["per_month"] == "33.60"


def test_days_other_than_a_month(catalog: Catalog) -> None:
    est = estimate_gpu_time(catalog, provider="modal", gpu="L4", hours_per_day=2, days=7)
    assert est.total == D("11.20") and est.per_month == D("48.00")


def test_vast_typical_price_when_no_live_offer(catalog: Catalog) -> None:
    est = estimate_gpu_time(catalog, provider="vastai", gpu="RTX 3090", hours=10)
    assert est.total == D("3.60") and [r.key for r in est.prices] == ["RTX 3090"]
    assert "typical" in est.assumptions["price"]


def test_round_money_is_half_up() -> None:
    assert round_money(D("0.125")) == D("0.13")  # not banker's rounding
    assert round_money(D("0.3996")) == D("0.40")
    assert round_money(D("47.952")) == D("47.95")
    assert money_str(D("0.1050")) == "0.105" and money_str(D("48")) == "48.00"


# ------------------------------------------------------------------ bad input: one line, exit 2


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"hours": -1}, "hours must not be negative (got -1)"),
        ({"hours_per_day": -2}, "hours per day must not be negative (got -2)"),
        ({"hours_per_day": 25}, "hours per day must be at most 24 (got 25)"),
        ({"hours_per_day": 2, "days": 0}, "days must be more than 0 (got 0)"),
        ({"hours_per_day": 2, "days": -3}, "days must be more than 0 (got -3)"),
        ({"hours_per_day": "two"}, "hours per day must be a number below 10^12 (got 'two')"),
        ({"hours_per_day": 2, "hours": 1}, "give either hours per day or one-off hours, not both"),
        ({}, "give hours per day (or one-off hours) to estimate GPU time"),
        ({"hours": 1, "gpu": "L5"}, "unknown modal GPU 'L5' (did you mean 'L4'?)"),
        ({"hours": 1, "provider": "anthropic"}, "anthropic bills tokens, not GPU time"),
        ({"hours": 1, "dollars_per_hour": 0}, "price per hour must be more than 0 (got 0)"),
    ],
)
def test_bad_gpu_time_input(catalog: Catalog, kwargs: dict[str, object], message: str) -> None:
    args: dict[str, object] = {"provider": "modal", "gpu": "L4", **kwargs}
    with pytest.raises(UsageError) as exc:
        estimate_gpu_time(catalog, **args)  # type: ignore[arg-type]
    assert str(exc.value) == message
    assert exc.value.exit_code == EXIT_USAGE


def test_math_functions_validate_too() -> None:
    with pytest.raises(UsageError, match="hours must not be negative"):
        gpu_time_cost(dollars_per_hour=D("0.14"), hours=D("-0.5"))
    with pytest.raises(UsageError, match="at most 24"):
        monthly_gpu_cost(dollars_per_hour=1, hours_per_day=D("24.5"))
    with pytest.raises(UsageError, match="before start"):
        instance_cost(dollars_per_hour=1, started_at=10, ended_at=5)
    with pytest.raises(UsageError, match="requests per day must not be negative"):
        Traffic.build(requests_per_day=-1)
    with pytest.raises(UsageError, match="bursts per day must be more than 0"):
        Traffic.build(requests_per_day=1, bursts_per_day=0)
    with pytest.raises(UsageError, match="output tokens must be at least 1"):
        Traffic.build(requests_per_day=1, input_tokens=10, output_tokens=0)


def test_unknown_vast_gpu_is_allowed_only_with_a_live_price(catalog: Catalog) -> None:
    with pytest.raises(UsageError, match="unknown vastai GPU 'RTX 5090'"):
        estimate_gpu_time(catalog, provider="vastai", gpu="RTX 5090", hours=1)
    est = estimate_gpu_time(catalog, provider="vastai", gpu="RTX 5090", hours=2, dollars_per_hour="0.40")
    assert est.total == D("0.80") and est.key == "RTX 5090"


# ------------------------------------------------------------------ tokens


def test_token_cost_per_million() -> None:
    # 1050 × $1/M + 350 × $5/M = $0.00105 + $0.00175
    assert token_cost(HAIKU, 1050, 350) == D("0.0028")
    assert token_cost(HAIKU, 1_000_000, 0) == D("1.00")
    assert token_cost(HAIKU, 0, 1_000_000) == D("5.00")


def test_token_cost_prompt_size_tiers() -> None:
    # ≤ 100K prompt: 100,000 × 0.10/M + 1,000 × 0.50/M
    assert token_cost(TIERED, 100_000, 1000) == D("0.0105")
    # Above: the long rates for the whole request: 200,000 × 0.50/M + 1,000 × 2.50/M
    assert token_cost(TIERED, 200_000, 1000) == D("0.1025")


def test_tokens_per_request_split() -> None:
    t = Traffic.build(requests_per_day=10, tokens_per_request=1400)
    assert (t.input_tokens, t.output_tokens) == (1050, 350)
    with pytest.raises(UsageError, match="not both"):
        Traffic.build(requests_per_day=10, tokens_per_request=1400, output_tokens=10)


def test_anthropic_traffic_cost() -> None:
    est = anthropic_traffic_cost(Traffic.build(requests_per_day=100, tokens_per_request=1400), price=HAIKU)
    assert est.per_month == D("8.40")  # 100 × $0.0028 × 30
    assert est.tokens == 100 * 1400 * 30
    assert est.per_million_tokens == D("2.00")  # $0.0028 per 1,400 tokens
    assert est.gpu_seconds is None and est.assumptions["cost_per_request"] == "0.0028"


# ------------------------------------------------------------------ Modal traffic model


def modal(traffic: Traffic, window: int = 300) -> Decimal:
    est = modal_traffic_cost(traffic, price=L4, throughput=L4_TP, startup=COLD, scaledown_window_s=window)
    assert est.gpu_seconds is not None
    return est.gpu_seconds


def test_modal_single_request() -> None:
    # cold start 20 s + generation 350/35 = 10 s + scaledown tail 300 s
    assert modal(one_day(1, 1)) == 330
    est = modal_traffic_cost(one_day(1, 1), price=L4, throughput=L4_TP, startup=COLD)
    assert est.total == D("0.07326")  # 330 × 0.000222
    assert est.per_month == D("2.1978")  # × 30
    assert est.tokens == 1400 and est.per_million_tokens == D("52.3286")  # 0.07326 / 1400 × 10⁶
    assert est.assumptions["scaledown_window_s"] == "300" and est.assumptions["seconds_per_request"] == "10"


def test_modal_two_requests_in_one_window_share_a_container() -> None:
    # One burst: one cold start, one tail; both run at once (concurrency 32).
    assert modal(one_day(2, 1)) == 330


def test_modal_two_requests_far_apart_pay_twice() -> None:
    # Two bursts: two cold starts and two tails.
    assert modal(one_day(2, 2)) == 2 * 330


def test_modal_burst_beyond_concurrency_takes_longer() -> None:
    assert modal(one_day(64, 1)) == 20 + 2 * 10 + 300  # two request-times
    assert modal(one_day(3, 1, concurrency=1)) == 20 + 3 * 10 + 300  # one at a time


def test_modal_window_changes_the_tail() -> None:
    assert modal(one_day(1, 1), window=60) == 20 + 10 + 60


def test_modal_billing_caps_at_a_day() -> None:
    # 300 bursts × 330 s = 99,000 s > a day: the container would simply stay up.
    assert modal(one_day(300, 300)) == 86400


def test_more_than_one_gpu_spreads_over_several() -> None:
    # 300,000 requests in one burst: 9,375 waves × 10 s = 93,750 s of generation > one day,
    # so two containers, each paying the cold start and the tail: 2 × (20 + 300) + 93,750.
    assert modal(one_day(300_000, 1)) == 2 * 320 + 93_750


def test_absurd_traffic_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="more than 64 modal L4 GPUs"):
        modal(one_day(30_000_000, 1))


def test_no_traffic_costs_nothing() -> None:
    assert modal(one_day(0, 1)) == 0


# ------------------------------------------------------------------ Vast traffic model


def vast(traffic: Traffic, keep: int = 2700, dph: str | None = None) -> tuple[Decimal, Decimal]:
    est = vast_traffic_cost(traffic, price=R3090, throughput=R3090_TP, startup=BOOT, keep_alive_s=keep,
                            dollars_per_hour=dph)
    assert est.gpu_seconds is not None
    return est.gpu_seconds, est.total


def test_vast_single_request() -> None:
    # boot 660 s + generation 350/40 = 8.75 s + keep-alive 2700 s, at $0.36/h = $0.0001/s
    assert vast(one_day(1, 1)) == (D("3368.75"), D("0.336875"))


def test_vast_two_requests_in_one_burst_and_far_apart() -> None:
    assert vast(one_day(2, 1))[0] == D("3368.75")
    assert vast(one_day(2, 2))[0] == 2 * D("3368.75")


def test_vast_kept_all_day_is_capped() -> None:
    # 26 launches × 3368.75 s > a day: the box would never be destroyed. 24 h × $0.36 = $8.64
    assert vast(one_day(26, 26)) == (D(86400), D("8.64"))


def test_vast_live_price_replaces_typical() -> None:
    est = vast_traffic_cost(one_day(1, 1), price=R3090, throughput=R3090_TP, startup=BOOT, keep_alive_s=2700,
                            dollars_per_hour="0.72")
    assert est.total == D("0.67375") and est.prices == ()


# ------------------------------------------------------------------ break-even and comparisons


def api_vs_gpu(r: int, *, rate: Decimal, a: Decimal, b: int, c: int, t: Decimal, o: Decimal) -> tuple[Decimal, Decimal]:
    day = burst_day(requests_per_day=D(r), bursts_per_day=D(b), concurrency=c, seconds_per_request=t, overhead_s=o)
    return a * r, rate * day.billed_s


def test_break_even_while_bursts_fill_up() -> None:
    # Modal L4, 8 bursts, each 20 + 10 + 300 s while a burst holds ≤ 32 requests:
    # 8 × 330 × 0.000222 = $0.58608/day against $0.0028/request → 209.3 → 210 requests/day.
    be = break_even(provider="modal", gpu="L4", versus="claude-haiku-4-5", api_cost_per_request=D("0.0028"),
                    gpu_cost_per_second=D("0.000222"), tokens_per_request=1400, bursts_per_day=D(8),
                    concurrency=32, seconds_per_request=D(10), overhead_s=D(320))
    assert be.requests_per_day == 210 and be.tokens_per_day == 210 * 1400
    assert be.capacity_requests_per_day == 86400 * 32 // 10
    kw = {"rate": D("0.000222"), "a": D("0.0028"), "b": 8, "c": 32, "t": D(10), "o": D(320)}
    api, gpu = api_vs_gpu(210, **kw)  # type: ignore[arg-type]
    assert gpu <= api
    api, gpu = api_vs_gpu(209, **kw)  # type: ignore[arg-type]
    assert gpu > api


def test_break_even_one_stream_at_a_time() -> None:
    # concurrency 1: GPU = 0.000222 × (8 × 320 + 10 R); API = 0.0028 R
    # → R = 0.56832 / 0.00058 = 979.9 → 980
    be = break_even(provider="modal", gpu="L4", versus="m", api_cost_per_request=D("0.0028"),
                    gpu_cost_per_second=D("0.000222"), tokens_per_request=1400, bursts_per_day=D(8),
                    concurrency=1, seconds_per_request=D(10), overhead_s=D(320))
    assert be.requests_per_day == 980


def test_break_even_vast_hourly_rate() -> None:
    # $0.36/h = $0.0001/s; past 256 requests: 0.0001 × (8 × 3360 + 8.75 R / 32) vs 0.0028 R
    # → R = 2.688 / 0.00277265625 = 969.5 → 970
    be = break_even(provider="vastai", gpu="RTX 3090", versus="m", api_cost_per_request=D("0.0028"),
                    gpu_cost_per_second=D("0.36") / 3600, tokens_per_request=1400, bursts_per_day=D(8),
                    concurrency=32, seconds_per_request=D("8.75"), overhead_s=D(3360))
    assert be.requests_per_day == 970


def test_break_even_never_when_the_api_is_cheaper_per_request() -> None:
    # $0.00028/request against 10 s × $0.000222 = $0.00222 of GPU per request, one at a time.
    be = break_even(provider="modal", gpu="L4", versus="claude-haiku-5-5", api_cost_per_request=D("0.00028"),
                    gpu_cost_per_second=D("0.000222"), tokens_per_request=1400, bursts_per_day=D(8),
                    concurrency=1, seconds_per_request=D(10), overhead_s=D(320))
    assert be.requests_per_day is None and be.tokens_per_day is None
    assert "API stays cheaper" in be.note and be.capacity_requests_per_day == 8640


@pytest.mark.parametrize(
    ("a", "b", "c", "o"),
    [
        ("0.02", 8, 4, 320),  # crossing while bursts fill up
        ("0.03", 3, 2, 3360),  # crossing on the shared-stream slope
        ("0.006", 30, 4, 3360),  # bursts overlap: up all day (the 24 h cap), then flat
        ("0.0001", 8, 1, 320),  # never
        ("1", 8, 4, 320),  # from the first request
    ],
)
def test_break_even_matches_brute_force(a: str, b: int, c: int, o: int) -> None:
    # A slow GPU (100 s a request) so that every requests/day up to capacity can be tried.
    rate, t = D("0.000222"), D(100)
    be = break_even(provider="modal", gpu="L4", versus="m", api_cost_per_request=D(a), gpu_cost_per_second=rate,
                    tokens_per_request=1, bursts_per_day=D(b), concurrency=c, seconds_per_request=t,
                    overhead_s=D(o))
    cap = int(be.capacity_requests_per_day)
    cheaper = [gpu <= api for api, gpu in (api_vs_gpu(r, rate=rate, a=D(a), b=b, c=c, t=t, o=D(o))
                                           for r in range(1, cap + 1))]
    expected = None
    for r in range(cap, 0, -1):  # the smallest R from which the GPU stays cheaper
        if not cheaper[r - 1]:
            break
        expected = r
    assert be.requests_per_day == expected


def test_estimate_traffic_side_by_side(catalog: Catalog) -> None:
    t = Traffic.build(requests_per_day=200, input_tokens=1050, output_tokens=350)
    cmp = estimate_traffic(catalog, t)
    (row,) = cmp.rows
    by = {e.provider: e for e in row.estimates}
    assert by["modal"].per_month == D("17.5824")  # 8 × 330 s × 0.000222 × 30
    assert by["anthropic"].per_month == D("16.80")  # 200 × 0.0028 × 30
    assert by["vastai"].per_month == D("80.85")  # 8 × 3368.75 s × 0.0001 × 30
    assert row.cheapest is by["anthropic"]
    assert {e.tokens for e in row.estimates} == {D(200 * 1400 * 30)}
    assert [(b.provider, b.requests_per_day) for b in cmp.break_even] == [("modal", 210), ("vastai", 970)]
    json.dumps(cmp.as_dict())
    only = estimate_traffic(catalog, t, providers=["modal"])
    assert [e.provider for e in only.rows[0].estimates] == ["modal"] and only.break_even == ()


def test_compare_at_the_seed_levels(catalog: Catalog) -> None:
    cmp = compare(catalog)
    assert [r.gpu_hours_per_day for r in cmp.rows] == [D("2.5"), D("4.5"), D("7.5")]
    assert [r.level_range for r in cmp.rows] == [(lv.low_hours, lv.high_hours) for lv in DEFAULT_LEVELS]
    low = cmp.rows[0]
    # 2.5 GPU-h of generation = 9000 s; 32 streams of 10 s requests → 28,800 requests/day.
    assert low.requests_per_day == 28800 and low.tokens_per_day == 28800 * 1400
    by = {e.provider: e for e in low.estimates}
    # Modal bills 8 × (20 + 300) s of overhead + 9000 s generating.
    assert by["modal"].gpu_seconds == (8 * 320 + 9000) * 30
    assert by["modal"].per_month == D("76.9896")
    assert by["anthropic"].per_million_tokens == D("2.00")
    for row in cmp.rows:  # one basis: the same tokens for every provider
        assert len({e.tokens for e in row.estimates}) == 1
        for e in row.estimates:
            assert e.tokens and e.per_million_tokens == (e.total * 1_000_000 / e.tokens).quantize(D("0.0001"))
    assert {b.provider for b in cmp.break_even} == {"modal", "vastai"}
    assert cmp.stale_rows(date(2026, 11, 26)) == []
    assert {(p.provider, p.key) for p in cmp.prices} == {
        ("modal", "L4"), ("vastai", "RTX 3090"), ("anthropic", "claude-haiku-4-5")}
    assert {(p.provider, p.key) for p in cmp.stale_rows(date(2027, 2, 1))} == {("modal", "L4"), ("vastai", "RTX 3090")}
    data = json.loads(json.dumps(cmp.as_dict()))
    assert data["rows"][0]["estimates"][0]["per_month"] == "76.9896"


def test_compare_with_the_shipped_catalog() -> None:
    cmp = compare(load_catalog())
    assert len(cmp.rows) == 3 and all(len(r.estimates) == 3 for r in cmp.rows)
    assert all(e.per_month and e.per_month > 0 for r in cmp.rows for e in r.estimates)


# ------------------------------------------------------------------ replay of the ledger


EVENTS = [
    # (start, latency, input, output): two requests inside one window, then one long after.
    UsageEvent.build(started_at=1000, latency_s=10, input_tokens=1000, output_tokens=200),
    UsageEvent.build(started_at=1100, latency_s=5, input_tokens=2000, output_tokens=400),
    UsageEvent.build(started_at=5000, latency_s=20, input_tokens=500, output_tokens=100),
]


def test_up_periods_merge_requests() -> None:
    periods = up_periods(list(reversed(EVENTS)), window_s=300, startup_s=20)  # order does not matter
    assert [(p.start, p.end, p.requests) for p in periods] == [(1000, 1405, 2), (5000, 5320, 1)]
    assert [p.billed_s for p in periods] == [20 + 405, 20 + 320]


def test_up_period_boundary_arrival_still_finds_it_up() -> None:
    events = [UsageEvent.build(started_at=0, latency_s=10, input_tokens=1, output_tokens=1),
              UsageEvent.build(started_at=310, latency_s=10, input_tokens=1, output_tokens=1)]
    assert len(up_periods(events, window_s=300, startup_s=20)) == 1
    assert len(up_periods(events, window_s=299, startup_s=20)) == 2


def test_replay_usage(catalog: Catalog) -> None:
    cmp = replay_usage(EVENTS, catalog=catalog, period_days=1)
    by = {e.provider: e for e in cmp.rows[0].estimates}
    # Modal: (20 + 405) + (20 + 320) = 765 s × $0.000222
    assert by["modal"].gpu_seconds == 765 and by["modal"].total == D("0.16983")
    assert by["modal"].assumptions["container_periods"] == "2"
    # Vast: kept 45 min after the second request (1105 + 2700 = 3805), destroyed, relaunched at 5000:
    # (660 + 2805) + (660 + 2720) = 6845 s × $0.0001
    assert by["vastai"].gpu_seconds == 6845 and by["vastai"].total == D("0.6845")
    assert by["vastai"].assumptions["launches"] == "2"
    # Anthropic: 3500 input × $1/M + 700 output × $5/M
    assert by["anthropic"].total == D("0.007")
    assert by["anthropic"].per_month == D("0.21")  # one day's traffic × 30
    assert {e.tokens for e in by.values()} == {D(4200)}
    assert cmp.kind == "replay" and cmp.rows[0].requests_per_day == 3


def test_replay_with_a_short_window_and_live_vast_price(catalog: Catalog) -> None:
    cmp = replay_usage(EVENTS, catalog=catalog, scaledown_window_s=60, keep_alive_s=60,
                       vast_dollars_per_hour="0.72", providers=["modal", "vast"])
    modal_est, vast_est = cmp.rows[0].estimates
    # A 60 s window ends at 1070, before the request at 1100: three periods, three cold starts.
    assert modal_est.gpu_seconds == (20 + 70) + (20 + 65) + (20 + 80)
    assert vast_est.gpu_seconds == (660 + 70) + (660 + 65) + (660 + 80)
    assert vast_est.total == D("0.439")  # 2195 s × $0.0002
    assert modal_est.per_month is None  # no period given


def test_replay_of_nothing(catalog: Catalog) -> None:
    cmp = replay_usage([], catalog=catalog, period_days=30)
    assert all(e.total == 0 and e.per_million_tokens is None for e in cmp.rows[0].estimates)


@dataclass
class FakeRecord:  # the shape of state.UsageRecord
    ts: float
    latency_s: float | None
    prompt_tokens: int
    completion_tokens: int
    ok: bool = True


def test_events_from_ledger_rows() -> None:
    events = events_from_ledger([
        FakeRecord(1000.5, 10.25, 1000, 200),
        FakeRecord(1001.0, None, 0, 0, ok=False),  # a failed attempt served nothing
        FakeRecord(1002.0, None, 10, 5),
    ])
    assert [(e.started_at, e.latency_s, e.input_tokens, e.output_tokens) for e in events] == [
        (D("1000.5"), D("10.25"), 1000, 200), (D("1002.0"), D(0), 10, 5)]


def test_modal_gpu_counts_multiply_the_rate() -> None:
    from gpuctl.costs import estimate_gpu_time, load_catalog

    one = estimate_gpu_time(load_catalog(), provider="modal", gpu="H100", hours_per_day=1)
    two = estimate_gpu_time(load_catalog(), provider="modal", gpu="h100:2", hours_per_day=1)
    assert one.per_month == Decimal("118.50") and two.per_month == Decimal("237.00")  # $3.95/h × 30 h (× 2)
    with pytest.raises(UsageError, match=r"1\.\.8"):
        estimate_gpu_time(load_catalog(), provider="modal", gpu="H100:9", hours_per_day=1)
