"""Vast.ai: gpuctl's own small REST client (this part), and the instance lifecycle on top of it.

The client owns the calls in facts/PROVIDERS.md ("Vast.ai REST API") — search offers, create,
list (following `next_token`), show, label, destroy, current user — and maps every failure to
`ProviderError(provider="vastai", kind=...)`. Timeouts and retries (429/502/503/504) come from
`gpuctl.http.build_client`; a create is never re-sent, except after a 429 with Retry-After.

Why not the `vastai` SDK: it is synchronous `requests` code with a fixed 120 s timeout, untyped
errors and exact pins of heavy packages; a dozen typed calls over httpx are easier to test.

Must not: put the API key in a URL, a message or a log line; print; decide anything about
launching or cleaning up (that is lifecycle logic, built on this client); treat an empty or
malformed instance list as proof that nothing is running (callers cross-check the ledger).
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from decimal import Decimal
from types import TracebackType
from typing import Any

import httpx

from gpuctl.costs.money import to_decimal
from gpuctl.errors import CredentialsError, ProviderError
from gpuctl.http.client import RETRY_RATE_LIMITED_ONLY, Timeouts, build_client, redact

log = logging.getLogger("gpuctl.providers.vastai")

PROVIDER = "vastai"
DEFAULT_API_URL = "https://console.vast.ai"
LIST_PAGE_LIMIT = 25
# A list that pages this many times is looping, not long: stop rather than spin.
_MAX_LIST_PAGES = 1000
# Vast's API answers in well under a second; waiting 2 minutes (the cold-start budget other
# clients need) would only delay a cleanup.
DEFAULT_TIMEOUTS = Timeouts(connect=5.0, first_byte=30.0, read=30.0, write=10.0, pool=5.0)

AUTH_HINT = "Set VASTAI_API_KEY, or run `gpuctl profile set vastai.api_key` with a key from your Vast.ai account."


@dataclass(frozen=True)
class Offer:
    """One rentable offer from `POST /api/v0/bundles/`; `id` is the ask to create from."""

    id: int
    gpu_name: str
    num_gpus: int
    gpu_ram_mb: int
    dph_total: Decimal  # $/hour, storage for the requested disk included
    reliability: float  # 0..1
    inet_down: float  # Mb/s
    cuda_max_good: float
    disk_space: float  # GB
    geolocation: str
    machine_id: int
    host_id: int | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Offer:
        return cls(
            id=_req_int(data, "id", "offer"),
            gpu_name=str(data.get("gpu_name") or ""),
            num_gpus=_int(data.get("num_gpus")) or 0,
            gpu_ram_mb=_int(data.get("gpu_ram")) or 0,
            dph_total=to_decimal(data.get("dph_total")) or Decimal(0),
            reliability=_float(data.get("reliability", data.get("reliability2"))) or 0.0,
            inet_down=_float(data.get("inet_down")) or 0.0,
            cuda_max_good=_float(data.get("cuda_max_good")) or 0.0,
            disk_space=_float(data.get("disk_space")) or 0.0,
            geolocation=str(data.get("geolocation") or ""),
            machine_id=_req_int(data, "machine_id", "offer"),
            host_id=_int(data.get("host_id")),
            raw=dict(data),
        )


@dataclass(frozen=True)
class Instance:
    """One instance as `GET /api/v1/instances/` or `/api/v0/instances/{id}/` shows it."""

    id: int
    label: str | None
    actual_status: str | None  # None early, then "loading", "running", "exited" (also "created")
    intended_status: str | None
    status_msg: str | None
    gpu_name: str | None
    num_gpus: int | None
    dph_total: Decimal | None
    start_date: float | None  # epoch seconds
    public_ipaddr: str | None
    ports: Mapping[str, Any]
    machine_id: int | None
    raw: Mapping[str, Any] = field(repr=False, compare=False)

    @classmethod
    def from_json(cls, data: Mapping[str, Any]) -> Instance:
        ports = data.get("ports")
        return cls(
            id=_req_int(data, "id", "instance"),
            label=_opt_str(data.get("label")),
            actual_status=_opt_str(data.get("actual_status")),
            intended_status=_opt_str(data.get("intended_status")),
            status_msg=_opt_str(data.get("status_msg")),
            gpu_name=_opt_str(data.get("gpu_name")),
            num_gpus=_int(data.get("num_gpus")),
            dph_total=to_decimal(data.get("dph_total")),
            start_date=_float(data.get("start_date")),
            public_ipaddr=_opt_str(data.get("public_ipaddr")),
            ports=dict(ports) if isinstance(ports, Mapping) else {},
            machine_id=_int(data.get("machine_id")),
            raw=dict(data),
        )

    def endpoint(self, port: int = 8000) -> str | None:
        """`http://ip:HostPort` for a container port, or None while it is not mapped yet."""
        ip = (self.public_ipaddr or "").strip()
        bindings = self.ports.get(f"{port}/tcp")
        if not ip or not isinstance(bindings, list):
            return None
        for binding in bindings:
            host_port = binding.get("HostPort") if isinstance(binding, Mapping) else None
            if host_port not in (None, ""):
                return f"http://{ip}:{host_port}"
        return None


class VastAIClient:
    """A synchronous client for the Vast.ai REST API (the name the seed's users know)."""

    def __init__(
        self,
        api_key: str,
        *,
        api_url: str = DEFAULT_API_URL,
        transport: httpx.BaseTransport | None = None,
        sleep: Callable[[float], None] | None = None,
        timeouts: Timeouts | None = None,
        retries: int = 3,
    ) -> None:
        if not api_key or not api_key.strip():
            raise CredentialsError("No Vast.ai API key.", hint=AUTH_HINT)
        self.api_url = api_url.rstrip("/")
        # Kept only to scrub it from any text we pass on; it lives in the client's headers.
        self._secret = api_key.strip()
        self._http = build_client(
            base_url=self.api_url,
            headers={"Authorization": f"Bearer {self._secret}", "Accept": "application/json"},
            timeouts=timeouts or DEFAULT_TIMEOUTS,
            retries=retries,
            transport=transport,
            sleep=sleep,
        )

    def __repr__(self) -> str:
        return f"VastAIClient(api_url={self.api_url!r})"

    # -- context manager -----------------------------------------------------------------

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> VastAIClient:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    # -- API -----------------------------------------------------------------------------

    def search_offers(
        self,
        *,
        gpu_name: str,
        num_gpus: int = 1,
        min_gpu_ram_gb: float | None = None,
        max_dph: Decimal | float | None = None,
        min_reliability: float | None = None,
        min_inet_down: float | None = None,
        min_cuda: float | None = None,
        disk_gb: float = 40.0,
        exclude_machine_ids: Iterable[int] = (),
    ) -> list[Offer]:
        """Verified, rentable on-demand offers for one GPU model, cheapest first.

        `min_reliability` and `max_dph` are strict bounds (`reliability>X`, `dph<X`), as the
        official client's query language sends them; `disk_gb` is priced into `dph_total`.
        """
        excluded = sorted({int(m) for m in exclude_machine_ids})
        query = build_search_query(
            gpu_name=gpu_name,
            num_gpus=num_gpus,
            min_gpu_ram_gb=min_gpu_ram_gb,
            max_dph=max_dph,
            min_reliability=min_reliability,
            min_inet_down=min_inet_down,
            min_cuda=min_cuda,
            disk_gb=disk_gb,
            exclude_machine_ids=excluded,
        )
        what = f"offer search for {gpu_name}"
        data = self._call("POST", "/api/v0/bundles/", what, json_body=query)
        offers_json = data.get("offers")
        if not isinstance(offers_json, list):
            raise _malformed(what, "the reply has no `offers` list")
        offers = [Offer.from_json(_require_mapping(o, what)) for o in offers_json]
        # The server orders by price; re-sorting (stably) keeps "cheapest" true whatever it did,
        # and a machine that failed us before never comes back, whatever the server filtered.
        skip = set(excluded)
        return sorted((o for o in offers if o.machine_id not in skip), key=lambda o: o.dph_total)

    def create_instance(
        self,
        offer_id: int,
        *,
        image: str,
        env: Mapping[str, str],
        args: Sequence[str],
        disk_gb: float,
        label: str,
    ) -> int:
        """Rent `offer_id` on demand; returns the new instance id (it bills from now on).

        `env` holds docker options as keys too, e.g. `{"-p 8000:8000": "1", "HF_TOKEN": ...}`.
        A create is never re-sent, whatever failed (5xx, even 503; a timeout; a dropped or
        refused connection): a duplicate would bill. The one exception is a 429 with
        Retry-After, which proves nothing was done. Any other failure may still have created an
        instance: the caller looks for its label (see `gpuctl.vast.lifecycle`).
        """
        body = {
            "client_id": "me",
            "image": image,
            "env": dict(env),
            "disk": float(disk_gb),
            "label": label,
            "onstart": None,
            "runtype": "args",
            "args": list(args),
            "price": None,
        }
        what = f"create instance from offer {offer_id}"
        data = self._call("PUT", f"/api/v0/asks/{int(offer_id)}/", what, json_body=body,
                          retry=RETRY_RATE_LIMITED_ONLY)
        new_id = _int(data.get("new_contract"))
        if new_id is None:
            raise _malformed(what, "the reply has no `new_contract` id")
        return new_id

    def list_instances(self) -> list[Instance]:
        """Every instance on the account, following `next_token` across pages.

        A page without an `instances` list, a looping token, or fewer instances than the
        reported `total_instances` is `ProviderError(kind="malformed")`. An empty list is
        returned as is: only the caller's ledger can tell that it is wrong.
        """
        what = "instance list"
        found: dict[int, Instance] = {}
        totals: list[int] = []
        token: str | None = None
        seen_tokens: set[str] = set()
        for _ in range(_MAX_LIST_PAGES):
            params = {
                "select_filters": json.dumps({}),
                "order_by": json.dumps([{"col": "id", "dir": "asc"}]),
                "limit": json.dumps(LIST_PAGE_LIMIT),
            }
            if token is not None:
                # Sent bare, as the official client sends string values (and as Vast issued it).
                params["after_token"] = token
            data = self._call("GET", "/api/v1/instances/", what, params=params)
            page = data.get("instances")
            if not isinstance(page, list):
                raise _malformed(what, "a page has no `instances` list")
            for item in page:
                inst = Instance.from_json(_require_mapping(item, what))
                found[inst.id] = inst
            total = data.get("total_instances")
            if isinstance(total, int) and not isinstance(total, bool):
                totals.append(total)
            next_token = data.get("next_token")
            if next_token in (None, ""):
                break
            token = str(next_token)
            if token in seen_tokens:
                raise _malformed(what, "the server repeated a page token")
            seen_tokens.add(token)
        else:
            raise _malformed(what, f"more than {_MAX_LIST_PAGES} pages")
        # Instances may come and go between pages, so only a shortfall below the smallest
        # total reported is proof that pages went missing.
        if totals and len(found) < min(totals):
            raise _malformed(what, f"got {len(found)} instances of the {min(totals)} reported")
        return sorted(found.values(), key=lambda i: i.id)

    def get_instance(self, instance_id: int) -> Instance | None:
        """One instance, or None when Vast says it is gone (`{"instances": null}`)."""
        what = f"show instance {instance_id}"
        data = self._call("GET", f"/api/v0/instances/{int(instance_id)}/", what, params={"owner": "me"})
        if "instances" not in data:
            raise _malformed(what, "the reply has no `instances` field")
        item = data["instances"]
        if item is None:
            return None
        return Instance.from_json(_require_mapping(item, what))

    def set_label(self, instance_id: int, label: str) -> None:
        self._call(
            "PUT",
            f"/api/v0/instances/{int(instance_id)}/",
            f"label instance {instance_id}",
            json_body={"label": label},
            idempotent=True,  # setting the same label twice is harmless
        )

    def destroy_instance(self, instance_id: int) -> None:
        """Destroy (stop billing). An id Vast no longer knows raises kind "not_found": the
        caller decides whether that means "already gone" (check with `get_instance`)."""
        self._call("DELETE", f"/api/v0/instances/{int(instance_id)}/", f"destroy instance {instance_id}", json_body={})

    def current_user(self) -> dict[str, Any]:
        """The account, including `balance` and `credit`."""
        return self._call("GET", "/api/v0/users/current", "current user")

    # -- plumbing ------------------------------------------------------------------------

    def _scrub(self, text: str) -> str:
        return redact(text.replace(self._secret, "***"))

    def _call(
        self,
        method: str,
        path: str,
        what: str,
        *,
        json_body: Any = None,
        params: Mapping[str, str] | None = None,
        idempotent: bool | None = None,
        retry: str | None = None,
    ) -> dict[str, Any]:
        """One request; a JSON object back, or a ProviderError saying what failed and how."""
        extensions: dict[str, Any] = {}
        if idempotent is not None:
            extensions["idempotent"] = idempotent
        if retry is not None:
            extensions["retry"] = retry
        try:
            response = self._http.request(
                method,
                path,
                json=json_body,
                params=dict(params) if params is not None else None,
                extensions=extensions or None,
            )
        except httpx.TimeoutException as exc:
            raise ProviderError(
                f"Vast.ai {what} timed out ({type(exc).__name__}).", provider=PROVIDER, kind="timeout"
            ) from exc
        except httpx.TransportError as exc:
            raise ProviderError(
                f"Cannot reach the Vast.ai API at {self.api_url} for {what}: {self._scrub(str(exc)) or type(exc).__name__}.",
                provider=PROVIDER,
                kind="connect",
                hint="Check the network, or the API URL (vastai.api_url / VAST_URL).",
            ) from exc

        status = response.status_code
        body: Any
        try:
            body = response.json() if response.content.strip() else {}
        except ValueError:
            body = None
        log.debug("vastai %s %s -> %d", method, path, status)

        if status in (401, 403):
            raise ProviderError(
                f"Vast.ai refused the API key for {what} (HTTP {status}: {self._message(body, response)}).",
                provider=PROVIDER,
                kind="auth",
                status=status,
                hint=AUTH_HINT,
            )
        if status >= 400:
            kind = {400: "bad_request", 404: "not_found", 429: "rate_limit"}.get(status, "http")
            raise ProviderError(
                f"Vast.ai {what} failed: HTTP {status}: {self._message(body, response)}.",
                provider=PROVIDER,
                kind=kind,
                status=status,
            )
        if body is None:
            raise _malformed(what, f"the reply is not JSON: {self._scrub(response.text[:120])!r}", status)
        if not isinstance(body, dict):
            raise _malformed(what, f"expected a JSON object, got {type(body).__name__}", status)
        if body.get("success") is False:
            raise ProviderError(
                f"Vast.ai {what} failed: {self._message(body, response)}.",
                provider=PROVIDER,
                kind="http",
                status=status,
            )
        return body

    def _message(self, body: Any, response: httpx.Response) -> str:
        """Vast's own words (`msg`, else `error`), else the reason phrase; scrubbed."""
        text = ""
        if isinstance(body, dict):
            text = str(body.get("msg") or body.get("error") or body.get("detail") or "")
        if not text:
            text = response.reason_phrase or "no message"
        return self._scrub(text[:300])


def build_search_query(
    *,
    gpu_name: str,
    num_gpus: int = 1,
    min_gpu_ram_gb: float | None = None,
    max_dph: Decimal | float | None = None,
    min_reliability: float | None = None,
    min_inet_down: float | None = None,
    min_cuda: float | None = None,
    disk_gb: float = 40.0,
    exclude_machine_ids: Iterable[int] = (),
) -> dict[str, Any]:
    """The search body the official client sends: numbers as strings, `gpu_ram` in MB
    (GB × 1000), GPU names with spaces, ordered by `dph_total` ascending."""
    query: dict[str, Any] = {
        "verified": {"eq": True},
        "external": {"eq": False},
        "rentable": {"eq": True},
        "gpu_name": {"eq": gpu_name.replace("_", " ")},
        "num_gpus": {"eq": _num(num_gpus)},
    }
    if min_gpu_ram_gb is not None:
        query["gpu_ram"] = {"gte": _num(Decimal(str(min_gpu_ram_gb)) * 1000)}
    if min_reliability is not None:
        query["reliability"] = {"gt": _num(min_reliability)}
    if min_inet_down is not None:
        query["inet_down"] = {"gte": _num(min_inet_down)}
    if min_cuda is not None:
        query["cuda_max_good"] = {"gte": _num(min_cuda)}
    if max_dph is not None:
        query["dph_total"] = {"lt": _num(max_dph)}
    excluded = sorted({int(m) for m in exclude_machine_ids})
    if excluded:
        query["machine_id"] = {"notin": [_num(m) for m in excluded]}
    query["order"] = [["dph_total", "asc"]]
    query["type"] = "on-demand"
    query["allocated_storage"] = float(disk_gb)
    return query


# -- parsing helpers ------------------------------------------------------------------------


def _num(value: Decimal | float | int) -> str:
    """A number as the official client writes it in a query: "1", "0.95", "24000"."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def _malformed(what: str, detail: str, status: int | None = None) -> ProviderError:
    return ProviderError(
        f"Vast.ai {what}: unexpected reply ({detail}).", provider=PROVIDER, kind="malformed", status=status
    )


def _require_mapping(item: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise _malformed(what, f"expected an object, got {type(item).__name__}")
    return item


def _req_int(data: Mapping[str, Any], key: str, kind: str) -> int:
    value = _int(data.get(key))
    if value is None:
        raise _malformed(f"{kind} data", f"no integer `{key}`")
    return value


def _int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return None


def _float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def _opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
