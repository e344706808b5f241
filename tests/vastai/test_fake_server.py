"""The fake Vast.ai server itself: routes, auth, filtering, the state machine, fault injection.

Spoken to with plain httpx so these tests pin the fake's wire behaviour independently of
gpuctl's client (tests/vastai/test_client.py covers the client against it).
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest

from tests.fakes.vastai_server import (
    CDI_STATUS_MSG,
    DEFAULT_API_KEY,
    FakeClock,
    FakeVast,
    make_offer,
)

AUTH = {"Authorization": f"Bearer {DEFAULT_API_KEY}"}
CREATE_BODY = {
    "client_id": "me",
    "image": "vllm/vllm-openai:v0.32.0",
    "env": {"-p 8000:8000": "1", "HF_TOKEN": "hf_test"},
    "disk": 40.0,
    "label": "gpuctl:default",
    "onstart": None,
    "runtype": "args",
    "args": ["--model", "M", "--port", "8000"],
    "price": None,
}


@pytest.fixture
def vast() -> Iterator[FakeVast]:
    fake = FakeVast()
    with fake:
        yield fake
    assert fake.internal_errors == []


@pytest.fixture
def api(vast: FakeVast) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=vast.url, headers=AUTH, timeout=5) as client:
        yield client


def search(api: httpx.Client, query: dict[str, Any]) -> list[dict[str, Any]]:
    r = api.post("/api/v0/bundles/", json=query)
    assert r.status_code == 200, r.text
    offers: list[dict[str, Any]] = r.json()["offers"]
    return offers


def create(api: httpx.Client, offer_id: int, **changes: Any) -> int:
    r = api.put(f"/api/v0/asks/{offer_id}/", json={**CREATE_BODY, **changes})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["success"] is True
    return int(body["new_contract"])


def show(api: httpx.Client, instance_id: int) -> dict[str, Any] | None:
    r = api.get(f"/api/v0/instances/{instance_id}/", params={"owner": "me"})
    assert r.status_code == 200, r.text
    result: dict[str, Any] | None = r.json()["instances"]
    return result


# -- auth and routes ---------------------------------------------------------------------


def test_missing_or_wrong_key_is_401_with_msg(vast: FakeVast) -> None:
    with httpx.Client(base_url=vast.url, timeout=5) as anon:
        r = anon.get("/api/v0/users/current")
        r2 = anon.get("/api/v0/users/current", headers={"Authorization": "Bearer nope"})
    for resp in (r, r2):
        assert resp.status_code == 401
        assert resp.json() == {"success": False, "error": "invalid_user_key", "msg": "Invalid user key"}
    first, second = vast.received(path="/api/v0/users/current")
    assert (first.auth_present, first.auth_ok) == (False, False)
    assert (second.auth_present, second.auth_ok) == (True, False)


def test_paths_must_match_exactly_including_trailing_slashes(api: httpx.Client) -> None:
    assert api.post("/api/v0/bundles", json={}).status_code == 404
    assert api.get("/api/v1/instances").status_code == 404
    assert api.get("/api/v0/instances/").status_code == 404  # the retired 2026 endpoint
    assert api.get("/api/v0/users/current").status_code == 200


def test_current_user_has_balance_and_credit(vast: FakeVast, api: httpx.Client) -> None:
    vast.credit = 12.5
    body = api.get("/api/v0/users/current").json()
    assert body["credit"] == 12.5 and body["balance"] == 0.0


def test_key_in_url_is_detected(vast: FakeVast, api: httpx.Client) -> None:
    api.get("/api/v0/users/current", params={"api_key": DEFAULT_API_KEY})
    assert vast.received()[-1].key_in_url is True
    api.get("/api/v0/users/current")
    assert vast.received()[-1].key_in_url is False


# -- search ------------------------------------------------------------------------------


def test_search_filters_with_string_numbers_and_orders_by_price(api: httpx.Client) -> None:
    offers = search(
        api,
        {
            "verified": {"eq": True},
            "external": {"eq": False},
            "rentable": {"eq": True},
            "gpu_name": {"eq": "RTX 3090"},
            "num_gpus": {"eq": "1"},
            "reliability": {"gt": "0.95"},
            "dph_total": {"lt": "0.5"},
            "order": [["dph_total", "asc"]],
            "type": "on-demand",
            "allocated_storage": 40.0,
        },
    )
    # 103 is unreliable, 104 too expensive, 105 has two GPUs.
    assert [o["id"] for o in offers] == [102, 101]
    assert [o["dph_total"] for o in offers] == [0.18, 0.25]


@pytest.mark.parametrize(
    ("query", "expected"),
    [
        ({"gpu_name": {"neq": "RTX 3090"}, "verified": {"eq": "true"}}, [202, 201, 301]),
        ({"gpu_ram": {"gte": "80000"}}, [301, 401]),
        ({"gpu_ram": {"lte": "24564"}}, [202, 201]),
        ({"no_such_field": {"eq": "1"}}, None),
        ({"gpu_name": {"in": ["RTX 4090", "A100 SXM4"]}}, [202, 201, 301]),
        ({"gpu_name": {"eq": "RTX 3090"}, "machine_id": {"notin": ["50102", "50103"]}}, [105, 101, 104]),
        ({"inet_down": {"gt": "100"}, "cuda_max_good": {"gte": "12.4"}, "gpu_name": {"eq": "RTX 4090"}}, [201]),
        ({"dph_total": {"lte": "0.18"}}, [102]),  # inclusive: the offer at exactly the cap
        ({"dph_total": {"lt": "0.18"}}, []),
    ],
)
def test_search_operators(api: httpx.Client, query: dict[str, Any], expected: list[int] | None) -> None:
    offers = search(api, query)
    if expected is None:  # a filter on a field no offer has matches nothing
        assert offers == []
    else:
        assert [o["id"] for o in offers] == expected


def test_search_unknown_operator_is_400(api: httpx.Client) -> None:
    r = api.post("/api/v0/bundles/", json={"gpu_name": {"like": "RTX"}})
    assert r.status_code == 400
    assert "like" in r.json()["msg"]


def test_search_descending_order(api: httpx.Client) -> None:
    offers = search(api, {"gpu_name": {"eq": "RTX 4090"}, "order": [["dph_total", "desc"]]})
    assert [o["id"] for o in offers] == [201, 202]


# -- create and the instance record ---------------------------------------------------------


def test_create_records_the_body_and_consumes_the_offer(vast: FakeVast, api: httpx.Client) -> None:
    instance_id = create(api, 102)
    inst = vast.instance(instance_id)
    assert inst.image == CREATE_BODY["image"]
    assert inst.env == CREATE_BODY["env"]
    assert (inst.disk, inst.label, inst.runtype, inst.args) == (40.0, "gpuctl:default", "args", CREATE_BODY["args"])
    assert inst.create_body == CREATE_BODY
    assert vast.live_ids() == {instance_id}
    # A rented offer no longer shows as rentable; destroying gives it back.
    assert 102 not in [o["id"] for o in search(api, {"rentable": {"eq": True}})]
    assert api.request("DELETE", f"/api/v0/instances/{instance_id}/", json={}).json() == {"success": True}
    assert 102 in [o["id"] for o in search(api, {"rentable": {"eq": True}})]
    assert vast.live_ids() == set()


def test_create_from_unknown_offer_fails(api: httpx.Client) -> None:
    r = api.put("/api/v0/asks/999999/", json=CREATE_BODY)
    assert r.status_code == 404
    assert r.json()["success"] is False and r.json()["msg"]


def test_state_machine_advances_on_show_polls(vast: FakeVast, api: httpx.Client) -> None:
    vast.endpoint_port = 45678
    instance_id = create(api, 102)
    seen = [show(api, instance_id) for _ in range(4)]
    statuses = [s["actual_status"] if s else "gone" for s in seen]
    assert statuses == [None, "loading", "running", "running"]
    running = seen[2]
    assert running is not None
    assert running["public_ipaddr"] == "127.0.0.1"
    assert running["ports"] == {"8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "45678"}]}
    assert seen[1] is not None and seen[1]["ports"] == {}
    assert running["dph_total"] == 0.18
    assert running["label"] == "gpuctl:default"
    assert running["gpu_name"] == "RTX 3090" and running["num_gpus"] == 1
    assert running["machine_id"] == 50102
    assert running["intended_status"] == "running" and running["cur_state"] == "running"
    assert isinstance(running["start_date"], float)
    assert running["status_msg"]


def test_state_machine_on_a_fake_clock() -> None:
    clock = FakeClock(start=1000.0)
    with FakeVast(clock=clock, running_after_seconds=120) as vast, httpx.Client(
        base_url=vast.url, headers=AUTH, timeout=5
    ) as client:
        instance_id = create(client, 102)
        assert (show(client, instance_id) or {})["actual_status"] is None
        clock.advance(1)
        for _ in range(5):  # polls do not matter in clock mode
            assert (show(client, instance_id) or {})["actual_status"] == "loading"
        clock.advance(119)
        inst = show(client, instance_id) or {}
        assert inst["actual_status"] == "running"
        assert inst["start_date"] == 1000.0


def test_stuck_offer_stays_loading(vast: FakeVast, api: httpx.Client) -> None:
    vast.stick_loading(offer_id=102)
    stuck, fine = create(api, 102), create(api, 101)
    for _ in range(10):
        show(api, stuck)
        show(api, fine)
    assert (show(api, stuck) or {})["actual_status"] == "loading"
    assert (show(api, fine) or {})["actual_status"] == "running"


def test_boot_failure_exits_with_cdi_message(vast: FakeVast, api: httpx.Client) -> None:
    vast.fail_boot(machine_id=50101)
    instance_id = create(api, 101)
    states = [(show(api, instance_id) or {}).get("actual_status") for _ in range(3)]
    assert states == [None, "loading", "exited"]
    inst = show(api, instance_id) or {}
    assert "failed to inject CDI devices" in inst["status_msg"]
    assert inst["status_msg"] == CDI_STATUS_MSG
    assert inst["ports"] == {}


def test_label_stop_and_restart(vast: FakeVast, api: httpx.Client) -> None:
    instance_id = create(api, 102)
    url = f"/api/v0/instances/{instance_id}/"
    assert api.put(url, json={"label": "renamed"}).json() == {"success": True}
    assert vast.instance(instance_id).label == "renamed"
    assert api.put(url, json={"state": "stopped"}).json() == {"success": True}
    inst = show(api, instance_id) or {}
    assert (inst["actual_status"], inst["intended_status"]) == ("exited", "stopped")
    assert instance_id in vast.live_ids()  # stopped still exists (and bills storage)
    api.put(url, json={"state": "running"})
    assert (show(api, instance_id) or {})["actual_status"] is None  # boots again
    assert api.put("/api/v0/instances/1/", json={"label": "x"}).status_code == 404


def test_show_and_destroy_of_a_gone_instance(vast: FakeVast, api: httpx.Client) -> None:
    instance_id = create(api, 102)
    assert api.request("DELETE", f"/api/v0/instances/{instance_id}/", json={}).status_code == 200
    assert show(api, instance_id) is None
    assert show(api, 123) is None
    again = api.request("DELETE", f"/api/v0/instances/{instance_id}/", json={})
    assert again.status_code == 404 and again.json()["success"] is False


# -- list and pagination ----------------------------------------------------------------------


def list_page(api: httpx.Client, **params: Any) -> httpx.Response:
    # As the official client 1.9.1 encodes: strings bare, everything else as JSON.
    encoded = {k: v if isinstance(v, str) else json.dumps(v) for k, v in params.items()}
    return api.get("/api/v1/instances/", params=encoded)


def test_list_paginates_with_tokens_and_counts_labels() -> None:
    with FakeVast(page_size=2) as vast, httpx.Client(base_url=vast.url, headers=AUTH, timeout=5) as client:
        ids = [vast.add_instance(label="gpuctl:a" if i % 2 else "other") for i in range(5)]
        gone = vast.add_instance(label="gpuctl:a")
        client.request("DELETE", f"/api/v0/instances/{gone}/", json={})

        seen: list[int] = []
        token = None
        pages = 0
        while True:
            params: dict[str, Any] = {"select_filters": {}, "order_by": [{"col": "id", "dir": "asc"}], "limit": 25}
            if token is not None:
                params["after_token"] = token
            body = list_page(client, **params).json()
            pages += 1
            assert body["total_instances"] == 5
            assert body["label_counts"] == {"gpuctl:a": 2, "other": 3}
            seen += [i["id"] for i in body["instances"]]
            token = body["next_token"]
            if token is None:
                break
        assert seen == ids and pages == 3
        # Filters and order use the same operators.
        body = list_page(client, select_filters={"label": {"eq": "gpuctl:a"}}, order_by=[{"col": "id", "dir": "desc"}]).json()
        assert [i["id"] for i in body["instances"]] == [ids[3], ids[1]]
        assert list_page(client, after_token="bogus").status_code == 400
        # A JSON-quoted token is not what the official client sends: refused, so a client that
        # quotes it fails here rather than against the real API.
        quoted = client.get("/api/v1/instances/", params={"after_token": json.dumps("page-2")})
        assert quoted.status_code == 400 and "bare" in quoted.json()["msg"]
        assert list_page(client, after_token="page-2").status_code == 200


def test_list_shows_running_added_instances_with_endpoint(vast: FakeVast, api: httpx.Client) -> None:
    vast.add_instance(label="gpuctl:x")
    (inst,) = list_page(api).json()["instances"]
    assert inst["actual_status"] == "running"
    assert inst["ports"]["8000/tcp"][0]["HostPort"] == str(vast.endpoint_port)


def test_list_faults(vast: FakeVast, api: httpx.Client) -> None:
    vast.add_instance(label="gpuctl:x")
    vast.set_list_fault("empty")
    assert list_page(api).json() == {"instances": []}
    vast.set_list_fault("malformed")
    with pytest.raises(json.JSONDecodeError):
        list_page(api).json()
    vast.set_list_fault("no_instances_key")
    assert "instances" not in list_page(api).json()
    vast.set_list_fault(None)
    assert len(list_page(api).json()["instances"]) == 1
    with pytest.raises(ValueError):
        vast.set_list_fault("bogus")


# -- fault injection -----------------------------------------------------------------------


def test_fail_next_creates_500_then_success_false_then_ok(vast: FakeVast, api: httpx.Client) -> None:
    vast.fail_next_creates(1, status=500)
    vast.fail_next_creates(1, status=200, msg="Offer no longer available")
    r1 = api.put("/api/v0/asks/102/", json=CREATE_BODY)
    r2 = api.put("/api/v0/asks/102/", json=CREATE_BODY)
    assert r1.status_code == 500 and r1.json()["success"] is False
    assert r2.status_code == 200 and r2.json() == {
        "success": False,
        "error": "invalid_args",
        "msg": "Offer no longer available",
    }
    assert vast.live_ids() == set()
    create(api, 102)
    assert len(vast.live_ids()) == 1


def test_fail_creates_for_one_machine_only(vast: FakeVast, api: httpx.Client) -> None:
    vast.fail_creates_for(machine_id=50102)
    for _ in range(2):
        assert api.put("/api/v0/asks/102/", json=CREATE_BODY).status_code == 500
    create(api, 101)


def test_fail_destroy_for_ids(vast: FakeVast, api: httpx.Client) -> None:
    a, b = create(api, 101), create(api, 102)
    vast.fail_destroy(a, times=2)
    assert api.request("DELETE", f"/api/v0/instances/{a}/", json={}).status_code == 500
    assert api.request("DELETE", f"/api/v0/instances/{b}/", json={}).status_code == 200
    assert vast.live_ids() == {a}
    assert api.request("DELETE", f"/api/v0/instances/{a}/", json={}).status_code == 500
    assert api.request("DELETE", f"/api/v0/instances/{a}/", json={}).status_code == 200
    assert vast.live_ids() == set()


def test_rate_limit_once_sends_retry_after(vast: FakeVast, api: httpx.Client) -> None:
    vast.rate_limit_once(retry_after="2", path="/api/v0/users/")
    assert api.get("/api/v1/instances/").status_code == 200  # other paths are untouched
    r = api.get("/api/v0/users/current")
    assert r.status_code == 429 and r.headers["Retry-After"] == "2"
    assert api.get("/api/v0/users/current").status_code == 200


def test_inject_status_before_auth(vast: FakeVast) -> None:
    vast.inject_status(503, times=2)
    with httpx.Client(base_url=vast.url, timeout=5) as anon:
        codes = [anon.get("/api/v0/users/current").status_code for _ in range(3)]
    assert codes == [503, 503, 401]


def test_slow_api_times_out_a_client(vast: FakeVast) -> None:
    vast.set_delay(0.5)
    with httpx.Client(base_url=vast.url, headers=AUTH, timeout=0.05) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/api/v0/users/current")
    vast.reset_faults()
    with httpx.Client(base_url=vast.url, headers=AUTH, timeout=5) as client:
        assert client.get("/api/v0/users/current").status_code == 200


def test_requests_are_recorded(vast: FakeVast, api: httpx.Client) -> None:
    create(api, 102, label="rec")
    (rec,) = vast.received("PUT", "/api/v0/asks/102/")
    assert rec.body["label"] == "rec"
    assert rec.auth_present and rec.auth_ok and not rec.key_in_url
    show(api, 1)
    assert vast.received("GET")[-1].query == {"owner": "me"}


def test_make_offer_fields() -> None:
    offer = make_offer(7, gpu_name="L40S", dph_total="0.85", machine_id=3, num_gpus=2, gpu_ram=46068)
    assert offer["id"] == 7 and offer["machine_id"] == 3 and offer["dph_total"] == 0.85
    assert offer["gpu_total_ram"] == 2 * 46068 and offer["verified"] is True
