"""Every state test runs against both backends: `backend` is the SQLite file or PostgreSQL."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.support.state import StateBackend


@pytest.fixture(params=["sqlite", "postgresql"])
def backend(request: pytest.FixtureRequest, tmp_path: Path) -> StateBackend:
    home = tmp_path / "home"
    home.mkdir()
    if request.param == "postgresql":
        return StateBackend("postgresql", request.getfixturevalue("pg_url"), home)
    return StateBackend("sqlite", f"sqlite://{home / 'state.db'}", home)


@pytest.fixture
def pg_backend(tmp_path: Path, pg_url: str) -> StateBackend:
    home = tmp_path / "home"
    home.mkdir()
    return StateBackend("postgresql", pg_url, home)
