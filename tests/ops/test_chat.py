"""`gpuctl.ops.chat.open_session` without a terminal: the session it opens from settings, the
checks it makes before anyone types, and that it closes what it opened."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuctl.errors import NoProviderError, UsageError
from gpuctl.ops.chat import open_session
from gpuctl.state import open_state
from tests.fakes.vllm_server import FakeVLLM
from tests.support import settings_for


@pytest.fixture
def runner() -> Iterator[asyncio.Runner]:
    with asyncio.Runner() as r:
        yield r


@pytest.fixture
def vllm() -> Iterator[FakeVLLM]:
    with FakeVLLM(model="fake-model", answer="An answer.") as fake:
        yield fake


def modal_settings(home: Path, fake: FakeVLLM):  # type: ignore[no-untyped-def]
    return settings_for(home, MODAL_WEB_URL=fake.url, MODAL_MODEL="fake-model", GPUCTL_PRIORITY="modal")


def test_nothing_configured_fails_before_a_question(gpuctl_home: Path, runner: asyncio.Runner) -> None:
    with pytest.raises(NoProviderError, match="no provider is configured"), \
            open_session(settings_for(gpuctl_home), runner):
        pytest.fail("a session opened with nothing to answer")


def test_an_unknown_provider_is_a_usage_error(gpuctl_home: Path, runner: asyncio.Runner, vllm: FakeVLLM) -> None:
    with pytest.raises(UsageError, match="unknown provider 'bogus'"), \
            open_session(modal_settings(gpuctl_home, vllm), runner, provider="bogus"):
        pytest.fail("a session opened for an unknown provider")


def test_ask_then_resume_the_stored_conversation(gpuctl_home: Path, runner: asyncio.Runner, vllm: FakeVLLM) -> None:
    settings = modal_settings(gpuctl_home, vllm)
    pieces: list[str] = []
    with open_session(settings, runner, provider="auto", system="Be brief.") as session:
        assert session.provider is None and session.order() == ["modal"]
        answer = runner.run(session.ask("first?", pieces.append))
    assert "".join(pieces) == answer.text == "An answer." and answer.provider == "modal"
    with open_session(settings, runner, continue_last=True) as again:
        assert again.resumed and again.conversation_id == answer.conversation_id
        assert [t.content for t in again.turns] == ["first?", "An answer."]
        assert again.system_prompt == "Be brief."  # the stored conversation's
    with open_state(gpuctl_home) as st:  # both messages were stored
        assert len(st.messages(answer.conversation_id)) == 2
