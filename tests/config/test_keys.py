"""The Key table, the one list of provider names, and the one did-you-mean."""

from __future__ import annotations

import pytest

from gpuctl import config
from gpuctl.errors import UsageError


def test_one_list_of_provider_names_in_layers() -> None:
    assert config.PROVIDERS == ("modal", "vastai", "anthropic", "endpoint")
    assert config.PRICED_PROVIDERS == ("modal", "vastai", "anthropic")
    assert config.GPU_PROVIDERS == ("modal", "vastai")
    # every provider has a section of settings, and the default priority names only providers
    assert set(config.PROVIDERS) <= set(config.SECTIONS)
    assert set(config.KEYS_BY_NAME["routing.priority"].default) <= set(config.PROVIDERS)


def test_did_you_mean() -> None:
    assert config.did_you_mean("vastia", config.PROVIDERS) == " (did you mean 'vastai'?)"
    assert config.did_you_mean("gpu_typo", ["gpu", "model"]) == " (did you mean 'gpu'?)"  # a prefix
    assert config.did_you_mean("gpu_typo", ["gpu", "model"], prefixes=False) == ""
    assert config.did_you_mean("zzz", ["gpu", "model"]) == ""
    # a mapping matches its keys and shows its values (normalised name -> display name)
    assert config.did_you_mean("rtx-309", {"rtx-3090": "RTX 3090"}, cutoff=0.5) == " (did you mean 'RTX 3090'?)"
    assert config.did_you_mean("H10", ["H100", "H200", "L4"], n=2, cutoff=0.5) == " (did you mean 'H100' or 'H200'?)"


def test_close_matches_best_first() -> None:
    assert config.close_matches("H10", ["L4", "H200", "H100"], n=2, cutoff=0.5) == ["H100", "H200"]
    assert config.close_matches("nothing", ["L4"]) == []


def test_lookup_key() -> None:
    assert config.lookup_key("modal.gpu").default == "L4"
    with pytest.raises(UsageError, match=r"unknown setting 'modal\.gpuu' \(did you mean 'modal\.gpu'\?\)"):
        config.lookup_key("modal.gpuu")
