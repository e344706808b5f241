"""The CLI skeleton: every command registered, --version, the JSON envelope contract, exit codes."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest

from gpuctl import __version__
from tests.support import assert_exit

COMMANDS = ["deploy", "status", "chat", "launch", "destroy", "cleanup", "cost", "profile"]
ENVELOPE_KEYS = ["gpuctl_result_version", "command", "status", "exit_code", "timestamp", "data", "errors"]


def test_help_lists_every_command(cli) -> None:
    result = cli("--help")
    assert_exit(result, 0)
    for name in COMMANDS:
        assert name in result.stdout


@pytest.mark.parametrize(
    "args",
    [["deploy", "modal"], ["status"], ["chat"], ["launch"], ["destroy"], ["cleanup"],
     ["cost", "estimate"], ["cost", "report"], ["profile", "list"], ["profile", "show"],
     ["profile", "create"], ["profile", "use"], ["profile", "set"], ["profile", "unset"],
     ["profile", "delete"]],
)
def test_every_command_help_has_an_example(cli, args: list[str]) -> None:
    result = cli(*args, "--help")
    assert_exit(result, 0)
    assert "Example" in result.stdout


def test_version(cli) -> None:
    result = cli("--version")
    assert_exit(result, 0)
    assert result.stdout.strip() == f"gpuctl {__version__}"


def test_json_envelope_contract_success(cli) -> None:
    result = cli("--json", "profile", "list")
    assert_exit(result, 0)
    doc = json.loads(result.stdout)
    assert set(doc) == {"gpuctl_result_version", "command", "status", "exit_code", "timestamp", "data", "errors"}
    assert list(doc) == ENVELOPE_KEYS  # the README's order
    assert doc["gpuctl_result_version"] == 1
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ", doc["timestamp"])  # UTC, for cron logs
    assert doc["command"] == "profile list"
    assert doc["status"] == "success" and doc["exit_code"] == 0 and doc["errors"] == []


def test_json_envelope_contract_error(cli, gpuctl_home) -> None:
    result = cli("--json", "--profile", "nope", "profile", "show", "--resolved")
    assert_exit(result, 3)
    doc = json.loads(result.stdout)  # exactly one JSON document on stdout
    assert doc["status"] == "error" and doc["exit_code"] == 3
    assert doc["errors"][0]["type"] == "ConfigError"
    assert "nope" in doc["errors"][0]["message"]
    assert "Error:" in result.stderr
    assert "Traceback" not in result.stderr


def test_usage_error_exit_2(cli) -> None:
    result = cli("cost", "estimate", "--no-such-flag")
    assert_exit(result, 2)


def test_known_error_has_no_traceback_unless_debug(cli) -> None:
    quiet = cli("--profile", "ghost", "profile", "show", "--resolved")
    assert_exit(quiet, 3)
    assert "Traceback" not in quiet.stderr
    loud = cli("--debug", "--profile", "ghost", "profile", "show", "--resolved")
    assert_exit(loud, 3)
    assert "Traceback" in loud.stderr


def test_python_m_gpuctl_help_subprocess() -> None:
    proc = subprocess.run([sys.executable, "-m", "gpuctl", "--help"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    for name in COMMANDS:
        assert name in proc.stdout


def test_no_colour_when_piped() -> None:
    proc = subprocess.run([sys.executable, "-m", "gpuctl", "profile", "list"], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0, proc.stderr
    assert "\x1b[" not in proc.stdout and "\x1b[" not in proc.stderr


@pytest.mark.parametrize("args", [["--json", "cost", "estimate", "--bogus"], ["--json", "bogus"],
                                  ["chat", "--temperature", "abc", "hi", "--json"]])
def test_usage_errors_are_one_json_document_too(cli, args: list[str]) -> None:
    result = cli(*args)
    assert_exit(result, 2)
    doc = json.loads(result.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 2 and doc["errors"][0]["type"] == "UsageError"
