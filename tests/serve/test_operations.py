"""What an operator watches: /health (no provider call), /ready (the rules of `gpuctl status`:
an idle Modal is never woken), /metrics, the health monitor's interval, the access log, and a
reload that leaves requests in flight alone."""

from __future__ import annotations

import asyncio
import time
from pathlib import Path

import pytest

from gpuctl.config import load_settings
from gpuctl.errors import NoProviderError
from gpuctl.routing.registry import build_modal
from gpuctl.serve.monitor import Readiness
from gpuctl.state import open_state
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import closed_port_url
from tests.support.serve import CLIENT_KEY, MODEL, Running, chain_env, running_gateway, wait_for

MESSAGES = [{"role": "user", "content": "Hello there"}]


def test_health_answers_without_asking_any_provider(gateway: Running, vllm: FakeVLLM) -> None:
    wait_for(lambda: gateway.gateway.readiness.at is not None, what="the first health check")
    before = vllm.total_hits
    with gateway.http() as http:
        responses = [http.get("/health") for _ in range(5)]
    assert all(r.status_code == 200 and r.json() == {"status": "ok"} for r in responses)
    assert vllm.total_hits == before


def test_ready_never_wakes_an_idle_modal(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    env = chain_env(vllm, claude)
    # The health memory belongs to the provider and what it talks to (its breaker key).
    modal = build_modal(load_settings(env=env, home=gpuctl_home), None).breaker_key
    with open_state(gpuctl_home) as st:  # probed ready an hour ago, no answer since: scaled to zero now
        st.set_metric(modal, "last_health", {"status": "ready", "latency_s": 0.1, "at": time.time() - 3600,
                                             "models": [MODEL]})
    with running_gateway(gpuctl_home, env) as gw, gw.http() as http:
        ready = [http.get("/ready") for _ in range(3)]
    assert all(r.status_code == 200 for r in ready)
    data = ready[-1].json()
    assert data["provider"] == "anthropic"  # answers now, while Modal would have to wake
    assert {p["provider"]: p["status"] for p in data["providers"]}["modal"] == "cold"
    assert vllm.total_hits == 0  # not one probe: it would have started (and billed) a GPU


def test_ready_is_503_when_nothing_can_answer(gpuctl_home: Path) -> None:
    with running_gateway(gpuctl_home, chain_env(None, None, MODAL_WEB_URL=closed_port_url())) as gw, \
            gw.http() as http:
        response = http.get("/ready")
    assert response.status_code == 503 and response.json()["provider"] is None


def test_metrics_cover_requests_fallbacks_breakers_latency_tokens_cost(
        gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    with running_gateway(gpuctl_home, chain_env(vllm, claude)) as gw, gw.client() as client:
        client.chat.completions.create(model=MODEL, messages=MESSAGES)
        list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
        vllm.stop()
        client.chat.completions.create(model=MODEL, messages=MESSAGES)  # falls back to Anthropic
        with gw.http() as http:
            response = http.get("/metrics")
    text = response.text
    assert response.headers["content-type"].startswith("text/plain")
    assert 'gpuctl_requests_total{outcome="ok",provider="modal"} 2.0' in text
    assert 'gpuctl_requests_total{outcome="ok",provider="anthropic"} 1.0' in text
    assert 'gpuctl_fallbacks_total{provider="modal",reason="connect"} 1.0' in text
    assert 'gpuctl_breaker_state{provider="modal"} 0.0' in text  # one failure: not open yet
    assert 'gpuctl_time_to_first_token_seconds_count{provider="modal"} 1.0' in text
    assert 'gpuctl_request_duration_seconds_count{provider="anthropic"} 1.0' in text
    assert 'gpuctl_tokens_total{provider="modal",type="completion"} 12.0' in text
    assert 'gpuctl_estimated_cost_dollars_total{provider="anthropic"}' in text
    assert "gpuctl_vastai_live_instances 0.0" in text and "gpuctl_vastai_dollars_per_hour 0.0" in text
    assert "gpuctl_inflight_requests 0.0" in text and "_created" not in text


def test_the_access_log_line_says_what_happened_and_never_the_key(gateway: Running) -> None:
    with gateway.client() as client:
        list(client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True))
    (line,) = [line for line in gateway.access_lines() if line["path"] == "/v1/chat/completions"]
    assert line["status"] == 200 and line["provider"] == "modal" and line["key"] == "alice" and line["stream"]
    assert line["ttft_ms"] > 0 and line["latency_ms"] > 0 and line["completion_tokens"] == 6
    assert {"prompt_tokens", "cost", "fallback_reason", "method", "ts"} <= set(line)
    assert CLIENT_KEY not in gateway.log.getvalue() and "Hello there" not in gateway.log.getvalue()


def test_a_reload_mid_stream_leaves_the_stream_alone(gpuctl_home: Path, vllm: FakeVLLM,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    vllm.answer, vllm.chunk_delay = " ".join(f"w{i}" for i in range(20)), 0.01
    env = chain_env(vllm)
    for name, value in env.items():  # a reload reads the process's environment again
        monkeypatch.setenv(name, value)
    with running_gateway(gpuctl_home, env) as gw, gw.client() as client:
        stream = client.chat.completions.create(model=MODEL, messages=MESSAGES, stream=True)
        next(stream)
        old = gw.gateway.manager
        loop = gw.gateway.loop
        assert loop is not None
        loop.call_soon_threadsafe(gw.gateway.schedule_reload)
        wait_for(lambda: gw.gateway.manager is not old, what="the reload")
        text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        wait_for(lambda: not gw.gateway.retired, what="the old manager to close after its last request")
        again = client.chat.completions.create(model=MODEL, messages=MESSAGES)
    assert text.endswith("w19") and again.choices[0].message.content.endswith("w19")  # type: ignore[union-attr]


def test_the_health_monitor_checks_every_interval_and_survives_failures() -> None:
    calls: list[float] = []
    first: list[object] = []

    async def build():  # type: ignore[no-untyped-def]
        calls.append(time.monotonic())
        if len(calls) == 2:
            raise NoProviderError("nothing configured")
        return "report"

    async def main() -> None:
        monitor = Readiness(build, interval_s=0.02, on_first=lambda report, error: first.append(report))
        monitor.start()
        while len(calls) < 4:
            await asyncio.sleep(0.01)
        await monitor.stop()

    asyncio.run(main())
    assert first == ["report"] and len(calls) >= 4  # one failing check did not stop it


def test_ready_and_metrics_read_the_breaker_of_the_current_setting(gpuctl_home: Path, vllm: FakeVLLM,
                                                                   claude: FakeAnthropic) -> None:
    from gpuctl.state import BreakerRecord

    gpuctl_home.mkdir(parents=True, exist_ok=True)
    env = chain_env(vllm, claude)
    modal = build_modal(load_settings(env=env, home=gpuctl_home), None).breaker_key
    now = time.time()
    with open_state(gpuctl_home) as st:  # opened by the router under modal's breaker key
        st.put_breaker(BreakerRecord(modal, state="open", failures=3, opened_at=now, open_until=now + 600,
                                     last_error="HTTP 503", updated_at=now))
    with running_gateway(gpuctl_home, env) as gw, gw.http() as http:
        wait_for(lambda: gw.gateway.readiness.at is not None, what="the first health check")
        ready = http.get("/ready").json()
        metrics = http.get("/metrics").text
    assert "modal" not in ready["can_answer"] and "anthropic" in ready["can_answer"]
    assert 'gpuctl_breaker_state{provider="modal"} 2.0' in metrics
