"""The breaker through the real providers: it opens, skips, probes once and closes, and every
process sees the same one (it lives in the state database)."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from gpuctl.routing.manager import BackendManager
from gpuctl.state import BreakerRecord, open_state
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import closed_port_url
from tests.support.routing import KEY, ask, breaker_key, breaker_of, manager, status_of


def test_breaker_opens_skips_probes_and_closes(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    now = [1_000_000.0]
    vllm.fail(500, paths=["/v1/chat/completions"])

    def routed() -> BackendManager:
        return manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now,
                       flags={"routing.failure_threshold": 2, "routing.cooldown_s": 60.0,
                              "routing.fallback_on_cold": False})

    def run() -> str:
        return str(ask(routed()).provider)

    assert run() == "anthropic" and run() == "anthropic"
    hits = vllm.hits("/v1/chat/completions")
    assert hits == 2
    # breaker open: the dead backend is not touched at all
    assert run() == "anthropic"
    assert vllm.hits("/v1/chat/completions") == hits
    assert breaker_of(routed(), "modal").state == "open"
    # after the cooldown one probe goes through; it succeeds and closes the breaker
    vllm.reset_faults()
    now[0] += 61
    assert run() == "modal"
    assert breaker_of(routed(), "modal").state == "closed"


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
    env = {**os.environ, "MODAL_WEB_URL": dead, "ANTHROPIC_API_KEY": KEY,
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
        rec = st.get_breaker(breaker_key(gpuctl_home, "modal", MODAL_WEB_URL=dead))
    assert rec.state == "open" and rec.failures == 3  # the fourth process did not touch modal


def test_a_plain_health_check_does_not_close_an_open_breaker(gpuctl_home: Path, vllm: FakeVLLM,
                                                             claude: FakeAnthropic) -> None:
    now = [1_000_000.0]
    key = breaker_key(gpuctl_home, "modal", MODAL_WEB_URL=vllm.url)
    with open_state(gpuctl_home) as st:
        st.put_breaker(BreakerRecord(key, "open", 3, now[0] - 10, now[0] + 50, "stream cut"))
    m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, clock=now)

    status = status_of(m)
    assert status["provider"] == "anthropic"  # /health answering proves nothing about chat
    with open_state(gpuctl_home) as st:
        assert st.get_breaker(key).state == "open"
