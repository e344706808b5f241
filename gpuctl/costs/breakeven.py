"""Break-even: the traffic from which a GPU provider costs less than the API.

Owns `BreakEven` and `break_even`, which solves the burst model (`gpuctl.costs.traffic`)
exactly for the requests/day where the GPU's daily cost drops below the API's. Pure.
"""

from __future__ import annotations

from dataclasses import dataclass
from decimal import ROUND_FLOOR, Decimal
from typing import Any

from gpuctl.costs.money import SECONDS_PER_DAY, plain, round_up
from gpuctl.costs.traffic import burst_day


@dataclass(frozen=True)
class BreakEven:
    """The traffic from which a GPU provider is cheaper than the API (and stays cheaper up to
    what one GPU can serve), for a given request shape and burst pattern."""

    provider: str
    gpu: str
    versus: str  # the Anthropic model
    requests_per_day: Decimal | None  # None: the API stays cheaper up to capacity
    tokens_per_day: Decimal | None
    capacity_requests_per_day: Decimal  # what one GPU can serve under these assumptions
    note: str

    def as_dict(self) -> dict[str, Any]:
        return {
            "provider": self.provider,
            "gpu": self.gpu,
            "versus": self.versus,
            "requests_per_day": plain(self.requests_per_day),
            "tokens_per_day": plain(self.tokens_per_day),
            "capacity_requests_per_day": plain(self.capacity_requests_per_day),
            "note": self.note,
        }


def break_even(
    *,
    provider: str,
    gpu: str,
    versus: str,
    api_cost_per_request: Decimal,
    gpu_cost_per_second: Decimal,
    tokens_per_request: int,
    bursts_per_day: Decimal,
    concurrency: int,
    seconds_per_request: Decimal,
    overhead_s: Decimal,
) -> BreakEven:
    """Solve the burst model for the requests/day where GPU cost ≤ API cost from there on.

    Both daily costs are piecewise linear in requests/day R: the API is a × R; the GPU's
    billed seconds are R × (o + t) while R ≤ bursts (one request per burst), flat B × (o + t)
    until a burst fills the concurrency, then B × o + R × t / c, capped at a day. Between the
    breakpoints the difference is linear, so scanning the pieces from one GPU's capacity
    downwards finds the last crossing exactly.
    """
    a, rate, b, c, t, o = api_cost_per_request, gpu_cost_per_second, bursts_per_day, concurrency, seconds_per_request, overhead_s
    day_s = Decimal(SECONDS_PER_DAY)

    def gpu_cost(r: Decimal) -> Decimal:
        return rate * burst_day(requests_per_day=r, bursts_per_day=b, concurrency=c,
                                seconds_per_request=t, overhead_s=o).billed_s

    def diff(r: Decimal) -> Decimal:  # > 0: the GPU is cheaper
        return a * r - gpu_cost(r)

    # Capacity: generation time within a day.
    capacity = day_s / t if b * t > day_s else day_s * c / t
    points = {Decimal(0), b, b * c, capacity}
    # Where billed time reaches a whole day (a kink of the cap).
    if o + t > 0:
        points.add(day_s / (o + t))
    if b * (o + t) < day_s:
        points.add((day_s - b * o) * c / t)
    grid = sorted(p for p in points if 0 <= p <= capacity)

    cap_requests = capacity.to_integral_value(rounding=ROUND_FLOOR)

    def result(r: Decimal | None, note: str) -> BreakEven:
        return BreakEven(provider, gpu, versus, r, None if r is None else r * tokens_per_request, cap_requests, note)

    never = f"the API stays cheaper up to one {gpu}'s capacity ({plain(cap_requests)} requests/day)"
    if diff(capacity) < 0:
        return result(None, never)
    crossing, piece_lo = Decimal(0), Decimal(0)
    for lo, hi in zip(reversed(grid[:-1]), reversed(grid[1:]), strict=True):
        d_lo, d_hi = diff(lo), diff(hi)
        if d_lo >= 0:
            continue
        crossing, piece_lo = lo + (-d_lo) * (hi - lo) / (d_hi - d_lo), lo
        break
    r = max(Decimal(1), round_up(crossing))
    # The division can be off in its last digit: settle on the smallest whole R that holds.
    if r - 1 >= max(Decimal(1), piece_lo) and diff(r - 1) >= 0:
        r -= 1
    while diff(r) < 0 and r <= cap_requests:
        r += 1
    if r > cap_requests:
        return result(None, never)
    return result(r, f"from {plain(r)} requests/day (in {plain(b)} bursts) {provider} {gpu} costs less than {versus}")
