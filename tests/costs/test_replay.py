"""The replay of the ledger's own rows (`LedgerLog`): whole milliseconds, merged as integers,
must give exactly what `UsageEvent`s (Decimals, request by request) give, to the last digit:
the times as `exact_seconds` rounds them (halves included), the periods, every estimate, the
token bill; and it must step aside (None, `NotExact`) where it could not be exact."""

from __future__ import annotations

import math
import random
from decimal import Decimal
from typing import Any

import pytest

from gpuctl.costs import (
    EventLog,
    LedgerLog,
    NotExact,
    UsageEvent,
    load_catalog,
    replay_usage,
    up_periods,
)
from gpuctl.costs.money import exact_seconds

D = Decimal
T0 = 1_790_000_000.0


def as_events(rows: list[tuple[Any, ...]]) -> list[UsageEvent]:
    """What the report made of its rows before LedgerLog: a UsageEvent each, times by exact_seconds."""
    return [UsageEvent(exact_seconds(ts), D(0) if lat is None else exact_seconds(lat), tokens, 0)
            for ts, lat, tokens, *_ in rows]


def tricky_times(rng: random.Random, n: int) -> list[float]:
    """Clock readings, and readings on or next to half a millisecond (where rounding is decided)."""
    out = []
    for i in range(n):
        base = T0 + rng.uniform(0, 30 * 86400)
        out.append((base, round(base, 3) + 0.0005, round(base, 4), math.nextafter(round(base, 3) + 0.0005, 0),
                    rng.randint(0, 10 ** 6) / 2000)[i % 5])
    return out


def test_milliseconds_are_exact_seconds() -> None:
    rng = random.Random(3)
    times = tricky_times(rng, 20_000)
    latencies = [(rng.uniform(0, 9), rng.randint(0, 20_000) / 2000, round(rng.uniform(0, 9), 4) + 0.0005, 0.0)[i % 4]
                 for i in range(len(times))]
    rows = sorted(zip(times, latencies, [1] * len(times), strict=True))
    log = LedgerLog.from_rows(rows)
    assert log is not None and log.requests == len(rows) and log.tokens == len(rows)
    for (ts, lat, _), start, end in zip(rows, log.starts, log.ends, strict=True):
        assert D(start).scaleb(-3) == exact_seconds(ts)
        assert D(end - start).scaleb(-3) == exact_seconds(lat)


def random_rows(seed: int, n: int, *, hosts: bool = False) -> list[tuple[Any, ...]]:
    """Requests with gaps around the windows tried below (so periods split), ties, no latency."""
    rng = random.Random(seed)
    t, rows = T0, []
    for i in range(n):
        t += rng.choice((0.0, 0.0005, rng.uniform(0, 3), rng.expovariate(1 / 120), 300.0005, 299.9995, 4000.0))
        lat = None if i % 9 == 0 else rng.choice((rng.uniform(0, 12), round(rng.uniform(0, 12), 3) + 0.0005))
        row: tuple[Any, ...] = (t, lat, rng.randint(0, 3000))
        rows.append((*row, f"web-{rng.randint(0, 2)}") if hosts else row)
    return rows


@pytest.mark.parametrize("window", [D(0), D("1.5"), D(60), D(300), D(2700), D("0.0004"), D("300.00025")])
def test_periods_are_those_of_usage_events(window: Decimal) -> None:
    rows = random_rows(int(window * 10000) % 97, 3000)
    log = LedgerLog.from_rows(rows)
    assert log is not None
    fast = log.up_periods(window, D(20))
    slow = up_periods(as_events(rows), window_s=window, startup_s=20)
    assert len(fast) > 1
    assert [(p.start, p.end, p.requests, p.startup_s, p.first, p.billed_s) for p in fast] == \
        [(p.start, p.end, p.requests, p.startup_s, p.first, p.billed_s) for p in slow]
    assert log.up_periods(window, 20) is fast  # merged once, however often asked


@pytest.mark.parametrize("seed", [1, 2, 3])
def test_replay_of_ledger_rows_is_the_replay_of_usage_events(seed: int) -> None:
    rows = random_rows(seed, 4000)
    log = LedgerLog.from_rows(rows)
    assert log is not None
    catalog = load_catalog()
    for opts in ({"scaledown_window_s": 300, "keep_alive_s": 2700}, {"scaledown_window_s": D("0.5"), "keep_alive_s": 60},
                 {"scaledown_window_s": D("120.0001"), "keep_alive_s": 0, "vast_dollars_per_hour": "0.31"}):
        fast = replay_usage(log, catalog=catalog, providers=["modal", "vastai"], period_days=30, **opts)
        slow = replay_usage(as_events(rows), catalog=catalog, providers=["modal", "vastai"], period_days=30, **opts)
        assert fast.as_dict() == slow.as_dict()
        assert [e.total for e in fast.rows[0].estimates] == [e.total for e in slow.rows[0].estimates]


def test_token_bill_per_prompt_size_is_the_bill_per_request() -> None:
    rng = random.Random(5)
    tokens = [(rng.choice((0, 10, 999, 100_000, 100_001, rng.randint(0, 300_000))), rng.randint(0, 4000))
              for _ in range(3000)]
    sizes: dict[int, list[int]] = {}
    for prompt, completion in tokens:
        size = sizes.setdefault(prompt, [0, 0, completion])
        size[0] += 1
        size[1] += completion
        size[2] = min(size[2], completion)
    rows = [(T0 + i, 1.0, p + c) for i, (p, c) in enumerate(tokens)]
    log = LedgerLog.from_rows(rows, prompt_sizes=[(p, n, c, least) for p, (n, c, least) in sizes.items()])
    assert log is not None
    events = [UsageEvent(D(i), D(1), p, c) for i, (p, c) in enumerate(tokens)]
    catalog = load_catalog()
    for model in ("claude-haiku-4-5", "claude-haiku-5-5"):  # the second has prompt-size tiers
        price = catalog.token_price(model)
        assert log.token_cost(price) == EventLog(events).token_cost(price)
        assert log.token_cost(price) > 0
    full = replay_usage(log, catalog=catalog, model="claude-haiku-5-5", period_days=7)
    assert full.as_dict() == replay_usage(events, catalog=catalog, model="claude-haiku-5-5", period_days=7).as_dict()


class LongRates:
    """A price with more digits than a Decimal keeps (28): a sum of its products rounds."""

    def rates_for(self, prompt_tokens: int) -> tuple[Decimal, Decimal]:
        return D("0.1234567890123456789012345678"), D("0.9876543210987654321098765432")


def test_a_token_bill_that_would_round_is_not_summed_per_prompt_size() -> None:
    log = LedgerLog.from_rows([(T0, 1.0, 30), (T0 + 1, 1.0, 25)], prompt_sizes=[(10, 1, 20, 20), (7, 1, 18, 18)])
    assert log is not None
    with pytest.raises(NotExact):
        log.token_cost(LongRates())


@pytest.mark.parametrize("rows", [
    [(T0, float("nan"), 1)],
    [(float("inf"), 1.0, 1)],
    [(1e10, 1.0, 1)],  # the year 2286: past what the fast path proves exact
    [(T0, -0.5, 1)],  # a negative latency (UsageEvent.build refuses it)
    [(T0 + 1, 1.0, 1), (T0, 1.0, 1)],  # out of time order
    [("yesterday", 1.0, 1)],
    [(T0, 1.0, None)],
])
def test_rows_outside_whole_milliseconds_are_left_to_usage_events(rows: list[tuple[Any, ...]]) -> None:
    assert LedgerLog.from_rows(rows) is None


@pytest.mark.parametrize("size", [(-1, 1, 5, 5), (10, 1, -3, -3), (10, 2, 7.5, 3), (10, 1, D("4.5"), 4), ("x", 1, 1, 1)])
def test_token_counts_that_are_no_counts_are_left_to_usage_events(size: tuple[Any, ...]) -> None:
    assert LedgerLog.from_rows([(T0, 1.0, 10)], prompt_sizes=[size]) is None
    assert LedgerLog.from_rows([(T0, 1.0, 10)], prompt_sizes=[(10, 1, D(5), 5)]) is not None  # PostgreSQL's sum


def test_an_empty_ledger_log() -> None:
    log = LedgerLog.from_rows([], prompt_sizes=[])
    assert log is not None and log.requests == 0 and log.up_periods(300, 20) == []
    assert replay_usage(log, catalog=load_catalog(), period_days=30).as_dict() == \
        replay_usage([], catalog=load_catalog(), period_days=30).as_dict()


# ------------------------------------------------------------------ `cost estimate --from-usage`


def estimate_from_usage(cli, *args: str) -> dict:  # type: ignore[no-untyped-def]
    import json

    result = cli("cost", "estimate", "--from-usage", "--since", "30d", *args, "--json")
    assert result.exit_code == 0, result.stderr
    return json.loads(result.stdout)["data"]


def test_estimate_from_usage_is_the_replay_request_by_request(cli, gpuctl_home, tmp_path,  # type: ignore[no-untyped-def]
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """The ledger is read as whole milliseconds and counts per prompt size; the figures are those
    of `events_from_ledger` (what it read before), to the last digit. A price too long for a
    sum per prompt size (`NotExact`) is replayed request by request."""
    from gpuctl.ops import cost
    from gpuctl.state import State, UsageRecord, open_state

    monkeypatch.setattr(cost, "clock", lambda: T0 + 30 * 86400)
    rng = random.Random(9)
    with open_state(gpuctl_home) as st:
        t = T0 + 86400
        for i in range(300):
            t += rng.choice((0.0005, rng.uniform(0, 30), 300.0005, rng.expovariate(1 / 3000)))
            st.record_usage(UsageRecord(ts=t, provider=("modal", "anthropic", "endpoint")[i % 3], model="m",
                                        prompt_tokens=rng.choice((5, 120_000, rng.randint(0, 5000))),
                                        completion_tokens=rng.randint(0, 600), ok=i % 10 != 0,
                                        latency_s=None if i % 8 == 0 else round(rng.uniform(0, 20), 4) + 0.0005))
    long_price = tmp_path / "long.toml"
    long_price.write_text('[anthropic.claude-haiku-4-5]\ninput = 1.1234567890123456789012345\n'
                          'output = 5.9876543210987654321098765\n')
    flags = ([], ["--provider", "modal"], ["--provider", "vastai", "--dph", "0.3127"], ["--prices", str(long_price)])
    read_one_by_one = []
    usage_since = State.usage_since
    monkeypatch.setattr(State, "usage_since", lambda self, *a, **kw: read_one_by_one.append(1) or usage_since(self, *a, **kw))
    fast = [estimate_from_usage(cli, *f) for f in flags]
    assert len(read_one_by_one) == 1  # only the long price needed the rows one by one
    assert fast[0]["rows"][0]["estimates"][2]["total"] != "0.00"
    monkeypatch.setattr(LedgerLog, "from_rows", classmethod(lambda cls, rows, **kw: None))
    assert [estimate_from_usage(cli, *f) for f in flags] == fast
