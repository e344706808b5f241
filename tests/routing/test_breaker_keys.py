"""A fix is not blocked by the breaker of the old setting (issue 11, item 1).

The breaker, the "waking" memory, the last health check and the "last answered" time belong
to a provider *and what it talks to* (endpoint, a hash of the key, the model): change one and
the next request starts fresh. A refused key never opens a breaker: it is a setting to fix
(exit 3, "the key was refused") and the chain goes on to the next provider. An open breaker
says how to retry now, and `status --deep` does.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gpuctl.config import load_settings
from gpuctl.errors import AllProvidersFailedError
from gpuctl.routing.registry import BUILDERS, breaker_key
from gpuctl.state import BreakerRecord, open_state
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import closed_port_url
from tests.support.routing import KEY, ask, breaker_of, manager, status_of
from tests.support.routing import breaker_key as key_of

NOW = 1_000_000.0
OPEN = ("open", 3, NOW - 10, NOW + 50, "cannot connect (connection refused)")


def _open(home: Path, key: str) -> None:
    with open_state(home) as st:
        st.put_breaker(BreakerRecord(key, *OPEN))


def test_the_key_names_provider_endpoint_key_hash_and_model_but_never_the_key() -> None:
    key = breaker_key("modal", "https://ME--app.modal.run/v1/", "sekrit-vllm-key", "Qwen/Qwen2.5-7B-Instruct")
    name, url, hashed, model = key.split("|")
    assert (name, url, model) == ("modal", "https://me--app.modal.run", "Qwen/Qwen2.5-7B-Instruct")
    assert hashed.startswith("k:") and len(hashed) == 14 and "sekrit" not in key
    # the same server however it is spelled; another key, URL or model is another breaker
    assert breaker_key("modal", "https://me--app.modal.run", "sekrit-vllm-key", "Qwen/Qwen2.5-7B-Instruct") == key
    others = {breaker_key("modal", "https://other.modal.run", "sekrit-vllm-key", "Qwen/Qwen2.5-7B-Instruct"),
              breaker_key("modal", "https://me--app.modal.run", "new-key", "Qwen/Qwen2.5-7B-Instruct"),
              breaker_key("modal", "https://me--app.modal.run", "sekrit-vllm-key", "Qwen/Qwen2.5-14B-Instruct"),
              breaker_key("modal", "https://me--app.modal.run", None, "Qwen/Qwen2.5-7B-Instruct")}
    assert key not in others and len(others) == 4
    # credentials inside a URL count as the key, and are not shown
    with_password = breaker_key("endpoint", "http://bob:hunter2@127.0.0.1:8000", None, None)
    assert "hunter2" not in with_password and "bob" not in with_password
    assert with_password != breaker_key("endpoint", "http://bob:other@127.0.0.1:8000", None, None)


def test_every_configured_slot_has_its_own_key(gpuctl_home: Path) -> None:
    env = {"MODAL_WEB_URL": "https://a.modal.run", "ANTHROPIC_API_KEY": KEY, "GPUCTL_ENDPOINT_URL": "http://127.0.0.1:9"}
    settings = load_settings(env=env, home=gpuctl_home)
    with open_state(gpuctl_home) as st:
        keys = {name: build(settings, st).breaker_key for name, build in BUILDERS.items()}
    assert keys["modal"].startswith("modal|https://a.modal.run|k:-|")
    assert keys["anthropic"].startswith("anthropic|https://api.anthropic.com|k:") and KEY not in keys["anthropic"]
    assert keys["anthropic"].endswith("|claude-haiku-4-5")
    assert keys["endpoint"] == "endpoint|http://127.0.0.1:9|k:-|-"
    assert keys["vastai"] == "vastai"  # not configured: no breaker of its own


def test_a_new_modal_url_is_not_blocked_by_the_old_urls_breaker(gpuctl_home: Path, vllm: FakeVLLM,
                                                               claude: FakeAnthropic) -> None:
    old = closed_port_url()
    _open(gpuctl_home, key_of(gpuctl_home, "modal", MODAL_WEB_URL=old))
    now = [NOW]
    assert ask(manager(gpuctl_home, modal_url=old, claude=claude, clock=now)).provider == "anthropic"

    fixed = manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now,
                    flags={"routing.fallback_on_cold": False})
    assert ask(fixed).provider == "modal"  # the next request starts fresh
    # and status shows the current setting's breaker, not the old URL's open one
    status = status_of(manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now))
    row = next(p for p in status["providers"] if p["provider"] == "modal")
    assert row["breaker"] == "closed" and status["provider"] == "modal"
    # the old URL's breaker is still open (if the user switches back, it is still dead)
    assert breaker_of(manager(gpuctl_home, modal_url=old, claude=claude, clock=now), "modal").state == "open"


def test_a_new_anthropic_key_or_model_starts_fresh(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    env = {"GPUCTL_PRIORITY": "anthropic", "ANTHROPIC_BASE_URL": claude.url}
    _open(gpuctl_home, key_of(gpuctl_home, "anthropic", ANTHROPIC_API_KEY="sk-ant-old-key-0000", **env))
    _open(gpuctl_home, key_of(gpuctl_home, "anthropic", ANTHROPIC_API_KEY=KEY, ANTHROPIC_MODEL="claude-sonnet-4-6",
                              **env))
    now = [NOW]
    blocked = manager(gpuctl_home, modal_url=None, clock=now, ANTHROPIC_API_KEY=KEY, ANTHROPIC_MODEL="claude-sonnet-4-6",
                      **env)
    with pytest.raises(AllProvidersFailedError, match="breaker open"):
        ask(blocked)
    # the key (or the model) that was fixed answers at once
    assert ask(manager(gpuctl_home, modal_url=None, clock=now, ANTHROPIC_API_KEY=KEY, **env)).text == "Hi from Claude"


def test_a_new_vast_instance_starts_fresh(gpuctl_home: Path) -> None:
    settings = load_settings(env={"VASTAI_API_KEY": "k" * 64}, home=gpuctl_home)
    with open_state(gpuctl_home) as st:
        first = st.add_instance_intent(provider="vastai", label="gpuctl:a", profile=None, gpu="RTX 3090", dph="0.2")
        st.update_instance(first, remote_id="1", status="ready", endpoint="http://10.0.0.1:40001")
        before = BUILDERS["vastai"](settings, st).breaker_key
        st.mark_instance_destroyed(first)
        second = st.add_instance_intent(provider="vastai", label="gpuctl:b", profile=None, gpu="RTX 3090", dph="0.2")
        st.update_instance(second, remote_id="2", status="ready", endpoint="http://10.0.0.2:40002")
        after = BUILDERS["vastai"](settings, st).breaker_key
    assert before.startswith("vastai|http://10.0.0.1:40001|") and after.startswith("vastai|http://10.0.0.2:40002|")


def test_a_new_modal_url_is_cold_even_if_the_old_one_answered_a_minute_ago(gpuctl_home: Path, vllm: FakeVLLM,
                                                                           claude: FakeAnthropic) -> None:
    now = [NOW]
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", answer="old deployment") as old:
        warm = manager(gpuctl_home, modal_url=old.url, claude=claude, clock=now, flags={"routing.fallback_on_cold": False})
        assert ask(warm).text == "old deployment"
    now[0] += 60  # well inside the 5-minute scaledown window of the *old* URL
    vllm.slow(2.0)  # the new deployment has never answered: it is scaled to zero
    fresh = manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now,
                    flags={"routing.cold_probe_timeout_s": 0.2})
    response = ask(fresh)
    assert response.provider == "anthropic" and "waking up" in (response.fallback_reason or "")
    assert vllm.hits("/v1/chat/completions") == 0  # probed, not sent a request to wait on


def test_the_old_urls_waking_memory_does_not_apply_to_the_new_one(gpuctl_home: Path, vllm: FakeVLLM,
                                                                  claude: FakeAnthropic) -> None:
    now = [NOW]
    flags = {"routing.cold_probe_timeout_s": 0.2}
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct") as old:
        old.slow(2.0, paths=["/health"])  # the old deployment is waking up
        response = ask(manager(gpuctl_home, modal_url=old.url, claude=claude, clock=now, flags=flags))
        assert response.provider == "anthropic" and "waking up" in (response.fallback_reason or "")
    now[0] += 5
    response = ask(manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now, flags=flags))
    assert response.provider == "modal"  # probed and warm, not "still waking up" from the old URL's memory
    assert vllm.hits("/health") == 1


def test_a_refused_key_never_opens_the_breaker_and_the_chain_goes_on(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", api_key="the-right-key") as vllm:
        def routed():  # type: ignore[no-untyped-def]
            return manager(gpuctl_home, modal_url=vllm.url, claude=claude, GPUCTL_MODAL_API_KEY="a-wrong-key",
                           flags={"routing.fallback_on_cold": False, "routing.failure_threshold": 1})

        for _ in range(3):
            response = ask(routed())
            assert response.provider == "anthropic" and "the API key was refused" in (response.fallback_reason or "")
        assert vllm.hits("/v1/chat/completions") == 3  # never skipped: no breaker opened
        assert breaker_of(routed(), "modal") == BreakerRecord(key_of(gpuctl_home, "modal", MODAL_WEB_URL=vllm.url,
                                                                      GPUCTL_MODAL_API_KEY="a-wrong-key"))
        # nobody else to answer: a configuration error, exit 3, in those words
        alone = manager(gpuctl_home, modal_url=vllm.url, GPUCTL_PRIORITY="modal", GPUCTL_MODAL_API_KEY="a-wrong-key",
                        flags={"routing.fallback_on_cold": False})
        with pytest.raises(AllProvidersFailedError) as info:
            ask(alone)
    assert info.value.exit_code == 3 and info.value.message.startswith("the key was refused: modal: ")
    assert "a-wrong-key" not in info.value.message and "modal.api_key" in (info.value.hint or "")


def test_a_status_probe_that_meets_a_refused_key_opens_no_breaker(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", api_key="the-right-key") as vllm:
        for _ in range(4):  # more than routing.failure_threshold (3)
            status = status_of(manager(gpuctl_home, modal_url=vllm.url, claude=claude, GPUCTL_MODAL_API_KEY="wrong"))
            row = next(p for p in status["providers"] if p["provider"] == "modal")
            assert row["status"] == "unhealthy" and row["error_kind"] == "auth"
            assert row["breaker"] == "closed"


def test_an_open_breaker_says_how_to_retry_now_and_status_deep_does(gpuctl_home: Path, vllm: FakeVLLM,
                                                                    claude: FakeAnthropic) -> None:
    now = [NOW]
    _open(gpuctl_home, key_of(gpuctl_home, "modal", MODAL_WEB_URL=vllm.url))
    alone = manager(gpuctl_home, modal_url=vllm.url, clock=now, GPUCTL_PRIORITY="modal")
    with pytest.raises(AllProvidersFailedError) as info:
        ask(alone)
    assert "breaker open until " in info.value.message and "`gpuctl status --deep`" in (info.value.hint or "")
    status = status_of(manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now))
    row = next(p for p in status["providers"] if p["provider"] == "modal")
    assert row["breaker"].startswith("open: breaker open until ") and "`gpuctl status --deep`" in row["breaker"]

    async def deep() -> dict[str, object]:
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now)
        try:
            return await m.get_vllm_status(deep=True)
        finally:
            await m.aclose()

    deep_status = asyncio.run(deep())
    assert deep_status["provider"] == "modal"  # a generated token closed it: retried now
    assert breaker_of(manager(gpuctl_home, modal_url=vllm.url, clock=now), "modal").state == "closed"


def test_status_says_when_nobody_answers_because_keys_were_refused(gpuctl_home: Path) -> None:
    from gpuctl.routing.manager import BackendManager

    async def report(**env: str):  # type: ignore[no-untyped-def]
        async with BackendManager(load_settings(env={"GPUCTL_PRIORITY": "modal", **env}, home=gpuctl_home)) as m:
            return await m.status()

    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", api_key="the-right-key") as vllm:
        refused = asyncio.run(report(MODAL_WEB_URL=vllm.url, GPUCTL_MODAL_API_KEY="wrong"))
        fixed = asyncio.run(report(MODAL_WEB_URL=vllm.url, GPUCTL_MODAL_API_KEY="the-right-key"))
    down = asyncio.run(report(MODAL_WEB_URL=closed_port_url()))
    assert refused.current is None and refused.keys_refused  # for `status` to exit 3
    assert fixed.current == "modal" and not fixed.keys_refused
    assert down.current is None and not down.keys_refused  # an outage, not a setting


def test_a_cold_probe_that_meets_a_refused_key_opens_no_breaker(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    # Idle past its window, Modal gets a short health probe first; /v1/models refuses the key.
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", api_key="the-right-key") as vllm:
        for _ in range(4):
            response = ask(manager(gpuctl_home, modal_url=vllm.url, claude=claude, GPUCTL_MODAL_API_KEY="wrong",
                                   flags={"routing.failure_threshold": 1}))
            assert response.provider == "anthropic" and "the API key was refused" in (response.fallback_reason or "")
        assert vllm.hits("/v1/chat/completions") == 0 and vllm.hits("/v1/models") == 4  # probed, never skipped
        record = breaker_of(manager(gpuctl_home, modal_url=vllm.url, GPUCTL_MODAL_API_KEY="wrong"), "modal")
    assert record.failures == 0 and record.state == "closed"
