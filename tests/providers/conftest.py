"""Fixtures for the provider tests: no Anthropic setting from the developer's shell reaches the SDK."""

from __future__ import annotations

import pytest


@pytest.fixture(autouse=True)
def _no_anthropic_env(monkeypatch: pytest.MonkeyPatch) -> None:
    # The SDK reads these itself (ANTHROPIC_AUTH_TOKEN, custom headers) beyond what gpuctl passes.
    for name in (
        "ANTHROPIC_API_KEY",
        "ANTHROPIC_AUTH_TOKEN",
        "ANTHROPIC_BASE_URL",
        "ANTHROPIC_CUSTOM_HEADERS",
    ):
        monkeypatch.delenv(name, raising=False)
