"""Offer choice (`gpuctl.vastai.offers`): the first tier with acceptable offers, its cheapest
first; excluded machines never; every bound re-checked whatever the server filtered."""

from __future__ import annotations

from gpuctl.vastai.api_types import Offer
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.offers import acceptable, candidates_in_order, first_tier_with_offers
from gpuctl.vastai.tiers import default_tiers_file, load_tiers_file
from tests.fakes.vastai_server import FakeVast, make_offer


def test_first_tier_with_offers_takes_its_cheapest_acceptable(client: VastAIClient) -> None:
    tiers = load_tiers_file(default_tiers_file())
    search = first_tier_with_offers(client, tiers, disk_gb=40, excluded=set())
    assert search.tier is not None and search.tier.name == "RTX 3090"
    assert [c.offer.id for c in search.candidates] == [102, 101]  # 103-107 each fail one bound
    assert search.checked == (("RTX 3090", 2),)


def test_excluded_machine_is_skipped_and_later_tiers_follow(vast: FakeVast, client: VastAIClient) -> None:
    tiers = load_tiers_file(default_tiers_file())
    search = first_tier_with_offers(client, tiers, disk_gb=40, excluded={50102})
    assert [c.offer.id for c in search.candidates] == [101]
    excluded = {50102}
    order = candidates_in_order(client, tiers, search, disk_gb=40, excluded=lambda: excluded)
    first = next(order)
    excluded.add(first.offer.machine_id)
    assert first.offer.id == 101 and [c.offer.id for c in order] == [201, 401]


def test_empty_first_tiers_fall_through(vast: FakeVast, client: VastAIClient) -> None:
    for offer_id in (101, 102):
        vast.remove_offer(offer_id)
    search = first_tier_with_offers(client, load_tiers_file(default_tiers_file()), disk_gb=40, excluded=set())
    assert search.tier is not None and search.tier.name == "RTX 4090"
    assert [c.offer.id for c in search.candidates] == [201] and search.checked[0] == ("RTX 3090", 0)


def test_acceptable_checks_every_bound_even_if_the_server_did_not() -> None:
    tier = load_tiers_file(default_tiers_file())[0]
    good = Offer.from_json(make_offer(1, dph_total="0.2", cuda_max_good=13.0, inet_down=900))
    assert acceptable(good, tier, set())
    assert not acceptable(good, tier, {good.machine_id})
    for change in ({"dph_total": "0.36"}, {"reliability": 0.5}, {"cuda_max_good": 12.9}, {"inet_down": 10},
                   {"gpu_ram": 16000}, {"num_gpus": 2}):
        bad = Offer.from_json({**make_offer(1, dph_total="0.2", cuda_max_good=13.0, inet_down=900), **change})
        assert not acceptable(bad, tier, set()), change


def test_an_offer_at_exactly_the_cap_is_found(vast: FakeVast, client: VastAIClient) -> None:
    """Review B finding 10: the caps are inclusive, at the search too (`lte`, not `lt`)."""
    from decimal import Decimal

    from gpuctl.vastai.offers import search_tier
    from gpuctl.vastai.tiers import select_tiers

    tier = select_tiers(load_tiers_file(default_tiers_file()), gpu="RTX 3090", max_dph=Decimal("0.18"))[0]
    assert [c.offer.id for c in search_tier(client, tier, disk_gb=40, excluded=set())] == [102]  # $0.18 exactly
    (req,) = vast.received("POST", "/api/v0/bundles/")
    assert req.body["dph_total"] == {"lte": "0.18"} and req.body["reliability"] == {"gte": "0.95"}
    vast.add_offer(make_offer(150, dph_total="0.19", reliability=0.95, cuda_max_good=13.0, inet_down=900))
    assert 150 not in [c.offer.id for c in search_tier(client, tier, disk_gb=40, excluded=set())]
