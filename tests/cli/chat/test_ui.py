"""The lines around an answer (money, stats, fallback, /cost) and the NDJSON UI's shapes."""

from __future__ import annotations

import json
from decimal import Decimal

import pytest

from gpuctl.chat.session import Answer, Spend
from gpuctl.cli.chat.ui import JsonUI, cost_line, fallback_lines, money, stats_line
from gpuctl.errors import UsageError
from gpuctl.providers.base import Usage
from gpuctl.routing.outcomes import Attempt, Fallback, Reason


@pytest.mark.parametrize(("value", "shown"), [
    (None, "cost n/a"), (Decimal(0), "$0.00"), (Decimal("0.000123456"), "~$0.00012"),
    (Decimal("0.0049"), "~$0.0049"), (Decimal("1.234"), "~$1.23"), (Decimal("0.0000001"), "<$0.000001"),
])
def test_money(value: Decimal | None, shown: str) -> None:
    assert money(value) == shown


def test_stats_and_fallback_lines() -> None:
    answer = Answer("hi", "anthropic", "claude-haiku-4-5", Usage(10, 50), Decimal("0.00026"),
                    fallback=Fallback((Attempt("modal", Reason.waking()),
                                       Attempt("vastai", Reason.breaker_open("breaker open")))),
                    ttft_s=0.5, latency_s=1.5)
    assert stats_line(answer) == ("anthropic · claude-haiku-4-5 · 10 in / 50 out tokens · 50.0 tok/s · "
                                  "TTFT 0.50 s · ~$0.00026")
    assert answer.fallback_reason == "modal: waking up (cold start, usually 10–30 s); vastai: breaker open"
    assert fallback_lines(answer.fallback) == [
        "fell back from modal: waking up (cold start, usually 10–30 s)", "fell back from vastai: breaker open"]
    assert fallback_lines(None) == []


def test_cost_line() -> None:
    spend = {"modal": Spend(2, 10, 20, Decimal("0.0004")), "vastai": Spend(1, 5, 5, Decimal(0), unpriced=1)}
    total = Spend(3, 15, 25, Decimal("0.0004"), unpriced=1)
    line = cost_line(spend, total)
    assert line.startswith("Session spend: ~$0.00040 estimated for 3 answers (")
    assert "modal: 2 answers, 10 in / 20 out tokens, ~$0.00040" in line and "vastai: 1 answer" in line
    assert cost_line({}, Spend()) == "Session spend: $0.00 (no answers yet)"


def test_json_ui_summary_shape() -> None:
    events: list[dict[str, object]] = []
    ui = JsonUI(events.append)
    ui.text("Hi")
    ui.done(Answer("Hi", "modal", "m", Usage(3, 1), Decimal("1E-7"), conversation_id=7, ttft_s=0.1, latency_s=0.2))
    ui.error(UsageError("bad"), final=True)
    assert events[0] == {"type": "chunk", "text": "Hi"}
    summary = events[1]
    assert summary["cost"] == "0.0000001" and summary["usage"] == {
        "prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4, "estimated": False}
    assert set(summary) >= {"type", "text", "provider", "model", "usage", "cost", "fallback_reason",
                            "conversation_id", "ttft_s", "latency_s"}
    assert events[2]["type"] == "error" and events[2]["exit_code"] == 2
    assert json.loads(json.dumps(events)) == events  # all of it serialisable, losslessly
