"""Exit codes follow the README table everywhere (issue 11, item 8): a refused key is 3 in
`status` and `chat` alike, and a closed pipe (`| head -1`) is not an error for any command."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator

import pytest

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit, closed_port_url

RIGHT, WRONG = "the-key-vllm-was-started-with", "a-key-it-was-not"


@pytest.fixture
def vllm() -> Iterator[FakeVLLM]:
    with FakeVLLM(api_key=RIGHT) as fake:
        yield fake


def endpoint_env(vllm: FakeVLLM, key: str) -> dict[str, str]:
    return {"GPUCTL_ENDPOINT_URL": vllm.url, "GPUCTL_ENDPOINT_API_KEY": key, "GPUCTL_PRIORITY": "endpoint"}


@pytest.mark.parametrize("deep", [False, True])
def test_status_with_a_refused_key_is_exit_3(cli, vllm: FakeVLLM, deep: bool) -> None:  # type: ignore[no-untyped-def]
    result = cli("status", *(["--deep"] if deep else []), env=endpoint_env(vllm, WRONG))
    assert_exit(result, 3)
    assert "the API key was refused" in result.stdout and "Error: no provider can answer now" in result.stderr
    doc = json.loads(cli("--json", "status", env=endpoint_env(vllm, WRONG)).stdout)
    assert (doc["exit_code"], doc["errors"][0]["type"]) == (3, "CredentialsError")


def test_status_with_the_right_key_is_exit_0(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("status", env=endpoint_env(vllm, RIGHT)), 0)


def test_anthropic_key_refused_is_3_in_status_deep_and_chat(cli) -> None:  # type: ignore[no-untyped-def]
    with FakeAnthropic(api_key=RIGHT) as claude:
        env = {"ANTHROPIC_API_KEY": WRONG, "ANTHROPIC_BASE_URL": claude.url}
        assert_exit(cli("status", "--deep", env=env), 3)
        assert_exit(cli("chat", "hi", env=env), 3)


def test_a_refused_key_and_a_dead_endpoint_is_a_failure_not_a_key_problem(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    env = {**endpoint_env(vllm, WRONG), "MODAL_WEB_URL": closed_port_url(), "GPUCTL_PRIORITY": "modal,endpoint"}
    assert_exit(cli("status", env=env), 1)  # fixing the key alone would not do: exit 1, as in chat


def test_chat_with_a_refused_key_is_exit_3(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    result = cli("chat", "hi", env=endpoint_env(vllm, WRONG))
    assert_exit(result, 3)
    assert "refused" in result.stderr


def test_chat_with_a_refused_key_on_a_scaled_to_zero_modal_is_exit_3(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    """Modal idle past its window gets a health probe first: the probe's 401 is typed too."""
    result = cli("chat", "hi", env={"MODAL_WEB_URL": vllm.url, "GPUCTL_MODAL_API_KEY": WRONG})
    assert_exit(result, 3)


# -------------------------------------------------------------- a closed pipe is not an error


def run_into_a_closed_pipe(*args: str) -> subprocess.CompletedProcess[str]:
    """Run `python -m gpuctl ARGS` whose stdout reader is gone before anything is written
    (what `| head -1` does to a long output), and collect the exit code and stderr."""
    env = {**os.environ, "COLUMNS": "80"}
    proc = subprocess.Popen([sys.executable, "-m", "gpuctl", *args], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    assert proc.stdout is not None and proc.stderr is not None
    proc.stdout.close()  # the reader goes away: every write to stdout now fails with EPIPE
    stderr = proc.stderr.read()
    proc.stderr.close()
    return subprocess.CompletedProcess(proc.args, proc.wait(timeout=60), "", stderr)


@pytest.mark.parametrize("args", [
    ["cost", "estimate"],  # tables (rich)
    ["--json", "cost", "estimate"],  # one JSON document
    ["--help"],  # Typer's help page
    ["profile", "show", "--resolved"],
    ["--version"],
])
def test_a_closed_pipe_exits_0_quietly(args: list[str]) -> None:
    proc = run_into_a_closed_pipe(*args)
    assert proc.returncode == 0, proc.stderr
    for noise in ("Traceback", "Exception ignored", "Broken pipe", "BrokenPipeError", "Error"):
        assert noise not in proc.stderr, proc.stderr


def test_a_closed_pipe_does_not_hide_the_commands_own_failure() -> None:
    proc = run_into_a_closed_pipe("--profile", "ghost", "cost", "estimate")
    assert proc.returncode == 3 and "Error: profile 'ghost'" in proc.stderr
