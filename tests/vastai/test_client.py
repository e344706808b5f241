"""gpuctl's Vast.ai REST client, against the loopback fake (real HTTP) and, for replies the
fake would never send, httpx.MockTransport."""

from __future__ import annotations

import json
import logging
import socket
from collections.abc import Iterator
from decimal import Decimal
from typing import Any

import httpx
import pytest

from gpuctl.errors import CredentialsError, ProviderError
from gpuctl.http.client import Timeouts
from gpuctl.vastai.client import DEFAULT_API_URL, Instance, Offer, VastAIClient
from tests.fakes.vastai_server import FakeVast, make_offer

# Shaped like a real Vast key (64 hex digits) so any leak would be a realistic one.
KEY = "0f1e2d3c4b5a69788796a5b4c3d2e1f00f1e2d3c4b5a69788796a5b4c3d2e1f0"
IMAGE = "vllm/vllm-openai:v0.32.0"
ENV = {"-p 8000:8000": "1", "HF_TOKEN": "hf_secret_for_test"}
ARGS = ["--model", "Qwen/Qwen2.5-7B-Instruct", "--port", "8000"]


class Sleeps:
    """Records the waits the retry logic asks for instead of sleeping."""

    def __init__(self) -> None:
        self.calls: list[float] = []

    def __call__(self, seconds: float) -> None:
        self.calls.append(seconds)


@pytest.fixture
def vast() -> Iterator[FakeVast]:
    fake = FakeVast(api_key=KEY)
    with fake:
        yield fake
    assert fake.internal_errors == []
    assert not any(r.key_in_url for r in fake.requests), "the API key was sent in a URL"


@pytest.fixture
def sleeps() -> Sleeps:
    return Sleeps()


@pytest.fixture
def client(vast: FakeVast, sleeps: Sleeps) -> Iterator[VastAIClient]:
    with VastAIClient(KEY, api_url=vast.url, sleep=sleeps) as c:
        yield c


def assert_no_key(err: ProviderError) -> None:
    for text in (str(err), repr(err), err.hint or "", err.message):
        assert KEY not in text


# -- search ----------------------------------------------------------------------------------


def test_search_sends_the_query_exactly_as_the_official_client(vast: FakeVast, client: VastAIClient) -> None:
    client.search_offers(gpu_name="RTX_3090", num_gpus=1, min_reliability=0.95, max_dph=0.5)
    (req,) = vast.received("POST", "/api/v0/bundles/")
    assert req.body == {
        "verified": {"eq": True},
        "external": {"eq": False},
        "rentable": {"eq": True},
        "gpu_name": {"eq": "RTX 3090"},
        "num_gpus": {"eq": "1"},
        "reliability": {"gte": "0.95"},  # every bound inclusive, as documented (review B finding 10)
        "dph_total": {"lte": "0.5"},
        "order": [["dph_total", "asc"]],
        "type": "on-demand",
        "allocated_storage": 40.0,
    }
    assert req.auth_ok


def test_search_returns_filtered_offers_cheapest_first(client: VastAIClient) -> None:
    offers = client.search_offers(gpu_name="RTX 3090", min_reliability=0.95, max_dph=Decimal("0.5"))
    assert [o.id for o in offers] == [102, 101]
    best = offers[0]
    assert isinstance(best, Offer)
    assert best.dph_total == Decimal("0.18")
    assert (best.gpu_name, best.num_gpus, best.gpu_ram_mb, best.machine_id) == ("RTX 3090", 1, 24576, 50102)
    assert best.reliability == 0.99 and best.cuda_max_good == 12.4 and best.host_id is not None
    assert best.raw["id"] == 102


def test_search_optional_filters_and_exclusions(vast: FakeVast, client: VastAIClient) -> None:
    offers = client.search_offers(
        gpu_name="RTX 4090", min_gpu_ram_gb=24, min_inet_down=100, min_cuda=12.1, disk_gb=60,
        exclude_machine_ids=[50301, 50999],
    )
    assert [o.id for o in offers] == [201]  # 202 has 90 Mb/s
    body = vast.received("POST")[-1].body
    assert body["gpu_ram"] == {"gte": "24000"}  # MB on the wire
    assert body["inet_down"] == {"gte": "100"}
    assert body["cuda_max_good"] == {"gte": "12.1"}
    assert body["machine_id"] == {"notin": ["50301", "50999"]}
    assert body["allocated_storage"] == 60.0
    assert client.search_offers(gpu_name="RTX 3090", exclude_machine_ids=[50102, 50103, 50105])[0].id == 101


def test_search_with_no_offers(client: VastAIClient) -> None:
    assert client.search_offers(gpu_name="B200") == []


# -- create, show, label, destroy ----------------------------------------------------------


def test_create_sends_the_documented_body(vast: FakeVast, client: VastAIClient) -> None:
    instance_id = client.create_instance(102, image=IMAGE, env=ENV, args=ARGS, disk_gb=40, label="gpuctl:default")
    (req,) = vast.received("PUT", "/api/v0/asks/102/")
    assert req.body == {
        "client_id": "me",
        "image": IMAGE,
        "env": ENV,
        "disk": 40.0,
        "label": "gpuctl:default",
        "onstart": None,
        "runtype": "args",
        "args": ARGS,
        "price": None,
    }
    assert vast.live_ids() == {instance_id}


def test_instance_boots_and_exposes_its_endpoint(vast: FakeVast, client: VastAIClient) -> None:
    vast.endpoint_port = 40999
    instance_id = client.create_instance(101, image=IMAGE, env=ENV, args=ARGS, disk_gb=40, label="gpuctl:p")
    first = client.get_instance(instance_id)
    assert first is not None and first.actual_status is None and first.endpoint() is None
    loading = client.get_instance(instance_id)
    assert loading is not None and loading.actual_status == "loading"
    running = client.get_instance(instance_id)
    assert isinstance(running, Instance)
    assert running.actual_status == "running" and running.intended_status == "running"
    assert running.endpoint() == "http://127.0.0.1:40999"
    assert running.endpoint(9999) is None
    assert running.dph_total == Decimal("0.25")
    assert (running.label, running.gpu_name, running.num_gpus, running.machine_id) == ("gpuctl:p", "RTX 3090", 1, 50101)
    assert running.start_date is not None and running.status_msg


def test_cdi_boot_failure_is_visible(vast: FakeVast, client: VastAIClient) -> None:
    vast.fail_boot(offer_id=102)
    instance_id = client.create_instance(102, image=IMAGE, env=ENV, args=ARGS, disk_gb=40, label="l")
    states = [client.get_instance(instance_id) for _ in range(3)]
    last = states[-1]
    assert last is not None and last.actual_status == "exited"
    assert "failed to inject CDI devices" in (last.status_msg or "")


def test_get_is_none_once_destroyed_and_destroy_again_is_not_found(vast: FakeVast, client: VastAIClient) -> None:
    instance_id = client.create_instance(102, image=IMAGE, env=ENV, args=ARGS, disk_gb=40, label="l")
    client.destroy_instance(instance_id)
    assert vast.live_ids() == set()
    (req,) = vast.received("DELETE")
    assert req.path == f"/api/v0/instances/{instance_id}/" and req.body == {}
    assert client.get_instance(instance_id) is None
    assert vast.received("GET")[-1].query == {"owner": "me"}
    with pytest.raises(ProviderError) as info:
        client.destroy_instance(instance_id)
    assert info.value.kind == "not_found" and info.value.status == 404


def test_destroy_failure_is_an_error_and_keeps_the_instance(vast: FakeVast, client: VastAIClient, sleeps: Sleeps) -> None:
    instance_id = vast.add_instance(label="gpuctl:x")
    vast.fail_destroy(instance_id)
    with pytest.raises(ProviderError) as info:
        client.destroy_instance(instance_id)
    assert info.value.kind == "http" and info.value.status == 500
    assert "Internal Server Error" in str(info.value)
    assert vast.live_ids() == {instance_id}
    assert sleeps.calls == []  # a 500 is not retried


def test_set_label(vast: FakeVast, client: VastAIClient) -> None:
    instance_id = vast.add_instance(label="old")
    client.set_label(instance_id, "gpuctl:new")
    assert vast.instance(instance_id).label == "gpuctl:new"
    assert vast.received("PUT")[-1].body == {"label": "gpuctl:new"}
    with pytest.raises(ProviderError) as info:
        client.set_label(123, "x")
    assert info.value.kind == "not_found"


def test_current_user(vast: FakeVast, client: VastAIClient) -> None:
    vast.balance, vast.credit = -1.5, 9.75
    user = client.current_user()
    assert (user["balance"], user["credit"]) == (-1.5, 9.75)


# -- list ------------------------------------------------------------------------------------


def test_list_follows_next_token_across_pages(sleeps: Sleeps) -> None:
    with FakeVast(api_key=KEY, page_size=2) as vast, VastAIClient(KEY, api_url=vast.url, sleep=sleeps) as client:
        ids = [vast.add_instance(label=f"gpuctl:{i}") for i in range(5)]
        instances = client.list_instances()
        assert [i.id for i in instances] == ids
        assert all(i.actual_status == "running" for i in instances)
        pages = vast.received("GET", "/api/v1/instances/")
        assert len(pages) == 3
        first, second = pages[0].query, pages[1].query
        assert json.loads(first["select_filters"]) == {}
        assert json.loads(first["order_by"]) == [{"col": "id", "dir": "asc"}]
        assert json.loads(first["limit"]) == 25
        assert "after_token" not in first
        assert second["after_token"] == "page-2"  # bare, as the official client sends it


def test_empty_list_is_returned_as_empty(vast: FakeVast, client: VastAIClient) -> None:
    # The client cannot know the list is a lie (the 2026 leak): callers cross-check the ledger.
    vast.add_instance(label="gpuctl:x")
    vast.set_list_fault("empty")
    assert client.list_instances() == []


@pytest.mark.parametrize("fault", ["malformed", "no_instances_key"])
def test_malformed_list_is_an_error(vast: FakeVast, client: VastAIClient, fault: str) -> None:
    vast.add_instance(label="gpuctl:x")
    vast.set_list_fault(fault)
    with pytest.raises(ProviderError) as info:
        client.list_instances()
    assert info.value.kind == "malformed"
    assert info.value.provider == "vastai"


def mock_client(handler: Any, **kwargs: Any) -> VastAIClient:
    return VastAIClient(KEY, api_url="http://vast.test", transport=httpx.MockTransport(handler), sleep=Sleeps(), **kwargs)


def test_list_shortfall_against_total_is_malformed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"instances": [{"id": 1}], "next_token": None, "total_instances": 3})

    with mock_client(handler) as client, pytest.raises(ProviderError) as info:
        client.list_instances()
    assert info.value.kind == "malformed" and "1 instances of the 3" in str(info.value)


def test_list_repeated_token_is_malformed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"instances": [{"id": 1}], "next_token": "same", "total_instances": 1})

    with mock_client(handler) as client, pytest.raises(ProviderError) as info:
        client.list_instances()
    assert info.value.kind == "malformed"


def test_list_item_without_id_is_malformed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(200, json={"instances": [{"label": "x"}], "next_token": None})

    with mock_client(handler) as client, pytest.raises(ProviderError) as info:
        client.list_instances()
    assert info.value.kind == "malformed"


# -- errors ----------------------------------------------------------------------------------


def test_wrong_key_maps_to_auth_without_the_key(vast: FakeVast) -> None:
    other = "ffffeeeeddddccccbbbbaaaa99998888ffffeeeeddddccccbbbbaaaa99998888"
    with VastAIClient(other, api_url=vast.url) as client, pytest.raises(ProviderError) as info:
        client.list_instances()
    err = info.value
    assert (err.kind, err.status, err.provider) == ("auth", 401, "vastai")
    assert "Invalid user key" in err.message
    assert err.hint is not None and "VASTAI_API_KEY" in err.hint and "vastai.api_key" in err.hint
    for text in (str(err), repr(err), err.hint):
        assert other not in text
    assert vast.received()[-1].auth_present and not vast.received()[-1].auth_ok


def test_empty_key_is_a_credentials_error() -> None:
    with pytest.raises(CredentialsError) as info:
        VastAIClient("  ")
    assert info.value.hint and "VASTAI_API_KEY" in info.value.hint


def test_success_false_is_a_failure_with_vasts_message(vast: FakeVast, client: VastAIClient) -> None:
    vast.fail_next_creates(1, status=200, msg="Offer no longer available")
    with pytest.raises(ProviderError) as info:
        client.create_instance(102, image=IMAGE, env=ENV, args=ARGS, disk_gb=40, label="l")
    assert info.value.kind == "http" and info.value.status == 200
    assert "Offer no longer available" in str(info.value)
    assert_no_key(info.value)
    assert vast.live_ids() == set()


@pytest.mark.parametrize("status", [500, 502, 503, 504])
def test_create_is_never_resent_after_an_ambiguous_failure(vast: FakeVast, client: VastAIClient, status: int) -> None:
    vast.fail_next_creates(1, status=status, msg="upstream trouble")
    with pytest.raises(ProviderError) as info:
        client.create_instance(102, image=IMAGE, env=ENV, args=ARGS, disk_gb=40, label="l")
    assert info.value.kind == "http" and info.value.status == status
    assert "upstream trouble" in str(info.value)
    assert len(vast.received("PUT", "/api/v0/asks/102/")) == 1  # a duplicate create would bill


@pytest.mark.parametrize("status,headers", [(503, {"Retry-After": "1"}), (429, {}), (502, {"Retry-After": "1"})])
def test_create_is_resent_only_after_a_429_with_retry_after(vast: FakeVast, client: VastAIClient, sleeps: Sleeps,
                                                            status: int, headers: dict[str, str]) -> None:
    """Finding 10: a 503 used to re-send the create (the retry transport trusted 503 to mean
    "not acted on"). Only a 429 that names its wait is re-sent; everything else is settled by
    the label lookup of the launch attempt."""
    vast.inject_status(status, times=1, path="/api/v0/asks/", headers=headers, body={"success": False, "msg": "busy"})
    with pytest.raises(ProviderError) as info:
        client.create_instance(102, image=IMAGE, env=ENV, args=ARGS, disk_gb=40, label="l")
    assert info.value.status == status
    assert len(vast.received("PUT", "/api/v0/asks/102/")) == 1 and sleeps.calls == []


def test_create_is_not_resent_after_a_dropped_or_refused_connection(vast: FakeVast, client: VastAIClient,
                                                                    sleeps: Sleeps) -> None:
    from tests.fakes.vastai_server import DROP

    vast.create_but_fail(1, status=DROP)
    with pytest.raises(ProviderError) as info:
        client.create_instance(102, image=IMAGE, env=ENV, args=ARGS, disk_gb=40, label="l")
    assert info.value.kind == "connect" and len(vast.received("PUT", "/api/v0/asks/102/")) == 1
    assert len(vast.live_ids()) == 1  # it was created: the caller must look for its label
    seen: list[httpx.Request] = []

    def refuse(request: httpx.Request) -> httpx.Response:
        seen.append(request)
        raise httpx.ConnectError("refused", request=request)

    with mock_client(refuse) as mocked, pytest.raises(ProviderError):
        mocked.create_instance(102, image=IMAGE, env=ENV, args=ARGS, disk_gb=40, label="l")
    assert len(seen) == 1
    with mock_client(refuse) as mocked, pytest.raises(ProviderError):
        mocked.current_user()  # other calls keep their retries
    assert len(seen) == 1 + 4


def test_429_is_retried_after_retry_after(vast: FakeVast, client: VastAIClient, sleeps: Sleeps) -> None:
    vast.rate_limit_once(retry_after="3", path="/api/v0/asks/")
    instance_id = client.create_instance(102, image=IMAGE, env=ENV, args=ARGS, disk_gb=40, label="l")
    assert vast.live_ids() == {instance_id}
    assert sleeps.calls == [3.0]
    assert len(vast.received("PUT", "/api/v0/asks/102/")) == 2


def test_429_until_retries_run_out_is_rate_limit(vast: FakeVast, sleeps: Sleeps) -> None:
    vast.inject_status(429, times=None, headers={"Retry-After": "1"}, body={"success": False, "msg": "slow down"})
    with VastAIClient(KEY, api_url=vast.url, sleep=sleeps, retries=2) as client, pytest.raises(ProviderError) as info:
        client.current_user()
    assert info.value.kind == "rate_limit" and "slow down" in str(info.value)
    assert sleeps.calls == [1.0, 1.0]


def test_503_on_a_get_is_retried(vast: FakeVast, client: VastAIClient, sleeps: Sleeps) -> None:
    vast.inject_status(503, times=1, path="/api/v1/instances/")
    assert client.list_instances() == []
    assert len(sleeps.calls) == 1


def test_connection_refused_is_connect(sleeps: Sleeps) -> None:
    with socket.socket() as s:  # a port nobody listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with VastAIClient(KEY, api_url=f"http://127.0.0.1:{port}", sleep=sleeps, retries=1) as client, pytest.raises(
        ProviderError
    ) as info:
        client.current_user()
    assert info.value.kind == "connect"
    assert_no_key(info.value)
    assert len(sleeps.calls) == 1  # connection errors are retried: nothing was sent


def test_slow_api_is_timeout(vast: FakeVast) -> None:
    vast.set_delay(0.5)
    fast = Timeouts(connect=1.0, first_byte=0.05, read=0.05, write=1.0, pool=1.0)
    with VastAIClient(KEY, api_url=vast.url, timeouts=fast, sleep=Sleeps()) as client, pytest.raises(ProviderError) as info:
        client.current_user()
    assert info.value.kind == "timeout"


def test_non_json_success_reply_is_malformed() -> None:
    with mock_client(lambda r: httpx.Response(200, text="<html>maintenance</html>")) as client, pytest.raises(
        ProviderError
    ) as info:
        client.current_user()
    assert info.value.kind == "malformed"


def test_error_status_without_json_uses_the_reason_phrase() -> None:
    with mock_client(lambda r: httpx.Response(500, text="oops")) as client, pytest.raises(ProviderError) as info:
        client.current_user()
    assert info.value.kind == "http" and "Internal Server Error" in str(info.value)


def test_key_echoed_by_the_server_is_scrubbed() -> None:
    def handler(request: httpx.Request) -> httpx.Response:
        return httpx.Response(400, json={"success": False, "msg": f"bad key {KEY} for request"})

    with mock_client(handler) as client, pytest.raises(ProviderError) as info:
        client.current_user()
    assert info.value.kind == "bad_request"
    assert_no_key(info.value)


def test_key_never_in_url_or_logs(vast: FakeVast, client: VastAIClient, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    instance_id = client.create_instance(102, image=IMAGE, env=ENV, args=ARGS, disk_gb=40, label="l")
    client.get_instance(instance_id)
    client.list_instances()
    client.destroy_instance(instance_id)
    assert caplog.records, "expected debug logging"
    assert KEY not in caplog.text
    assert all(r.auth_ok and not r.key_in_url for r in vast.requests)
    assert KEY not in repr(client)


# -- dataclasses -----------------------------------------------------------------------------


def test_instance_endpoint_edge_cases() -> None:
    base: dict[str, Any] = {"id": 1, "public_ipaddr": "203.0.113.7"}
    assert Instance.from_json({**base, "ports": None}).endpoint() is None
    assert Instance.from_json({**base, "ports": {"8000/tcp": []}}).endpoint() is None
    ported = Instance.from_json({**base, "ports": {"8000/tcp": [{"HostIp": "0.0.0.0", "HostPort": "41234"}]}})
    assert ported.endpoint() == "http://203.0.113.7:41234"
    assert Instance.from_json({"id": 1, "ports": ported.ports}).endpoint() is None  # no IP yet
    minimal = Instance.from_json({"id": 5})
    assert minimal.actual_status is None and minimal.dph_total is None and minimal.ports == {}


def test_offer_prices_are_exact_decimals() -> None:
    offer = Offer.from_json(make_offer(1, dph_total="0.1"))
    assert offer.dph_total == Decimal("0.1")


def test_default_url() -> None:
    assert DEFAULT_API_URL == "https://console.vast.ai"
    with VastAIClient(KEY, transport=httpx.MockTransport(lambda r: httpx.Response(200, json={}))) as client:
        assert client.api_url == DEFAULT_API_URL
