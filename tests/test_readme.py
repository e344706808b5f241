"""The README is a promise: every `$ gpuctl ...` example in it runs, in order, and succeeds.

They run through the real app against the loopback fakes (vLLM, Anthropic, Vast.ai) with the
modal SDK behind its seam, in one fresh GPUCTL_HOME, exactly as a new user would type them.
`make install` / `make test` are what CI runs (.ci/run); `make lint` / `make bench` are checked
to exist in the Makefile.
"""

from __future__ import annotations

import re
import shlex
from pathlib import Path

import pytest

from gpuctl.modal.sdk import ModalSDK
from gpuctl.vastai import launch as lifecycle
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vastai_server import FakeVast
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit
from tests.support.vast import market

REPO = Path(__file__).resolve().parents[1]
README = (REPO / "README.md").read_text()


def readme_commands(prefix: str) -> list[str]:
    blocks = re.findall(r"```console\n(.*?)```", README, flags=re.S)
    return [line[2:].strip() for block in blocks for line in block.splitlines() if line.startswith(f"$ {prefix}")]


def test_readme_shows_the_two_setup_commands_ci_runs() -> None:
    ci = (REPO / ".ci" / "run").read_text()
    assert readme_commands("make")[:2] == ["make install", "make test"]
    assert "make install" in ci and "make test" in ci
    makefile = (REPO / "Makefile").read_text()
    for target in ("install:", "test:", "lint:", "bench:"):
        assert target in makefile


def test_every_gpuctl_example_runs(cli, mocker, monkeypatch: pytest.MonkeyPatch) -> None:
    commands = readme_commands("gpuctl")
    assert "gpuctl cost estimate" in commands and len(commands) >= 15
    key = "sk-ant-readme-key"
    with (FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct") as vllm, FakeAnthropic(api_key=key) as claude,
          FakeVast(api_key="vast-readme-key", offers=market(), endpoint_port=vllm.port,
                   clock=__import__("time").time) as vast):
        monkeypatch.setenv("ANTHROPIC_API_KEY", key)
        monkeypatch.setenv("ANTHROPIC_BASE_URL", claude.url)
        monkeypatch.setenv("VASTAI_API_KEY", "vast-readme-key")
        monkeypatch.setenv("VAST_URL", vast.url)
        monkeypatch.setattr(lifecycle, "POLL_S", 0.0)
        mocker.patch.object(ModalSDK, "check_credentials")
        mocker.patch.object(ModalSDK, "ensure_secret")
        mocker.patch.object(ModalSDK, "deploy", return_value=vllm.url)
        for command in commands:
            args = shlex.split(command)[1:]
            # the bare REPL gets what a person would type; everything else no input at all
            result = cli(*args, input="hello\n/cost\n/exit\n" if args == ["chat"] else "")
            assert_exit(result, 0)
        assert vast.live_ids() == set()  # the README's own sequence leaves nothing billing
        assert vllm.hits("/v1/chat/completions") >= 1


def test_the_envelope_example_has_the_envelope_keys_in_order(cli) -> None:
    """The README's JSON example is what `--json` prints: the same keys, in the same order."""
    (example,) = re.findall(r"```json\n(\{.*?\})\n```", README, flags=re.S)
    shown = re.findall(r'"(\w+)":', example)
    printed = __import__("json").loads(cli("--json", "profile", "list").stdout)
    assert shown == list(printed)
    assert re.search(r'"timestamp": "\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ"', example)
