"""The routing policy through public behaviour, with in-memory `FakeProvider`s: priority, the
half-open probe, the cold gate and its traits, failover rules, and the ledger's rows."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gpuctl.config import load_settings
from gpuctl.errors import AllProvidersFailedError, ProviderError, StreamBrokenError
from gpuctl.routing.manager import BackendManager
from gpuctl.routing.outcomes import Outcome, ReasonKind
from gpuctl.routing.registry import Billing, Slot
from gpuctl.state import BreakerRecord, open_state
from tests.support.fake_provider import FakeProvider, fake_slot, unconfigured_slot
from tests.support.routing import MESSAGES, ledger

NOW = 1_000_000.0


def routed(home: Path, *slots: Slot, now: list[float] | None = None, **flags: object) -> BackendManager:
    clock = now if now is not None else [NOW]
    return BackendManager(load_settings(env={}, home=home, flags=flags), slots=slots, clock=lambda: clock[0])


def run(coro):  # type: ignore[no-untyped-def]
    return asyncio.run(coro)


async def answer(m: BackendManager, **kw: object):  # type: ignore[no-untyped-def]
    try:
        return await m.chat_completion(MESSAGES, **kw)
    finally:
        await m.aclose()


def test_the_first_configured_provider_answers(gpuctl_home: Path) -> None:
    first, second = FakeProvider("first"), FakeProvider("second")
    m = routed(gpuctl_home, unconfigured_slot("none"), fake_slot(first), fake_slot(second))
    response = run(answer(m))
    assert (response.provider, response.text) == ("first", first.answer)
    assert response.fallback is None  # a provider that is simply not configured is not news
    assert second.calls["chat"] == 0


def test_failover_records_a_typed_attempt(gpuctl_home: Path) -> None:
    first, second = FakeProvider("first"), FakeProvider("second")
    first.fail("connect", "first: cannot connect (connection refused)")
    response = run(answer(routed(gpuctl_home, fake_slot(first), fake_slot(second))))
    assert response.provider == "second"
    (attempt,) = response.fallback.attempts
    assert attempt.provider == "first" and attempt.outcome is Outcome.FAILED
    assert attempt.reason.kind is ReasonKind.FAILED and attempt.reason.error_kind == "connect"
    assert attempt.reason.text == "cannot connect (connection refused)"  # the name is said once
    assert response.fallback_reason == "first: cannot connect (connection refused)"
    with open_state(gpuctl_home) as st:
        assert st.get_breaker("first").failures == 1


def test_a_bad_request_is_not_failed_over_and_not_counted(gpuctl_home: Path) -> None:
    first, second = FakeProvider("first"), FakeProvider("second")
    first.fail("bad_request", "first: the model rejected the request (400)", status=400)
    with pytest.raises(ProviderError) as info:
        run(answer(routed(gpuctl_home, fake_slot(first), fake_slot(second))))
    assert info.value.kind == "bad_request" and second.calls["chat"] == 0
    with open_state(gpuctl_home) as st:
        assert st.get_breaker("first").failures == 0


def test_only_one_request_probes_a_half_open_breaker(gpuctl_home: Path) -> None:
    with open_state(gpuctl_home) as st:
        st.put_breaker(BreakerRecord("gpu", "open", 3, NOW - 100, NOW - 1, "refused"))  # cooldown over
    gpu_a, api_a, gpu_b, api_b = FakeProvider("gpu"), FakeProvider("api"), FakeProvider("gpu"), FakeProvider("api")
    first = routed(gpuctl_home, fake_slot(gpu_a), fake_slot(api_a))
    second = routed(gpuctl_home, fake_slot(gpu_b), fake_slot(api_b))

    async def go() -> tuple[str, str | None, str | None, str, str]:
        gpu_a.hold()
        probe = asyncio.create_task(first.chat_completion(MESSAGES))
        await gpu_a.entered.wait()  # the first request claimed the probe and is in flight
        meanwhile = await second.chat_completion(MESSAGES)
        current = second.get_current_provider()
        gpu_a.release()
        probed = await probe  # the probe answered: closed for everyone
        after = await second.chat_completion(MESSAGES)
        await first.aclose()
        await second.aclose()
        return meanwhile.provider, meanwhile.fallback_reason, current, probed.provider, after.provider

    meanwhile, reason, current, probed, after = run(go())
    assert meanwhile == "api" and "another request is probing" in (reason or "")
    assert current == "api"
    assert (probed, after) == ("gpu", "gpu")
    assert gpu_b.calls["chat"] == 1  # only after the breaker closed


def test_a_dead_prober_does_not_hold_the_breaker_forever(gpuctl_home: Path) -> None:
    with open_state(gpuctl_home) as st:
        st.put_breaker(BreakerRecord("gpu", "half_open", 3, NOW - 500, NOW - 1, "refused"))  # lease over
    gpu = FakeProvider("gpu")
    assert run(answer(routed(gpuctl_home, fake_slot(gpu), fake_slot(FakeProvider("api"))))).provider == "gpu"


def test_an_open_breaker_is_a_typed_skip(gpuctl_home: Path) -> None:
    with open_state(gpuctl_home) as st:
        st.put_breaker(BreakerRecord("gpu", "open", 3, NOW - 10, NOW + 50, "refused"))
    gpu = FakeProvider("gpu")
    response = run(answer(routed(gpuctl_home, fake_slot(gpu), fake_slot(FakeProvider("api")))))
    (attempt,) = response.fallback.attempts
    assert attempt.outcome is Outcome.SKIPPED and attempt.reason.kind is ReasonKind.BREAKER_OPEN
    assert attempt.text.startswith("gpu: breaker open until ") and attempt.text.endswith("after 3 failures (refused)")
    assert gpu.calls == {"health": 0, "chat": 0, "stream": 0}


def test_the_cold_gate_follows_the_slot_not_the_name(gpuctl_home: Path) -> None:
    # Any provider whose slot scales to zero gets the short probe; the name "modal" is not special.
    gpu, api = FakeProvider("gpu", health="cold"), FakeProvider("api")
    m = routed(gpuctl_home, fake_slot(gpu, scaledown_s=300.0), fake_slot(api))
    response = run(answer(m))
    assert response.provider == "api" and gpu.calls["chat"] == 0
    (attempt,) = response.fallback.attempts
    assert attempt.outcome is Outcome.COLD and attempt.reason.kind is ReasonKind.WAKING
    assert gpu.health_timeouts == [3.0]  # routing.cold_probe_timeout_s
    # an always-on slot is never probed first: it gets the request
    always_on = FakeProvider("modal", health="cold")
    run(answer(routed(gpuctl_home, fake_slot(always_on), fake_slot(FakeProvider("api")))))
    assert always_on.calls == {"health": 0, "chat": 1, "stream": 0}


def test_a_warm_scale_to_zero_provider_is_not_probed(gpuctl_home: Path) -> None:
    gpu = FakeProvider("gpu", health="cold")
    m = routed(gpuctl_home, fake_slot(gpu, scaledown_s=300.0), fake_slot(FakeProvider("api")),
               **{"routing.fallback_on_cold": False})
    assert run(answer(m)).provider == "gpu"  # told not to fall back on cold: straight to it
    assert gpu.calls["health"] == 0
    now = [NOW + 60]  # answered a minute ago: warm
    m = routed(gpuctl_home, fake_slot(gpu, scaledown_s=300.0), fake_slot(FakeProvider("api")), now=now)
    assert run(answer(m)).provider == "gpu" and gpu.calls["health"] == 0
    assert m.likely_cold("gpu") is False and m.likely_cold("api") is False
    now[0] += 301
    assert m.likely_cold("gpu") is True


def test_the_slot_names_the_event_and_the_price(gpuctl_home: Path) -> None:
    gpu = FakeProvider("gpu")
    m = routed(gpuctl_home, fake_slot(gpu, billing=Billing.GPU_SECONDS, gpu="L4", event_prefix="gpu"))
    response = run(answer(m))
    row = ledger(gpuctl_home)[-1]
    assert row.provider == "gpu" and row.ok and row.cost is not None  # L4 seconds from the catalog
    assert m.estimate_cost("gpu", response.model, response.usage, 10.0) is not None
    assert m.estimate_cost("nobody", None, response.usage, 10.0) is None
    free = FakeProvider("free")
    run(answer(routed(gpuctl_home, fake_slot(free))))
    assert ledger(gpuctl_home)[-1].cost is None  # Billing.ELSEWHERE: not priced per request


def test_all_failing_names_every_attempt(gpuctl_home: Path) -> None:
    first, second = FakeProvider("first"), FakeProvider("second")
    first.fail("auth", "first: key refused (401)", status=401)
    second.fail("auth", "second: key refused (403)", status=403)
    with pytest.raises(AllProvidersFailedError) as info:
        run(answer(routed(gpuctl_home, fake_slot(first), fake_slot(second))))
    assert info.value.reasons == ["first: key refused (401)", "second: key refused (403)"]
    assert info.value.exit_code == 3  # every provider refused its key: a credentials problem


def test_a_stream_cut_after_text_counts_and_is_not_resent(gpuctl_home: Path) -> None:
    first, second = FakeProvider("first", answer="one two three four"), FakeProvider("second")
    first.cut_after = 2
    m = routed(gpuctl_home, fake_slot(first), fake_slot(second))

    async def go() -> list[str]:
        seen: list[str] = []
        stream = await m.chat_completion(MESSAGES, stream=True)
        try:
            async for chunk in stream:
                seen.append(chunk.text)
        finally:
            await m.aclose()
        return seen

    with pytest.raises(StreamBrokenError) as info:
        run(go())
    assert info.value.partial_text == "one two" and second.calls["stream"] == 0
    rows = ledger(gpuctl_home)
    assert [(r.provider, r.ok, r.error) for r in rows] == [("first", False, "stream cut")]
    with open_state(gpuctl_home) as st:
        assert st.get_breaker("first").failures == 1


def test_a_stream_reports_its_typed_fallback(gpuctl_home: Path) -> None:
    first, second = FakeProvider("first"), FakeProvider("second", answer="a b c")
    first.fail("timeout")
    m = routed(gpuctl_home, fake_slot(first), fake_slot(second))

    async def go():  # type: ignore[no-untyped-def]
        stream = await m.chat_completion(MESSAGES, stream=True)
        text = "".join([c.text async for c in stream])
        await m.aclose()
        return stream, text

    stream, text = run(go())
    assert (stream.provider, text, stream.complete) == ("second", "a b c", True)
    assert [a.reason.error_kind for a in stream.fallback.attempts] == ["timeout"]
    assert stream.fallback_reason == stream.fallback.text == "first: fake timeout failure"
    assert stream.response().fallback == stream.fallback
    assert ledger(gpuctl_home)[-1].fallback_reason == stream.fallback_reason
