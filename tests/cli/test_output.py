"""The JSON envelope's error side, built in one place (`Output.fail`): an interrupted command,
a known error and a usage error all print one document with the same `errors` entries."""

from __future__ import annotations

import json

import pytest

from gpuctl.cli.output import Output, error_entry
from gpuctl.errors import EXIT_INTERRUPTED
from tests.support import assert_exit


def test_interrupted_command_prints_one_error_envelope(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    def interrupted(**_: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr("gpuctl.ops.profile.list_all", interrupted)
    result = cli("--json", "profile", "list")
    assert_exit(result, EXIT_INTERRUPTED)
    doc = json.loads(result.stdout)
    assert (doc["command"], doc["status"], doc["exit_code"]) == ("profile list", "error", EXIT_INTERRUPTED)
    assert doc["errors"] == [error_entry("Interrupted", "interrupted")]
    assert "Error: interrupted" in result.stderr


def test_every_error_entry_has_type_message_and_hint(cli) -> None:  # type: ignore[no-untyped-def]
    known = json.loads(cli("--json", "profile", "use", "ghost").stdout)["errors"][0]
    usage = json.loads(cli("--json", "profile", "bogus").stdout)["errors"][0]
    assert set(known) == set(usage) == {"type", "message", "hint"}
    assert known["type"] == "ConfigError" and known["hint"] == "see `gpuctl profile list`"
    assert usage["type"] == "UsageError" and usage["hint"] == "see `gpuctl profile --help`"


def test_fail_prints_nothing_after_a_document(capsys: pytest.CaptureFixture[str]) -> None:
    out = Output(json_mode=True, command_parts=["chat"])
    out.print_json({"type": "chunk", "text": "hi"})  # a streaming command already wrote its lines
    out.fail("UsageError", "late", exit_code=2)
    Output(json_mode=False).fail("UsageError", "people get the Error: line instead", exit_code=2)
    assert capsys.readouterr().out == '{"type": "chunk", "text": "hi"}\n'
