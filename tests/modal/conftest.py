"""Fixtures for the Modal tests: the bundled app file imported as `modal deploy` imports it,
Modal's own exception classes, and the original package's global orchestrator reset."""

from __future__ import annotations

import importlib.util
import os
import sys
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest

from tests.support.modal_app import APP_FILE

_OUR_VARS_PREFIXES = ("GPUCTL_MODAL_", "GPUCTL_VLLM_")


@pytest.fixture
def load_app(monkeypatch: pytest.MonkeyPatch) -> Iterator[Callable[..., ModuleType]]:
    """Import the app file fresh with exactly the given GPUCTL_MODAL_* variables."""
    for var in list(os.environ):
        if var.startswith(_OUR_VARS_PREFIXES) or var in ("MODAL_IS_REMOTE", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET"):
            monkeypatch.delenv(var)
    loaded: list[str] = []

    def load(**env: str) -> ModuleType:
        for var, value in env.items():
            monkeypatch.setenv(var, value)
        name = f"gpuctl_test_vllm_app_{uuid.uuid4().hex}"
        spec = importlib.util.spec_from_file_location(name, APP_FILE)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[name] = module  # Modal looks the defining module up while registering `serve`
        loaded.append(name)
        spec.loader.exec_module(module)
        return module

    yield load
    for name in loaded:
        sys.modules.pop(name, None)


@pytest.fixture
def mexc() -> Any:
    """The real `modal.exception` module: the seam's error mapping is tested on Modal's classes."""
    from modal import exception

    return exception


@pytest.fixture
def no_orchestrator() -> Iterator[None]:
    """The original package's global Modal orchestrator starts unset and is unset after."""
    import gpuctl.modal.compat as compat

    compat._orchestrator = None
    yield
    compat._orchestrator = None


@pytest.fixture
def modal_config(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Callable[..., Path]:
    """Write Modal's config file (MODAL_CONFIG_PATH) with `text`, and select `profile` if given."""

    def write(text: str, *, profile: str | None = None) -> Path:
        config = tmp_path / "modal.toml"
        config.write_text(text)
        monkeypatch.setenv("MODAL_CONFIG_PATH", str(config))
        if profile is not None:
            monkeypatch.setenv("MODAL_PROFILE", profile)
        return config

    return write
