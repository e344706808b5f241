"""`--help` and the command line a person types (issue 11, item 17): flags without a metavar,
`-v` that counts, commands in the order a user meets them, negative values after `--` (and a
hint without it), and errors that name the flag that was typed."""

from __future__ import annotations

import logging
import re

import pytest
from typer.core import TyperCommand

from gpuctl.cli.group import GpuctlGroup
from gpuctl.cli.main import COMMANDS
from tests.support import assert_exit

IN_ORDER = ["deploy", "status", "chat", "launch", "destroy", "cleanup", "cost", "profile", "serve", "state"]


def option_line(page: str, flag: str) -> str:
    """The row of `flag` in the help page's options panel (`│ --flag  -f  <type>  help │`)."""
    return next(line for line in page.splitlines() if re.match(rf"│\s+(\*\s+)?{re.escape(flag)}\s", line))


@pytest.mark.parametrize(("args", "flags"), [
    ([], ["--json", "--verbose", "--debug", "--version", "--help", "--install-completion"]),
    (["status"], ["--deep", "--watch", "--wake"]),
    (["chat"], ["--no-stream", "--continue", "--list"]),
    (["destroy"], ["--all", "--force", "--yes", "--dry-run"]),
    (["cost", "estimate"], ["--from-usage"]),
])
def test_flags_show_no_metavar(cli, args: list[str], flags: list[str]) -> None:  # type: ignore[no-untyped-def]
    page = cli(*args, "--help").stdout
    for flag in flags:
        line = option_line(page, flag)
        assert "<bool>" not in line and "<int>" not in line, line
    assert "[default: 0]" not in page  # -v counts; it has no value to default


def test_options_with_values_keep_theirs(cli) -> None:  # type: ignore[no-untyped-def]
    page = cli("cost", "estimate", "--help").stdout
    assert "H" in option_line(page, "--hours-per-day").split() and "<str>" in option_line(cli("--help").stdout, "--profile")


def test_commands_are_listed_in_the_order_a_user_meets_them(cli) -> None:  # type: ignore[no-untyped-def]
    assert [name for name, _ in COMMANDS] == IN_ORDER
    page = cli("--help").stdout
    panel = page[page.index("Commands"):]
    positions = [re.search(rf"│ {name} ", panel).start() for name in IN_ORDER]  # type: ignore[union-attr]
    assert positions == sorted(positions)


def test_the_order_is_a_list_a_new_command_joins() -> None:
    class Root(GpuctlGroup):
        order = ("deploy", "status", "serve")

    commands = {name: TyperCommand(name=name) for name in ("status", "extra", "serve", "deploy")}
    assert Root(name="gpuctl", commands=commands).list_commands(None) == ["deploy", "status", "serve", "extra"]


@pytest.mark.parametrize("args", [["-vv", "profile", "list"], ["profile", "list", "-vv"], ["-v", "-v", "profile", "list"],
                                  ["--verbose", "profile", "list", "--verbose"]])
def test_v_counts(cli, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli(*args), 0)
    (stream,) = [h for h in logging.getLogger("gpuctl").handlers if type(h) is logging.StreamHandler]
    assert stream.level == logging.DEBUG  # two -v: debug logs on stderr


def test_one_v_is_info(cli) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("profile", "list", "-v"), 0)
    (stream,) = [h for h in logging.getLogger("gpuctl").handlers if type(h) is logging.StreamHandler]
    assert stream.level == logging.INFO


# -------------------------------------------------------------- negative values


@pytest.mark.parametrize("args", [["profile", "set", "vastai.budget_limit", "--", "-10"],
                                  ["profile", "set", "--", "vastai.budget_limit", "-10"]])
def test_a_negative_value_after_dashes_reaches_the_check(cli, args: list[str]) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("profile", "create", "dev"), 0)
    result = cli(*args)
    assert_exit(result, 2)
    assert result.stderr.startswith("Error: vastai.budget_limit must not be negative, got -10")


def test_a_value_starting_with_dashes_is_stored_after_them(cli, gpuctl_home) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("profile", "create", "dev"), 0)
    assert_exit(cli("profile", "set", "chat.system_prompt", "--", "-- terse answers only --"), 0)
    assert "-- terse answers only --" in (gpuctl_home / "profiles" / "dev.toml").read_text()


def test_a_negative_value_without_dashes_gets_a_hint(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("profile", "set", "vastai.budget_limit", "-10")
    assert_exit(result, 2)
    lines = result.stderr.splitlines()
    assert lines[0] == "Usage: gpuctl profile set [OPTIONS] {KEY} {VALUE}"
    assert lines[1] == "Error: No such option: -1"
    assert lines[2] == "Hint: a negative number is read as an option: put `--` before the values, " \
                       "`gpuctl profile set -- KEY VALUE`"


def test_other_usage_errors_point_at_the_help(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("cost", "estimate", "--bogus")
    assert_exit(result, 2)
    assert "Error: No such option: --bogus" in result.stderr
    assert "Hint: see `gpuctl cost estimate --help`" in result.stderr
    assert "╭" not in result.stderr  # gpuctl's one line, not a box


# -------------------------------------------------------------- errors name the flag typed


@pytest.mark.parametrize(("args", "error", "hint"), [
    (["deploy", "modal", "--scaledown-window", "0.001", "--dry-run"], "--scaledown-window must be at least",
     "--scaledown-window sets modal.scaledown_window_minutes"),
    (["deploy", "modal", "--min-containers", "-1", "--dry-run"], "--min-containers must not be negative", None),
    (["chat", "--temperature", "5", "hi"], "--temperature must be at most 2", "--temperature sets chat.temperature"),
    (["chat", "--max-tokens", "0", "hi"], "--max-tokens must be at least 1", None),
    (["cost", "estimate", "--provider", "modal", "--hours-per-day", "25"], "--hours-per-day must be at most 24", None),
    (["cost", "estimate", "--requests-per-day", "-4"], "--requests-per-day must not be negative", None),
    (["cost", "estimate", "--requests-per-day", "9", "--tokens-per-request", "2.5"],
     "--tokens-per-request must be a whole number", None),
    (["cost", "estimate", "--provider", "vastai", "--dph", "0", "--hours", "1"], "--dph must be more than 0", None),
])
def test_errors_name_the_flag_that_was_typed(cli, args: list[str], error: str, hint: str | None) -> None:  # type: ignore[no-untyped-def]
    result = cli(*args)
    assert_exit(result, 2)
    first = result.stderr.splitlines()[0]
    assert first.startswith(f"Error: {error}"), result.stderr
    if hint:
        assert f"Hint: {hint}" in result.stderr
