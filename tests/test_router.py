"""The backend manager: priority, fallback matrix, breaker across processes, cold starts, streams."""

from __future__ import annotations

import asyncio
import json
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuctl.errors import AllProvidersFailedError, NoProviderError, StreamBrokenError
from gpuctl.routing.manager import BackendManager
from gpuctl.state import open_state
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import closed_port_url, settings_for

MESSAGES = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "Hello there"}]
KEY = "sk-ant-fake-key"


@pytest.fixture
def vllm() -> Iterator[FakeVLLM]:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", answer="Hi from vLLM") as fake:
        yield fake


@pytest.fixture
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY, reply_text="Hi from Claude") as fake:
        yield fake


def manager(home: Path, *, modal_url: str | None, claude: FakeAnthropic | None = None,
            clock: list[float] | None = None, **extra: str) -> BackendManager:
    env = {"GPUCTL_PRIORITY": "modal,vastai,anthropic", **extra}
    if modal_url:
        env["MODAL_WEB_URL"] = modal_url
    if claude is not None:
        env["ANTHROPIC_API_KEY"] = KEY
        env["ANTHROPIC_BASE_URL"] = claude.url
    settings = settings_for(home, **env)
    now = clock if clock is not None else [1_000_000.0]
    return BackendManager(settings, clock=lambda: now[0])


def ask(m: BackendManager, **kw):  # type: ignore[no-untyped-def]
    async def go():  # type: ignore[no-untyped-def]
        try:
            return await m.chat_completion(MESSAGES, max_tokens=64, **kw)
        finally:
            await m.aclose()
    return asyncio.run(go())


def status_of(m: BackendManager):  # type: ignore[no-untyped-def]
    """`get_vllm_status()` once, closing the manager after."""
    async def go():  # type: ignore[no-untyped-def]
        try:
            return await m.get_vllm_status()
        finally:
            await m.aclose()
    return asyncio.run(go())


def ledger(home: Path):  # type: ignore[no-untyped-def]
    with open_state(home) as st:
        return st.usage_since()


def test_modal_answers_when_healthy(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    # a recent success means "warm": no cold probe before the request
    m = manager(gpuctl_home, modal_url=vllm.url, claude=claude)
    response = ask(m)
    assert response.provider == "modal" and response.text == "Hi from vLLM"
    assert response.usage.completion_tokens > 0 and response.fallback_reason is None
    assert claude.requests == 0
    row = ledger(gpuctl_home)[-1]
    assert row.provider == "modal" and row.ok and row.completion_tokens == response.usage.completion_tokens


@pytest.mark.parametrize("fault", ["refused", "503", "500", "html502", "malformed", "timeout"])
def test_fallback_matrix(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic, fault: str) -> None:
    url = vllm.url
    if fault == "refused":
        url = closed_port_url()
    elif fault == "503":
        vllm.fail(503, paths=["/v1/chat/completions"])
    elif fault == "500":
        vllm.fail(500, body={"error": {"message": "engine dead", "type": "InternalServerError", "code": 500}},
                  paths=["/v1/chat/completions"])
    elif fault == "html502":
        vllm.fail_html(502, paths=["/v1/chat/completions"])
    elif fault == "malformed":
        vllm.malformed_json = True
    elif fault == "timeout":
        vllm.slow(2.0, paths=["/v1/chat/completions"])
    m = manager(gpuctl_home, modal_url=url, claude=claude, **({"ROUTING": "x"} if False else {}))
    if fault == "timeout":
        m = BackendManager(settings_for(gpuctl_home, MODAL_WEB_URL=url, ANTHROPIC_API_KEY=KEY,
                                        ANTHROPIC_BASE_URL=claude.url, GPUCTL_PRIORITY="modal,anthropic"))
        object.__setattr__(m, "_settings", _with(m.settings, **{"routing.first_byte_timeout_s": 0.3,
                                                               "routing.fallback_on_cold": False}))
    else:
        m._settings = _with(m.settings, **{"routing.fallback_on_cold": False})
    response = ask(m)
    assert response.provider == "anthropic" and response.text == "Hi from Claude"
    assert response.fallback_reason and response.fallback_reason.startswith("modal:")
    rows = ledger(gpuctl_home)
    assert [(r.provider, r.ok) for r in rows] == [("modal", False), ("anthropic", True)]
    assert rows[-1].fallback_reason == response.fallback_reason
    assert rows[-1].cost is not None  # tokens priced from the catalog


def _with(settings, **values):  # type: ignore[no-untyped-def]
    from dataclasses import replace

    from gpuctl.config import Resolved

    new = dict(settings.values)
    for key, value in values.items():
        new[key] = Resolved(value, "test")
    return replace(settings, values=new)


def test_breaker_opens_skips_probes_and_closes(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    now = [1_000_000.0]
    vllm.fail(500, paths=["/v1/chat/completions"])

    def run() -> str:
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now)
        m._settings = _with(m.settings, **{"routing.failure_threshold": 2, "routing.cooldown_s": 60.0,
                                           "routing.fallback_on_cold": False})
        return ask(m).provider

    assert run() == "anthropic" and run() == "anthropic"
    hits = vllm.hits("/v1/chat/completions")
    assert hits == 2
    # breaker open: the dead backend is not touched at all
    assert run() == "anthropic"
    assert vllm.hits("/v1/chat/completions") == hits
    with open_state(gpuctl_home) as st:
        assert st.get_breaker("modal").state == "open"
    # after the cooldown one probe goes through; it succeeds and closes the breaker
    vllm.reset_faults()
    now[0] += 61
    assert run() == "modal"
    with open_state(gpuctl_home) as st:
        assert st.get_breaker("modal").state == "closed"


def test_breaker_is_shared_across_processes(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    dead = closed_port_url()
    code = (
        "import asyncio, os\n"
        "from gpuctl.routing.manager import BackendManager\n"
        "async def main():\n"
        "    m = BackendManager()\n"
        "    r = await m.chat_completion([{'role': 'user', 'content': 'hi'}], max_tokens=8)\n"
        "    print(r.provider, m.get_current_provider())\n"
        "    await m.aclose()\n"
        "asyncio.run(main())\n"
    )
    env = {**{k: v for k, v in __import__("os").environ.items()}, "MODAL_WEB_URL": dead, "ANTHROPIC_API_KEY": KEY,
           "ANTHROPIC_BASE_URL": claude.url, "GPUCTL_HOME": str(gpuctl_home), "GPUCTL_EVENT_LOG": "0"}
    outputs = []
    for _ in range(4):
        proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env, timeout=60)
        assert proc.returncode == 0, proc.stderr
        outputs.append(proc.stdout.split())
    assert all(o[0] == "anthropic" for o in outputs)
    # default threshold 3: the first two processes still see modal as current, then it is skipped
    assert [o[1] for o in outputs] == ["modal", "modal", "anthropic", "anthropic"]
    with open_state(gpuctl_home) as st:
        rec = st.get_breaker("modal")
    assert rec.state == "open" and rec.failures == 3  # the fourth process did not touch modal


def test_cold_modal_falls_back_without_counting_a_failure(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    vllm.slow(2.0, paths=["/health"])
    m = manager(gpuctl_home, modal_url=vllm.url, claude=claude)
    m._settings = _with(m.settings, **{"routing.cold_probe_timeout_s": 0.2})
    response = ask(m)
    assert response.provider == "anthropic"
    assert "waking up" in (response.fallback_reason or "")
    assert vllm.hits("/v1/chat/completions") == 0
    with open_state(gpuctl_home) as st:
        assert st.get_breaker("modal").failures == 0


def test_waking_modal_is_probed_once_per_grace_period(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    vllm.slow(2.0, paths=["/health"])
    now = [1_000_000.0]

    def one() -> str:
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now)
        m._settings = _with(m.settings, **{"routing.cold_probe_timeout_s": 0.2})
        response = ask(m)
        return f"{response.provider}|{response.fallback_reason}"

    first = one()
    assert first.startswith("anthropic|") and "waking up" in first
    assert vllm.hits("/health") == 1
    now[0] += 10
    second = one()
    assert "still waking up (cold start began 10s ago)" in second
    assert vllm.hits("/health") == 1  # no second probe within the grace period
    vllm.reset_faults()
    now[0] += 60
    assert one().startswith("modal|")  # probed again after the grace: warm now
    assert vllm.hits("/health") == 2


def test_stream_from_primary_and_fallback(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    async def go(url: str) -> tuple[str, str, str | None, int]:
        m = manager(gpuctl_home, modal_url=url, claude=claude)
        m._settings = _with(m.settings, **{"routing.fallback_on_cold": False})
        stream = await m.chat_completion(MESSAGES, stream=True, max_tokens=64)
        text = "".join([c.text async for c in stream])
        await m.aclose()
        return text, stream.provider, stream.fallback_reason, stream.usage.completion_tokens

    text, provider, reason, tokens = asyncio.run(go(vllm.url))
    assert (text, provider, reason) == ("Hi from vLLM", "modal", None) and tokens > 0
    text, provider, reason, tokens = asyncio.run(go(closed_port_url()))
    assert (text, provider) == ("Hi from Claude", "anthropic") and reason.startswith("modal:") and tokens > 0


def test_stream_cut_after_tokens_is_reported_not_resent(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", answer="one two three four five six seven eight") as vllm:
        vllm.cut_after = 4

        async def go() -> str:
            m = manager(gpuctl_home, modal_url=vllm.url, claude=claude)
            m._settings = _with(m.settings, **{"routing.fallback_on_cold": False})
            stream = await m.chat_completion(MESSAGES, stream=True)
            seen = []
            try:
                async for chunk in stream:
                    seen.append(chunk.text)
            finally:
                await m.aclose()
            return "".join(seen)

        with pytest.raises(StreamBrokenError) as info:
            asyncio.run(go())
    assert info.value.partial_text and "broke off" in info.value.message
    assert claude.requests == 0 and claude.stream_requests == 0


def test_no_provider_configured(gpuctl_home: Path) -> None:
    m = BackendManager(settings_for(gpuctl_home))
    with pytest.raises(NoProviderError) as info:
        ask(m)
    assert info.value.exit_code == 3 and "ANTHROPIC_API_KEY" in (info.value.hint or "")


def test_all_failed_lists_every_reason(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    claude.status = 529
    m = manager(gpuctl_home, modal_url=closed_port_url(), claude=claude)
    m._settings = _with(m.settings, **{"routing.fallback_on_cold": False})
    with pytest.raises(AllProvidersFailedError) as info:
        ask(m)
    assert info.value.reasons[0].startswith("modal:") and info.value.reasons[-1].startswith("anthropic:")


def test_status_done_when(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    m = manager(gpuctl_home, modal_url=closed_port_url(), claude=claude)

    status = status_of(m)
    assert status["provider"] == "anthropic" and status["status"] == "ready"
    rows = {p["provider"]: p for p in status["providers"]}
    assert rows["modal"]["status"] == "unhealthy" and rows["anthropic"]["status"] == "ready"
    assert rows["vastai"]["configured"] is False
    assert KEY not in json.dumps(status)


def test_forced_provider_not_configured_says_which(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    m = manager(gpuctl_home, modal_url=None, claude=claude)
    with pytest.raises(NoProviderError) as info:
        m.require_configured("vastai")
    assert info.value.message == "vastai is not configured" and "VASTAI_API_KEY" in (info.value.hint or "")
    with pytest.raises(NoProviderError, match="vastai is not configured"):
        ask(m, provider="vastai")
    assert claude.requests == 0


def test_only_one_request_probes_a_half_open_breaker(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    from gpuctl.state import BreakerRecord

    now = [1_000_000.0]
    with open_state(gpuctl_home) as st:
        st.put_breaker(BreakerRecord("modal", "open", 3, now[0] - 100, now[0] - 1, "refused"))
    first = manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now)
    second = manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now)
    modal_first, modal_second = first.slots()[0], second.slots()[0]
    assert first._gate(modal_first, now[0], claim=True) is None  # this one probes
    assert "another request is probing" in (second._gate(modal_second, now[0], claim=True) or "")
    assert second.get_current_provider() == "anthropic"
    first._success("modal")  # the probe answered: closed for everyone
    assert second._gate(modal_second, now[0], claim=True) is None
    asyncio.run(first.aclose())
    asyncio.run(second.aclose())


def test_a_dead_prober_does_not_hold_the_breaker_forever(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    from gpuctl.state import BreakerRecord

    now = [1_000_000.0]
    with open_state(gpuctl_home) as st:
        st.put_breaker(BreakerRecord("modal", "half_open", 3, now[0] - 500, now[0] - 1, "refused"))  # lease over
    m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now)
    assert m._gate(m.slots()[0], now[0], claim=True) is None
    asyncio.run(m.aclose())


def test_modal_alone_timing_out_cold_does_not_open_the_breaker(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    vllm.slow(2.0, paths=["/v1/chat/completions"])
    settings = settings_for(gpuctl_home, MODAL_WEB_URL=vllm.url, GPUCTL_PRIORITY="modal")
    for _ in range(4):
        m = BackendManager(_with(settings, **{"routing.first_byte_timeout_s": 0.2}))
        with pytest.raises(AllProvidersFailedError):
            ask(m)
    with open_state(gpuctl_home) as st:
        assert st.get_breaker("modal").failures == 0  # idle past its window: waking up, not down


def test_a_refused_key_everywhere_is_a_credentials_error(gpuctl_home: Path) -> None:
    with FakeAnthropic(api_key="sk-ant-the-right-key") as claude:
        settings = settings_for(gpuctl_home, ANTHROPIC_API_KEY="sk-ant-a-wrong-key", ANTHROPIC_BASE_URL=claude.url)
        with pytest.raises(AllProvidersFailedError) as info:
            ask(BackendManager(settings))
    assert info.value.exit_code == 3 and "sk-ant-a-wrong-key" not in info.value.message


@pytest.mark.parametrize("streaming", [False, True])
def test_a_waking_modal_answers_when_the_fallback_fails(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic,
                                                        streaming: bool) -> None:
    vllm.slow(1.0, paths=["/health"])  # waking: the short probe gets no answer
    claude.status = 529  # and the fallback is overloaded
    m = manager(gpuctl_home, modal_url=vllm.url, claude=claude)
    m._settings = _with(m.settings, **{"routing.cold_probe_timeout_s": 0.2})

    async def go() -> tuple[str, str, str | None]:
        try:
            if streaming:
                stream = await m.chat_completion(MESSAGES, stream=True, max_tokens=64)
                text = "".join([c.text async for c in stream])
                return stream.provider or "", text, stream.fallback_reason
            response = await m.chat_completion(MESSAGES, max_tokens=64)
            return response.provider, response.text, response.fallback_reason
        finally:
            await m.aclose()

    provider, text, reason = asyncio.run(go())
    assert (provider, text) == ("modal", "Hi from vLLM")  # waited for the cold GPU instead of failing
    assert reason and "waking up" in reason and "anthropic" in reason


def test_a_plain_health_check_does_not_close_an_open_breaker(gpuctl_home: Path, vllm: FakeVLLM,
                                                             claude: FakeAnthropic) -> None:
    from gpuctl.state import BreakerRecord

    now = [1_000_000.0]
    with open_state(gpuctl_home) as st:
        st.put_breaker(BreakerRecord("modal", "open", 3, now[0] - 10, now[0] + 50, "stream cut"))
    m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now)

    status = status_of(m)
    assert status["provider"] == "anthropic"  # /health answering proves nothing about chat
    with open_state(gpuctl_home) as st:
        assert st.get_breaker("modal").state == "open"


def test_a_503_that_never_ends_is_a_failure_not_a_cold_start(gpuctl_home: Path, vllm: FakeVLLM,
                                                            claude: FakeAnthropic) -> None:
    vllm.fail(503)
    now = [1_000_000.0]

    def one() -> str | None:
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now)
        return ask(m).fallback_reason

    assert "waking up" in (one() or "")
    now[0] += 20 * 60  # far past any cold start
    assert "still not answering" in (one() or "")
    with open_state(gpuctl_home) as st:
        assert st.get_breaker("modal").failures == 1


def test_status_names_the_fallback_while_modal_wakes(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    vllm.slow(3.0, paths=["/health"])  # beyond the health budget (0.2 s + 1 s of slack)
    m = manager(gpuctl_home, modal_url=vllm.url, claude=claude)
    m._settings = _with(m.settings, **{"routing.health_timeout_s": 0.2})

    status = status_of(m)
    assert status["provider"] == "anthropic" and "modal: waking up" in status["reason"]


def test_a_stopped_answer_is_priced_in_the_ledger(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", answer="one two three four five six") as vllm:
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude)
        m._settings = _with(m.settings, **{"routing.fallback_on_cold": False})

        async def go() -> None:
            stream = await m.chat_completion(MESSAGES, stream=True)
            chunks = stream.__aiter__()
            await chunks.__anext__()
            await chunks.aclose()  # the user pressed Ctrl-C after the first words
            await m.aclose()

        asyncio.run(go())
    rows = [r for r in ledger(gpuctl_home) if r.error == "stopped by user"]
    assert rows and rows[0].cost is not None  # the GPU time it used is still money spent
