"""What the Vast.ai REST API sends and takes: the `Offer` and `Instance` records parsed from its
JSON (tolerant of missing or oddly typed fields, strict about the ids), and the offer-search
query in the shape the official client sends it.

Named `api_types`, not `models`: in gpuctl a "model" is the LLM vLLM serves (`vastai.model`).
Must not: make a request, read settings, or decide anything about launching or cleaning up.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any

from gpuctl.costs.money import to_decimal
from gpuctl.errors import ProviderError

PROVIDER = "vastai"


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
            id=required_int(data, "id", "offer"),
            gpu_name=str(data.get("gpu_name") or ""),
            num_gpus=as_int(data.get("num_gpus")) or 0,
            gpu_ram_mb=as_int(data.get("gpu_ram")) or 0,
            dph_total=to_decimal(data.get("dph_total")) or Decimal(0),
            reliability=as_float(data.get("reliability", data.get("reliability2"))) or 0.0,
            inet_down=as_float(data.get("inet_down")) or 0.0,
            cuda_max_good=as_float(data.get("cuda_max_good")) or 0.0,
            disk_space=as_float(data.get("disk_space")) or 0.0,
            geolocation=str(data.get("geolocation") or ""),
            machine_id=required_int(data, "machine_id", "offer"),
            host_id=as_int(data.get("host_id")),
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
            id=required_int(data, "id", "instance"),
            label=opt_str(data.get("label")),
            actual_status=opt_str(data.get("actual_status")),
            intended_status=opt_str(data.get("intended_status")),
            status_msg=opt_str(data.get("status_msg")),
            gpu_name=opt_str(data.get("gpu_name")),
            num_gpus=as_int(data.get("num_gpus")),
            dph_total=to_decimal(data.get("dph_total")),
            start_date=as_float(data.get("start_date")),
            public_ipaddr=opt_str(data.get("public_ipaddr")),
            ports=dict(ports) if isinstance(ports, Mapping) else {},
            machine_id=as_int(data.get("machine_id")),
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


@dataclass(frozen=True)
class Listing:
    """One full walk of `GET /api/v1/instances/`: every instance, and the smallest
    `total_instances` any page reported (None when no page said)."""

    instances: tuple[Instance, ...]
    total: int | None = None

    @property
    def shows_absence(self) -> bool:
        """Whether a label missing from this listing is *evidence* (never proof on its own) that
        no instance carries it: a non-empty list, or an empty one whose reply says
        `total_instances: 0`. A bare `{"instances": []}` is what a broken endpoint sends (the
        2026 leak): it shows nothing."""
        return bool(self.instances) or self.total == 0

    def labelled(self, label: str) -> Instance | None:
        return next((i for i in self.instances if i.label == label), None)


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
    (GB × 1000), GPU names with spaces, ordered by `dph_total` ascending. Every bound is
    inclusive (`gte`, `lte`), as the tiers and `--max-dph` are documented: an offer at exactly
    the cap is acceptable (`offers.acceptable` re-checks it the same way)."""
    query: dict[str, Any] = {
        "verified": {"eq": True},
        "external": {"eq": False},
        "rentable": {"eq": True},
        "gpu_name": {"eq": gpu_name.replace("_", " ")},
        "num_gpus": {"eq": query_number(num_gpus)},
    }
    if min_gpu_ram_gb is not None:
        query["gpu_ram"] = {"gte": query_number(Decimal(str(min_gpu_ram_gb)) * 1000)}
    if min_reliability is not None:
        query["reliability"] = {"gte": query_number(min_reliability)}
    if min_inet_down is not None:
        query["inet_down"] = {"gte": query_number(min_inet_down)}
    if min_cuda is not None:
        query["cuda_max_good"] = {"gte": query_number(min_cuda)}
    if max_dph is not None:
        query["dph_total"] = {"lte": query_number(max_dph)}
    excluded = sorted({int(m) for m in exclude_machine_ids})
    if excluded:
        query["machine_id"] = {"notin": [query_number(m) for m in excluded]}
    query["order"] = [["dph_total", "asc"]]
    query["type"] = "on-demand"
    query["allocated_storage"] = float(disk_gb)
    return query


# -- parsing helpers ------------------------------------------------------------------------


def query_number(value: Decimal | float | int) -> str:
    """A number as the official client writes it in a query: "1", "0.95", "24000"."""
    d = value if isinstance(value, Decimal) else Decimal(str(value))
    if d == d.to_integral_value():
        return str(int(d))
    return format(d.normalize(), "f")


def malformed(what: str, detail: str, status: int | None = None) -> ProviderError:
    """A reply gpuctl cannot read: never proof of anything (callers cross-check the ledger)."""
    return ProviderError(
        f"Vast.ai {what}: unexpected reply ({detail}).", provider=PROVIDER, kind="malformed", status=status
    )


def require_mapping(item: Any, what: str) -> Mapping[str, Any]:
    if not isinstance(item, Mapping):
        raise malformed(what, f"expected an object, got {type(item).__name__}")
    return item


def required_int(data: Mapping[str, Any], key: str, kind: str) -> int:
    value = as_int(data.get(key))
    if value is None:
        raise malformed(f"{kind} data", f"no integer `{key}`")
    return value


def as_int(value: Any) -> int | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return int(value)
    except (TypeError, ValueError):
        try:
            return int(float(value))
        except (TypeError, ValueError, OverflowError):
            return None


def as_float(value: Any) -> float | None:
    if value is None or isinstance(value, bool):
        return None
    try:
        return float(value)
    except (TypeError, ValueError):
        return None


def opt_str(value: Any) -> str | None:
    return None if value is None else str(value)
