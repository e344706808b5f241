"""Fixtures for the router tests: a loopback vLLM and Anthropic, and a fresh `gpuctl` import."""

from __future__ import annotations

import importlib
import sys
from collections.abc import Iterator
from types import ModuleType

import pytest

from tests.fakes.anthropic_server import FakeAnthropic
from tests.fakes.vllm_server import FakeVLLM
from tests.support.routing import KEY


@pytest.fixture
def vllm() -> Iterator[FakeVLLM]:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", answer="Hi from vLLM") as fake:
        yield fake


@pytest.fixture
def claude() -> Iterator[FakeAnthropic]:
    with FakeAnthropic(api_key=KEY, reply_text="Hi from Claude") as fake:
        yield fake


@pytest.fixture
def fresh_gpuctl() -> Iterator[ModuleType]:
    """`import gpuctl` anew so its lazily created `backend_manager` reads this test's environment.

    The original module object is put back after: a third one would lack the submodule
    attributes (`gpuctl.bundle`) that later tests reach through it."""
    original = sys.modules.pop("gpuctl")
    try:
        yield importlib.import_module("gpuctl")
    finally:
        sys.modules["gpuctl"] = original
