"""One GPU catalog (issue 11, item 9): every GPU that `deploy modal`, the Vast.ai tiers and `cost
estimate` accept is a row of configs/prices.toml; a GPU the tiers rent without a known price is
estimable with --dph and says so; a bad GPU setting is refused with a did-you-mean, and a bad
value in a profile never breaks `cost estimate` without naming the key."""

from __future__ import annotations

import json
import tomllib
from pathlib import Path

import pytest

from gpuctl import costs
from gpuctl.config import gpus
from gpuctl.costs.loading import default_configs_dir
from gpuctl.errors import UsageError
from gpuctl.modal import deploy
from tests.support import assert_exit

CONFIGS = default_configs_dir()
TIERS = tomllib.loads((CONFIGS / "gpu_tiers.toml").read_text(encoding="utf-8"))["tier"]
TIER_GPUS = sorted({name for tier in TIERS for name in (tier["name"], *tier["gpu_names"])})


def test_the_one_list_is_the_catalogs_rows() -> None:
    catalog = costs.load_catalog()
    assert set(gpus.gpu_names("modal")) == set(catalog.modal)
    assert set(gpus.gpu_names("vastai")) == set(catalog.vastai) | set(catalog.unpriced["vastai"])
    # `deploy modal` accepts exactly the catalog's Modal names and aliases, in its order
    assert gpus.gpu_names("modal", aliases=True) == deploy.VALID_GPUS
    assert deploy.VALID_GPUS[:4] == ("T4", "L4", "A10", "A10G")


@pytest.mark.parametrize("gpu", deploy.VALID_GPUS)
def test_every_modal_gpu_is_priced_with_a_throughput(gpu: str) -> None:
    catalog = costs.load_catalog()
    price = catalog.modal_price(gpu)
    assert price.dollars_per_second > 0 and price.seen is not None
    assert catalog.throughput_for("modal", gpu).tokens_per_second > 0
    assert deploy.parse_gpu(gpu) == (gpu, 1)


@pytest.mark.parametrize("gpu", TIER_GPUS)
def test_every_tier_gpu_resolves_with_a_throughput(gpu: str) -> None:
    catalog = costs.load_catalog()
    key = costs.resolve_gpu(catalog, "vastai", gpu)  # a tier's name or a Vast.ai spelling in it
    assert catalog.throughput_for("vastai", key).max_concurrency >= 1
    assert gpus.spelling("vastai", gpu) is not None


@pytest.mark.parametrize("gpu", TIER_GPUS)
def test_cost_estimate_works_for_every_tier_gpu(cli, gpu: str) -> None:  # type: ignore[no-untyped-def]
    priced = costs.resolve_gpu(catalog := costs.load_catalog(), "vastai", gpu) in catalog.vastai
    result = cli("--json", "cost", "estimate", "--provider", "vastai", "--gpu", gpu)
    # Review B, finding 11 (a changed expectation: this was exit 2): with no typical price known,
    # the estimate is at the tier's cap, said to be an upper bound.
    assert_exit(result, 0)
    if not priced:
        data = json.loads(result.stdout)["data"]
        assert costs.to_decimal(data["upper_bound"]["max_dph"]) == costs.to_decimal(_cap(gpu))
        assert "tier's cap (max_dph in configs/gpu_tiers.toml)" in data["upper_bound"]["source"]
    given = cli("cost", "estimate", "--provider", "vastai", "--gpu", gpu, "--dph", "0.55", "--hours", "2")
    assert_exit(given, 0)
    assert "$1.10" in given.stdout
    if not priced:
        assert "(given; the catalog knows no typical price for" in given.stdout
    by_traffic = cli("cost", "estimate", "--provider", "vastai", "--gpu", gpu, "--dph", "0.55",
                     "--requests-per-day", "1000")
    assert_exit(by_traffic, 0)


def _cap(gpu: str) -> str:
    return next(str(t["max_dph"]) for t in TIERS if gpu in (t["name"], *t["gpu_names"]))


def test_an_unpriced_tier_gpu_is_estimated_at_its_tiers_cap_as_an_upper_bound(cli) -> None:  # type: ignore[no-untyped-def]
    """Review B, finding 11: `cost estimate --provider vastai --gpu A40` (no typical price) was
    exit 2; now it prices the tier's max_dph, labelled an upper bound, in every mode."""
    result = cli("--json", "cost", "estimate", "--provider", "vastai", "--gpu", "A40", "--hours", "2")
    assert_exit(result, 0)
    estimate = json.loads(result.stdout)["data"]["estimate"]
    assert estimate["total"] == "1.40"  # $0.70/h × 2 h
    assert estimate["assumptions"]["price"].startswith(
        "A40 $0.70/h at most: the A40 tier's cap (max_dph in configs/gpu_tiers.toml), an upper bound")
    assert estimate["assumptions"]["price"].endswith("pass --dph for the live price")
    (row,) = estimate["prices"]
    assert row["amounts"] == {"max_dph": "0.70"} and row["seen"] is None  # no stale warning for a cap
    human = cli("cost", "estimate", "--provider", "vastai", "--gpu", "L40S")
    assert_exit(human, 0)
    assert "Vast.ai L40S is priced at the L40S tier's cap" in human.stdout and "upper bound" in human.stdout
    traffic = cli("--json", "cost", "estimate", "--provider", "vastai", "--gpu", "rtx a5000", "--requests-per-day", "100")
    assert_exit(traffic, 0)
    assert json.loads(traffic.stdout)["data"]["upper_bound"]["gpu"] == "RTX A5000"
    given = cli("--json", "cost", "estimate", "--provider", "vastai", "--gpu", "A40", "--dph", "0.40", "--hours", "3")
    assert "upper_bound" not in json.loads(given.stdout)["data"]  # a live price is no bound


def test_tiers_that_do_not_rent_the_gpu_give_no_cap_and_a_broken_file_is_named(cli, tmp_path: Path) -> None:  # type: ignore[no-untyped-def]
    mine = tmp_path / "tiers.toml"
    mine.write_text('[[tier]]\nname = "RTX 3090"\ngpu_names = ["RTX 3090"]\nmin_vram_gb = 24\nmax_dph = 0.35\n'
                    'min_reliability = 0.95\nmin_inet_down = 500\nmin_cuda = 13.0\n')
    assert_exit(cli("profile", "create", "dev"), 0)
    assert_exit(cli("profile", "set", "vastai.gpu_tiers", str(mine)), 0)
    result = cli("cost", "estimate", "--provider", "vastai", "--gpu", "A40", "--hours", "1")
    assert_exit(result, 2)
    assert "no typical Vast.ai price is known for A40: pass a live offer's $/h with --dph" in result.stderr
    mine.write_text("[[tier]]\nname = 3\n")
    broken = cli("cost", "estimate", "--provider", "vastai", "--gpu", "A40", "--hours", "1")
    assert_exit(broken, 3)
    assert f"vastai.gpu_tiers = '{mine}' (from profile dev)" in broken.stderr.replace("\n", "")
    # a priced GPU never reads the tiers
    assert_exit(cli("cost", "estimate", "--provider", "vastai", "--gpu", "RTX 3090", "--hours", "1"), 0)


def test_a40_is_estimable_with_dph_and_says_the_price_is_the_given_one(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("--json", "cost", "estimate", "--provider", "vastai", "--gpu", "a40", "--dph", "0.40", "--hours", "3")
    assert_exit(result, 0)
    estimate = json.loads(result.stdout)["data"]["estimate"]
    assert estimate["key"] == "A40" and estimate["total"] == "1.20"
    assert estimate["assumptions"]["price"] == "A40 $0.40/h (given; the catalog knows no typical price for A40)"


def test_an_unpriced_row_must_say_so_and_an_override_can_price_it(tmp_path: Path) -> None:
    catalog = costs.load_catalog(overrides={"vastai": {"A40": {"typical": 0.45}}}, overrides_label="profile dev")
    assert catalog.vast_price("A40").typical == costs.to_decimal("0.45") and "A40" not in catalog.unpriced["vastai"]
    broken = tmp_path / "prices.toml"
    broken.write_text((CONFIGS / "prices.toml").read_text(encoding="utf-8").replace("unpriced = true\n", "", 1))
    (tmp_path / "throughput.toml").write_text((CONFIGS / "throughput.toml").read_text(encoding="utf-8"))
    with pytest.raises(Exception, match=r"typical is missing") as info:
        costs.load_catalog(broken)
    assert "unpriced = true" in (getattr(info.value, "hint", "") or "")


def test_profile_set_refuses_a_gpu_modal_does_not_offer(cli, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("profile", "create", "dev"), 0)
    result = cli("profile", "set", "modal.gpu", "H900")
    assert_exit(result, 2)
    assert "modal.gpu: 'H900' is not a Modal GPU (did you mean 'H200' or 'H100'?)" in result.stderr
    assert "H900" not in (gpuctl_home / "profiles" / "dev.toml").read_text()
    assert_exit(cli("profile", "set", "modal.gpu", "h100:2"), 0)
    assert 'gpu = "H100:2"' in (gpuctl_home / "profiles" / "dev.toml").read_text()  # the catalog's spelling
    for bad, needle in (("H100:9", "must be 1..8"), ("a10", None)):
        outcome = cli("profile", "set", "modal.gpu", bad)
        assert_exit(outcome, 2 if needle else 0)
        assert needle is None or needle in outcome.stderr


def test_vastai_gpu_tiers_is_default_or_a_toml_file(cli) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("profile", "create", "dev"), 0)
    result = cli("profile", "set", "vastai.gpu_tiers", "defualt")
    assert_exit(result, 2)
    assert "(did you mean 'default'?)" in result.stderr
    assert_exit(cli("profile", "set", "vastai.gpu_tiers", "~/tiers/mine.toml"), 0)
    assert_exit(cli("profile", "set", "vastai.gpu_tiers", "default"), 0)


def test_a_bad_gpu_in_a_profile_is_named_by_cost_estimate(cli, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("profile", "create", "dev"), 0)
    path = gpuctl_home / "profiles" / "dev.toml"
    path.write_text('[modal]\ngpu = "H900"\n')  # edited by hand
    result = cli("cost", "estimate")
    assert_exit(result, 3)
    assert f"{path}: modal.gpu: 'H900' is not a Modal GPU (did you mean 'H200' or 'H100'?)" in result.stderr
    # and a fix by `profile set` is possible although the profile is broken
    assert_exit(cli("profile", "set", "modal.gpu", "H200"), 0)
    assert_exit(cli("cost", "estimate"), 0)


def test_an_unknown_model_in_a_profile_is_named_by_cost_estimate(cli, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("profile", "create", "dev"), 0)
    assert_exit(cli("profile", "set", "anthropic.model", "claude-haiku-9"), 0)  # any id is allowed: new ones appear
    result = cli("cost", "estimate")
    assert_exit(result, 3)
    assert "anthropic.model = 'claude-haiku-9' (from profile dev): unknown Anthropic model 'claude-haiku-9'" in result.stderr
    # an estimate that does not price the API is not broken by it
    assert_exit(cli("cost", "estimate", "--provider", "modal", "--hours", "1"), 0)
    # a bad --gpu flag is still the flag's error, not the profile's
    flag = cli("cost", "estimate", "--provider", "modal", "--gpu", "L5", "--hours", "1")
    assert_exit(flag, 2)
    assert "unknown modal GPU 'L5'" in flag.stderr and "anthropic.model" not in flag.stderr


def test_check_gpu_names_the_provider_and_the_list() -> None:
    with pytest.raises(UsageError) as info:
        gpus.check_gpu("vastai", "RTX 3099")
    assert info.value.message == "'RTX 3099' is not a Vast.ai GPU (did you mean 'RTX 3090' or 'RTX 4090'?)"
    assert "A40" in (info.value.hint or "")
    assert gpus.check_gpu("vastai", "a100_sxm4") == "A100 SXM4"
