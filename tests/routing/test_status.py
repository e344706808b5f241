"""The status report through the real providers: who answers now and why, with no key shown."""

from __future__ import annotations

import json
from pathlib import Path

from tests.fakes.anthropic_server import FakeAnthropic
from tests.support import closed_port_url
from tests.support.routing import KEY, manager, status_of


def test_status_done_when(gpuctl_home: Path, claude: FakeAnthropic) -> None:
    m = manager(gpuctl_home, modal_url=closed_port_url(), claude=claude)

    status = status_of(m)
    assert status["provider"] == "anthropic" and status["status"] == "ready"
    rows = {p["provider"]: p for p in status["providers"]}
    assert rows["modal"]["status"] == "unhealthy" and rows["anthropic"]["status"] == "ready"
    assert rows["vastai"]["configured"] is False
    assert KEY not in json.dumps(status)
