"""What people read (issue 11, item 18): tables that fit 80 columns without breaking a label, an
endpoint wrapped and never cut to "…", NO_COLOR meaning no style at all, values spelled as TOML
spells them, and money in --json to the catalog's precision everywhere it appears."""

from __future__ import annotations

import json
import os
import re
import select
import sys
import time
from collections.abc import Iterator
from datetime import UTC, datetime
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gpuctl.costs.money import JSON_PLACES, money_str
from gpuctl.state import open_state
from tests.fakes.vastai_server import FakeVast
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit
from tests.support.vast import KEY, market

NOW = datetime(2026, 11, 26, 12, 0, tzinfo=UTC).timestamp()
ROOT = Path(__file__).resolve().parents[2]
ODD_DPH = "0.13777777777777778"  # what Vast's float arithmetic hands back as dph_total


@pytest.fixture(autouse=True)
def narrow(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("COLUMNS", "80")
    monkeypatch.setattr("gpuctl.ops.cost.clock", lambda: NOW)


@pytest.fixture
def live_instance(gpuctl_home: Path) -> int:
    """A live Vast.ai instance in the ledger, 2 h 9 min 37 s old, at an odd $/h."""
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    with open_state(gpuctl_home, clock=lambda: NOW - 7777) as st:
        row = st.add_instance_intent(provider="vastai", label="gpuctl:test:0123456789ab", gpu="RTX 3090", dph=ODD_DPH)
        st.set_instance_remote_id(row, "4242")
    return row


def fits(text: str, width: int = 80) -> None:
    long = [line for line in text.splitlines() if len(line) > width]
    assert not long, "\n".join(long)


# -------------------------------------------------------------- 80 columns, labels whole


def test_cost_estimate_fits_80_columns_with_whole_labels(cli) -> None:  # type: ignore[no-untyped-def]
    out = cli("cost", "estimate").stdout
    fits(out)
    for label in ("medium", "Anthropic cost per request ($)", "Modal scaledown window (s)", "Vast.ai keep-alive (s)"):
        assert any(label in line for line in out.splitlines()), label
    level_rows = [line.split() for line in out.splitlines() if line.startswith(("low ", "medium ", "high "))]
    assert [row[:2] for row in level_rows[:3]] == [["low", "2–3"], ["medium", "4–5"], ["high", "7–8"]]
    assert "$7,257.60" in out  # money is never folded over two lines


def test_cost_report_fits_with_budget_labels_on_one_line(cli, live_instance: int) -> None:  # type: ignore[no-untyped-def]
    out = cli("cost", "report").stdout
    fits(out)
    lines = out.splitlines()
    for label in ("total budget", "session budget", "instance #1", "Modal, container (modelled)"):
        assert any(line.startswith(label + " ") for line in lines), label
    assert "at $0.138/h" in out  # the live instance's odd rate, for people


def test_profile_show_resolved_and_chat_list_fit(cli) -> None:  # type: ignore[no-untyped-def]
    fits(cli("profile", "show", "--resolved").stdout)
    with FakeVLLM() as vllm:
        long_question = "Please explain, at length and with examples, " * 3
        assert_exit(cli("chat", long_question, env={"MODAL_WEB_URL": vllm.url, "MODAL_MODEL": "fake-model"}), 0)
    listed = cli("chat", "--list").stdout
    fits(listed)
    assert listed.splitlines()[0].split() == ["id", "last", "active", "messages", "provider", "tokens", "first", "line"]


def test_status_wraps_a_long_endpoint_and_never_cuts_it(cli) -> None:  # type: ignore[no-untyped-def]
    url = "https://my-organisation-name--multi-agent-vllm-inference-serve.modal.run"
    result = cli("status", env={"MODAL_WEB_URL": url, "ANTHROPIC_API_KEY": "sk-ant-x"})
    assert_exit(result, 0)
    table = result.stdout.split("\n\n")[0]
    fits(table)
    assert "…" not in table
    # the endpoint column, read top to bottom, is the whole URL
    start = table.splitlines()[0].index("endpoint")
    column = "".join(line[start:].strip() for line in table.splitlines()[1:])
    assert column.startswith(url + "/v1")


# -------------------------------------------------------------- NO_COLOR: no style at all


SGR = re.compile(rb"\x1b\[[0-9;]*m")  # colour, bold, dim… (not cursor movement)


def run_in_pty(args: list[str], env: dict[str, str], timeout: float = 60.0) -> bytes:
    """`python -m gpuctl ARGS` on a pseudo-terminal: everything it wrote (stdout and stderr)."""
    pid, fd = os.forkpty()
    if pid == 0:
        try:
            os.execve(sys.executable, [sys.executable, "-m", "gpuctl", *args], env)
        finally:
            os._exit(127)
    seen = b""
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], deadline - time.monotonic())
            if not ready:
                continue
            try:
                data = os.read(fd, 65536)
            except OSError:  # EIO: the child is done with the terminal
                break
            if not data:
                break
            seen += data
    finally:
        os.close(fd)
        os.waitpid(pid, 0)
    return seen


@pytest.fixture
def pty_env(gpuctl_home: Path) -> Iterator[dict[str, str]]:
    if not hasattr(os, "forkpty"):
        pytest.skip("needs a pseudo-terminal")
    env = dict(os.environ)
    env.update(PYTHONPATH=str(ROOT), TERM="xterm-256color", COLUMNS="100", LINES="40")
    env.pop("NO_COLOR", None)
    yield env


@pytest.mark.parametrize("args", [["cost", "estimate", "--provider", "modal", "--hours", "1"], ["--help"],
                                  ["--profile", "ghost", "profile", "show", "--resolved"]])
def test_no_color_turns_every_style_off_in_a_terminal(pty_env: dict[str, str], args: list[str]) -> None:
    styled = run_in_pty(args, pty_env)
    assert SGR.search(styled), styled[:300]  # in a terminal gpuctl does use bold/dim/colour…
    plain = run_in_pty(args, {**pty_env, "NO_COLOR": "1"})
    assert not SGR.search(plain), plain[:300]  # …and with NO_COLOR none at all
    assert b"GPU time" in plain or b"Usage" in plain or b"Error" in plain


# -------------------------------------------------------------- values as TOML spells them


def test_profile_values_print_as_toml(cli) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("profile", "create", "dev"), 0)
    assert cli("profile", "set", "routing.priority", "modal,anthropic").stderr.strip() == \
        'dev: routing.priority = ["modal", "anthropic"]'
    assert cli("profile", "set", "routing.fallback_on_cold", "no").stderr.strip() == "dev: routing.fallback_on_cold = false"
    shown = cli("profile", "show").stdout
    assert 'routing.priority          ["modal", "anthropic"]' in shown and "false" in shown
    resolved = cli("profile", "show", "--resolved").stdout
    assert re.search(r"chat\.markdown\s+false\s+default", resolved)
    assert re.search(r'routing\.priority\s+\["modal", "anthropic"\]\s+profile dev', resolved)
    for python in ("True", "False", "['", "None"):
        assert python not in shown + resolved, python
    data = json.loads(cli("--json", "profile", "show").stdout)["data"]["values"]
    assert data["routing"] == {"priority": ["modal", "anthropic"], "fallback_on_cold": False}  # typed in --json


def test_errors_show_rejected_values_as_toml(cli) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("profile", "create", "dev"), 0)
    result = cli("profile", "set", "routing.fallback_on_cold", "maybe")
    assert result.stderr.startswith('Error: routing.fallback_on_cold must be true or false, got "maybe"')
    (Path(os.environ["GPUCTL_HOME"]) / "profiles" / "dev.toml").write_text("[chat]\nmax_tokens = true\n")
    broken = cli("cost", "estimate")
    assert_exit(broken, 3)
    assert "chat.max_tokens must be a whole number, got true" in broken.stderr


# -------------------------------------------------------------- money in --json


MONEY_KEYS = re.compile(r"cost|total|per_month|spent|dph|price|budget|left|projection|reserved|billed|limit|amount|"
                        r"per_million|dollars")


def money_values(doc: Any, key: str = "") -> Iterator[tuple[str, str]]:
    """Every decimal string under a money key, anywhere in a document."""
    if isinstance(doc, dict):
        for k, v in doc.items():
            yield from money_values(v, k)
    elif isinstance(doc, list):
        for v in doc:
            yield from money_values(v, key)
    elif isinstance(doc, str) and MONEY_KEYS.search(key) and re.fullmatch(r"-?\d+\.\d+", doc):
        yield key, doc


def assert_catalog_precision(doc: Any) -> list[tuple[str, str]]:
    found = list(money_values(doc))
    too_long = [(k, v) for k, v in found if len(v.split(".")[1]) > JSON_PLACES]
    assert not too_long, too_long
    return found


def test_money_str_is_the_one_formatter() -> None:
    assert money_str(Decimal("0.0128738")) == "0.0128738"
    assert money_str(Decimal(1) / 3) == "0.3333333" and money_str(Decimal("48")) == "48.00"
    assert money_str(Decimal("0.10708929")) == "0.1070893" and money_str(Decimal("-1E-9")) == "0.00"
    assert money_str(Decimal("1E+11") / 7) == "14285714285.7142857"  # large sums do not overflow


def test_gpu_time_estimate_money_is_rounded(cli) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(cli("--json", "cost", "estimate", "--provider", "vastai", "--dph", "0.1377",
                         "--hours", "0.7777").stdout)
    assert doc["data"]["total"] == "0.1070893"  # 0.1377 × 0.7777 = 0.10708929
    assert_catalog_precision(doc)


def test_cost_report_money_is_rounded(cli, live_instance: int) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(cli("--json", "cost", "report").stdout)
    found = dict(assert_catalog_precision(doc))
    assert found["spent"] == money_str(Decimal(ODD_DPH) * 7777 / 3600)


def test_chat_summary_money_is_rounded(cli) -> None:  # type: ignore[no-untyped-def]
    with FakeVLLM() as vllm:
        result = cli("--json", "chat", "hi", env={"MODAL_WEB_URL": vllm.url, "MODAL_MODEL": "fake-model"})
    summary = json.loads(result.stdout.splitlines()[-1])
    assert summary["type"] == "summary" and summary["cost"] is not None
    assert assert_catalog_precision(summary)


def test_launch_plan_money_is_rounded(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    odd = [dict(o, dph_total=float(ODD_DPH)) if o["id"] == 102 else o for o in market()]
    with FakeVLLM() as vllm, FakeVast(api_key=KEY, offers=odd, endpoint_port=vllm.port) as vast:
        # (37 min, not 7: a projection never covers less than the 30-minute boot allowance)
        env = {"VAST_URL": vast.url, "VASTAI_API_KEY": KEY, "VASTAI_KEEP_ALIVE_MINUTES": "37"}
        doc = json.loads(cli("--json", "launch", "--dry-run", env=env).stdout)
    assert doc["exit_code"] == 0, doc
    found = dict(assert_catalog_precision(doc))
    assert doc["data"]["plan"]["budget"]["projection"] == money_str(Decimal(ODD_DPH) * 37 / 60)  # 28 digits before
    assert found["dph"] == "0.1377778"
