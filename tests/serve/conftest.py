"""Fixtures for the gateway tests: the loopback vLLM and Anthropic fakes behind a real
`gpuctl serve` (uvicorn on 127.0.0.1, port 0), with the official `openai` SDK as the client."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support.routing import KEY
from tests.support.serve import MODEL, Running, chain_env, running_gateway


@pytest.fixture(autouse=True)
def _no_anthropic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("ANTHROPIC_API_KEY", "ANTHROPIC_AUTH_TOKEN", "ANTHROPIC_BASE_URL", "ANTHROPIC_CUSTOM_HEADERS",
                 "ADMIN_TOKEN", "OPENAI_API_KEY", "OPENAI_BASE_URL", "PROMETHEUS_MULTIPROC_DIR"):
        monkeypatch.delenv(name, raising=False)
    for name in [n for n in os.environ if n.startswith("GPUCTL_SERVE_")]:  # a developer's own gateway settings
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def vllm() -> Iterator[FakeVLLM]:
    with FakeVLLM(model=MODEL, answer="Hello from the fake vLLM server") as fake:
        yield fake


@pytest.fixture
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY, reply_text="Hello from Claude") as fake:
        yield fake


@pytest.fixture
def gateway(gpuctl_home: Path, vllm: FakeVLLM, claude: FakeAnthropic) -> Iterator[Running]:
    with running_gateway(gpuctl_home, chain_env(vllm, claude)) as running:
        yield running
