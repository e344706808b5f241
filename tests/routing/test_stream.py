"""Streaming through the real providers: from the primary or the fallback, a stream cut after
text is reported and never re-sent, and a stopped answer is still priced."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from gpuctl.errors import StreamBrokenError
from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support import closed_port_url
from tests.support.routing import MESSAGES, ledger, manager

NO_COLD_GATE = {"routing.fallback_on_cold": False}


def test_stream_from_primary_and_fallback(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> None:
    async def go(url: str) -> tuple[str, str, str | None, int]:
        m = manager(gpuctl_home, modal_url=url, claude=claude, flags=NO_COLD_GATE)
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
            m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, flags=NO_COLD_GATE)
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


def test_a_stopped_answer_is_priced_in_the_ledger(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", answer="one two three four five six") as vllm:
        m = manager(gpuctl_home, modal_url=vllm.url, claude=claude, flags=NO_COLD_GATE)

        async def go() -> None:
            stream = await m.chat_completion(MESSAGES, stream=True)
            chunks = stream.__aiter__()
            await chunks.__anext__()
            await chunks.aclose()  # the user pressed Ctrl-C after the first words
            await m.aclose()

        asyncio.run(go())
    rows = [r for r in ledger(gpuctl_home) if r.error == "stopped by user"]
    assert rows and rows[0].cost is not None  # the GPU time it used is still money spent
