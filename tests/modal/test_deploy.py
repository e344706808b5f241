"""Modal's side of a deploy (gpuctl/modal/deploy.py): the spec and its checks, and the ledger rows
of a deployment, on a real temporary state database."""

from __future__ import annotations

from collections.abc import Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from gpuctl.errors import ConfigError, UsageError
from gpuctl.modal.deploy import (
    VALID_GPUS,
    ModalDeploySpec,
    close_deployments,
    deploy_failed,
    deploy_succeeded,
    deployed_app_names,
    is_valid_name,
    parse_gpu,
    record_deployment,
    spec_from_settings,
    validate_spec,
    warm_rows,
)
from gpuctl.state import State, open_state
from tests.support import settings_for

# -- validate_spec ---------------------------------------------------------------------------


def test_default_spec_is_valid() -> None:
    assert validate_spec(ModalDeploySpec()) == ModalDeploySpec()


@pytest.mark.parametrize(
    ("gpu", "canonical"),
    [("L4", "L4"), ("h100", "H100"), ("A100-80GB", "A100-80GB"), ("H100:2", "H100:2"),
     ("rtx-pro-6000", "RTX-PRO-6000"), ("B200:8", "B200:8"), ("A10G", "A10G"), ("l40s:1", "L40S")],
)
def test_modal_gpu_names_are_accepted_in_modal_spelling(gpu: str, canonical: str) -> None:
    assert validate_spec(ModalDeploySpec(gpu=gpu)).gpu == canonical


def test_validate_changes_nothing_but_the_gpu_spelling() -> None:
    spec = ModalDeploySpec(gpu="h100:2", app_name="team-llm", model="org/model", max_inputs=7)
    assert validate_spec(spec) == ModalDeploySpec(gpu="H100:2", app_name="team-llm", model="org/model", max_inputs=7)


def test_parse_gpu_gives_the_canonical_name_and_count() -> None:
    assert parse_gpu("h100:2") == ("H100", 2)
    assert parse_gpu("l40s") == ("L40S", 1)


def test_every_listed_gpu_parses_to_itself() -> None:
    assert [parse_gpu(g) for g in VALID_GPUS] == [(g, 1) for g in VALID_GPUS]


def test_unknown_gpu_suggests_the_nearest_names() -> None:
    with pytest.raises(UsageError) as caught:
        validate_spec(ModalDeploySpec(gpu="H10"))
    assert "did you mean H100" in caught.value.message
    assert caught.value.hint is not None and "L4" in caught.value.hint
    assert caught.value.exit_code == 2


@pytest.mark.parametrize("gpu", ["H100:0", "H100:9", "H100:two"])
def test_bad_gpu_counts_are_refused(gpu: str) -> None:
    with pytest.raises(UsageError, match="count"):
        validate_spec(ModalDeploySpec(gpu=gpu))


@pytest.mark.parametrize(
    ("changes", "message"),
    [
        ({"scaledown_window_s": 1}, "2 s to 60 min"),
        ({"scaledown_window_s": 3601}, "2 s to 60 min"),
        ({"model": "Qwen2.5-7B-Instruct"}, "org/name"),
        ({"model": "Qwen/Qwen 2.5"}, "org/name"),
        ({"min_containers": -1}, "0 or more"),
        ({"max_containers": 0}, "1 or more"),
        ({"min_containers": 2, "max_containers": 1}, "exceeds"),
        ({"max_inputs": 0}, "1 or more"),
        ({"max_model_len": 100}, "256"),
        ({"app_name": "my app"}, "valid Modal name"),
        ({"secret_name": ""}, "valid Modal name"),
    ],
)
def test_invalid_specs_are_refused_before_anything_is_sent(changes: dict[str, Any], message: str) -> None:
    with pytest.raises(UsageError, match=message):
        validate_spec(ModalDeploySpec(**changes))


@pytest.mark.parametrize("window", [2, 3600])
def test_window_bounds_are_inclusive(window: int) -> None:
    assert validate_spec(ModalDeploySpec(scaledown_window_s=window)).scaledown_window_s == window


@pytest.mark.parametrize(("name", "valid"), [("team-llm", True), ("a.b_c-1", True), ("x" * 64, True),
                                             ("x" * 65, False), ("my app", False), ("", False)])
def test_modal_names(name: str, valid: bool) -> None:
    assert is_valid_name(name) is valid


# -- spec_from_settings ----------------------------------------------------------------------


def test_the_spec_from_default_settings_is_the_original_deployment(gpuctl_home: Path) -> None:
    assert spec_from_settings(settings_for(gpuctl_home)) == ModalDeploySpec()


def test_the_spec_from_settings_rounds_the_window_up_and_spells_the_gpu(gpuctl_home: Path) -> None:
    settings = settings_for(gpuctl_home, MODAL_GPU_TYPE="h100:2", MODAL_SCALEDOWN_WINDOW_MINUTES="0.51")
    spec = spec_from_settings(settings)
    assert (spec.gpu, spec.scaledown_window_s) == ("H100:2", 31)  # 30.6 s → 31 s


def test_the_spec_from_settings_is_validated(gpuctl_home: Path) -> None:
    # the setting itself refuses a GPU Modal does not offer, naming where it came from (issue 11)
    with pytest.raises(ConfigError, match=r"^env MODAL_GPU_TYPE: modal\.gpu: 'L5' is not a Modal GPU \(did you mean 'L4'\?\)"):
        spec_from_settings(settings_for(gpuctl_home, MODAL_GPU_TYPE="L5"))
    assert spec_from_settings(settings_for(gpuctl_home, MODAL_GPU_TYPE="h100:2")).gpu == "H100:2"


# -- the ledger rows -------------------------------------------------------------------------


@pytest.fixture
def state(tmp_path: Path) -> Iterator[State]:
    ticks = iter(range(1000, 2000))
    with open_state(tmp_path, clock=lambda: float(next(ticks))) as st:
        yield st


def _live(state: State) -> list[tuple[str | None, str, str | None]]:
    return [(r.remote_id, r.status, r.dph) for r in state.live_instances("modal")]


def test_a_deployment_is_recorded_before_it_is_sent(state: State) -> None:
    spec = ModalDeploySpec(gpu="H100", app_name="team-llm", min_containers=1, max_containers=2)
    row = record_deployment(state, spec, profile="dev", warm_dollars_per_hour=Decimal("3.95"))
    got = state.get_instance(row)
    assert got is not None
    assert (got.provider, got.label, got.profile, got.gpu, got.dph) == ("modal", "gpuctl:dev", "dev", "H100", "3.95")
    assert (got.remote_id, got.status) == ("team-llm", "deploying")
    assert got.status_msg == "min_containers=1, max_containers=2"


def test_a_successful_deploy_replaces_the_apps_earlier_rows(state: State) -> None:
    spec = ModalDeploySpec(app_name="team-llm")
    other = record_deployment(state, ModalDeploySpec(app_name="other"), profile="dev", warm_dollars_per_hour=Decimal(0))
    first = record_deployment(state, spec, profile="dev", warm_dollars_per_hour=Decimal(0))
    second = record_deployment(state, spec, profile="dev", warm_dollars_per_hour=Decimal(0))
    deploy_succeeded(state, second, "team-llm", "https://x.modal.run")
    assert [r.id for r in state.live_instances("modal")] == [other, second]
    got = state.get_instance(second)
    assert got is not None and (got.status, got.endpoint) == ("deployed", "https://x.modal.run")
    assert got.ready_at is not None and got.ready_at > got.created_at
    gone = state.get_instance(first)
    assert gone is not None and gone.destroyed_at is not None


def test_a_refused_deploy_drops_its_row_and_a_timeout_keeps_it(state: State) -> None:
    refused = record_deployment(state, ModalDeploySpec(app_name="refused"), profile="p", warm_dollars_per_hour=Decimal(0))
    maybe = record_deployment(state, ModalDeploySpec(app_name="maybe-up"), profile="p", warm_dollars_per_hour=Decimal(0))
    deploy_failed(state, refused, "bad image", unknown=False)
    deploy_failed(state, maybe, "x" * 600, unknown=True)
    assert _live(state) == [("maybe-up", "unknown", "0")]
    row = state.get_instance(maybe)
    assert row is not None and row.status_msg is not None
    assert row.status_msg.startswith("deploy outcome unknown: xxx") and len(row.status_msg) == 500


def test_warm_rows_are_the_ones_that_bill_while_idle(state: State) -> None:
    record_deployment(state, ModalDeploySpec(app_name="cold"), profile="p", warm_dollars_per_hour=Decimal("0.00"))
    warm = record_deployment(state, ModalDeploySpec(app_name="warm", gpu="L4", min_containers=1), profile="p",
                             warm_dollars_per_hour=Decimal("0.80"))
    created = state.get_instance(warm)
    assert created is not None
    assert warm_rows(state) == [{"app_name": "warm", "gpu": "L4", "dollars_per_hour": "0.80",
                                 "since": created.created_at, "warm_containers": 1, "detail": "min_containers=1, max_containers=1"}]


def test_closing_an_app_ends_all_its_rows_only(state: State) -> None:
    for name in ("a", "b", "a"):
        record_deployment(state, ModalDeploySpec(app_name=name), profile="p", warm_dollars_per_hour=Decimal(0))
    assert deployed_app_names(state) == ["a", "b"]  # each once, oldest first
    close_deployments(state, "a")
    assert deployed_app_names(state) == ["b"]
