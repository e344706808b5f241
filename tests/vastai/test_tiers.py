"""GPU tiers (the shipped file loads and is ordered as documented), offer choice, and the pure
budget arithmetic."""

from __future__ import annotations

from decimal import Decimal
from pathlib import Path

import pytest

from gpuctl.config import load_settings
from gpuctl.errors import BudgetError, ConfigError, UsageError
from gpuctl.state import InstanceRow
from gpuctl.vastai import budget
from gpuctl.vastai.client import Offer, VastAIClient
from gpuctl.vastai.offers import acceptable, candidates_in_order, first_tier_with_offers
from gpuctl.vastai.tiers import (
    default_tiers_file,
    load_tiers,
    load_tiers_file,
    parse_tiers,
    select_tiers,
)
from tests import test_vast_common as common
from tests.fakes.vastai_server import FakeVast, make_offer

# The shared fixtures (pytest finds them as module attributes).
client = common.client
clock = common.clock
vast = common.vast
vllm = common.vllm

ORDER = ["RTX 3090", "RTX 4090", "RTX A5000", "RTX A6000", "A40", "L40S", "L40", "A100 PCIe", "A100 SXM", "H100"]


def test_shipped_tiers_are_the_ten_in_order() -> None:
    tiers = load_tiers_file(default_tiers_file())
    assert [t.name for t in tiers] == ORDER
    assert all(t.min_vram_gb >= 24 and 0 < t.max_dph <= Decimal("2.66") for t in tiers)  # fits the $2 session
    assert all(0.9 <= t.min_reliability <= 1 and t.min_inet_down > 0 and t.min_cuda > 0 for t in tiers)
    assert tiers[0].max_dph == Decimal("0.35") and isinstance(tiers[0].max_dph, Decimal)
    assert "A100 SXM4" in tiers[8].gpu_names and "H100 SXM" in tiers[9].gpu_names


def test_profile_overrides_the_tiers_file(tmp_path: Path) -> None:
    mine = tmp_path / "tiers.toml"
    mine.write_text('[[tier]]\nname = "RTX 3090"\nmin_vram_gb = 24\nmax_dph = 0.2\nmin_reliability = 0.9\n'
                    "min_inet_down = 100\nmin_cuda = 12.0\n")
    settings = load_settings(env={}, home=tmp_path, flags={"vastai.gpu_tiers": str(mine)})
    (tier,) = load_tiers(settings)
    assert tier.max_dph == Decimal("0.2") and tier.gpu_names == ("RTX 3090",)
    assert len(load_tiers(load_settings(env={}, home=tmp_path))) == 10


@pytest.mark.parametrize(("text", "needle"), [
    ('[[tier]]\nname = "X"\nmin_vram_gb = 24\nmax_dph = 0.2\nmin_reliability = 0.9\nmin_inet_down = 1\nmin_cuda = 12\nmax_dhp = 1\n', "did you mean 'max_dph'"),
    ('[[tier]]\nname = "X"\nmin_vram_gb = 24\nmax_dph = 0\nmin_reliability = 0.9\nmin_inet_down = 1\nmin_cuda = 12\n', "more than 0"),
    ('[[tier]]\nname = "X"\nmin_vram_gb = 24\nmax_dph = 0.2\nmin_reliability = 1.5\nmin_inet_down = 1\nmin_cuda = 12\n', "between 0 and 1"),
    ('[[tier]]\nname = "X"\nmin_vram_gb = 24\nmax_dph = 0.2\nmin_reliability = 0.9\nmin_inet_down = 1\n', "`min_cuda` is missing"),
    ('[[tier]]\nname = "X"\nmin_vram_gb = "big"\nmax_dph = 0.2\nmin_reliability = 0.9\nmin_inet_down = 1\nmin_cuda = 1\n', "must be a number"),
    ("[gpu]\nx = 1\n", "unknown table"),
    ("", "no [[tier]]"),
])
def test_bad_tiers_files_are_config_errors(tmp_path: Path, text: str, needle: str) -> None:
    path = tmp_path / "t.toml"
    path.write_text(text)
    with pytest.raises(ConfigError) as err:
        load_tiers_file(path)
    assert needle in err.value.message and str(path) in err.value.message


def test_duplicate_tier_and_missing_file() -> None:
    one = {"name": "A", "min_vram_gb": 1, "max_dph": Decimal(1), "min_reliability": 0, "min_inet_down": 0, "min_cuda": 0}
    with pytest.raises(ConfigError, match="twice"):
        parse_tiers({"tier": [one, {**one, "name": "a"}]}, "x")
    with pytest.raises(ConfigError, match="not found"):
        load_tiers_file(Path("/nonexistent/tiers.toml"))


def test_select_by_gpu_name_and_cap_by_max_dph() -> None:
    tiers = load_tiers_file(default_tiers_file())
    assert [t.name for t in select_tiers(tiers, gpu="rtx-4090")] == ["RTX 4090"]
    assert [t.name for t in select_tiers(tiers, gpu="A100 SXM4")] == ["A100 SXM"]  # the Vast spelling works too
    capped = select_tiers(tiers, max_dph=Decimal("0.5"))
    assert [t.max_dph for t in capped[:2]] == [Decimal("0.35"), Decimal("0.5")]
    with pytest.raises(UsageError, match="did you mean 'RTX 4090'"):
        select_tiers(tiers, gpu="RTX 4909")
    with pytest.raises(UsageError, match="more than 0"):
        select_tiers(tiers, max_dph=Decimal(0))


# -- offers ------------------------------------------------------------------------------------


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


# -- budget --------------------------------------------------------------------------------------


def row(**kw: object) -> InstanceRow:
    base: dict[str, object] = dict(id=1, provider="vastai", remote_id="1", label="gpuctl:x:0123456789ab", profile=None,
                                   gpu="RTX 3090", dph="0.14", offer_id=None, machine_id=None, status="ready",
                                   status_msg=None, endpoint=None, created_at=0.0, ready_at=None, destroyed_at=None,
                                   cost=None)
    base.update(kw)
    return InstanceRow(**base)  # type: ignore[arg-type]


def test_costs_are_dph_times_lifetime() -> None:
    assert budget.projection(Decimal("0.14"), 45) == Decimal("0.105")
    assert budget.lifetime_cost(Decimal("0.80"), 0, 1800) == Decimal("0.40")
    assert budget.row_cost(row(), 2700) == Decimal("0.105")  # live: accrues up to now
    assert budget.row_cost(row(destroyed_at=3600.0), 99999) == Decimal("0.14")  # stops at destroy
    assert budget.row_cost(row(cost="1.5", destroyed_at=10.0), 99999) == Decimal("1.5")  # recorded wins
    assert budget.spent([row(), row(id=2, cost="1.00", destroyed_at=1.0), row(id=3, dph=None)], 2700) == Decimal("1.105")


def test_budget_check_session_and_total() -> None:
    ok = budget.check(Decimal("0.18"), spent_so_far=Decimal("1"), session_limit=2.0, total_limit=15.0, keep_alive_minutes=45)
    assert ok.ok and ok.projection == Decimal("0.135") and ok.left == Decimal(14)
    session = budget.check(Decimal("3.00"), spent_so_far=Decimal(0), session_limit=2.0, total_limit=15.0, keep_alive_minutes=45)
    assert not session.session_ok and session.total_ok
    err = session.error("H100")
    assert isinstance(err, BudgetError) and "session budget of $2.00" in err.message and "--max-dph 2.667" in (err.hint or "")
    total = budget.check(Decimal("0.18"), spent_so_far=Decimal("14.9"), session_limit=2.0, total_limit=15.0, keep_alive_minutes=45)
    assert total.session_ok and not total.total_ok
    assert "only $0.10 is left of the $15.00" in total.error("RTX 3090").message
    assert budget.money(Decimal("0.105")) == "0.105" and budget.money(Decimal(2)) == "2.00"
    assert budget.money(Decimal("0.00123")) == "0.00123"
