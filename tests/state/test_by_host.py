"""`cost report --by host` on both backends: each machine's rows (and the instances it launched)
in its own group, and the same exact sums whichever database counted them."""

from __future__ import annotations

import json
import time
from decimal import Decimal

import pytest

from gpuctl.state import UsageRecord
from tests.support import assert_exit
from tests.support.state import StateBackend


def test_cost_report_by_host(backend: StateBackend, cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GPUCTL_STATE_URL", backend.url)
    monkeypatch.setenv("GPUCTL_HOME", str(backend.home))
    now = time.time()
    with backend.open() as st:
        for host, n in (("web-1", 3), ("web-2", 2)):
            for i in range(n):
                st.record_usage(UsageRecord(ts=now - 3600 + i, provider="anthropic", model="claude-haiku-4-5",
                                            prompt_tokens=100, completion_tokens=10,
                                            cost="0.000123456789012345678901", host=host))
        st.record_usage(UsageRecord(ts=now - 60, provider="anthropic", ok=False, error="refused", host="web-2"))
        st.host = "cron-box"
        row = st.add_instance_intent(provider="vastai", label="gpuctl:dev:0123456789ab", dph="0.36")
        st.update_instance(row, created_at=now - 1800, remote_id="7", status="destroyed", destroyed_at=now - 900,
                           cost="0.09")
    result = cli("--json", "cost", "report", "--by", "host")
    assert_exit(result, 0)
    groups = {g["key"]: g for g in json.loads(result.stdout)["data"]["groups"]}
    assert set(groups) == {"web-1", "web-2", "cron-box"}
    assert (groups["web-1"]["requests"], groups["web-2"]["requests"], groups["web-2"]["failed"]) == (3, 3, 1)
    # --json shows money to the catalog's 7 places; the sums behind it are exact (below).
    assert groups["web-1"]["tokens"] == 330 and groups["web-1"]["request_cost"] == "0.0003704"
    assert groups["cron-box"]["billed"] == "0.09"  # the instance, under the host that launched it
    by_provider = {g["key"]: g for g in json.loads(cli("--json", "cost", "report").stdout)["data"]["groups"]}
    assert by_provider["anthropic"]["request_cost"] == "0.0006173"
    from gpuctl.config import load_settings
    from gpuctl.ops.cost import cost_report

    exact = cost_report(load_settings(), by="host").result.groups
    assert exact["web-1"].request_cost == Decimal("0.000370370367037037036703")  # three costs, exactly
    assert sum((g.request_cost for g in exact.values()), Decimal(0)) == Decimal("0.000617283945061728394505")


def test_by_host_is_offered_and_checked(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("cost", "report", "--by", "hosts")
    assert_exit(result, 2)
    assert "provider, day, model, host" in result.stderr
