"""Which Vast.ai offer to rent: walk the tiers in order; within the first tier that has
acceptable offers, the cheapest `dph_total` wins; machines that failed a launch
in the last day (`plan.EXCLUDE_FOR_S`) never do.

Owns: the acceptance rule (re-checked here whatever the server filtered) and the order of
candidates for retries. Must not: create anything or touch the ledger (the caller passes the
excluded machines in).
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import Any

from gpuctl.costs.money import money_str
from gpuctl.vastai.api_types import Offer
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.tiers import Tier


@dataclass(frozen=True)
class Candidate:
    tier: Tier
    offer: Offer

    def as_dict(self) -> dict[str, Any]:
        o = self.offer
        return {"tier": self.tier.name, "offer_id": o.id, "gpu": o.gpu_name, "dph": money_str(o.dph_total),
                "reliability": o.reliability, "location": o.geolocation, "machine_id": o.machine_id,
                "gpu_ram_gb": round(o.gpu_ram_mb / 1000, 1), "inet_down": o.inet_down, "cuda": o.cuda_max_good}


@dataclass(frozen=True)
class Search:
    """The result of walking the tiers: what each tier had, and the first tier's offers."""

    checked: tuple[tuple[str, int], ...]  # (tier name, acceptable offers) in the order searched
    tier: Tier | None
    candidates: tuple[Candidate, ...] = field(default=())

    @property
    def choice(self) -> Candidate | None:
        return self.candidates[0] if self.candidates else None


def acceptable(offer: Offer, tier: Tier, excluded: frozenset[int] | set[int]) -> bool:
    """Every bound of the tier, inclusive, on one GPU; never a machine that failed us."""
    return (
        offer.num_gpus == 1
        and offer.machine_id not in excluded
        and offer.gpu_ram_mb >= tier.min_vram_gb * 1000  # Vast reports MB; 24 GB = 24000 MB
        and offer.dph_total <= tier.max_dph
        and offer.reliability >= tier.min_reliability
        and offer.inet_down >= tier.min_inet_down
        and offer.cuda_max_good >= tier.min_cuda
        and offer.dph_total > 0
    )


def search_tier(client: VastAIClient, tier: Tier, *, disk_gb: float, excluded: set[int]) -> list[Candidate]:
    """All acceptable offers of one tier (each of its GPU names), cheapest first."""
    found: dict[int, Offer] = {}
    for gpu_name in tier.gpu_names:
        offers = client.search_offers(
            gpu_name=gpu_name, num_gpus=1, min_gpu_ram_gb=tier.min_vram_gb, max_dph=tier.max_dph,
            min_reliability=tier.min_reliability, min_inet_down=tier.min_inet_down,
            min_cuda=tier.min_cuda, disk_gb=disk_gb, exclude_machine_ids=sorted(excluded),
        )
        for offer in offers:
            if acceptable(offer, tier, excluded):
                found[offer.id] = offer
    # Cheapest first; on a tie the more reliable host, then the older offer id (stable).
    ordered = sorted(found.values(), key=lambda o: (o.dph_total, -o.reliability, o.id))
    return [Candidate(tier, o) for o in ordered]


def first_tier_with_offers(client: VastAIClient, tiers: Sequence[Tier], *, disk_gb: float,
                           excluded: set[int], progress: Callable[[str], None] = lambda m: None) -> Search:
    checked: list[tuple[str, int]] = []
    for tier in tiers:
        progress(f"Searching Vast.ai offers: {tier.name} (≤ ${tier.max_dph}/h)…")
        candidates = search_tier(client, tier, disk_gb=disk_gb, excluded=excluded)
        checked.append((tier.name, len(candidates)))
        if candidates:
            return Search(tuple(checked), tier, tuple(candidates))
    return Search(tuple(checked), None)


def candidates_in_order(client: VastAIClient, tiers: Sequence[Tier], first: Search, *, disk_gb: float,
                        excluded: Callable[[], set[int]]) -> Iterator[Candidate]:
    """Offers to try, best first: the chosen tier's, then the later tiers' (searched only when
    needed). `excluded` is asked again before each one, so a machine that fails is skipped."""
    if first.tier is None:
        return
    for cand in first.candidates:
        if cand.offer.machine_id not in excluded():
            yield cand
    start = [t.name for t in tiers].index(first.tier.name) + 1
    for tier in tiers[start:]:
        for cand in search_tier(client, tier, disk_gb=disk_gb, excluded=excluded()):
            if cand.offer.machine_id not in excluded():
                yield cand
