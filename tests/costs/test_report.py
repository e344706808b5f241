"""`gpuctl cost report`: actual spend from a ledger built in the test, grouped by provider, day
and model, with the Vast.ai budgets and what is left; Modal's per-request sum next to its
modelled container time; `--since` parsing; one `Error:` line (exit 2) for bad flags."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path

import pytest

from gpuctl.errors import UsageError
from gpuctl.ops import cost as cost_report
from gpuctl.ops.cost import parse_since
from gpuctl.state import InstanceRow, State, UsageRecord, open_state
from tests.support import assert_exit

D = Decimal
DAY = 86400


def ts(day: int, hour: int, minute: int = 0, second: int = 0) -> float:
    return datetime(2026, 11, day, hour, minute, second, tzinfo=UTC).timestamp()


NOW = ts(26, 12)


@pytest.fixture(autouse=True)
def fixed_clock(monkeypatch: pytest.MonkeyPatch) -> Iterator[list[float]]:
    now = [NOW]
    monkeypatch.setattr(cost_report, "clock", lambda: now[0])
    yield now


def add_instance(st: State, *, gpu: str, dph: str, created: float, destroyed: float | None = None,
                 cost: str | None = None, remote_id: str | None = "1") -> int:
    row = st.add_instance_intent(provider="vastai", label="gpuctl:test", gpu=gpu, dph=dph)
    st.update_instance(row, created_at=created, status="running", **({"remote_id": remote_id} if remote_id else {}))
    if destroyed is not None:
        st.mark_instance_destroyed(row, cost=cost, at=destroyed)
    return row


@pytest.fixture
def ledger(gpuctl_home: Path) -> Path:
    """Three days of traffic and instances; the expected numbers are worked out in the tests."""
    with open_state(gpuctl_home) as st:
        rec = st.record_usage
        # Nov 24: one Anthropic answer, priced by the router.
        rec(UsageRecord(ts=ts(24, 10), provider="anthropic", model="claude-haiku-4-5", prompt_tokens=1000,
                        completion_tokens=200, latency_s=2.0, cost="0.002"))
        # Nov 25: one the router could not price (priced now: 2000 × $1 + 400 × $5 per M = $0.004) ...
        rec(UsageRecord(ts=ts(25, 9), provider="anthropic", model="claude-haiku-4-5", prompt_tokens=2000,
                        completion_tokens=400, latency_s=3.0))
        # ... two Modal answers inside one scaledown window (10 s each at $0.000222/s) and a failure.
        for t in (ts(25, 10), ts(25, 10, 1)):
            rec(UsageRecord(ts=t, provider="modal", model="Qwen/Qwen2.5-7B-Instruct", prompt_tokens=500,
                            completion_tokens=300, latency_s=10.0, cost="0.00222"))
        rec(UsageRecord(ts=ts(25, 12), provider="modal", model="Qwen/Qwen2.5-7B-Instruct", ok=False,
                        error="timeout", latency_s=120.0))
        # 40 days ago: outside the 30-day window.
        rec(UsageRecord(ts=NOW - 40 * DAY, provider="anthropic", model="claude-haiku-4-5", prompt_tokens=10,
                        completion_tokens=10, cost="1.00"))
        # Vast.ai: 2 h at $0.14 on Nov 24 ($0.28), a live box since 09:00 today at $0.50/h ($1.50 so far),
        # one 60 days ago ($3.00: counts against the total budget, not in the period), and an intent
        # whose create never went through (cleanup marks it with cost 0).
        add_instance(st, gpu="RTX 3090", dph="0.14", created=ts(24, 0), destroyed=ts(24, 2), cost="0.28")
        add_instance(st, gpu="RTX 4090", dph="0.50", created=ts(26, 9))
        add_instance(st, gpu="RTX 3090", dph="0.30", created=NOW - 60 * DAY, destroyed=NOW - 60 * DAY + 36000,
                     cost="3.00")
        add_instance(st, gpu="H100", dph="2.00", created=ts(25, 0), destroyed=ts(25, 1), remote_id=None, cost="0")
    return gpuctl_home


# Modal modelled: one container period from 10:00:00 to 10:01:10 + 300 s tail, plus a 20 s cold
# start = 390 s × $0.000222 = $0.08658 (the per-request sum is only 2 × $0.00222 = $0.00444).
MODAL_MODELLED = D("0.08658")
TOTAL = D("0.006") + MODAL_MODELLED + D("0.28") + D("1.50")


def report(cli, *args: str) -> dict:  # type: ignore[no-untyped-def]
    result = cli("cost", "report", *args, "--json")
    assert_exit(result, 0)
    doc = json.loads(result.stdout)
    assert doc["command"] == "cost report" and doc["status"] == "success"
    return doc["data"]


def test_report_by_provider(cli, ledger: Path) -> None:
    data = report(cli)
    groups = {g["key"]: g for g in data["groups"]}
    assert set(groups) == {"anthropic", "modal", "vastai"}
    assert groups["anthropic"] == {"key": "anthropic", "requests": 2, "failed": 0, "tokens": 3600,
                                   "request_cost": "0.006", "billed": "0.006"}
    assert groups["modal"]["requests"] == 3 and groups["modal"]["failed"] == 1
    assert groups["modal"]["request_cost"] == "0.00444" and D(groups["modal"]["billed"]) == MODAL_MODELLED
    assert groups["vastai"]["requests"] == 0 and D(groups["vastai"]["billed"]) == D("1.78")
    t = data["totals"]
    assert t["anthropic_tokens"] == "0.006" and t["modal_per_request"] == "0.00444"
    assert D(t["modal_modelled_container"]) == MODAL_MODELLED and D(t["vastai_instances"]) == D("1.78")
    assert D(t["total"]) == TOTAL
    assert sum(D(g["billed"]) for g in data["groups"]) == TOTAL
    assert data["modal_model"]["gpu_seconds"] == "390"
    assert data["modal_model"]["assumptions"]["container_periods"] == "1"


def test_report_budgets_and_what_is_left(cli, ledger: Path) -> None:
    b = report(cli)["budgets"]
    # All Vast.ai spend so far: 0.28 + 1.50 (live) + 3.00 (60 days ago) against the $15 default.
    assert D(b["vastai_spent_all_time"]) == D("4.78") and D(b["vastai_budget_left"]) == D("10.22")
    assert b["vastai_budget_limit"] == "15.00" and b["vastai_session_budget_limit"] == "2.00"
    (live,) = b["live_instances"]
    assert live["gpu"] == "RTX 4090" and D(live["spent"]) == D("1.50") and D(live["session_left"]) == D("0.50")
    human = cli("cost", "report")
    assert_exit(human, 0)
    assert "$10.22 left" in human.stdout and "$4.78" in human.stdout and "$0.50 left" in human.stdout


def test_report_budget_from_the_environment(cli, ledger: Path) -> None:
    result = cli("cost", "report", "--json", env={"VASTAI_BUDGET_LIMIT": "4", "VASTAI_SESSION_BUDGET_LIMIT": "1"})
    assert_exit(result, 0)
    budgets = json.loads(result.stdout)["data"]["budgets"]
    assert budgets["vastai_budget_left"] == "0.00" and budgets["vastai_over_budget_by"] == "0.78"
    assert budgets["live_instances"][0]["session_left"] == "0.00"  # $1.50 spent of a $1 session budget
    human = cli("cost", "report", env={"VASTAI_BUDGET_LIMIT": "4"})
    assert "over by $0.78" in human.stdout


def test_report_says_which_modal_figure_is_which(cli, ledger: Path) -> None:
    result = cli("cost", "report")
    assert_exit(result, 0)
    out = result.stdout
    assert "Modal, per request" in out and "lower bound" in out and "$0.0044" in out
    assert "Modal, container (modelled)" in out and "$0.09" in out and "300 s scaledown tail" in out
    assert f"${TOTAL.quantize(D('0.01'))}" in out


def test_report_by_day(cli, ledger: Path) -> None:
    data = report(cli, "--by", "day")
    days = {g["key"]: g for g in data["groups"]}
    assert set(days) == {"2026-11-24", "2026-11-25", "2026-11-26"}
    assert D(days["2026-11-24"]["billed"]) == D("0.282")  # Anthropic 0.002 + the 2 h box 0.28
    assert D(days["2026-11-25"]["billed"]) == D("0.004") + MODAL_MODELLED
    assert D(days["2026-11-26"]["billed"]) == D("1.50")  # the live box so far
    assert days["2026-11-25"]["requests"] == 4 and days["2026-11-25"]["failed"] == 1
    assert D(data["totals"]["total"]) == TOTAL


def test_report_by_day_splits_an_instance_across_midnight(cli, gpuctl_home: Path) -> None:
    with open_state(gpuctl_home) as st:  # 22:00 → 04:00 at $0.60/h: 2 h before midnight, 4 h after
        add_instance(st, gpu="RTX 3090", dph="0.60", created=ts(24, 22), destroyed=ts(25, 4), cost="3.60")
    days = {g["key"]: D(g["billed"]) for g in report(cli, "--by", "day")["groups"]}
    assert days == {"2026-11-24": D("1.20"), "2026-11-25": D("2.40")}


def test_report_by_model(cli, ledger: Path) -> None:
    data = report(cli, "--by", "model")
    groups = {g["key"]: g for g in data["groups"]}
    assert groups["anthropic claude-haiku-4-5"]["requests"] == 2
    assert D(groups["anthropic claude-haiku-4-5"]["billed"]) == D("0.006")
    assert D(groups["modal Qwen/Qwen2.5-7B-Instruct"]["billed"]) == MODAL_MODELLED
    assert D(groups["vastai RTX 3090 instances"]["billed"]) == D("0.28")
    assert D(groups["vastai RTX 4090 instances"]["billed"]) == D("1.50")
    human = cli("cost", "report", "--by", "model")
    assert_exit(human, 0)
    assert "provider / model" in human.stdout and "anthropic claude-haiku-4-5" in human.stdout


def test_report_by_key(cli, ledger: Path) -> None:
    """`gpuctl serve` records each request's client key name; what bills by time has its own lines."""
    with open_state(ledger) as st:
        for name, cost in (("alice", "0.010"), ("alice", "0.020"), ("ci", "0.005")):
            st.record_usage(UsageRecord(ts=ts(26, 10), provider="anthropic", model="claude-haiku-4-5",
                                        prompt_tokens=10, completion_tokens=10, cost=cost, key_name=name))
    data = report(cli, "--by", "key")
    groups = {g["key"]: g for g in data["groups"]}
    assert groups["alice"]["requests"] == 2 and D(groups["alice"]["request_cost"]) == D("0.030")
    assert groups["ci"]["requests"] == 1 and D(groups["ci"]["billed"]) == D("0.005")
    assert groups["(no key)"]["requests"] == 5  # the fixture's rows: gpuctl chat, not the gateway
    assert D(groups["(modal container time)"]["billed"]) == MODAL_MODELLED
    assert D(groups["(vastai instances)"]["billed"]) == D("1.78")
    assert sum(D(g["billed"]) for g in data["groups"]) == D(data["totals"]["total"])
    human = cli("cost", "report", "--by", "key")
    assert_exit(human, 0)
    assert "client key" in human.stdout and "alice" in human.stdout


def test_report_since_a_date_and_hours(cli, ledger: Path) -> None:
    data = report(cli, "--since", "2026-11-25")
    assert {g["key"] for g in data["groups"]} == {"anthropic", "modal", "vastai"}
    assert data["groups"][0]["requests"] == 1  # only Nov 25's Anthropic request
    assert D(data["totals"]["vastai_instances"]) == D("1.50")  # the Nov 24 box is before the date
    short = report(cli, "--since", "12h")
    assert [g["key"] for g in short["groups"]] == ["vastai"] and short["period_days"] == "0.5"


def test_report_prices_what_the_router_could_not_and_notes_what_it_cannot(cli, gpuctl_home: Path) -> None:
    with open_state(gpuctl_home) as st:
        st.record_usage(UsageRecord(ts=ts(25, 9), provider="anthropic", model="claude-sonnet-4-6",
                                    prompt_tokens=1000, completion_tokens=1000))  # $3 + $15 per M
        st.record_usage(UsageRecord(ts=ts(25, 9, 5), provider="anthropic", model="claude-nonexistent-9",
                                    prompt_tokens=1000, completion_tokens=1000))
    data = report(cli)
    assert data["totals"]["anthropic_tokens"] == "0.018"
    assert len(data["notes"]) == 1 and "claude-nonexistent-9" in data["notes"][0]
    human = cli("cost", "report")
    assert_exit(human, 0)
    assert "not priced" in human.stdout


def test_report_on_an_empty_ledger(cli) -> None:
    data = report(cli, "--since", "7d")
    assert data["groups"] == [] and data["totals"]["total"] == "0.00"
    assert data["budgets"]["vastai_budget_left"] == "15.00"
    assert_exit(cli("cost", "report"), 0)


def test_report_stale_modal_price_warns(cli, ledger: Path, fixed_clock: list[float], tmp_path: Path) -> None:
    prices = tmp_path / "p.toml"
    prices.write_text('[modal.L4]\ndollars_per_second = 0.000222\nseen = 2026-05-01\nsource = "old page"\n')
    result = cli("cost", "report", "--prices", str(prices), "--json")
    assert_exit(result, 0)
    (line,) = result.stderr.strip().splitlines()
    assert line.startswith("Warning: price for modal L4") and "old page" in line
    assert json.loads(result.stdout)["data"]["stale_prices"][0]["key"] == "L4"


@pytest.mark.parametrize(("args", "needle"), [
    (["--since", "soon"], "--since must be like"),
    (["--since", "0d"], "positive"),
    (["--since", "2027-01-01"], "not in the past"),
    (["--by", "week"], "--by must be one of"),
    (["--prices", "/nonexistent.toml"], "file not found"),
])
def test_report_bad_flags_exit_2(cli, args: list[str], needle: str) -> None:
    result = cli("cost", "report", *args)
    assert_exit(result, 2)
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and needle in errors[0], result.stderr
    assert "Traceback" not in result.stderr and result.stdout == ""


# ------------------------------------------------------------------ the pieces


@pytest.mark.parametrize(("text", "seconds"), [("7d", 7 * DAY), ("30d", 30 * DAY), ("12h", 12 * 3600),
                                               ("90m", 5400), ("30D", 30 * DAY)])
def test_parse_since_periods(text: str, seconds: int) -> None:
    since = parse_since(text, NOW)
    assert since.ts == NOW - seconds and since.days == D(seconds) / DAY


def test_parse_since_dates_are_utc_unless_zoned() -> None:
    assert parse_since("2026-11-25", NOW).ts == ts(25, 0)
    assert parse_since("2026-11-25T06:00:00+02:00", NOW).ts == ts(25, 4)
    assert parse_since("2026-11-25", NOW).days == D("1.5")
    with pytest.raises(UsageError):
        parse_since("", NOW)


def _inst(**kw: object) -> InstanceRow:
    base: dict[str, object] = {"id": 1, "provider": "vastai", "remote_id": "9", "label": "x", "profile": None,
                               "gpu": "RTX 3090", "dph": "0.36", "offer_id": None, "machine_id": None,
                               "status": "running", "status_msg": None, "endpoint": None, "created_at": 0.0,
                               "ready_at": None, "destroyed_at": None, "cost": None}
    return InstanceRow(**{**base, **kw})  # type: ignore[arg-type]


def test_instance_cost_inside_the_period_is_pro_rata() -> None:
    from gpuctl.costs import in_period as inside

    assert inside(_inst(), D("0.36"), 0.0, 3600.0) == D("0.36")  # its whole life is in the period
    assert inside(_inst(), D("0.36"), 1800.0, 3600.0) == D("0.18")  # the period cuts it in half
    done = _inst(destroyed_at=7200.0, cost="1.00")
    assert inside(done, D("1.00"), 3600.0, 9999.0) == D("0.5")
    assert inside(done, D("1.00"), 8000.0, 9999.0) == 0  # ended before the period


def test_a_warm_modal_app_is_billed_every_hour(gpuctl_home) -> None:  # type: ignore[no-untyped-def]
    """min_containers=1 on an L4 for 10 hours: $8.00, whatever the (zero) traffic."""
    from gpuctl.config import load_settings
    from gpuctl.ops import cost as cost_report
    from gpuctl.state import State

    now = 1_800_000_000.0
    with State(gpuctl_home / "state.db", clock=lambda: now - 10 * 3600) as st:
        row = st.add_instance_intent(provider="modal", label="gpuctl:default", gpu="L4", dph="0.80")
        st.update_instance(row, remote_id="multi-agent-vllm-inference", status="deployed")
    settings = load_settings(env={}, home=gpuctl_home)
    with State(gpuctl_home / "state.db") as st:
        view = cost_report.cost_report(settings, st, since="7d", now=now)
    totals = view.data["totals"]
    assert Decimal(totals["modal_warm_containers"]) == Decimal("8.00")
    assert Decimal(totals["total"]) == Decimal("8.00")


def test_report_figures_are_those_of_a_replay_request_by_request(cli, gpuctl_home: Path,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    """Modal's container time is replayed in whole milliseconds (`LedgerLog`); the report must
    be the one a replay of `UsageEvent`s gives, to the last digit, however it is grouped."""
    import random

    from gpuctl.costs import REPORT_BY, LedgerLog

    rng = random.Random(11)
    with open_state(gpuctl_home) as st:
        t = ts(19, 8)
        for i in range(400):  # bursts and gaps around the 5 min window, times on half milliseconds
            t += rng.choice((0.0005, rng.uniform(0, 40), 300.0005, 299.9995, rng.expovariate(1 / 900)))
            st.record_usage(UsageRecord(
                ts=t if i % 3 else round(t, 3) + 0.0005, provider="modal", model=("Qwen", None)[i % 7 == 0],
                prompt_tokens=rng.randint(0, 900), completion_tokens=rng.randint(1, 300),
                latency_s=None if i % 11 == 0 else round(rng.uniform(0, 30), 4) + 0.0005,
                cost=None if i % 5 == 0 else "0.00222", ok=i % 13 != 0, host=f"web-{i % 3}",
                key_name=("alice", None)[i % 2]))
    by_fast = {by: report(cli, "--by", by) for by in REPORT_BY}
    assert D(by_fast["provider"]["totals"]["modal_modelled_container"]) > 0
    monkeypatch.setattr(LedgerLog, "from_rows", classmethod(lambda cls, rows, **kw: None))
    for by, fast in by_fast.items():
        assert report(cli, "--by", by) == fast


def test_report_by_host_bills_modal_container_time_to_the_host_that_started_it(cli, gpuctl_home: Path) -> None:
    with open_state(gpuctl_home) as st:
        for t, host, latency in ((ts(25, 10), "web-a", 10.0), (ts(25, 10, 0, 1), "web-b", 10.0),
                                 (ts(25, 12), "web-b", 5.0)):
            st.record_usage(UsageRecord(ts=t, provider="modal", model="m", prompt_tokens=10, completion_tokens=10,
                                        latency_s=latency, cost="0.00222", host=host))
    groups = {g["key"]: g for g in report(cli, "--by", "host")["groups"]}
    # 10:00:00 → 10:00:11 (web-b's request joined web-a's container) + 300 s + a 20 s cold start = 331 s;
    # 12:00:00 → 12:00:05 + 300 + 20 = 325 s; at $0.000222/s.
    assert D(groups["web-a"]["billed"]) == 331 * D("0.000222")
    assert D(groups["web-b"]["billed"]) == 325 * D("0.000222")
    assert groups["web-a"]["requests"] == 1 and groups["web-b"]["requests"] == 2


def test_requests_at_the_same_instant_open_a_period_in_the_order_they_were_written(cli, gpuctl_home: Path) -> None:
    with open_state(gpuctl_home) as st:
        for host, latency in (("web-z", 9.0), ("web-a", 1.0), ("web-m", 5.0)):
            st.record_usage(UsageRecord(ts=ts(25, 10), provider="modal", model="m", latency_s=latency, host=host))
    groups = {g["key"]: g for g in report(cli, "--by", "host")["groups"]}
    assert D(groups["web-z"]["billed"]) == (20 + 9 + 300) * D("0.000222")  # the first written opened it
    assert groups["web-a"]["billed"] == groups["web-m"]["billed"] == "0.00"
