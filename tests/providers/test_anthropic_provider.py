"""AnthropicProvider: the pure message mapping, and the real SDK against the loopback fake."""

from __future__ import annotations

import asyncio
import socket
import subprocess
import sys
import traceback
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any, TypeVar

import pytest

from gpuctl.errors import ProviderError, StreamBrokenError, UsageError
from gpuctl.providers.anthropic import AnthropicProvider
from gpuctl.providers.anthropic_mapping import LEADING_USER_TURN, to_anthropic_messages
from gpuctl.providers.base import ChatRequest, Message, Provider, StreamChunk
from tests.fakes.anthropic_server import FakeAnthropic

KEY = "sk-ant-test-SECRET-0123456789"
ROOT = Path(__file__).resolve().parents[2]
T = TypeVar("T")


@pytest.fixture
def fake() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(
        api_key=KEY, reply_text="The quick brown fox jumps over the lazy dog."
    ) as server:
        yield server


class FakeClock:
    """Each call advances by `step`, so latencies are exact."""

    def __init__(self, step: float = 0.25) -> None:
        self.now = 100.0
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def run(provider: AnthropicProvider, make: Callable[[AnthropicProvider], Awaitable[T]]) -> T:
    async def main() -> T:
        try:
            return await make(provider)
        finally:
            await provider.aclose()

    return asyncio.run(main())


def collect(provider: AnthropicProvider, request: ChatRequest) -> list[StreamChunk]:
    async def gather(p: AnthropicProvider) -> list[StreamChunk]:
        return [chunk async for chunk in p.stream(request)]

    return run(provider, gather)


def provider_for(fake: FakeAnthropic, **kwargs: Any) -> AnthropicProvider:
    kwargs.setdefault("api_key", KEY)
    return AnthropicProvider(base_url=fake.url, **kwargs)


def req(*pairs: tuple[str, str], **kwargs: Any) -> ChatRequest:
    return ChatRequest(messages=tuple(Message(role, content) for role, content in pairs), **kwargs)


def closed_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def chat_error(provider: AnthropicProvider, request: ChatRequest) -> ProviderError:
    with pytest.raises(ProviderError) as info:
        run(provider, lambda p: p.chat(request))
    return info.value


HELLO = req(("user", "hello"))


# -- to_anthropic_messages: pure -------------------------------------------------------------


def test_mapping_plain_conversation_passes_through() -> None:
    system, turns = to_anthropic_messages(
        [Message("user", "hi"), Message("assistant", "hello"), Message("user", "how are you")]
    )
    assert system is None
    assert turns == [
        {"role": "user", "content": "hi"},
        {"role": "assistant", "content": "hello"},
        {"role": "user", "content": "how are you"},
    ]


def test_mapping_hoists_all_system_messages_and_merges_turns() -> None:
    system, turns = to_anthropic_messages(
        [
            Message("system", "Be terse."),
            Message("user", "a"),
            Message("user", "b"),
            Message("system", "Answer in French."),
            Message("assistant", "c"),
            Message("assistant", "d"),
            Message("user", "e"),
        ]
    )
    assert system == "Be terse.\n\nAnswer in French."
    assert turns == [
        {"role": "user", "content": "a\n\nb"},
        {"role": "assistant", "content": "c\n\nd"},
        {"role": "user", "content": "e"},
    ]


def test_mapping_puts_a_user_turn_before_a_leading_assistant() -> None:
    _, turns = to_anthropic_messages(
        [Message("assistant", "How can I help?"), Message("user", "hi")]
    )
    assert turns[0] == {"role": "user", "content": LEADING_USER_TURN}
    assert [t["role"] for t in turns] == ["user", "assistant", "user"]


def test_mapping_drops_empty_messages_then_merges_around_them() -> None:
    system, turns = to_anthropic_messages(
        [
            Message("system", "  "),
            Message("user", "a"),
            Message("assistant", ""),
            Message("user", "b"),
        ]
    )
    assert system is None
    assert turns == [{"role": "user", "content": "a\n\nb"}]


def test_mapping_strips_trailing_whitespace_of_a_final_assistant_prefill() -> None:
    _, turns = to_anthropic_messages([Message("user", "q"), Message("assistant", "The answer is ")])
    assert turns[-1] == {"role": "assistant", "content": "The answer is"}


def test_mapping_treats_developer_as_system() -> None:
    system, _ = to_anthropic_messages([Message("developer", "rules"), Message("user", "hi")])
    assert system == "rules"


@pytest.mark.parametrize(
    "messages",
    [[], [Message("system", "only a system prompt")], [Message("user", "   ")]],
)
def test_mapping_empty_conversation_is_a_usage_error(messages: list[Message]) -> None:
    with pytest.raises(UsageError):
        to_anthropic_messages(messages)


def test_mapping_unknown_role_is_a_usage_error() -> None:
    with pytest.raises(UsageError, match="tool"):
        to_anthropic_messages([Message("user", "hi"), Message("tool", "{}")])


# -- the provider, offline ---------------------------------------------------------------------


def test_importing_the_module_does_not_import_the_sdk() -> None:
    code = "import gpuctl.providers.anthropic, sys; assert 'anthropic' not in sys.modules, 'anthropic imported'"
    result = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60
    )
    assert result.returncode == 0, result.stderr


def test_provider_satisfies_the_protocol() -> None:
    provider = AnthropicProvider(api_key=KEY)
    assert isinstance(provider, Provider)
    assert provider.name == "anthropic"
    assert KEY not in repr(provider)


def test_unconfigured_health_and_chat() -> None:
    provider = AnthropicProvider(api_key=None)
    assert not provider.is_configured()
    health = run(provider, lambda p: p.health())
    assert health.status == "unconfigured"
    assert "ANTHROPIC_API_KEY" in health.detail
    error = chat_error(AnthropicProvider(api_key=""), HELLO)
    assert error.kind == "auth" and error.provider == "anthropic"


def test_configured_health_is_ready_without_a_request(fake: FakeAnthropic) -> None:
    health = run(provider_for(fake), lambda p: p.health())
    assert health.status == "ready" and health.ok
    assert health.endpoint == fake.url
    assert fake.requests == 0  # every call is billed: a plain health check sends none


def test_deep_health_sends_one_token(fake: FakeAnthropic) -> None:
    health = run(provider_for(fake, clock=FakeClock(0.5)), lambda p: p.health(deep=True))
    assert health.status == "ready"
    assert health.latency_s == pytest.approx(0.5)
    assert fake.requests == 1 and fake.last_body["max_tokens"] == 1


def test_deep_health_reports_a_bad_key_without_raising(fake: FakeAnthropic) -> None:
    health = run(provider_for(fake, api_key="sk-ant-wrong-SECRET"), lambda p: p.health(deep=True))
    assert health.status == "unhealthy"
    assert "SECRET" not in health.detail


def test_empty_base_url_means_the_default() -> None:
    assert AnthropicProvider(api_key=KEY, base_url="").base_url is None
    assert AnthropicProvider(api_key=KEY, base_url="").endpoint == "https://api.anthropic.com"


def test_endpoint_hides_credentials_in_the_url() -> None:
    provider = AnthropicProvider(
        api_key=KEY, base_url="https://user:pw@proxy.example:8443/anthropic"
    )
    assert provider.endpoint == "https://proxy.example:8443/anthropic"


def test_empty_base_url_env_does_not_break_the_client(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_BASE_URL", "")

    async def build(p: AnthropicProvider) -> str:
        return str(p._get_client().base_url)

    assert run(AnthropicProvider(api_key=KEY, base_url=""), build).startswith(
        "https://api.anthropic.com"
    )


# -- the provider against the fake, through the real SDK ----------------------------------------


def test_chat_maps_the_reply_back(fake: FakeAnthropic) -> None:
    clock = FakeClock(0.25)
    response = run(provider_for(fake, clock=clock), lambda p: p.chat(HELLO))
    assert response.text == "The quick brown fox jumps over the lazy dog."
    assert response.provider == "anthropic"
    assert response.model == "claude-haiku-4-5"
    assert response.finish_reason == "stop"
    assert (response.usage.prompt_tokens, response.usage.completion_tokens) == (1, 9)
    assert response.latency_s == pytest.approx(0.25)
    assert response.ttft_s == pytest.approx(0.25)
    assert fake.last_headers["authorization"] == f"Bearer {KEY}"


def test_system_and_merged_turns_reach_the_api(fake: FakeAnthropic) -> None:
    request = ChatRequest.from_openai(
        [
            {"role": "system", "content": "Be terse."},
            {"role": "user", "content": "one"},
            {"role": "user", "content": "two"},
            {"role": "assistant", "content": "ok"},
            {"role": "system", "content": "No lists."},
            {"role": "user", "content": "three"},
        ],
        temperature=1.7,
        max_tokens=300,
    )
    run(provider_for(fake), lambda p: p.chat(request))
    sent = fake.last_body
    assert sent["system"] == "Be terse.\n\nNo lists."
    assert sent["messages"] == [
        {"role": "user", "content": "one\n\ntwo"},
        {"role": "assistant", "content": "ok"},
        {"role": "user", "content": "three"},
    ]
    assert sent["max_tokens"] == 300
    assert sent["temperature"] == 1.0  # OpenAI's 0–2 clamped to Anthropic's 0–1
    assert "stop_sequences" not in sent


def test_no_temperature_sends_none(fake: FakeAnthropic) -> None:
    run(provider_for(fake), lambda p: p.chat(req(("user", "hi"), temperature=None)))
    assert "temperature" not in fake.last_body


def test_model_only_claude_ids_pass_through(fake: FakeAnthropic) -> None:
    provider = provider_for(fake, model="claude-sonnet-4-6")
    run(provider, lambda p: p.chat(req(("user", "hi"), model="Qwen/Qwen2.5-7B-Instruct")))
    assert fake.last_body["model"] == "claude-sonnet-4-6"
    run(
        provider_for(fake), lambda p: p.chat(req(("user", "hi"), model="claude-haiku-4-5-20251001"))
    )
    assert fake.last_body["model"] == "claude-haiku-4-5-20251001"


def test_stop_sequences(fake: FakeAnthropic) -> None:
    response = run(provider_for(fake), lambda p: p.chat(req(("user", "hi"), stop=("fox", " "))))
    assert fake.last_body["stop_sequences"] == ["fox"]  # whitespace-only stops are dropped
    assert response.text == "The quick brown "
    assert response.finish_reason == "stop"


def test_max_tokens_gives_length(fake: FakeAnthropic) -> None:
    response = run(provider_for(fake), lambda p: p.chat(req(("user", "hi"), max_tokens=3)))
    assert response.finish_reason == "length"
    assert response.usage.completion_tokens == 3
    assert fake.last_body["max_tokens"] == 3


def test_stream_assembles_text_and_usage(fake: FakeAnthropic) -> None:
    chunks = collect(provider_for(fake), req(("system", "Be terse."), ("user", "hello there")))
    assert "".join(c.text for c in chunks) == "The quick brown fox jumps over the lazy dog."
    assert all(c.finish_reason is None for c in chunks[:-1])
    final = chunks[-1]
    assert final.text == "" and final.finish_reason == "stop"
    assert final.usage is not None
    assert (final.usage.prompt_tokens, final.usage.completion_tokens) == (4, 9)
    assert final.model == "claude-haiku-4-5"
    assert fake.stream_requests == 1 and fake.last_body["stream"] is True


def test_stream_max_tokens_gives_length(fake: FakeAnthropic) -> None:
    chunks = collect(provider_for(fake), req(("user", "hi"), max_tokens=2))
    assert "".join(c.text for c in chunks) == "The quick "
    assert chunks[-1].finish_reason == "length"


def test_stream_rejects_an_empty_conversation_without_a_request(fake: FakeAnthropic) -> None:
    with pytest.raises(UsageError):
        collect(provider_for(fake), req(("system", "only")))
    assert fake.requests == 0


# -- errors --------------------------------------------------------------------------------------


def test_wrong_key_is_auth_and_never_shows_the_key(fake: FakeAnthropic) -> None:
    wrong = "sk-ant-WRONG-SECRET-987654"
    error = chat_error(provider_for(fake, api_key=wrong), HELLO)
    assert error.kind == "auth" and error.status == 401 and error.provider == "anthropic"
    assert error.hint is not None and "ANTHROPIC_API_KEY" in error.hint
    assert wrong not in str(error) and wrong not in (error.hint or "")
    # Nor in the traceback `--debug` shows, the SDK's chained error included.
    assert "SECRET" not in "".join(traceback.format_exception(error))


def test_wrong_key_in_a_stream_is_auth(fake: FakeAnthropic) -> None:
    with pytest.raises(ProviderError) as info:
        collect(provider_for(fake, api_key="sk-ant-nope"), HELLO)
    assert info.value.kind == "auth"


@pytest.mark.parametrize(
    ("status", "kind"),
    [(429, "rate_limit"), (500, "http"), (529, "http"), (503, "http")],
)
def test_status_errors_map_to_kinds(fake: FakeAnthropic, status: int, kind: str) -> None:
    fake.status = status
    error = chat_error(provider_for(fake), HELLO)
    assert (error.kind, error.status) == (kind, status)
    assert error.failover
    assert fake.requests == 1  # max_retries=0: the router fails over, the SDK does not retry


def test_rate_limit_says_when_to_retry(fake: FakeAnthropic) -> None:
    fake.status = 429
    fake.retry_after = "12"
    assert "retry after 12 s" in str(chat_error(provider_for(fake), HELLO))


def test_overloaded_is_named(fake: FakeAnthropic) -> None:
    fake.status = 529
    assert "overloaded" in str(chat_error(provider_for(fake), HELLO))


def test_bad_request_does_not_fail_over(fake: FakeAnthropic) -> None:
    # The mapping avoids every 400 the fake's validation knows, so force one.
    fake.status = 400
    error = chat_error(provider_for(fake), HELLO)
    assert error.kind == "bad_request" and not error.failover


def test_unknown_model_is_not_found(fake: FakeAnthropic) -> None:
    fake.models = {"claude-haiku-4-5"}
    error = chat_error(provider_for(fake, model="claude-nonexistent-9"), HELLO)
    assert (error.kind, error.status) == ("not_found", 404)
    assert error.hint is not None and "anthropic.model" in error.hint


def test_connection_refused_is_connect() -> None:
    provider = AnthropicProvider(api_key=KEY, base_url=f"http://127.0.0.1:{closed_port()}")
    error = chat_error(provider, HELLO)
    assert error.kind == "connect"
    assert KEY not in str(error)


def test_connection_refused_in_a_stream_is_connect() -> None:
    provider = AnthropicProvider(api_key=KEY, base_url=f"http://127.0.0.1:{closed_port()}")
    with pytest.raises(ProviderError) as info:
        collect(provider, HELLO)
    assert info.value.kind == "connect"


def test_slow_first_byte_is_timeout(fake: FakeAnthropic) -> None:
    fake.first_byte_delay_s = 5.0  # the fake wakes early when the test stops it
    error = chat_error(provider_for(fake, timeout_s=0.2), HELLO)
    assert error.kind == "timeout"


def test_malformed_reply_is_malformed(fake: FakeAnthropic) -> None:
    fake.malformed = True
    error = chat_error(provider_for(fake), HELLO)
    assert error.kind == "malformed"


def test_stream_error_event_before_text_is_stream_cut(fake: FakeAnthropic) -> None:
    fake.stream_error_after = 0
    with pytest.raises(ProviderError) as info:
        collect(provider_for(fake), HELLO)
    assert info.value.kind == "stream_cut"
    assert not isinstance(info.value, StreamBrokenError)


def test_stream_error_event_after_text_is_stream_broken(fake: FakeAnthropic) -> None:
    fake.stream_error_after = 3
    with pytest.raises(StreamBrokenError) as info:
        collect(provider_for(fake), HELLO)
    assert info.value.kind == "stream_cut"
    assert info.value.partial_text == "The quick brown "


@pytest.mark.parametrize("mode", ["drop", "clean"])
def test_stream_cut_is_stream_cut(fake: FakeAnthropic, mode: str) -> None:
    fake.stream_cut_after = 2
    fake.stream_cut_mode = mode
    with pytest.raises(StreamBrokenError) as info:
        collect(provider_for(fake), HELLO)
    assert info.value.kind == "stream_cut"
    assert info.value.partial_text == "The quick "
