"""`routing.priority` (issue 11, item 10): a priority that leaves out every configured provider
says exactly that, in chat, status and the Python API, instead of "no provider is configured"."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gpuctl.errors import NoProviderError
from tests.fakes.anthropic_server import FakeAnthropic
from tests.support import assert_exit
from tests.support.routing import KEY, ask, manager

MESSAGE = "routing.priority lists modal, vastai but only anthropic is configured"


def test_the_python_api_says_which_configured_provider_the_priority_leaves_out(gpuctl_home: Path,
                                                                              claude: FakeAnthropic) -> None:
    m = manager(gpuctl_home, modal_url=None, claude=claude, GPUCTL_PRIORITY="modal,vastai")
    with pytest.raises(NoProviderError) as info:
        ask(m)
    assert info.value.message == MESSAGE and info.value.exit_code == 3
    assert info.value.hint == ("add anthropic to routing.priority (from env GPUCTL_PRIORITY), "
                               "e.g. GPUCTL_PRIORITY=modal,vastai,anthropic")
    again = manager(gpuctl_home, modal_url=None, claude=claude, GPUCTL_PRIORITY="modal,vastai")
    with pytest.raises(NoProviderError, match=MESSAGE):
        again.require_configured()
    asyncio.run(again.aclose())


def test_with_nothing_configured_at_all_it_says_what_to_set(gpuctl_home: Path) -> None:
    with pytest.raises(NoProviderError) as info:
        ask(manager(gpuctl_home, modal_url=None, GPUCTL_PRIORITY="modal,vastai"))
    assert info.value.message == "no provider is configured" and "ANTHROPIC_API_KEY" in (info.value.hint or "")


@pytest.mark.parametrize("command", [["chat", "hello"], ["status"]])
def test_chat_and_status_say_it_with_exit_3(cli, claude: FakeAnthropic, command: list[str]) -> None:  # type: ignore[no-untyped-def]
    env = {"GPUCTL_PRIORITY": "modal,vastai", "ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": claude.url}
    result = cli(*command, env=env)
    assert_exit(result, 3)
    assert f"Error: {MESSAGE}" in result.stderr
    doc = json.loads(cli("--json", *command, env=env).stdout.splitlines()[-1])
    # chat --json streams objects; its error object is not (yet) the envelope: read either shape
    message = doc["errors"][0]["message"] if "errors" in doc else doc["message"]
    assert doc["exit_code"] == 3 and message == MESSAGE
