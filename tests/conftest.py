"""Shared fixtures: every test gets its own GPUCTL_HOME and no real provider credentials."""

from __future__ import annotations

import logging
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

# Variables that could point a test at a real provider or a real profile.
_SCRUB = (
    "MODAL_WEB_URL", "MODAL_TOKEN_ID", "MODAL_TOKEN_SECRET", "MODAL_MODEL", "MODAL_GPU_TYPE",
    "MODAL_SCALEDOWN_WINDOW_MINUTES", "MODAL_PROFILE", "MODAL_CONFIG_PATH", "MODAL_ENVIRONMENT",
    "VASTAI_API_KEY", "VASTAI_BUDGET_LIMIT", "VASTAI_SESSION_BUDGET_LIMIT", "VAST_URL",
    "VASTAI_KEEP_ALIVE_MINUTES", "VASTAI_MODEL", "HF_TOKEN",
    "ANTHROPIC_API_KEY", "ANTHROPIC_BASE_URL", "ANTHROPIC_MODEL",
    "GPUCTL_PROFILE", "GPUCTL_PRIORITY", "GPUCTL_ENDPOINT_URL", "GPUCTL_ENDPOINT_API_KEY",
    "GPUCTL_ENDPOINT_MODEL", "GPUCTL_MODAL_API_KEY", "GPUCTL_VASTAI_VLLM_API_KEY", "GPUCTL_MODAL_APP_NAME", "XDG_CONFIG_HOME",
    "GPUCTL_STATE_URL", "GPUCTL_STATE_HOST", "GPUCTL_STATE_LOCK_TIMEOUT_S", "PGHOST", "PGPORT", "PGDATABASE", "PGUSER", "PGPASSWORD",
)


@pytest.fixture(autouse=True)
def gpuctl_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    home = tmp_path / "gpuctl-home"
    monkeypatch.setenv("GPUCTL_HOME", str(home))
    # Modal reads ~/.modal.toml at import: point HOME at an empty dir so no real token is seen.
    monkeypatch.setenv("HOME", str(tmp_path / "user-home"))
    (tmp_path / "user-home").mkdir()
    for var in _SCRUB:
        monkeypatch.delenv(var, raising=False)
    for var in list(os.environ):
        if var.startswith(("GPUCTL_MODAL_", "GPUCTL_VLLM_")) or var == "MODAL_IS_REMOTE":
            monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("NO_COLOR", "1")
    monkeypatch.setenv("COLUMNS", "200")
    yield home


@pytest.fixture(autouse=True)
def _restore_gpuctl_logging() -> Iterator[None]:
    """`cli/main.py` configures the `gpuctl` logger per run; undo it so caplog works after."""
    logger = logging.getLogger("gpuctl")
    saved = (list(logger.handlers), logger.level, logger.propagate)
    yield
    for handler in list(logger.handlers):
        if handler not in saved[0]:
            logger.removeHandler(handler)
            handler.close()
    logger.setLevel(saved[1])
    logger.propagate = saved[2]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def cli(runner: CliRunner):  # type: ignore[no-untyped-def]
    """Invoke the real app: `cli("profile", "list")` → Result; shows stderr when it fails."""
    from gpuctl.cli.main import app

    def invoke(*args: str, input: str | None = None, env: dict[str, str] | None = None):  # type: ignore[no-untyped-def]
        return runner.invoke(app, list(args), input=input, env=env, catch_exceptions=False)

    return invoke


@pytest.fixture(scope="session")
def pg_cluster() -> Iterator[object]:
    """One throwaway PostgreSQL server for the session (tests/support/postgres.py). Without
    server binaries the PostgreSQL tests skip (one line at the end says so); in CI they fail."""
    from tests.support import postgres

    bin_dir = postgres.server_bin_dir()
    if bin_dir is None:
        if postgres.in_ci():
            pytest.fail(postgres.CI_MISSING)
        _PG_SKIPPED.append(postgres.SKIP_REASON)
        pytest.skip(postgres.SKIP_REASON)
    cluster = postgres.PgCluster(bin_dir).init()
    try:
        yield cluster
    finally:
        cluster.destroy()


@pytest.fixture
def pg_url(pg_cluster) -> str:  # type: ignore[no-untyped-def]
    """The URL of an empty PostgreSQL database for this test."""
    pg_cluster.reset()
    return str(pg_cluster.url)


_PG_SKIPPED: list[str] = []


def pytest_terminal_summary(terminalreporter) -> None:  # type: ignore[no-untyped-def]
    if _PG_SKIPPED:
        terminalreporter.write_line(_PG_SKIPPED[0])


from tests.fakes.vllm_server import fake_vllm  # noqa: E402,F401  (registers the fixture)
