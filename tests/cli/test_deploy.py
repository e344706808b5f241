"""`gpuctl deploy modal` / `destroy modal` through the real app, with the modal SDK behind its seam
(gpuctl/modal/sdk.py). The verbs themselves are tested in tests/ops/test_deploy.py."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuctl.config import load_settings
from gpuctl.errors import CredentialsError, ProviderError
from gpuctl.modal.sdk import ModalSDK
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit


def test_dry_run_prints_the_plan_with_price(cli, mocker) -> None:
    deploy = mocker.patch.object(ModalSDK, "deploy")
    check = mocker.patch.object(ModalSDK, "check_credentials")
    result = cli("deploy", "modal", "--dry-run", "--gpu", "H100")
    assert_exit(result, 0)
    assert "$3.95/h" in result.stdout and "H100" in result.stdout and "vllm/vllm-openai" in result.stdout
    deploy.assert_not_called()
    check.assert_not_called()
    doc = json.loads(cli("deploy", "modal", "--dry-run", "--gpu", "H100", "--json").stdout)
    assert doc["data"]["plan"]["dollars_per_hour"] == "3.95" and doc["data"]["dry_run"] is True


def test_dry_run_shows_warm_cost(cli) -> None:
    doc = json.loads(cli("--json", "deploy", "modal", "--dry-run", "--min-containers", "1", "--max-containers", "2").stdout)
    assert doc["data"]["plan"]["warm_cost_per_month"] == "576.00"  # L4 $0.80/h × 720 h (30 days)


@pytest.mark.parametrize(("args", "needle"), [
    (["--gpu", "L5"], "did you mean 'L4'"),
    (["--scaledown-window", "90"], "at most 60"),
    (["--scaledown-window", "0.01"], "at least"),
    (["--model", "not-a-model-id"], "org/name"),
    (["--min-containers", "3", "--max-containers", "1"], "exceeds"),
])
def test_bad_settings_rejected_before_anything_is_sent(cli, mocker, args: list[str], needle: str) -> None:
    deploy = mocker.patch.object(ModalSDK, "deploy")
    result = cli("deploy", "modal", *args)
    assert_exit(result, 2)
    assert needle in result.stderr
    deploy.assert_not_called()


def test_deploy_saves_url_and_key_and_waits_for_ready(cli, mocker, gpuctl_home: Path) -> None:
    with FakeVLLM(model="Qwen/Qwen2.5-7B-Instruct") as vllm:
        mocker.patch.object(ModalSDK, "check_credentials")
        secret = mocker.patch.object(ModalSDK, "ensure_secret")
        deploy = mocker.patch.object(ModalSDK, "deploy", return_value=vllm.url)
        result = cli("--json", "deploy", "modal", "--gpu", "A100-80GB")
        assert_exit(result, 0)
        url = vllm.url
        assert vllm.hits("/v1/chat/completions") >= 1  # readiness = it generated a token
    spec, app_file = deploy.call_args.args
    assert spec.gpu == "A100-80GB" and spec.model == "Qwen/Qwen2.5-7B-Instruct" and spec.scaledown_window_s == 300
    assert app_file.name == "vllm_app.py"
    settings = load_settings(home=gpuctl_home, env={})
    assert settings["modal.web_url"] == url and settings.source("modal.web_url") == "profile default"
    key = settings["modal.api_key"]
    assert key and secret.call_args.args[1] == key
    doc = json.loads(result.stdout)
    assert doc["data"]["deployment"]["ready"] is True
    assert key not in result.stdout and key not in result.stderr


def test_missing_credentials_exit_3(cli) -> None:
    result = cli("deploy", "modal", "--no-wait")
    assert_exit(result, 3)
    assert "modal token new" in result.stderr


def test_sdk_failure_is_one_line(cli, mocker) -> None:
    mocker.patch.object(ModalSDK, "check_credentials")
    mocker.patch.object(ModalSDK, "ensure_secret")
    mocker.patch.object(ModalSDK, "deploy", side_effect=ProviderError("modal deploy timed out after 600s", provider="modal", kind="timeout"))
    result = cli("deploy", "modal", "--no-wait")
    assert_exit(result, 1)
    assert "timed out" in result.stderr and "Traceback" not in result.stderr


def test_destroy_modal_confirms_stops_and_clears(cli, mocker, gpuctl_home: Path) -> None:
    mocker.patch.object(ModalSDK, "check_credentials")
    mocker.patch.object(ModalSDK, "ensure_secret")
    mocker.patch.object(ModalSDK, "deploy", return_value="https://org--multi-agent-vllm-inference-serve.modal.run")
    assert_exit(cli("deploy", "modal", "--no-wait"), 0)
    stop = mocker.patch.object(ModalSDK, "stop", return_value=True)
    assert_exit(cli("destroy", "modal"), 2)  # no TTY, no --yes
    stop.assert_not_called()
    assert_exit(cli("destroy", "modal", "--dry-run"), 0)
    stop.assert_not_called()
    result = cli("--json", "destroy", "modal", "--yes")
    assert_exit(result, 0)
    stop.assert_called_once_with("multi-agent-vllm-inference")
    assert load_settings(home=gpuctl_home, env={}).get("modal.web_url") is None


def test_credentials_error_type() -> None:
    assert CredentialsError("x").exit_code == 3


def test_deployments_are_in_the_ledger_and_warm_ones_reported_by_cleanup(cli, mocker, gpuctl_home: Path) -> None:
    from gpuctl.state import open_state

    mocker.patch.object(ModalSDK, "check_credentials")
    mocker.patch.object(ModalSDK, "ensure_secret")
    mocker.patch.object(ModalSDK, "deploy", return_value="https://org--multi-agent-vllm-inference-serve.modal.run")
    assert_exit(cli("deploy", "modal", "--no-wait"), 0)
    quiet = cli("--json", "cleanup")
    assert_exit(quiet, 0)
    assert json.loads(quiet.stdout)["data"]["modal_warm"] == []  # scale-to-zero: nothing to say
    assert_exit(cli("deploy", "modal", "--no-wait", "--min-containers", "1"), 2)  # bills 24/7: asks first
    assert_exit(cli("deploy", "modal", "--no-wait", "--min-containers", "1", "--yes"), 0)
    with open_state(gpuctl_home) as st:
        live = st.live_instances("modal")
    assert len(live) == 1 and live[0].dph == "0.80" and live[0].remote_id == "multi-agent-vllm-inference"
    warm = cli("--json", "cleanup")
    assert_exit(warm, 0)
    assert json.loads(warm.stdout)["data"]["modal_warm"][0]["dollars_per_hour"] == "0.80"
    assert "keeps 1 container(s) warm: $0.80/h" in warm.stderr
    mocker.patch.object(ModalSDK, "stop", return_value=True)
    assert_exit(cli("destroy", "modal", "--yes"), 0)
    with open_state(gpuctl_home) as st:
        assert st.live_instances("modal") == []


def test_destroy_stops_an_app_deployed_under_another_name(cli, mocker, gpuctl_home: Path) -> None:
    mocker.patch.object(ModalSDK, "check_credentials")
    mocker.patch.object(ModalSDK, "ensure_secret")
    mocker.patch.object(ModalSDK, "deploy", return_value="https://org--team-llm-serve.modal.run")
    assert_exit(cli("deploy", "modal", "--no-wait", "--app-name", "team-llm", "--min-containers", "1", "--yes"), 0)
    assert load_settings(home=gpuctl_home, env={})["modal.app_name"] == "team-llm"  # remembered
    stop = mocker.patch.object(ModalSDK, "stop", return_value=True)
    assert_exit(cli("destroy", "modal", "--yes"), 0)
    assert [c.args[0] for c in stop.call_args_list] == ["team-llm"]


def test_a_deploy_that_times_out_stays_in_the_ledger(cli, mocker, gpuctl_home: Path) -> None:
    from gpuctl.state import open_state

    mocker.patch.object(ModalSDK, "check_credentials")
    mocker.patch.object(ModalSDK, "ensure_secret")
    mocker.patch.object(ModalSDK, "deploy", side_effect=ProviderError("modal deploy timed out after 600s",
                                                                      provider="modal", kind="timeout"))
    assert_exit(cli("deploy", "modal", "--no-wait", "--app-name", "maybe-up"), 1)
    with open_state(gpuctl_home) as st:
        rows = st.live_instances("modal")
    assert [(r.remote_id, r.status) for r in rows] == [("maybe-up", "unknown")]
    stop = mocker.patch.object(ModalSDK, "stop", return_value=True)
    assert_exit(cli("destroy", "modal", "--yes"), 0)
    assert "maybe-up" in [c.args[0] for c in stop.call_args_list]
    with open_state(gpuctl_home) as st:
        assert st.live_instances("modal") == []
