"""A loopback fake of the Vast.ai REST API, for tests: offers, instances with a state machine,
and fault injection (among others: a create that fails at the HTTP level, or drops the
connection, yet creates an instance that is listed only after N listings; a host raising an
instance's price).

It implements exactly the table in `facts/PROVIDERS.md` ("Vast.ai REST API"): the same paths
(trailing slashes included: a path that differs is a 404), Bearer auth, the request and reply
shapes. Nothing really sleeps or boots: an instance moves from `actual_status` null to
`loading` to `running` after a number of show-polls, or after seconds of an injectable clock.
Where the real service was not observed (the status of some error replies, the wording of
`status_msg`), the fake's choice is marked "guess".

It must not be imported by gpuctl itself, and it never talks to the real network: it binds
127.0.0.1 on a free port.

    with FakeVast(offers=[make_offer(1, gpu_name="RTX 3090", dph_total="0.20")]) as vast:
        client = VastAIClient(vast.api_key, api_url=vast.url)
"""

from __future__ import annotations

import json
import re
import sys
import threading
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, urlsplit

DEFAULT_API_KEY = "fake-vast-key-0123456789abcdef"

# What a bad host reports (the original system's logs and public issue trackers); gpuctl
# matches on the CDI phrase.
CDI_STATUS_MSG = (
    "Error response from daemon: failed to create task for container: failed to create shim "
    "task: OCI runtime create failed: could not apply required modification to OCI "
    "specification: error modifying OCI spec: failed to inject CDI devices: unresolvable CDI "
    "devices nvidia.com/gpu=all: unknown"
)

FIRST_INSTANCE_ID = 20_000_001

_OPERATORS = ("eq", "neq", "gt", "gte", "lt", "lte", "in", "notin")
# Keys of the search query that are settings, not field filters.
_QUERY_SETTINGS = frozenset({"order", "type", "allocated_storage", "limit", "disable_bundling", "extra_ids"})


class FakeClock:
    """A clock that only moves when told to: `clock()` reads it, `clock.advance(s)` moves it."""

    def __init__(self, start: float = 1_767_225_600.0) -> None:  # 2026-01-01T00:00:00Z
        self.now = start
        self._lock = threading.Lock()

    def __call__(self) -> float:
        with self._lock:
            return self.now

    def advance(self, seconds: float) -> None:
        with self._lock:
            self.now += seconds


def make_offer(
    offer_id: int,
    *,
    gpu_name: str = "RTX 3090",
    dph_total: float | str | Decimal = "0.20",
    num_gpus: int = 1,
    gpu_ram: int = 24576,
    reliability: float = 0.99,
    inet_down: float = 800.0,
    cuda_max_good: float = 12.4,
    disk_space: float = 200.0,
    geolocation: str = "Texas, US",
    machine_id: int | None = None,
    host_id: int | None = None,
    verified: bool = True,
    **extra: Any,
) -> dict[str, Any]:
    """One offer as the search endpoint returns it (the fields gpuctl reads, plus a few more)."""
    machine = machine_id if machine_id is not None else 50_000 + offer_id
    offer: dict[str, Any] = {
        "id": offer_id,
        "ask_contract_id": offer_id,
        "bundle_id": offer_id,
        "gpu_name": gpu_name,
        "num_gpus": num_gpus,
        "gpu_ram": gpu_ram,
        "gpu_total_ram": gpu_ram * num_gpus,
        "cpu_ram": 64_000,
        "dph_total": float(Decimal(str(dph_total))),
        "reliability": reliability,
        "reliability2": reliability,
        "inet_down": inet_down,
        "inet_up": inet_down / 2,
        "cuda_max_good": cuda_max_good,
        "disk_space": disk_space,
        "geolocation": geolocation,
        "machine_id": machine,
        "host_id": host_id if host_id is not None else 70_000 + machine,
        "verification": "verified" if verified else "unverified",
        "verified": verified,
        "external": False,
        "rentable": True,
        "rented": False,
        "direct_port_count": 20,
        "hosting_type": 0,
    }
    offer.update(extra)
    return offer


def default_offers() -> list[dict[str, Any]]:
    """A small market across a few GPUs, not in price order (so ordering is visible)."""
    return [
        make_offer(101, gpu_name="RTX 3090", dph_total="0.25", reliability=0.97),
        make_offer(102, gpu_name="RTX 3090", dph_total="0.18", reliability=0.99),
        make_offer(103, gpu_name="RTX 3090", dph_total="0.21", reliability=0.90),
        make_offer(104, gpu_name="RTX 3090", dph_total="0.60", reliability=0.99),
        make_offer(105, gpu_name="RTX 3090", dph_total="0.22", num_gpus=2, gpu_ram=24576),
        make_offer(201, gpu_name="RTX 4090", dph_total="0.40", gpu_ram=24564, reliability=0.98),
        make_offer(202, gpu_name="RTX 4090", dph_total="0.35", gpu_ram=24564, inet_down=90.0),
        make_offer(301, gpu_name="A100 SXM4", dph_total="1.10", gpu_ram=81920, cuda_max_good=12.2),
        make_offer(401, gpu_name="H100 SXM", dph_total="2.40", gpu_ram=81559, verified=False),
    ]


@dataclass(frozen=True)
class RecordedRequest:
    """One request as the fake received it (the key itself is never kept)."""

    method: str
    path: str  # without the query string
    query: dict[str, str]  # last value of each parameter
    body: Any  # parsed JSON; the raw text if it was not JSON; None if empty
    auth_present: bool  # an `Authorization: Bearer ...` header was sent
    auth_ok: bool  # ... and it carried the right key
    key_in_url: bool  # the API key appeared anywhere in the request line (must never happen)


@dataclass
class FakeInstance:
    """An instance's server-side record; `FakeVast.instance_json` renders the API view."""

    id: int
    offer: dict[str, Any]
    create_body: dict[str, Any]
    created_at: float
    label: str | None
    image: str | None
    env: dict[str, Any]
    disk: float | None
    runtype: str | None
    args: list[Any] | None
    onstart: str | None = None
    price: Any = None
    polls: int = 0
    stopped: bool = False
    destroyed: bool = False
    destroyed_at: float | None = None
    fault: str | None = None  # None | "stuck" | "cdi" | "exited"
    exit_msg: str | None = None  # the status_msg of an "exited" fault
    host_port: int | None = None  # overrides FakeVast.endpoint_port for this one
    dph_total: float | None = None  # the live price, once the host changed it (else the offer's)
    hidden_lists: int = 0  # instance-list calls still to come that do not show it yet
    no_start_date: bool = False  # listed with "start_date": null (the client must not assume it is set)

    @property
    def machine_id(self) -> int | None:
        return self.offer.get("machine_id")


@dataclass
class _StatusFault:
    status: int
    times: int | None  # None: every time
    method: str | None
    path: str | None  # a prefix of the path
    headers: dict[str, str] = field(default_factory=dict)
    body: Any = None


@dataclass
class _CreateFault:
    status: int  # 200 means {"success": false, "msg": ...}; DROP closes the connection unanswered
    msg: str
    times: int | None
    offer_id: int | None = None
    machine_id: int | None = None
    creates: bool = False  # the instance is created all the same (the reply is what failed)
    visible_after_lists: int = 0


# A "status" that closes the connection without any answer (the client sees a dropped connection).
DROP = -1


class FakeVast:
    """The fake Vast.ai API on 127.0.0.1. Use as a context manager, or start()/stop().

    State machine (per instance): `actual_status` is null at first, then "loading", then
    "running". By default it moves on show-polls (GET /api/v0/instances/{id}/): the first show
    sees null, the next ones "loading", and show number `running_after_polls` sees "running".
    With `running_after_seconds` set, the clock drives it instead: null for the first second,
    "loading" until that many seconds after creation, then "running".
    """

    def __init__(
        self,
        *,
        api_key: str = DEFAULT_API_KEY,
        offers: Iterable[Mapping[str, Any]] | None = None,
        page_size: int = 25,
        running_after_polls: int = 3,
        running_after_seconds: float | None = None,
        clock: Callable[[], float] | None = None,
        endpoint_port: int = 41234,
        consume_offers: bool = True,
        balance: float = 0.0,
        credit: float = 25.0,
    ) -> None:
        self.api_key = api_key
        self.page_size = page_size
        self.running_after_polls = running_after_polls
        self.running_after_seconds = running_after_seconds
        self.clock: Callable[[], float] = clock if clock is not None else FakeClock()
        self.endpoint_port = endpoint_port
        self.consume_offers = consume_offers
        self.balance = balance
        self.credit = credit
        self.delay = 0.0  # seconds before every reply (slow API); really waits, keep it small
        self.list_fault: str | None = None  # None | "empty" | "malformed" | "no_instances_key"

        self.offers: dict[int, dict[str, Any]] = {}
        for offer in default_offers() if offers is None else offers:
            self.offers[int(offer["id"])] = dict(offer)
        self.instances: dict[int, FakeInstance] = {}
        self.requests: list[RecordedRequest] = []
        self.internal_errors: list[str] = []  # exceptions inside the fake (should stay empty)

        self._next_id = FIRST_INSTANCE_ID
        self._status_faults: list[_StatusFault] = []
        self._create_faults: list[_CreateFault] = []
        self._stuck: list[tuple[int | None, int | None]] = []
        self._cdi: list[tuple[int | None, int | None]] = []
        self._exits: list[tuple[int | None, int | None, str]] = []
        self._destroy_faults: dict[int, int | None] = {}  # id -> remaining times (None: always)
        self._hidden_now: set[int] = set()  # instances the current listing leaves out
        self._lock = threading.RLock()
        self._stopping = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle -----------------------------------------------------------------------

    def start(self) -> FakeVast:
        self._stopping.clear()
        server = _Server(("127.0.0.1", 0), _Handler)
        server.fake = self
        self._server = server
        self._thread = threading.Thread(
            target=server.serve_forever, kwargs={"poll_interval": 0.05}, name="fake-vast", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        self._stopping.set()  # wakes handlers waiting out a `delay`
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeVast:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._server is not None, "FakeVast is not started"
        return int(self._server.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # -- setting up and inspection ---------------------------------------------------------

    def add_offer(self, offer: Mapping[str, Any]) -> None:
        with self._lock:
            self.offers[int(offer["id"])] = dict(offer)

    def remove_offer(self, offer_id: int) -> None:
        with self._lock:
            self.offers.pop(offer_id, None)

    def add_instance(
        self,
        *,
        label: str | None = None,
        offer: Mapping[str, Any] | None = None,
        running: bool = True,
        created_at: float | None = None,
        image: str = "vllm/vllm-openai:latest",
        env: Mapping[str, Any] | None = None,
    ) -> int:
        """Put an instance on the account directly (one made earlier, or by someone else)."""
        with self._lock:
            inst = self._new_instance(
                dict(offer) if offer is not None else make_offer(999, gpu_name="RTX 3090"),
                {"image": image, "env": dict(env if env is not None else {"-p 8000:8000": "1"}), "label": label},
            )
            if created_at is not None:
                inst.created_at = created_at
            if running:
                inst.polls = max(self.running_after_polls, 1)
                if self.running_after_seconds is not None:
                    inst.created_at = min(inst.created_at, self.clock() - self.running_after_seconds)
            return inst.id

    def live_ids(self) -> set[int]:
        """Ids of instances that exist (not destroyed): what would still be billing."""
        with self._lock:
            return {i.id for i in self.instances.values() if not i.destroyed}

    def instance(self, instance_id: int) -> FakeInstance:
        with self._lock:
            return self.instances[instance_id]

    def received(self, method: str | None = None, path: str | None = None) -> list[RecordedRequest]:
        """Recorded requests, optionally only those with this method and/or exact path."""
        with self._lock:
            return [
                r
                for r in self.requests
                if (method is None or r.method == method) and (path is None or r.path == path)
            ]

    def instance_json(self, inst: FakeInstance) -> dict[str, Any]:
        """The API's view of an instance at this moment (does not count as a poll)."""
        with self._lock:
            return self._render(inst)

    # -- fault injection (all safe to call while the server runs) -------------------------

    def fail_next_creates(self, n: int = 1, *, status: int = 500, msg: str = "Internal Server Error") -> None:
        """The next `n` creates fail: `status` 500 (or any error status), or 200 with success false."""
        with self._lock:
            self._create_faults.append(_CreateFault(status=status, msg=msg, times=n))

    def create_but_fail(self, n: int = 1, *, status: int = 500, visible_after_lists: int = 0,
                        msg: str = "Internal Server Error") -> None:
        """The next `n` creates make the instance, yet fail at the HTTP level: `status` (5xx), or
        DROP (the connection closes without an answer). The instance is missing from the next
        `visible_after_lists` instance listings (a create still in flight), then listed."""
        with self._lock:
            self._create_faults.append(_CreateFault(status=status, msg=msg, times=n, creates=True,
                                                    visible_after_lists=visible_after_lists))

    def set_price(self, instance_id: int, dph_total: float | str | Decimal) -> None:
        """The host changed the instance's price (at contract renewal): lists and shows report it."""
        with self._lock:
            self.instances[instance_id].dph_total = float(Decimal(str(dph_total)))

    def fail_creates_for(
        self,
        *,
        offer_id: int | None = None,
        machine_id: int | None = None,
        status: int = 500,
        msg: str = "Internal Server Error",
    ) -> None:
        """Every create from this offer, or on this machine, fails."""
        with self._lock:
            self._create_faults.append(
                _CreateFault(status=status, msg=msg, times=None, offer_id=offer_id, machine_id=machine_id)
            )

    def stick_loading(self, *, offer_id: int | None = None, machine_id: int | None = None) -> None:
        """Instances created from this offer / on this machine stay "loading" forever."""
        with self._lock:
            self._stuck.append((offer_id, machine_id))

    def fail_boot(self, *, offer_id: int | None = None, machine_id: int | None = None) -> None:
        """Instances from this offer / machine end "exited" with the CDI injection failure."""
        with self._lock:
            self._cdi.append((offer_id, machine_id))

    def exit_on_boot(self, *, offer_id: int | None = None, machine_id: int | None = None,
                     msg: str = "container exited with code 1: vllm: error: unrecognized arguments") -> None:
        """Instances from this offer / machine end "exited" once booted, with `msg` (not CDI)."""
        with self._lock:
            self._exits.append((offer_id, machine_id, msg))

    def fail_destroy(self, *instance_ids: int, times: int | None = None) -> None:
        """DELETE of these ids answers 500 (`times` times, or until `allow_destroy`)."""
        with self._lock:
            for i in instance_ids:
                self._destroy_faults[i] = times

    def allow_destroy(self, *instance_ids: int) -> None:
        with self._lock:
            for i in instance_ids:
                self._destroy_faults.pop(i, None)

    def set_delay(self, seconds: float) -> None:
        """Every reply waits this long first (real time: use fractions of a second)."""
        with self._lock:
            self.delay = seconds

    def set_list_fault(self, mode: str | None) -> None:
        """GET /api/v1/instances/ misbehaves: "empty" answers `{"instances": []}` whatever
        exists (the 2026 leak scenario), "malformed" answers broken JSON, "no_instances_key"
        answers `{"success": true}`. None restores the truth."""
        if mode not in (None, "empty", "malformed", "no_instances_key"):
            raise ValueError(f"unknown list fault {mode!r}")
        with self._lock:
            self.list_fault = mode

    def inject_status(
        self,
        status: int,
        *,
        times: int | None = 1,
        method: str | None = None,
        path: str | None = None,
        headers: Mapping[str, str] | None = None,
        body: Any = None,
    ) -> None:
        """The next matching request(s) get this status instead of being served (checked
        before auth, as a gateway would). `path` matches as a prefix."""
        with self._lock:
            self._status_faults.append(
                _StatusFault(status=status, times=times, method=method, path=path, headers=dict(headers or {}), body=body)
            )

    def rate_limit_once(self, *, retry_after: str = "1", method: str | None = None, path: str | None = None) -> None:
        """The next matching request gets 429 with `Retry-After`, then all is normal."""
        self.inject_status(
            429,
            times=1,
            method=method,
            path=path,
            headers={"Retry-After": retry_after},
            body={"success": False, "error": "rate_limited", "msg": "API requests too frequent"},
        )

    def reset_faults(self) -> None:
        with self._lock:
            self._status_faults.clear()
            self._create_faults.clear()
            self._stuck.clear()
            self._cdi.clear()
            self._exits.clear()
            self._destroy_faults.clear()
            self.delay = 0.0
            self.list_fault = None

    # -- internals ---------------------------------------------------------------------------

    def _new_instance(self, offer: dict[str, Any], body: Mapping[str, Any]) -> FakeInstance:
        inst = FakeInstance(
            id=self._next_id,
            offer=offer,
            create_body=dict(body),
            created_at=self.clock(),
            label=body.get("label"),
            image=body.get("image"),
            env=dict(body.get("env") or {}),
            disk=body.get("disk"),
            runtype=body.get("runtype"),
            args=body.get("args"),
            onstart=body.get("onstart"),
            price=body.get("price"),
        )
        self._next_id += 1
        offer_id, machine_id = offer.get("id"), offer.get("machine_id")

        def hit(rules: list[tuple[int | None, int | None]]) -> bool:
            return any(
                (o is not None and o == offer_id) or (m is not None and m == machine_id) for o, m in rules
            )

        exits = [m for o, mid, m in self._exits if (o is not None and o == offer_id) or (mid is not None and mid == machine_id)]
        if hit(self._cdi):
            inst.fault = "cdi"
        elif exits:
            inst.fault, inst.exit_msg = "exited", exits[0]
        elif hit(self._stuck):
            inst.fault = "stuck"
        self.instances[inst.id] = inst
        return inst

    def _stage(self, inst: FakeInstance) -> int:
        """0: not yet reported (null), 1: loading, 2: booted."""
        if self.running_after_seconds is not None:
            elapsed = self.clock() - inst.created_at
            if elapsed >= self.running_after_seconds:
                return 2
            return 1 if elapsed >= min(1.0, self.running_after_seconds) else 0
        if inst.polls >= self.running_after_polls:
            return 2
        return 1 if inst.polls >= 2 else 0

    def _render(self, inst: FakeInstance) -> dict[str, Any]:
        offer = inst.offer
        stage = self._stage(inst)
        image = inst.image or ""
        intended, cur_state = "running", "running"
        ports: dict[str, Any] = {}
        if inst.stopped:
            actual, intended, cur_state, msg = "exited", "stopped", "stopped", "stopped by user"
        elif stage == 0:
            actual, msg = None, None
        elif stage == 1 or inst.fault == "stuck":
            actual, msg = "loading", f"Pulling image {image}"  # wording: guess
        elif inst.fault == "cdi":
            actual, msg = "exited", CDI_STATUS_MSG
        elif inst.fault == "exited":
            actual, msg = "exited", inst.exit_msg
        else:
            actual, msg = "running", f"success, running {image}"  # wording: guess
            host_port = str(inst.host_port if inst.host_port is not None else self.endpoint_port)
            for container_port in _exposed_ports(inst.env):
                ports[f"{container_port}/tcp"] = [{"HostIp": "0.0.0.0", "HostPort": host_port}]
        return {
            "id": inst.id,
            "label": inst.label,
            "actual_status": actual,
            "intended_status": intended,
            "cur_state": cur_state,
            "next_state": intended,
            "status_msg": msg,
            "gpu_name": offer.get("gpu_name"),
            "num_gpus": offer.get("num_gpus"),
            "gpu_ram": offer.get("gpu_ram"),
            "dph_total": inst.dph_total if inst.dph_total is not None else offer.get("dph_total"),
            "start_date": None if inst.no_start_date else inst.created_at,
            "public_ipaddr": "127.0.0.1",
            "ports": ports,
            "machine_id": offer.get("machine_id"),
            "host_id": offer.get("host_id"),
            "geolocation": offer.get("geolocation"),
            "reliability2": offer.get("reliability2"),
            "image_uuid": inst.image,
            "image_runtype": inst.runtype,
            "image_args": inst.args,
            "extra_env": [[k, v] for k, v in inst.env.items()],
            "disk_space": inst.disk,
            "onstart": inst.onstart,
        }

    def _take_status_fault(self, method: str, path: str) -> _StatusFault | None:
        for fault in self._status_faults:
            if (fault.method is None or fault.method == method) and (fault.path is None or path.startswith(fault.path)):
                if fault.times is not None:
                    fault.times -= 1
                    if fault.times <= 0:
                        self._status_faults.remove(fault)
                return fault
        return None

    def _take_create_fault(self, offer: Mapping[str, Any] | None, offer_id: int) -> _CreateFault | None:
        machine_id = offer.get("machine_id") if offer else None
        for fault in self._create_faults:
            targeted = fault.offer_id is not None or fault.machine_id is not None
            if targeted and not (
                (fault.offer_id is not None and fault.offer_id == offer_id)
                or (fault.machine_id is not None and fault.machine_id == machine_id)
            ):
                continue
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._create_faults.remove(fault)
            return fault
        return None

    # Each route returns (status, json-able body or raw bytes, extra headers).
    def _dispatch(self, method: str, path: str, query: dict[str, str], body: Any) -> tuple[int, Any, dict[str, str]]:
        if method == "POST" and path == "/api/v0/bundles/":
            return self._search(body)
        m = re.fullmatch(r"/api/v0/asks/(\d+)/", path)
        if m and method == "PUT":
            return self._create(int(m.group(1)), body)
        if method == "GET" and path == "/api/v1/instances/":
            return self._list(query)
        m = re.fullmatch(r"/api/v0/instances/(\d+)/", path)
        if m:
            instance_id = int(m.group(1))
            if method == "GET":
                return self._show(instance_id)
            if method == "PUT":
                return self._update(instance_id, body)
            if method == "DELETE":
                return self._destroy(instance_id)
        if method == "GET" and path == "/api/v0/users/current":
            return 200, {
                "id": 4242,
                "username": "fake-user",
                "email": "fake-user@example.invalid",
                "balance": self.balance,
                "credit": self.credit,
                "has_billing": True,
            }, {}
        return 404, _fail("not_found", f"{method} {path} is not an API route"), {}

    def _search(self, body: Any) -> tuple[int, Any, dict[str, str]]:
        if not isinstance(body, dict):
            return 400, _fail("invalid_args", "search query must be a JSON object"), {}
        filters = {k: v for k, v in body.items() if k not in _QUERY_SETTINGS}
        try:
            found = [dict(o) for o in self.offers.values() if _matches(o, filters)]
        except ValueError as exc:
            return 400, _fail("invalid_args", str(exc)), {}
        order = body.get("order") or [["dph_total", "asc"]]
        for col, direction in reversed([tuple(o) for o in order]):
            found.sort(key=_by(str(col)), reverse=(direction == "desc"))
        limit = body.get("limit")
        if isinstance(limit, int):
            found = found[:limit]
        return 200, {"offers": found}, {}

    def _create(self, offer_id: int, body: Any) -> tuple[int, Any, dict[str, str]]:
        offer = self.offers.get(offer_id)
        fault = self._take_create_fault(offer, offer_id)
        if fault is not None and fault.creates:
            if offer is None or not isinstance(body, dict):
                return 400, _fail("invalid_args", "create_but_fail needs a valid create"), {}
            inst = self._new_instance(dict(offer), body)
            inst.hidden_lists = fault.visible_after_lists
            if self.consume_offers:
                offer["rentable"], offer["rented"] = False, True
            return fault.status, _fail("server_error", fault.msg), {}
        if fault is not None:
            if fault.status == 200:
                return 200, _fail("invalid_args", fault.msg), {}
            return fault.status, _fail("server_error", fault.msg), {}
        if offer is None or not offer.get("rentable", True):
            # Status and wording: guess.
            return 404, _fail("no_such_ask", f"Instance type by id {offer_id} is not available."), {}
        if not isinstance(body, dict) or not isinstance(body.get("image"), str):
            return 400, _fail("invalid_args", "image is required"), {}
        if not isinstance(body.get("env", {}), dict):
            return 400, _fail("invalid_args", "env must be an object"), {}
        inst = self._new_instance(dict(offer), body)
        if self.consume_offers:
            offer["rentable"], offer["rented"] = False, True
        return 200, {"success": True, "new_contract": inst.id}, {}

    def _list(self, query: dict[str, str]) -> tuple[int, Any, dict[str, str]]:
        if self.list_fault == "empty":
            return 200, {"instances": []}, {}
        if self.list_fault == "malformed":
            return 200, b'{"instances": [{"id": 1, "actual_st', {}
        if self.list_fault == "no_instances_key":
            return 200, {"success": True}, {}
        try:
            select = _json_param(query, "select_filters", {})
            order_by = _json_param(query, "order_by", [{"col": "id", "dir": "asc"}])
            limit = int(_json_param(query, "limit", 25))
        except ValueError as exc:
            return 400, _fail("invalid_args", str(exc)), {}
        # The official client sends string values bare and passes `next_token` back as issued.
        token = query.get("after_token")
        if token is not None and token.startswith('"'):
            return 400, _fail("invalid_args", "after_token must be the bare next_token, not JSON-quoted"), {}
        if token in (None, "", "null"):  # a new listing: creates in flight come one listing closer
            self._hidden_now = {i.id for i in self.instances.values() if i.hidden_lists > 0}
            for instance_id in self._hidden_now:
                self.instances[instance_id].hidden_lists -= 1
        live = [self._render(i) for i in self.instances.values() if not i.destroyed and i.id not in self._hidden_now]
        try:
            rows = [r for r in live if _matches(r, select or {})]
        except ValueError as exc:
            return 400, _fail("invalid_args", str(exc)), {}
        for spec in reversed(order_by or []):
            col = spec.get("col", "id")
            rows.sort(key=_by(str(col)), reverse=(spec.get("dir") == "desc"))
        offset = 0
        if token not in (None, ""):
            m = re.fullmatch(r"page-(\d+)", str(token))
            if not m:
                return 400, _fail("invalid_args", "bad after_token"), {}
            offset = int(m.group(1))
        size = max(1, min(limit, self.page_size))
        page = rows[offset : offset + size]
        next_token = f"page-{offset + size}" if offset + size < len(rows) else None
        label_counts: dict[str, int] = {}
        for r in rows:
            if r.get("label"):
                label_counts[r["label"]] = label_counts.get(r["label"], 0) + 1
        return 200, {
            "instances": page,
            "next_token": next_token,
            "total_instances": len(rows),
            "label_counts": label_counts,
        }, {}

    def _show(self, instance_id: int) -> tuple[int, Any, dict[str, str]]:
        inst = self.instances.get(instance_id)
        if inst is None or inst.destroyed:
            return 200, {"instances": None}, {}
        inst.polls += 1
        return 200, {"instances": self._render(inst)}, {}

    def _update(self, instance_id: int, body: Any) -> tuple[int, Any, dict[str, str]]:
        inst = self.instances.get(instance_id)
        if inst is None or inst.destroyed:
            return 404, _fail("no_such_instance", f"Instance {instance_id} not found."), {}  # guess
        if not isinstance(body, dict):
            return 400, _fail("invalid_args", "body must be a JSON object"), {}
        if "label" in body:
            inst.label = body["label"]
        if "state" in body:
            if body["state"] == "stopped":
                inst.stopped = True
            elif body["state"] == "running":
                # A restart boots again from scratch.
                inst.stopped, inst.polls, inst.created_at = False, 0, self.clock()
            else:
                return 400, _fail("invalid_args", f"unknown state {body['state']!r}"), {}
        return 200, {"success": True}, {}

    def _destroy(self, instance_id: int) -> tuple[int, Any, dict[str, str]]:
        if instance_id in self._destroy_faults:
            remaining = self._destroy_faults[instance_id]
            if remaining is not None:
                if remaining <= 1:
                    del self._destroy_faults[instance_id]
                else:
                    self._destroy_faults[instance_id] = remaining - 1
            return 500, _fail("server_error", "Internal Server Error"), {}
        inst = self.instances.get(instance_id)
        if inst is None or inst.destroyed:
            return 404, _fail("no_such_instance", f"Instance {instance_id} not found."), {}  # guess
        inst.destroyed, inst.destroyed_at = True, self.clock()
        if self.consume_offers and inst.offer.get("id") in self.offers:
            self.offers[inst.offer["id"]]["rentable"] = True
            self.offers[inst.offer["id"]]["rented"] = False
        return 200, {"success": True}, {}

    def _handle(self, method: str, raw_path: str, headers: Mapping[str, str], raw_body: bytes) -> tuple[int, Any, dict[str, str]]:
        parts = urlsplit(raw_path)
        query = {k: v[-1] for k, v in parse_qs(parts.query, keep_blank_values=True).items()}
        text = raw_body.decode("utf-8", "replace")
        body: Any
        body_ok = True
        if not text.strip():
            body = None
        else:
            try:
                body = json.loads(text)
            except ValueError:
                body, body_ok = text, False
        auth = headers.get("Authorization") or ""
        auth_present = auth.startswith("Bearer ")
        auth_ok = auth == f"Bearer {self.api_key}"
        with self._lock:
            self.requests.append(
                RecordedRequest(
                    method=method,
                    path=parts.path,
                    query=query,
                    body=body,
                    auth_present=auth_present,
                    auth_ok=auth_ok,
                    key_in_url=self.api_key in raw_path,
                )
            )
            delay = self.delay
        if delay > 0:
            self._stopping.wait(delay)
        with self._lock:
            fault = self._take_status_fault(method, parts.path)
            if fault is not None:
                return fault.status, fault.body if fault.body is not None else _fail("error", f"HTTP {fault.status}"), fault.headers
            if not auth_ok:
                return 401, _fail("invalid_user_key", "Invalid user key"), {}
            if not body_ok:
                return 400, _fail("invalid_args", "request body is not valid JSON"), {}
            return self._dispatch(method, parts.path, query, body)


def _fail(error: str, msg: str) -> dict[str, Any]:
    return {"success": False, "error": error, "msg": msg}


def _exposed_ports(env: Mapping[str, Any]) -> list[str]:
    """Container ports asked for with docker-style `-p HOST:CONTAINER` env keys."""
    found = []
    for key in env:
        m = re.fullmatch(r"-p\s+(?:\d+:)?(\d+)(?:/tcp)?", str(key).strip())
        if m:
            found.append(m.group(1))
    return found


def _json_param(query: Mapping[str, str], name: str, default: Any) -> Any:
    """List parameters are JSON-encoded; an absent, empty or `null` value means the default."""
    raw = query.get(name)
    if raw is None or raw == "" or raw == "null":
        return default
    try:
        return json.loads(raw)
    except ValueError:
        raise ValueError(f"{name} is not JSON") from None


def _sort_key(value: Any) -> tuple[int, Any]:
    if value is None:
        return (1, 0)
    if isinstance(value, int | float):
        return (0, float(value))
    return (0, str(value))


def _by(col: str) -> Callable[[Mapping[str, Any]], tuple[int, Any]]:
    def key(record: Mapping[str, Any]) -> tuple[int, Any]:
        return _sort_key(record.get(col))

    return key


def _coerce(field_value: Any, query_value: Any) -> Any:
    """The official client sends numbers (and sometimes booleans) as strings."""
    if isinstance(field_value, bool):
        if isinstance(query_value, str):
            return query_value.strip().lower() in ("true", "1")
        return bool(query_value)
    if isinstance(field_value, int | float):
        try:
            return float(query_value)
        except (TypeError, ValueError):
            raise ValueError(f"not a number: {query_value!r}") from None
    return None if query_value is None else str(query_value)


def _compare(field_value: Any, op: str, query_value: Any) -> bool:
    if op in ("in", "notin"):
        if not isinstance(query_value, list):
            raise ValueError(f"{op} needs a list")
        members = [_coerce(field_value, q) for q in query_value]
        value = float(field_value) if isinstance(field_value, int | float) and not isinstance(field_value, bool) else field_value
        return (value in members) == (op == "in")
    target = _coerce(field_value, query_value)
    value = float(field_value) if isinstance(field_value, int | float) and not isinstance(field_value, bool) else field_value
    if op == "eq":
        return bool(value == target)
    if op == "neq":
        return bool(value != target)
    if value is None or target is None:
        return False
    if op == "gt":
        return bool(value > target)
    if op == "gte":
        return bool(value >= target)
    if op == "lt":
        return bool(value < target)
    return bool(value <= target)  # lte


def _matches(record: Mapping[str, Any], filters: Mapping[str, Any]) -> bool:
    for name, cond in filters.items():
        if not isinstance(cond, dict):
            raise ValueError(f"filter {name!r} must be an object of operators")
        for op, query_value in cond.items():
            if op not in _OPERATORS:
                raise ValueError(f"unknown operator {op!r} for {name!r}")
            if name not in record:
                return False  # a filter on a field the record lacks matches nothing
            if not _compare(record[name], op, query_value):
                return False
    return True


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    fake: FakeVast

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hung up mid-request (timeout tests) is not a failure of the fake;
        # anything else is a bug in it and must show.
        if not isinstance(sys.exc_info()[1], ConnectionError | TimeoutError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "FakeVast/1.0"
    # Headers and body go out in two writes; with Nagle on, the second waits for a delayed
    # ACK (~40 ms a request).
    disable_nagle_algorithm = True

    def log_message(self, format: str, *args: Any) -> None:
        pass  # keep test output clean

    def _serve(self) -> None:
        assert isinstance(self.server, _Server)
        fake = self.server.fake
        length = int(self.headers.get("Content-Length") or 0)
        raw = self.rfile.read(length) if length > 0 else b""
        headers = {k: v for k, v in self.headers.items()}
        try:
            status, body, extra = fake._handle(self.command, self.path, headers, raw)
        except Exception as exc:  # a bug in the fake: answer, and keep it for the test to see
            fake.internal_errors.append(f"{self.command} {self.path}: {exc!r}")
            status, body, extra = 500, _fail("fake_bug", repr(exc)), {}
        if status == DROP:  # the request was acted on, but no answer ever leaves
            self.close_connection = True
            return
        payload = body if isinstance(body, bytes) else json.dumps(body).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(payload)))
            for k, v in extra.items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(payload)
        except (BrokenPipeError, ConnectionResetError):
            # The client gave up (a timeout test): nothing to answer.
            self.close_connection = True

    do_GET = _serve
    do_POST = _serve
    do_PUT = _serve
    do_DELETE = _serve
