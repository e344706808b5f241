"""The `deploy modal` / `destroy modal` verbs (gpuctl/ops/deploy.py), with a recording stand-in
for the modal SDK seam and a real temporary GPUCTL_HOME."""

from __future__ import annotations

from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gpuctl.errors import ProviderError
from gpuctl.modal.deploy import ModalDeploySpec
from gpuctl.ops.deploy import (
    apps_to_stop,
    deploy_modal,
    destroy_modal,
    plan_modal_deploy,
    wait_until_ready,
    warm_deployments,
)
from gpuctl.providers.base import Health
from gpuctl.state import open_state, state_path
from tests.fakes.vllm_server import FakeVLLM
from tests.support import settings_for

URL = "https://org--team-llm-serve.modal.run"


@dataclass
class RecordingSDK:
    """Stands in for ModalSDK: records every call in order; `deploy` answers `url` or raises."""

    url: str = URL
    deploy_error: Exception | None = None
    running: set[str] = field(default_factory=set)
    calls: list[tuple[Any, ...]] = field(default_factory=list)

    def check_credentials(self) -> None:
        self.calls.append(("check_credentials",))

    def ensure_secret(self, name: str, api_key: str) -> None:
        self.calls.append(("ensure_secret", name, api_key))

    def deploy(self, spec: ModalDeploySpec, app_file: Path) -> str:
        self.calls.append(("deploy", spec, app_file.name))
        if self.deploy_error is not None:
            raise self.deploy_error
        self.running.add(spec.app_name)
        return self.url

    def stop(self, app_name: str) -> bool:
        self.calls.append(("stop", app_name))
        was_running = app_name in self.running
        self.running.discard(app_name)
        return was_running


def _sdk(**kwargs: Any) -> Any:  # typed Any: it stands where a ModalSDK goes
    return RecordingSDK(**kwargs)


# -- the plan --------------------------------------------------------------------------------


def test_the_plan_prices_every_gpu_of_a_container(gpuctl_home: Path) -> None:
    plan = plan_modal_deploy(settings_for(gpuctl_home, MODAL_GPU_TYPE="h100:2"))
    assert plan.spec.gpu == "H100:2"
    assert plan.dollars_per_hour == Decimal("7.90")  # $3.95/h per H100 × 2
    assert "per GPU" in plan.price_note and plan.image.startswith("vllm/vllm-openai:v")
    assert plan.warm_cost_per_month == Decimal(0)  # scales to zero: nothing bills while idle


def test_the_warm_cost_is_a_month_of_every_warm_container(gpuctl_home: Path) -> None:
    (gpuctl_home / "profiles").mkdir(parents=True)
    (gpuctl_home / "profiles" / "warm.toml").write_text("[modal]\nmin_containers = 2\nmax_containers = 2\n")
    plan = plan_modal_deploy(settings_for(gpuctl_home, GPUCTL_PROFILE="warm"))
    assert plan.warm_dollars_per_hour == Decimal("1.60")  # 2 × L4 $0.80/h
    assert plan.warm_cost_per_month == Decimal("1152.00")  # × 24 h × 30 days
    assert plan.as_dict()["warm_cost_per_month"] == "1152.00" and plan.profile == "warm"


def test_a_plan_without_a_price_says_why(gpuctl_home: Path) -> None:
    (gpuctl_home / "profiles").mkdir(parents=True)
    (gpuctl_home / "profiles" / "odd.toml").write_text('[prices.modal.L4]\ndollars_per_second = "lots"\n')
    plan = plan_modal_deploy(settings_for(gpuctl_home, GPUCTL_PROFILE="odd"))
    assert plan.dollars_per_hour is None and plan.warm_cost_per_month is None
    assert plan.price_note.startswith("no price: ")
    assert plan.as_dict()["dollars_per_hour"] is None and plan.warm_dollars_per_hour == Decimal(0)


# -- deploy ----------------------------------------------------------------------------------


def test_deploy_sends_credentials_secret_then_app_and_records_it(gpuctl_home: Path) -> None:
    settings = settings_for(gpuctl_home)
    plan = plan_modal_deploy(settings)
    sdk = _sdk()
    result = deploy_modal(settings, plan, wait=False, sdk=sdk)

    saved = settings_for(gpuctl_home)
    key = saved["modal.api_key"]
    assert key and saved["modal.web_url"] == URL and saved.source("modal.web_url") == "profile default"
    assert sdk.calls == [("check_credentials",), ("ensure_secret", "gpuctl-vllm-api-key", key),
                         ("deploy", plan.spec, "vllm_app.py")]
    assert (result.url, result.endpoint, result.profile, result.ready) == (URL, URL + "/v1", "default", False)
    assert result.detail == "not waited for (--no-wait)"
    with open_state(gpuctl_home) as st:
        rows = st.live_instances("modal")
    assert [(r.remote_id, r.status, r.endpoint, r.dph) for r in rows] == [
        ("multi-agent-vllm-inference", "deployed", URL, "0.00")]


def test_a_second_deploy_keeps_the_key_and_replaces_the_row(gpuctl_home: Path) -> None:
    sdk = _sdk()
    deploy_modal(settings_for(gpuctl_home), plan_modal_deploy(settings_for(gpuctl_home)), wait=False, sdk=sdk)
    settings = settings_for(gpuctl_home)
    deploy_modal(settings, plan_modal_deploy(settings), wait=False, sdk=sdk)
    secrets = [c for c in sdk.calls if c[0] == "ensure_secret"]
    assert len(secrets) == 2 and secrets[0] == secrets[1]  # the stored key, sent again
    with open_state(gpuctl_home) as st:
        assert len(st.live_instances("modal")) == 1


@pytest.mark.parametrize(("kind", "live"), [("timeout", [("multi-agent-vllm-inference", "unknown")]),
                                            ("connect", [("multi-agent-vllm-inference", "unknown")]),
                                            ("bad_request", [])])
def test_a_failed_deploy_stays_in_the_ledger_only_when_it_may_have_happened(
    gpuctl_home: Path, kind: str, live: list[tuple[str, str]]
) -> None:
    settings = settings_for(gpuctl_home)
    sdk = _sdk(deploy_error=ProviderError("no", provider="modal", kind=kind))
    with pytest.raises(ProviderError):
        deploy_modal(settings, plan_modal_deploy(settings), wait=False, sdk=sdk)
    with open_state(gpuctl_home) as st:
        assert [(r.remote_id, r.status) for r in st.live_instances("modal")] == live
    assert settings_for(gpuctl_home).get("modal.web_url") is None


def test_deploy_waits_for_a_generated_token(gpuctl_home: Path) -> None:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct") as vllm:
        settings = settings_for(gpuctl_home)
        progress: list[str] = []
        result = deploy_modal(settings, plan_modal_deploy(settings), sdk=_sdk(url=vllm.url), progress=progress.append,
                              sleep=lambda s: None)
        assert vllm.hits("/v1/chat/completions") >= 1
    assert result.ready is True and result.detail == "ready: the model answered a 1-token completion"
    assert progress[0] == "Storing the endpoint's API key in a Modal secret…"
    assert progress[1].startswith("Deploying multi-agent-vllm-inference (L4, vllm/vllm-openai:v")


# -- waiting ---------------------------------------------------------------------------------


def test_wait_polls_a_cold_endpoint_until_it_answers(mocker: Any) -> None:
    answers = [Health("modal", "cold", detail="waking"), Health("modal", "cold", detail="loading"),
               Health("modal", "ready")]
    probe = mocker.patch("gpuctl.providers.openai_compat.probe_vllm", side_effect=answers)
    now = [0.0]
    slept: list[float] = []
    progress: list[str] = []

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    ready = wait_until_ready(URL, "k", "org/m", progress=progress.append, sleep=sleep, clock=lambda: now[0],
                             timeout_s=60, poll_s=5)
    assert ready == (True, 10.0, "ready: the model answered a 1-token completion")
    assert slept == [5, 5]
    assert progress == ["cold start: starting a GPU container and loading weights… (waking)",
                        "cold start: starting a GPU container and loading weights… (loading)"]
    assert probe.call_args.args == (URL, "k", "org/m") and probe.call_args.kwargs == {"provider": "modal"}


def test_wait_gives_up_when_the_time_is_up(mocker: Any) -> None:
    mocker.patch("gpuctl.providers.openai_compat.probe_vllm", return_value=Health("modal", "unhealthy", detail="502"))
    now = [0.0]

    def sleep(s: float) -> None:
        now[0] += s

    assert wait_until_ready(URL, "k", "org/m", progress=lambda m: None, sleep=sleep, clock=lambda: now[0],
                            timeout_s=12, poll_s=5) == (False, 15.0, "not ready after 15s: 502")


def test_wait_stops_at_once_when_the_key_is_refused() -> None:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct", api_key="the-real-key") as vllm, \
            pytest.raises(ProviderError) as info:
        wait_until_ready(vllm.url, "a-stale-key", "Qwen/Qwen2.5-7B-Instruct", progress=lambda m: None,
                         sleep=lambda s: None, clock=lambda: 0.0, timeout_s=60)
    assert info.value.kind == "auth" and "a-stale-key" not in info.value.message


# -- what was deployed, destroy --------------------------------------------------------------


def test_reading_what_was_deployed_creates_no_database(gpuctl_home: Path) -> None:
    settings = settings_for(gpuctl_home)
    assert warm_deployments(settings) == []
    assert apps_to_stop(settings) == ["multi-agent-vllm-inference"]
    assert not state_path(gpuctl_home).exists()


def test_destroy_stops_every_deployed_app_and_forgets_them(gpuctl_home: Path) -> None:
    sdk = _sdk()
    for name in ("multi-agent-vllm-inference", "team-llm"):
        settings = settings_for(gpuctl_home, GPUCTL_MODAL_APP_NAME=name)
        deploy_modal(settings, plan_modal_deploy(settings), wait=False, sdk=sdk)
    settings = settings_for(gpuctl_home)
    assert apps_to_stop(settings) == ["multi-agent-vllm-inference", "team-llm"]
    sdk.running.discard("team-llm")  # stopped meanwhile, outside gpuctl

    data = destroy_modal(settings, sdk=sdk)

    assert sdk.calls[-3:] == [("check_credentials",), ("stop", "multi-agent-vllm-inference"),
                              ("stop", "team-llm")]
    assert data == {"app_name": "multi-agent-vllm-inference", "stopped": True,
                    "apps": {"multi-agent-vllm-inference": True, "team-llm": False}, "web_url_cleared": True,
                    "note": None}
    assert settings_for(gpuctl_home).get("modal.web_url") is None
    with open_state(gpuctl_home) as st:
        assert st.live_instances("modal") == []


def test_destroy_says_where_a_url_it_cannot_clear_comes_from(gpuctl_home: Path) -> None:
    data = destroy_modal(settings_for(gpuctl_home, MODAL_WEB_URL=URL), sdk=_sdk())
    assert data["web_url_cleared"] is False and data["stopped"] is False
    assert data["note"] == "modal.web_url still comes from env MODAL_WEB_URL; unset it there"
