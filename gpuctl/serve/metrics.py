"""`GET /metrics`: Prometheus text through `prometheus_client`.

Owns the metric names and labels: requests by provider and outcome, fallbacks by provider and
reason, latency and time-to-first-token histograms, tokens, estimated cost, requests in
flight; and, read from the state database at scrape time (so every worker reports the same),
breaker state per provider, live Vast.ai instances and their $/h.

With several workers, `PROMETHEUS_MULTIPROC_DIR` is set before any worker starts
(`gpuctl.serve.server`), so counters and histograms are summed over every worker. Must not:
decide anything, or block longer than a few small database reads.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from decimal import Decimal, InvalidOperation
from typing import Any

from prometheus_client import (
    CollectorRegistry,
    Counter,
    Gauge,
    Histogram,
    disable_created_metrics,
    generate_latest,
)
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.exposition import CONTENT_TYPE_LATEST

from gpuctl.routing.outcomes import Attempt, ReasonKind

MULTIPROC_ENV = "PROMETHEUS_MULTIPROC_DIR"
BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0, 60.0, 120.0, 300.0)
BREAKER_VALUES = {"closed": 0.0, "half_open": 1.0, "open": 2.0}


@dataclass(frozen=True)
class Snapshot:
    """What the state database says at scrape time."""

    breakers: dict[str, str]  # provider → closed | half_open | open
    vast_live: int
    vast_dph: Decimal


class _StateCollector:
    def __init__(self, snapshot: Callable[[], Snapshot | None]) -> None:
        self.snapshot = snapshot

    def describe(self) -> Iterable[Any]:
        return []  # values come from the database at scrape time

    def collect(self) -> Iterator[GaugeMetricFamily]:
        snap = self.snapshot()
        if snap is None:
            return
        breaker = GaugeMetricFamily("gpuctl_breaker_state", "Circuit breaker per provider: 0 closed, 1 half-open, "
                                    "2 open (shared by every gpuctl process)", labels=["provider"])
        for provider, state in sorted(snap.breakers.items()):
            breaker.add_metric([provider], BREAKER_VALUES.get(state, 2.0))
        yield breaker
        yield GaugeMetricFamily("gpuctl_vastai_live_instances", "Vast.ai instances gpuctl created that are not "
                                "destroyed (from the ledger)", value=snap.vast_live)
        yield GaugeMetricFamily("gpuctl_vastai_dollars_per_hour", "What the live Vast.ai instances bill per hour, "
                                "together", value=float(snap.vast_dph))


class Metrics:
    """One gateway's metrics. `snapshot` reads the state (None: nothing to report yet)."""

    def __init__(self, snapshot: Callable[[], Snapshot | None]) -> None:
        self.multiprocess = bool(os.environ.get(MULTIPROC_ENV))
        disable_created_metrics()  # `*_created` series double the output and no dashboard reads them
        self.registry = CollectorRegistry(auto_describe=True)
        # In multiprocess mode values live in files; a fresh registry reads them all at scrape.
        target = None if self.multiprocess else self.registry
        self.requests = Counter("gpuctl_requests", "Chat requests by answering provider ('none' when nobody "
                                "answered) and outcome", ["provider", "outcome"], registry=target)
        self.fallbacks = Counter("gpuctl_fallbacks", "Providers passed over for a request, by reason",
                                 ["provider", "reason"], registry=target)
        self.latency = Histogram("gpuctl_request_duration_seconds", "Whole request time in the gateway",
                                 ["provider"], buckets=BUCKETS, registry=target)
        self.ttft = Histogram("gpuctl_time_to_first_token_seconds", "Time to the first token (streams)",
                              ["provider"], buckets=BUCKETS, registry=target)
        self.tokens = Counter("gpuctl_tokens", "Tokens by provider and type (prompt, completion)",
                              ["provider", "type"], registry=target)
        self.cost = Counter("gpuctl_estimated_cost_dollars", "Estimated cost of the answers (the ledger's "
                            "per-request estimate)", ["provider"], registry=target)
        self.inflight = Gauge("gpuctl_inflight_requests", "Chat requests being answered now",
                              registry=target, multiprocess_mode="livesum")
        if self.multiprocess:
            from prometheus_client import multiprocess

            multiprocess.MultiProcessCollector(self.registry)
        self.registry.register(_StateCollector(snapshot))

    def render(self) -> tuple[bytes, bytes]:
        return generate_latest(self.registry), CONTENT_TYPE_LATEST.encode()

    def answered(self, provider: str, outcome: str, *, latency: float, ttft: float | None,
                 prompt_tokens: int, completion_tokens: int, cost: Decimal | None,
                 attempts: Iterable[Attempt]) -> None:
        self.requests.labels(provider, outcome).inc()
        self.latency.labels(provider).observe(latency)
        if ttft is not None:
            self.ttft.labels(provider).observe(ttft)
        if prompt_tokens:
            self.tokens.labels(provider, "prompt").inc(prompt_tokens)
        if completion_tokens:
            self.tokens.labels(provider, "completion").inc(completion_tokens)
        if cost:
            self.cost.labels(provider).inc(float(cost))
        for attempt in attempts:
            reason = attempt.reason
            if reason.kind is ReasonKind.NOT_CONFIGURED:
                continue
            label = reason.error_kind if reason.kind is ReasonKind.FAILED and reason.error_kind else reason.kind.value
            self.fallbacks.labels(attempt.provider, label).inc()

    @staticmethod
    def worker_exited(pid: int) -> None:
        """Multiprocess bookkeeping when a worker stops (its live gauges leave the sum)."""
        if os.environ.get(MULTIPROC_ENV):
            from prometheus_client import multiprocess

            multiprocess.mark_process_dead(pid)


def dph_sum(values: Iterable[str | None]) -> Decimal:
    total = Decimal(0)
    for value in values:
        try:
            total += Decimal(value or 0)
        except InvalidOperation:
            continue
    return total
