"""Plain helpers for the Vast.ai tests (fixtures are in tests/vastai/conftest.py): the API key
the fakes accept, the offer market against the shipped tiers, the launcher's fake sleep, and a
ledger row as a launch would have left it, a launch on the fake clock."""

from __future__ import annotations

from typing import Any

from gpuctl.config import Settings
from gpuctl.providers.base import Health
from gpuctl.state import State
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.instances import make_label
from gpuctl.vastai.launch import LaunchResult, launch
from gpuctl.vastai.plan import plan_launch
from tests.fakes.vastai_server import FakeClock, FakeVast, make_offer

KEY = "0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9"
MODEL = "Qwen/Qwen2.5-7B-Instruct"
# What every offer needs to pass the shipped tiers' bounds (CUDA, bandwidth, reliability).
OK = {"cuda_max_good": 13.0, "inet_down": 900.0, "reliability": 0.99}


def market() -> list[dict[str, Any]]:
    """Offers against the shipped tiers (CUDA ≥ 13.0, ≥ 500 Mb/s, reliability ≥ 0.95)."""
    ok: dict[str, Any] = dict(OK)
    return [
        # the retry after 102: within the confirmed $0.18/h + 25% ($0.225) that retries may cost
        make_offer(101, gpu_name="RTX 3090", dph_total="0.22", **{**ok, "reliability": 0.97}),
        make_offer(102, gpu_name="RTX 3090", dph_total="0.18", **ok),  # the cheapest acceptable
        make_offer(103, gpu_name="RTX 3090", dph_total="0.12", **{**ok, "reliability": 0.90}),  # unreliable
        make_offer(104, gpu_name="RTX 3090", dph_total="0.40", **ok),  # above the tier's $0.35
        make_offer(105, gpu_name="RTX 3090", dph_total="0.10", num_gpus=2, **ok),  # two GPUs
        make_offer(106, gpu_name="RTX 3090", dph_total="0.11", **{**ok, "cuda_max_good": 12.4}),  # old driver
        make_offer(107, gpu_name="RTX 3090", dph_total="0.13", **{**ok, "inet_down": 100.0}),  # slow link
        make_offer(201, gpu_name="RTX 4090", dph_total="0.40", gpu_ram=24564, **ok),
        make_offer(401, gpu_name="H100 SXM", dph_total="2.40", gpu_ram=81559, **ok),
    ]


class Sleeper:
    """The launcher's sleep: moves the fake clock instead of waiting."""

    def __init__(self, clock: FakeClock) -> None:
        self.clock = clock
        self.calls = 0

    def __call__(self, seconds: float) -> None:
        self.calls += 1
        self.clock.advance(seconds)


def create_ids(vast: FakeVast) -> list[int]:
    """The offer id of every create request, in order."""
    return [int(r.path.split("/")[-2]) for r in vast.received("PUT") if r.path.startswith("/api/v0/asks/")]


def health(status: str, detail: str = "") -> Health:
    return Health(provider="vastai", status=status, detail=detail)  # type: ignore[arg-type]


def launched_row(state: State, vast: FakeVast, *, status: str = "ready", label: str | None = None,
                 dph: str = "0.20", endpoint: str | None = None, created_at: float | None = None,
                 remote: bool = True, running: bool = True) -> tuple[int, int | None]:
    """A ledger row (and its remote instance) as a launch would have left it."""
    label = label or make_label("default")
    row_id = state.add_instance_intent(provider="vastai", label=label, profile="default", gpu="RTX 3090", dph=dph,
                                       offer_id="102", machine_id="50102")
    instance_id = None
    if remote:
        instance_id = vast.add_instance(label=label, offer=make_offer(102, dph_total=dph), created_at=created_at,
                                        running=running)
        state.set_instance_remote_id(row_id, str(instance_id))
    changes: dict[str, Any] = {"status": status}
    if created_at is not None:
        changes["created_at"] = created_at
    if status == "ready":
        changes.update(endpoint=endpoint or f"http://127.0.0.1:{41000 + row_id}", ready_at=created_at or state.clock())
    state.update_instance(row_id, **changes)
    return row_id, instance_id


def run_launch(settings: Settings, client: VastAIClient, state: State, clock: FakeClock,
               **kw: Any) -> LaunchResult:
    """Plan and launch on the fake clock (`gpu` and `max_dph` go to the plan, the rest to the
    launch); the launcher's sleeps move the clock."""
    plan = plan_launch(settings, client, state, clock=clock, gpu=kw.pop("gpu", None), max_dph=kw.pop("max_dph", None))
    kw.setdefault("sleep", Sleeper(clock))
    return launch(settings, plan, client=client, state=state, clock=clock, **kw)
