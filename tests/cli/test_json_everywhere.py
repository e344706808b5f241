"""`--json` is one JSON document on stdout in every case (issue 11, item 7): groups without
their command, `--version`, `--help`, usage errors of every kind, known errors, Ctrl-C; and one
envelope per line for `status --watch --json`, an envelope-compatible error line for `chat`."""

from __future__ import annotations

import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit

ENVELOPE = {"gpuctl_result_version", "command", "status", "exit_code", "timestamp", "data", "errors"}


def one_document(stdout: str) -> dict:  # type: ignore[type-arg]
    """stdout is exactly one JSON document (a single line), and an envelope."""
    lines = stdout.splitlines()
    assert len(lines) == 1, stdout
    doc = json.loads(lines[0])
    assert set(doc) == ENVELOPE, doc
    return doc


# (command line, exit code, the envelope's command) — what a script might run, right or wrong.
CASES = [
    (["--json", "cost"], 2, "cost"),  # a group without its command
    (["--json", "profile"], 2, "profile"),
    (["--json", "deploy"], 2, "deploy"),
    (["cost", "--json"], 2, "cost"),  # the global option after the group
    (["--json"], 2, "gpuctl"),  # no command at all
    (["--json", "bogus"], 2, "gpuctl"),  # an unknown command
    (["--json", "--bogus"], 2, "gpuctl"),  # an unknown global option
    (["--json", "cost", "estimate", "--bogus"], 2, "cost estimate"),
    (["--json", "cost", "estimate", "--hours"], 2, "cost estimate"),  # an option without its value
    (["--json", "chat", "--temperature", "abc", "hi"], 2, "chat"),  # a value of the wrong type
    (["--json", "profile", "set", "modal.gpu"], 2, "profile set"),  # a missing argument
    (["--json", "profile", "set", "vastai.budget_limit", "-10"], 2, "profile set"),  # a negative value without --
    (["--json", "profile", "use", "ghost"], 3, "profile use"),  # a known error
    (["--json", "--profile", "ghost", "cost", "estimate"], 3, "cost estimate"),
    (["--json", "status"], 3, "status"),  # nothing configured
    (["--json", "status", "--watch"], 3, "status"),
    (["--json", "launch", "--dry-run"], 3, "launch"),
    (["--json", "cleanup"], 0, "cleanup"),  # nothing of Vast.ai configured: nothing to clean up
    (["--json", "destroy", "--all", "--dry-run"], 3, "destroy"),
    (["--json", "--version"], 0, "version"),
    (["--json", "--help"], 0, "gpuctl"),
    (["cost", "--help", "--json"], 0, "cost"),
    (["--json", "cost", "estimate", "-h"], 0, "cost estimate"),
    (["--json", "cost", "estimate"], 0, "cost estimate"),
    (["--json", "cost", "report"], 0, "cost report"),
    (["--json", "profile", "show", "--resolved"], 0, "profile show"),
    (["--json", "chat", "--list"], 0, "chat"),
    (["--json", "destroy", "modal", "--dry-run"], 0, "destroy"),
]


@pytest.mark.parametrize(("args", "code", "command"), CASES, ids=[" ".join(a) for a, _, _ in CASES])
def test_every_case_prints_one_envelope(cli, args: list[str], code: int, command: str) -> None:  # type: ignore[no-untyped-def]
    result = cli(*args)
    assert_exit(result, code)
    doc = one_document(result.stdout)
    assert (doc["exit_code"], doc["command"]) == (code, command)
    assert doc["status"] == ("success" if code == 0 else "error")
    if code:
        (error,) = doc["errors"]
        assert set(error) == {"type", "message", "hint"} and error["message"]
        assert error["type"] == "UsageError" if code == 2 else error["type"]


def test_a_group_without_its_command_names_the_commands(cli) -> None:  # type: ignore[no-untyped-def]
    error = one_document(cli("--json", "cost").stdout)["errors"][0]
    assert error["message"] == "`gpuctl cost` needs a command: estimate, report"
    assert error["hint"] == "see `gpuctl cost --help`"


def test_version_and_help_as_data(cli) -> None:  # type: ignore[no-untyped-def]
    from gpuctl import __version__

    assert one_document(cli("--json", "--version").stdout)["data"] == {"version": __version__}
    data = one_document(cli("--json", "cost", "estimate", "--help").stdout)["data"]
    assert data["usage"] == "gpuctl cost estimate [OPTIONS]"
    assert data["summary"].startswith("Compare Modal, Vast.ai and Anthropic")
    hours = next(o for o in data["options"] if "--hours-per-day" in o["names"])
    assert hours["takes_value"] and hours["metavar"] == "H"
    root = one_document(cli("--json", "--help").stdout)["data"]
    assert [c["name"] for c in root["commands"]][:3] == ["deploy", "status", "chat"]
    assert next(o for o in root["options"] if "--json" in o["names"])["takes_value"] is False
    assert "[bold]" not in root["help"]  # markup is for the terminal page


def test_ctrl_c_is_one_envelope_with_130(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    def interrupted(*args: object, **kwargs: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("gpuctl.ops.cost.cost_estimate", interrupted)
    result = cli("--json", "cost", "estimate")
    assert_exit(result, 130)
    assert one_document(result.stdout)["errors"][0]["type"] == "Interrupted"


# -------------------------------------------------------------- streaming: one document per line


@pytest.fixture
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key="sk-ant-watch") as fake:
        yield fake


def stop_after(monkeypatch: pytest.MonkeyPatch, home: Path, rounds: int) -> list[float]:
    """End `status --watch` (as Ctrl-C does) when it starts refresh number `rounds + 1`; the
    sleep between refreshes is a fake one. (A 1-second interval in config.toml bounds the wait
    even for a watch that ignores the fake.)"""
    from gpuctl.ops import status as ops_status

    home.mkdir(parents=True, exist_ok=True)
    (home / "config.toml").write_text("[routing]\nhealth_interval_s = 1\n")
    slept: list[float] = []
    collect = ops_status.collect_status
    calls = []

    def counted(*args: object, **kwargs: object) -> object:
        calls.append(1)
        if len(calls) > rounds:
            raise KeyboardInterrupt
        return collect(*args, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(ops_status, "collect_status", counted)
    monkeypatch.setattr("gpuctl.ops.status.time.sleep", slept.append)
    return slept


def test_status_watch_json_prints_one_envelope_per_refresh(cli, claude: FakeAnthropic, gpuctl_home: Path,  # type: ignore[no-untyped-def]
                                                           monkeypatch: pytest.MonkeyPatch) -> None:
    slept = stop_after(monkeypatch, gpuctl_home, 3)
    result = cli("status", "--watch", "--json", env={"ANTHROPIC_API_KEY": "sk-ant-watch",
                                                     "ANTHROPIC_BASE_URL": claude.url})
    assert_exit(result, 0)  # Ctrl-C is how a watch ends
    lines = result.stdout.splitlines()
    assert len(lines) == 3 and slept == [1.0, 1.0, 1.0]
    for line in lines:
        doc = json.loads(line)
        assert set(doc) == ENVELOPE and doc["command"] == "status" and doc["status"] == "success"
        assert doc["data"]["provider"] == "anthropic"


def test_status_watch_json_lines_carry_each_refresh_verdict(cli, gpuctl_home: Path,  # type: ignore[no-untyped-def]
                                                            monkeypatch: pytest.MonkeyPatch) -> None:
    stop_after(monkeypatch, gpuctl_home, 2)
    with FakeVLLM(api_key="the-right-key") as vllm:
        result = cli("--json", "status", "--watch", env={"GPUCTL_ENDPOINT_URL": vllm.url, "GPUCTL_PRIORITY": "endpoint",
                                                         "GPUCTL_ENDPOINT_API_KEY": "a-wrong-key"})
    assert_exit(result, 0)
    docs = [json.loads(line) for line in result.stdout.splitlines()]
    assert len(docs) == 2 and all(set(d) == ENVELOPE for d in docs)
    assert all((d["status"], d["exit_code"], d["errors"][0]["type"]) == ("error", 3, "CredentialsError") for d in docs)


def test_chat_json_error_line_is_an_envelope_too(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--json", "chat", "hi")
    assert_exit(result, 3)
    (line,) = result.stdout.splitlines()
    doc = json.loads(line)
    assert set(doc) >= ENVELOPE and doc["type"] == "error" and doc["final"] is True
    assert (doc["command"], doc["status"], doc["exit_code"]) == ("chat", "error", 3)
    assert doc["errors"][0]["type"] == "NoProviderError" and doc["error"] == "NoProviderError"


def test_subprocess_json_cases_are_one_document() -> None:
    """The console script, not CliRunner: Typer's own printing of help and errors is bypassed."""
    for args, code in ((["--json", "cost"], 2), (["--json", "--version"], 0), (["--json", "--help"], 0)):
        proc = subprocess.run([sys.executable, "-m", "gpuctl", *args], capture_output=True, text=True, timeout=60)
        assert proc.returncode == code, proc.stderr
        assert json.loads(proc.stdout)["exit_code"] == code and len(proc.stdout.splitlines()) == 1
