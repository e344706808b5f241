"""The original system's admin API through a real gateway: off without ADMIN_TOKEN (404), 401
without the right one, the original status shape, and a Vast.ai launch and destroy against the
fake Vast.ai (a task with an id: 202, progress, 409 for a second launch, stopping destroys)."""

from __future__ import annotations

import os
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from gpuctl.state import open_state
from gpuctl.vastai import launch as vast_launch
from tests.fakes.vastai_server import FakeVast
from tests.fakes.vllm_server import FakeVLLM
from tests.support.serve import (
    ADMIN_TOKEN,
    CLIENT_KEY,
    MODEL,
    Running,
    chain_env,
    running_gateway,
    wait_for,
)
from tests.support.vast import KEY, market

ADMIN = {"Authorization": f"Bearer {ADMIN_TOKEN}"}
ROUTES = [("GET", "/api/admin/vllm/status"), ("POST", "/api/admin/vllm/launch"), ("POST", "/api/admin/vllm/destroy"),
          ("GET", "/api/admin/cost"), ("GET", "/api/admin/vllm/launch/0123456789abcdef")]


@pytest.fixture
def vast(vllm: FakeVLLM, monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeVast]:
    fake = FakeVast(api_key=KEY, offers=market(), clock=time.time, endpoint_port=vllm.port)
    with fake:
        monkeypatch.setattr(vast_launch, "POLL_S", 0.0)  # the launcher polls without waiting
        monkeypatch.setattr(vast_launch, "CREATE_LOOKUP_S", 0.0)
        yield fake
    assert fake.internal_errors == []


@pytest.fixture
def admin_gw(gpuctl_home: Path, vast: FakeVast, monkeypatch: pytest.MonkeyPatch) -> Iterator[Running]:
    """Only Vast.ai (no instance yet), with the admin API on. The environment is the process's
    too: a reload after a launch reads it again."""
    env = chain_env(None, None, GPUCTL_PRIORITY="vastai", VAST_URL=vast.url, VASTAI_API_KEY=KEY,
                    ADMIN_TOKEN=ADMIN_TOKEN)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with running_gateway(gpuctl_home, dict(os.environ)) as gw:
        yield gw


def _progress(http: httpx.Client, launch_id: str) -> dict[str, Any]:
    response = http.get(f"/api/admin/vllm/launch/{launch_id}", headers=ADMIN)
    assert response.status_code == 200, response.text
    return response.json()  # type: ignore[no-any-return]


@pytest.mark.parametrize(("method", "path"), ROUTES)
def test_without_a_token_configured_the_admin_api_is_404(gateway: Running, method: str, path: str) -> None:
    with gateway.http() as http:
        response = http.request(method, path, headers=ADMIN)
    assert response.status_code == 404 and response.json()["error"]["code"] == "admin_disabled"


@pytest.mark.parametrize(("method", "path"), ROUTES)
@pytest.mark.parametrize("auth", [None, "Bearer wrong-token-0123456789", f"Basic {ADMIN_TOKEN}", f"Bearer {CLIENT_KEY}"])
def test_a_missing_or_wrong_token_is_401_with_www_authenticate(admin_gw: Running, method: str, path: str,
                                                               auth: str | None) -> None:
    with admin_gw.http() as http:
        response = http.request(method, path, headers={"Authorization": auth} if auth else {})
    assert response.status_code == 401 and response.headers["www-authenticate"].startswith("Bearer")
    assert ADMIN_TOKEN not in response.text


def test_status_has_the_original_shape_plus_the_providers(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    with running_gateway(gpuctl_home, chain_env(vllm, ADMIN_TOKEN=ADMIN_TOKEN)) as gw, gw.http() as http:
        data = http.get("/api/admin/vllm/status", headers=ADMIN).json()
    assert data["status"] == "ready" and data["provider"] == "modal" and data["endpoint"] == vllm.url + "/v1"
    assert [p["provider"] for p in data["providers"]] == ["modal", "vastai", "anthropic"] and data["launch"] is None


def test_launch_is_a_task_then_the_gateway_routes_to_the_instance_then_destroy(
        admin_gw: Running, vast: FakeVast, gpuctl_home: Path) -> None:
    with admin_gw.http() as http, admin_gw.client() as client:
        dry = http.post("/api/admin/vllm/launch", json={"dry_run": True}, headers=ADMIN)
        assert dry.status_code == 200 and dry.json()["would_launch"] and dry.json()["plan"]["choice"]["offer_id"] == 102
        assert vast.received("PUT") == []  # a dry run creates nothing
        accepted = http.post("/api/admin/vllm/launch", json={"gpu": "RTX 3090", "max_dph": 0.3}, headers=ADMIN)
        assert accepted.status_code == 202
        launch_id = accepted.json()["id"]
        wait_for(lambda: not _progress(http, launch_id)["running"], 20.0, "the launch to finish")
        done = _progress(http, launch_id)
        assert done["status"] == "ready", done
        assert done["result"]["instance"]["ready"] and done["request"] == {"gpu": "RTX 3090", "max_dph": 0.3}
        # the gateway reloads by itself: the new instance answers
        wait_for(lambda: http.get("/ready").status_code == 200, 10.0, "the gateway to route to the instance")
        raw = client.chat.completions.with_raw_response.create(model=MODEL, messages=[{"role": "user",
                                                                                      "content": "hi"}])
        assert raw.headers["x-gpuctl-provider"] == "vastai"
        status = http.get("/api/admin/vllm/status", headers=ADMIN).json()
        assert status["provider"] == "vastai" and status["status"] == "ready"

        gone = http.post("/api/admin/vllm/destroy", json={"all": True}, headers=ADMIN)
        assert gone.status_code == 200, gone.text
        assert gone.json()["results"][0]["result"] == "destroyed"
        assert vast.live_ids() == set()
        wait_for(lambda: http.get("/ready").status_code == 503, 10.0, "the gateway to drop the instance")
    with open_state(gpuctl_home) as st:
        assert st.live_instances("vastai") == []


def test_a_second_launch_is_409_and_stopping_one_destroys_what_it_created(admin_gw: Running, vast: FakeVast) -> None:
    vast.stick_loading(offer_id=102)  # the instance never finishes loading: the launch keeps watching
    with admin_gw.http() as http:
        first = http.post("/api/admin/vllm/launch", json={}, headers=ADMIN).json()
        wait_for(lambda: vast.live_ids(), 10.0, "the instance to be created")
        second = http.post("/api/admin/vllm/launch", json={}, headers=ADMIN)
        assert second.status_code == 409 and second.json()["error"]["running"] == first["id"]
        assert http.get("/api/admin/vllm/status", headers=ADMIN).json()["launch"] == first["id"]
        busy = http.post("/api/admin/vllm/destroy", json={"all": True}, headers=ADMIN)
        assert busy.status_code == 409  # not under a running launch's feet
        stopping = http.delete(f"/api/admin/vllm/launch/{first['id']}", headers=ADMIN)
        assert stopping.status_code == 200
        wait_for(lambda: not _progress(http, first["id"])["running"], 10.0, "the launch to stop")
        record = _progress(http, first["id"])
        again = http.post("/api/admin/vllm/launch", json={"dry_run": True}, headers=ADMIN)
    assert record["status"] == "stopped" and "destroyed" in record["message"]
    assert vast.live_ids() == set()  # what it created was destroyed
    assert again.status_code == 200  # the lock was released


def test_a_client_that_hangs_up_does_not_orphan_the_launch(admin_gw: Running, vast: FakeVast) -> None:
    with admin_gw.http() as http:
        launch_id = http.post("/api/admin/vllm/launch", json={}, headers=ADMIN).json()["id"]
    # that client is gone; the launch goes on, owned by the gateway
    with admin_gw.http() as http:
        wait_for(lambda: not _progress(http, launch_id)["running"], 20.0, "the launch to finish")
        assert _progress(http, launch_id)["status"] == "ready"
    assert len(vast.live_ids()) == 1


@pytest.mark.parametrize("body", [{"gpu": 3}, {"max_dph": -1}, {"max_dph": "cheap"}, {"dry_run": "yes"}])
def test_bad_launch_bodies_are_400(admin_gw: Running, vast: FakeVast, body: dict[str, Any]) -> None:
    with admin_gw.http() as http:
        response = http.post("/api/admin/vllm/launch", json=body, headers=ADMIN)
    assert response.status_code == 400 and vast.received("PUT") == []


@pytest.mark.parametrize("body", [{}, {"id": 1, "all": True}, {"all": "yes"}, {"id": "abc"}, {"label": "mine"}])
def test_bad_destroy_bodies_are_400(admin_gw: Running, body: dict[str, Any]) -> None:
    with admin_gw.http() as http:
        response = http.post("/api/admin/vllm/destroy", json=body, headers=ADMIN)
    assert response.status_code == 400, response.text


def test_an_unknown_launch_id_is_404(admin_gw: Running) -> None:
    with admin_gw.http() as http:
        assert http.get("/api/admin/vllm/launch/nope", headers=ADMIN).status_code == 404
        assert http.get("/api/admin/vllm/launch/0123456789abcdef", headers=ADMIN).status_code == 404


def test_cost_is_the_cost_report_data_by_key_too(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    with running_gateway(gpuctl_home, chain_env(vllm, ADMIN_TOKEN=ADMIN_TOKEN)) as gw:
        with gw.client() as client:
            client.chat.completions.create(model=MODEL, messages=[{"role": "user", "content": "hi"}])
        with gw.http() as http:
            by_key = http.get("/api/admin/cost", params={"since": "1d", "by": "key"}, headers=ADMIN)
            bad = http.get("/api/admin/cost", params={"since": "yesterday-ish"}, headers=ADMIN)
    assert by_key.status_code == 200, by_key.text
    data = by_key.json()
    assert data["by"] == "key" and [g["key"] for g in data["groups"] if g["requests"]] == ["alice"]
    assert bad.status_code == 400 and bad.json()["error"]["param"] == "since"


def test_the_admin_launch_walks_the_tiers_as_launch_yes_does(admin_gw: Running, vast: FakeVast) -> None:
    # Both acceptable RTX 3090 boxes fail to boot: `gpuctl launch --yes` goes on to the next tier
    # (an RTX 4090), within the budgets; so does the original system's admin launch.
    vast.fail_boot(offer_id=102)
    vast.fail_boot(offer_id=101)
    with admin_gw.http() as http:
        accepted = http.post("/api/admin/vllm/launch", json={}, headers=ADMIN)
        assert accepted.status_code == 202
        launch_id = accepted.json()["id"]
        wait_for(lambda: not _progress(http, launch_id)["running"], 30.0, "the launch to finish")
        done = _progress(http, launch_id)
        http.post("/api/admin/vllm/destroy", json={"all": True}, headers=ADMIN)
    assert done["status"] == "ready", done
    attempts = done["result"]["instance"]["attempts"]
    assert [a["offer_id"] for a in attempts] == [102, 101, 201]  # the dearer tier only after the first ran out
    assert [a["outcome"] for a in attempts][:2] == ["failed", "failed"]
