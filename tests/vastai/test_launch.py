"""`gpuctl launch` / `destroy` against the loopback Vast.ai fake with a fake vLLM as the
instance's endpoint: the happy path through the router, failure paths, Ctrl-C, budgets."""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import json
import threading
from decimal import Decimal
from pathlib import Path

import pytest

from gpuctl.config import Settings, load_settings
from gpuctl.errors import BudgetError, ProviderError, UsageError
from gpuctl.state import State, open_state
from gpuctl.vastai import launch as lifecycle
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.instances import budget_lock, try_lock
from gpuctl.vastai.launch import LaunchInterrupted, launch, plan_launch
from tests import test_vast_common as common
from tests.fakes.vastai_server import DROP, FIRST_INSTANCE_ID, FakeClock, FakeVast, make_offer
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit
from tests.test_vast_common import KEY, MODEL, Sleeper, create_ids, health

# The shared fixtures (pytest finds them as module attributes).
client = common.client
clock = common.clock
real_time_vast = common.real_time_vast
settings = common.settings
state = common.state
vast = common.vast
vast_env = common.vast_env
vllm = common.vllm


def run_launch(settings: Settings, client: VastAIClient, state: State, clock: FakeClock, **kw):  # type: ignore[no-untyped-def]
    plan = plan_launch(settings, client, state, clock=clock, gpu=kw.pop("gpu", None), max_dph=kw.pop("max_dph", None))
    kw.setdefault("sleep", Sleeper(clock))
    return launch(settings, plan, client=client, state=state, clock=clock, **kw)


# -- through the CLI ----------------------------------------------------------------------------


def test_launch_picks_the_cheapest_waits_for_vllm_then_the_router_answers_through_it(
        cli, vast_env: FakeVast, vllm: FakeVLLM, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("launch", "--yes")
    assert_exit(result, 0)
    assert "legacy provider" in result.stderr and "Modal is recommended" in result.stderr
    assert create_ids(vast_env) == [102]  # the cheapest acceptable offer of the first tier
    (create,) = vast_env.received("PUT")
    settings = load_settings(home=gpuctl_home, env={"VASTAI_API_KEY": KEY})
    key = settings["vastai.vllm_api_key"]
    assert key and settings.source("vastai.vllm_api_key") == "profile default"  # saved before the create
    body = create.body
    assert body["label"].startswith("gpuctl:default:") and body["image"].startswith("vllm/vllm-openai:v")
    assert body["args"][body["args"].index("--api-key") + 1] == key and body["env"] == {"-p 8000:8000": "1"}
    assert body["args"][body["args"].index("--model") + 1] == MODEL and body["disk"] == 40.0
    assert f"Endpoint: http://127.0.0.1:{vllm.port}/v1" in result.stdout
    assert key not in result.stdout + result.stderr
    with open_state(gpuctl_home) as st:
        (row,) = st.live_instances("vastai")
    assert row.status == "ready" and row.endpoint == f"http://127.0.0.1:{vllm.port}" and row.ready_at
    assert row.remote_id == str(min(vast_env.live_ids())) and row.dph == "0.18" and row.label == body["label"]
    assert vllm.hits("/health") >= 1 and vllm.hits("/v1/chat/completions") >= 1  # /health + a 1-token completion
    assert all(r.headers.get("Authorization") == f"Bearer {key}" for r in vllm.requests if r.path.startswith("/v1"))

    # The router now finds the ready instance in the ledger (`gpuctl chat` is being built
    # elsewhere; test_chat_cli_answers_through_vast covers it once it lands).
    from gpuctl.routing.manager import BackendManager

    async def ask():  # type: ignore[no-untyped-def]
        async with BackendManager(load_settings(home=gpuctl_home, env={"VASTAI_API_KEY": KEY})) as manager:
            return await manager.chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=16)

    answer = asyncio.run(ask())
    assert answer.provider == "vastai" and answer.text == "Hello from Vast"

    gone = cli("destroy", "--all", "--yes", "--json")
    assert_exit(gone, 0)
    assert vast_env.live_ids() == set()
    doc = json.loads(gone.stdout)
    assert doc["status"] == "success" and doc["data"]["results"][0]["result"] == "destroyed"
    with open_state(gpuctl_home) as st:
        assert st.live_instances("vastai") == []
        (done,) = st.instances("vastai")
    assert done.status == "destroyed" and done.cost is not None


def test_chat_cli_answers_through_vast(cli, vast_env: FakeVast, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("launch", "--yes"), 0)
    result = cli("chat", "hi", "--no-stream")
    if "not available yet" in result.stderr:
        pytest.skip("`gpuctl chat` is not built yet (issue 5)")
    assert_exit(result, 0)
    assert "Hello from Vast" in result.stdout


def test_dry_run_shows_candidates_and_choice_and_creates_nothing(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    result = cli("launch", "vastai", "--dry-run")
    assert_exit(result, 0)
    assert "102" in result.stdout and "101" in result.stdout and "0.18" in result.stdout and "Texas, US" in result.stdout
    assert "Choice: offer 102" in result.stderr and "within budget" in result.stderr
    doc = json.loads(cli("launch", "--dry-run", "--json").stdout)
    plan = doc["data"]["plan"]
    assert plan["choice"]["offer_id"] == 102 and plan["tier"] == "RTX 3090" and plan["budget"]["projection"] == "0.135"
    assert [c["offer_id"] for c in plan["candidates"]] == [102, 101]
    assert vast_env.received("PUT") == [] and vast_env.live_ids() == set()


def test_gpu_and_max_dph_flags(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(cli("--json", "launch", "--gpu", "RTX 4090", "--dry-run").stdout)
    assert doc["data"]["plan"]["choice"]["offer_id"] == 201
    result = cli("launch", "--max-dph", "0.17", "--yes")
    assert_exit(result, 1)
    assert "no acceptable Vast.ai offer" in result.stderr and vast_env.received("PUT") == []
    assert_exit(cli("launch", "--gpu", "RTX 9999", "--dry-run"), 2)


def test_without_yes_and_without_a_terminal_it_refuses(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    result = cli("launch")
    assert_exit(result, 2)
    assert "--yes" in result.stderr and vast_env.received("PUT") == []


def test_launch_modal_is_a_usage_error(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("launch", "modal")
    assert_exit(result, 2)
    assert "gpuctl deploy modal" in result.stderr


def test_no_api_key_is_exit_3(cli) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("launch", "--dry-run"), 3)


def test_no_wait_returns_once_created(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(cli("--json", "launch", "--yes", "--no-wait").stdout)
    instance = doc["data"]["instance"]
    assert instance["ready"] is False and instance["endpoint"] is None
    with open_state(gpuctl_home) as st:
        (row,) = st.live_instances("vastai")
    assert row.status == "unattended" and row.remote_id == str(instance["instance_id"])
    assert vast_env.received("GET", f"/api/v0/instances/{instance['instance_id']}/") == []


def test_a_create_of_unknown_outcome_in_the_cli_is_exit_1_and_points_at_cleanup(cli, vast_env: FakeVast,  # type: ignore[no-untyped-def]
                                                                              gpuctl_home: Path) -> None:
    vast_env.create_but_fail(1, status=504, visible_after_lists=1000)
    result = cli("launch", "--yes")
    assert_exit(result, 1)
    assert "may have created an instance all the same" in result.stderr and "gpuctl cleanup" in result.stderr
    assert create_ids(vast_env) == [102] and len(vast_env.live_ids()) == 1
    with open_state(gpuctl_home) as st:
        (row,) = st.live_instances("vastai")
    assert row.status == "failed" and row.remote_id is None


def test_ctrl_c_in_the_cli_destroys_and_exits_130(cli, vast_env: FakeVast, monkeypatch, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(lifecycle, "probe_vllm", interrupted)
    result = cli("launch", "--yes")
    assert_exit(result, 130)
    assert "interrupted: destroyed instance" in result.stderr
    assert vast_env.live_ids() == set()
    with open_state(gpuctl_home) as st:
        assert st.live_instances("vastai") == []


# -- destroy -------------------------------------------------------------------------------------


def test_destroy_one_id_and_unknown_ids(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    iid = json.loads(cli("--json", "launch", "--yes").stdout)["data"]["instance"]["instance_id"]
    assert_exit(cli("destroy", str(iid)), 2)  # no TTY, no --yes: refused
    dry = cli("destroy", "vastai", str(iid), "--dry-run")
    assert_exit(dry, 0)
    assert iid in vast_env.live_ids()
    assert_exit(cli("destroy", str(iid), "--yes"), 0)
    assert vast_env.live_ids() == set()
    with open_state(gpuctl_home) as st:
        assert st.live_instances("vastai") == [] and st.instances("vastai")[0].cost is not None
    assert_exit(cli("destroy", str(iid), "--yes"), 2)  # already destroyed and marked: nothing to do
    assert_exit(cli("destroy", "--yes"), 2)  # neither an id nor --all
    assert_exit(cli("destroy", "12", "--all", "--yes"), 2)


def test_destroy_all_covers_labels_and_ledger_and_spares_others(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("launch", "--yes"), 0)
    stray = vast_env.seed_instance(label="gpuctl:laptop:0123456789ab")  # another ledger's instance
    mine = vast_env.seed_instance(label="my-own-box")  # not gpuctl's: never touched
    result = cli("--json", "destroy", "--all", "--yes")
    assert_exit(result, 0)
    assert vast_env.live_ids() == {mine}
    doc = json.loads(result.stdout)
    assert {r["instance_id"] for r in doc["data"]["results"]} >= {stray}
    with open_state(gpuctl_home) as st:
        assert st.live_instances("vastai") == []
        assert any(r.remote_id == str(stray) and r.cost is not None for r in st.instances("vastai"))  # its cost counts


def test_destroy_all_when_the_list_lies_still_destroys_ledger_rows(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("launch", "--yes"), 0)
    vast_env.set_list_fault("empty")
    assert_exit(cli("destroy", "--all", "--yes"), 0)
    assert vast_env.live_ids() == set()
    vast_env.set_list_fault("malformed")
    assert_exit(cli("launch", "--yes", "--no-wait"), 0)
    result = cli("destroy", "--all", "--yes")
    assert_exit(result, 4)  # ledger rows destroyed, but the list could not be read
    assert vast_env.live_ids() == set() and "could not be read" in result.stderr


def test_destroy_all_with_an_unreadable_list_is_exit_1_even_with_an_empty_ledger(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    """Finding 4: nothing in the ledger, but the list could not be read: instances the ledger
    does not know may be billing."""
    vast_env.seed_instance(label="gpuctl:laptop:0123456789ab")
    vast_env.set_list_fault("malformed")
    for args in (("destroy", "--all", "--yes"), ("destroy", "--all", "--dry-run")):
        result = cli(*args)
        assert_exit(result, 1)
        assert "instance list could not be read" in result.stderr
    result = cli("--json", "destroy", "--all", "--yes")
    assert_exit(result, 1)
    assert json.loads(result.stdout)["status"] == "error"
    assert len(vast_env.live_ids()) == 1


def test_destroy_all_marks_an_id_less_row_only_when_a_non_empty_list_lacks_it_past_the_grace(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    """Finding 1 (destroy --all): an empty list, or a create that may still be in flight, is no
    proof that an intent row never created anything."""
    from gpuctl.errors import PartialError
    from gpuctl.vastai.destroy import execute_destroy, plan_destroy
    from gpuctl.vastai.instances import ActionsFailed, make_label

    row_id = state.add_instance_intent(provider="vastai", label=make_label("default"), dph="0.18")
    clock.advance(20 * 60)
    vast.set_list_fault("empty")
    with pytest.raises(ActionsFailed):  # its only target not done: a failure, not partial
        execute_destroy(client, state, plan_destroy(client, state, all_=True), home=settings.home, clock=clock)
    row = state.get_instance(row_id)
    assert row is not None and row.live and row.cost is None
    vast.set_list_fault(None)
    vast.seed_instance(label="my-own-box")  # a non-empty list that lacks its label
    young = state.add_instance_intent(provider="vastai", label=make_label("default"), dph="0.18")
    with pytest.raises(PartialError) as err:  # the young one may still appear
        execute_destroy(client, state, plan_destroy(client, state, all_=True), home=settings.home, clock=clock)
    results = {r["ledger_row"]: r["result"] for r in err.value.data["results"]}  # type: ignore[index]
    assert results == {row_id: "marked", young: "failed"}
    assert not state.get_instance(row_id).live and state.get_instance(young).live  # type: ignore[union-attr]


def test_an_id_less_row_on_an_empty_account_is_cleared_by_naming_its_label(cli, vast_env: FakeVast,  # type: ignore[no-untyped-def]
                                                                           gpuctl_home: Path) -> None:
    """The way out of finding 1's guard: a create of unknown outcome on an otherwise empty
    account. No list can prove it never happened; the user, having checked, can say so."""
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    with open_state(gpuctl_home) as st:
        row_id = st.add_instance_intent(provider="vastai", label="gpuctl:default:0123456789ab", dph="0.18")
        st.update_instance(row_id, status="failed", created_at=st.clock() - 3600)
    cleaned = cli("cleanup")
    assert_exit(cleaned, 1)
    assert "gpuctl destroy gpuctl:default:0123456789ab --yes" in cleaned.stderr
    every = cli("destroy", "--all", "--yes")
    assert_exit(every, 1)  # its only target could not be done: nothing succeeded
    assert "does not prove its create never happened" in every.stdout + every.stderr
    assert_exit(cli("destroy", "gpuctl:default:0123456789ab"), 2)  # no --yes, no terminal: refused
    named = cli("--json", "destroy", "gpuctl:default:0123456789ab", "--yes")
    assert_exit(named, 0)
    assert json.loads(named.stdout)["data"]["results"][0]["result"] == "marked"
    with open_state(gpuctl_home) as st:
        assert st.live_instances("vastai") == [] and st.get_instance(row_id).cost == "0"  # type: ignore[union-attr]
    assert_exit(cli("cleanup"), 0)
    assert_exit(cli("destroy", "gpuctl:default:0123456789ab", "--yes"), 2)  # nothing left by that label


def test_destroy_by_label_destroys_the_instance_that_carries_it(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    iid = vast_env.seed_instance(label="gpuctl:laptop:0123456789ab")
    assert_exit(cli("destroy", "gpuctl:laptop:0123456789ab", "--yes"), 0)
    assert iid not in vast_env.live_ids()
    assert_exit(cli("destroy", "gpuctl:laptop:0123456789ab", "--all", "--yes"), 2)


def test_destroy_failure_is_partial(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    first = json.loads(cli("--json", "launch", "--yes").stdout)["data"]["instance"]["instance_id"]
    second = json.loads(cli("--json", "launch", "--yes").stdout)["data"]["instance"]["instance_id"]
    vast_env.fail_destroy(first)
    result = cli("--json", "destroy", "--all", "--yes")
    assert_exit(result, 4)
    doc = json.loads(result.stdout)
    assert doc["status"] == "partial" and doc["data"]["failed"] == 1
    assert vast_env.live_ids() == {first} and second not in vast_env.live_ids()


def test_destroy_refuses_an_id_gpuctl_did_not_create_unless_forced(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    """Finding 2: `gpuctl destroy ID --yes` destroyed someone's own training box."""
    prod = vast_env.seed_instance(label="my-prod-training")
    bare = vast_env.seed_instance(label=None)
    for args in (("destroy", str(prod), "--yes"), ("destroy", "vastai", str(prod), "--dry-run")):
        refused = cli(*args)
        assert_exit(refused, 2)
        (line,) = [x for x in refused.stderr.splitlines() if x.startswith("Error:")]
        assert f"instance {prod} is labelled 'my-prod-training'" in line and "gpuctl did not create it" in line
        assert "--force" in refused.stderr
    assert_exit(cli("destroy", str(bare), "--yes"), 2)
    assert vast_env.live_ids() == {prod, bare} and vast_env.received("DELETE") == []
    assert_exit(cli("destroy", "--all", "--force", "--yes"), 2)  # --all never reaches past gpuctl's
    assert_exit(cli("destroy", "--all", "--yes"), 0)
    assert vast_env.live_ids() == {prod, bare}
    forced = cli("--json", "destroy", str(prod), "--force", "--yes")
    assert_exit(forced, 0)
    (res,) = json.loads(forced.stdout)["data"]["results"]
    assert res["result"] == "destroyed" and res["created_by_gpuctl"] is False
    assert vast_env.live_ids() == {bare}


def test_destroy_by_id_trusts_the_ledger_over_a_changed_label(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    iid = json.loads(cli("--json", "launch", "--yes", "--no-wait").stdout)["data"]["instance"]["instance_id"]
    vast_env.instance(iid).label = "renamed-on-the-console"  # gpuctl created it: its ledger row says so
    assert_exit(cli("destroy", str(iid), "--yes"), 0)
    assert vast_env.live_ids() == set()


def test_destroy_all_that_fails_everywhere_is_exit_1_not_partial(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    """Finding 3: "destroyed 0 of 1" is a failure (exit 1), with the results still in --json."""
    iid = json.loads(cli("--json", "launch", "--yes").stdout)["data"]["instance"]["instance_id"]
    vast_env.fail_destroy(iid)
    result = cli("--json", "destroy", "--all", "--yes")
    assert_exit(result, 1)
    doc = json.loads(result.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 1
    assert doc["data"]["failed"] == 1 and doc["data"]["destroyed"] == 0
    assert doc["data"]["results"][0]["instance_id"] == iid and doc["data"]["results"][0]["result"] == "failed"
    assert doc["errors"][0]["message"].startswith("destroyed 0 of 1")
    assert "Error: destroyed 0 of 1" in result.stderr
    human = cli("destroy", str(iid), "--yes")
    assert_exit(human, 1)
    assert "destroyed 0 of 1" in human.stderr and iid in vast_env.live_ids()


# -- failure paths (fake clock) ---------------------------------------------------------------------


@pytest.mark.parametrize("status", [200, 404])
def test_create_refused_outright_moves_to_the_next_offer(settings: Settings, client: VastAIClient, state: State,
                                                         vast: FakeVast, clock: FakeClock, status: int) -> None:
    vast.fail_creates_for(offer_id=102, status=status, msg="Offer no longer available")
    result = run_launch(settings, client, state, clock)
    assert result.ready and create_ids(vast) == [102, 101]
    assert [a.outcome for a in result.attempts] == ["failed", "ready"] and "no longer available" in result.attempts[0].reason
    rows = state.instances("vastai")
    assert rows[0].status == "destroyed" and rows[0].cost == "0" and rows[0].remote_id is None
    assert state.excluded_machines("vastai") == {}  # a refused create says nothing about the machine
    assert vast.live_ids() == {result.instance_id}


def list_calls(vast: FakeVast) -> int:
    return len([r for r in vast.received("GET", "/api/v1/instances/") if "after_token" not in r.query])


def test_create_500_polls_for_its_label_then_stops_and_keeps_the_row(settings: Settings, client: VastAIClient,
                                                                     state: State, vast: FakeVast,
                                                                     clock: FakeClock) -> None:
    """Findings 1 and 5: a 500 may have created an instance; nothing listed yet proves nothing."""
    vast.fail_creates_for(offer_id=102)  # (in truth nothing was created)
    start = clock()
    with pytest.raises(ProviderError, match="may have created an instance all the same") as err:
        run_launch(settings, client, state, clock)
    assert "gpuctl cleanup" in (err.value.hint or "")
    assert create_ids(vast) == [102]  # no further offer: a second instance could bill alongside
    assert clock() - start >= lifecycle.CREATE_LOOKUP_S and list_calls(vast) == 7  # every 10 s for 60 s
    (row,) = state.live_instances("vastai")
    assert row.status == "failed" and row.remote_id is None and row.cost is None
    # It counts against the budget until cleanup settles it.
    from gpuctl.vastai import budget

    assert budget.spent(state.instances("vastai"), clock()) > 0
    assert budget.reserved(state.instances("vastai"), 45) == Decimal("0.135")


def test_create_listed_late_is_found_destroyed_and_the_next_offer_tried(settings: Settings, client: VastAIClient,
                                                                        state: State, vast: FakeVast,
                                                                        clock: FakeClock) -> None:
    """Finding 5: the create failed at HTTP level but went through, and is listed only on the
    4th listing. One immediate look would have called it never-created and rented a second."""
    vast.create_but_fail(1, status=502, visible_after_lists=3)
    result = run_launch(settings, client, state, clock)
    assert result.ready and create_ids(vast) == [102, 101]
    first = state.instances("vastai")[0]
    assert first.status == "destroyed" and first.remote_id == str(FIRST_INSTANCE_ID)
    assert "yet it was created" in (first.status_msg or "")
    assert vast.instance(FIRST_INSTANCE_ID).destroyed and vast.live_ids() == {result.instance_id}
    assert list_calls(vast) == 4


def test_dropped_create_never_listed_stops_the_launch_and_cleanup_finishes_it(settings: Settings,
                                                                              client: VastAIClient, state: State,
                                                                              vast: FakeVast, clock: FakeClock) -> None:
    vast.create_but_fail(1, status=DROP, visible_after_lists=1000)
    with pytest.raises(ProviderError, match="may have created") as err:
        run_launch(settings, client, state, clock)
    assert err.value.kind == "connect"
    assert create_ids(vast) == [102] and vast.live_ids() == {FIRST_INSTANCE_ID}  # billing, but not unseen:
    (row,) = state.live_instances("vastai")
    assert row.status == "failed" and row.remote_id is None
    vast.instance(FIRST_INSTANCE_ID).hidden_lists = 0  # Vast lists it at last
    from gpuctl.vastai.cleanup import run_cleanup

    report = run_cleanup(settings, client=client, state=state, clock=clock,
                         probe=lambda e, k, m: health("unhealthy", "connection refused"))
    assert [(a.instance_id, a.result) for a in report.actions] == [(FIRST_INSTANCE_ID, "destroyed")]
    assert "launch abandoned" in report.actions[0].reason
    assert vast.live_ids() == set() and state.live_instances("vastai") == []


def test_a_show_answering_null_is_destroyed_before_it_is_marked(settings: Settings, client: VastAIClient,
                                                                 state: State, vast: FakeVast, clock: FakeClock) -> None:
    """Finding 8: `{"instances": null}` by mistake must not leave a billing instance marked gone."""
    vast.inject_status(200, times=1, method="GET", path=f"/api/v0/instances/{FIRST_INSTANCE_ID}/",
                       body={"instances": None})
    result = run_launch(settings, client, state, clock)
    assert result.ready and create_ids(vast) == [102, 101]
    assert vast.received("DELETE", f"/api/v0/instances/{FIRST_INSTANCE_ID}/")
    assert vast.instance(FIRST_INSTANCE_ID).destroyed and vast.live_ids() == {result.instance_id}
    first = state.instances("vastai")[0]
    assert first.status == "destroyed" and first.cost is not None


def test_a_crash_whose_destroy_fails_names_the_instance(settings: Settings, client: VastAIClient, state: State,
                                                        vast: FakeVast, clock: FakeClock) -> None:
    """Finding 9: the destroy failure during an abort is the news, not the crash alone."""
    def probe(endpoint: str, key: str | None, model: str | None):  # type: ignore[no-untyped-def]
        raise RuntimeError("a bug in the probe")

    vast.fail_destroy(FIRST_INSTANCE_ID)
    with pytest.raises(ProviderError) as err:
        run_launch(settings, client, state, clock, probe=probe)
    assert f"gpuctl destroy {FIRST_INSTANCE_ID} --yes" in err.value.message and "may still bill" in err.value.message
    assert isinstance(err.value.__cause__, RuntimeError)
    (row,) = state.live_instances("vastai")
    assert row.status == "failed" and row.remote_id == str(FIRST_INSTANCE_ID)
    assert vast.live_ids() == {FIRST_INSTANCE_ID}


def test_vast_statuses_are_stored_as_ones_cleanup_knows(settings: Settings, client: VastAIClient, state: State,
                                                        vast: FakeVast, clock: FakeClock, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Finding 7: Vast's own statuses (`scheduling`, `offline`, ...) are not ledger statuses."""
    real_show = client.get_instance
    shows = iter(["scheduling", "offline"])

    def odd_status(instance_id: int):  # type: ignore[no-untyped-def]
        inst = real_show(instance_id)
        odd = next(shows, None)
        return dataclasses.replace(inst, actual_status=odd) if inst is not None and odd else inst

    stored: list[str] = []
    real_update = state.update_instance

    def spy(row_id: int, **changes):  # type: ignore[no-untyped-def]
        if "status" in changes:
            stored.append(changes["status"])
        real_update(row_id, **changes)

    monkeypatch.setattr(client, "get_instance", odd_status)
    monkeypatch.setattr(state, "update_instance", spy)
    assert run_launch(settings, client, state, clock).ready
    assert "scheduling" not in stored and "offline" not in stored and stored.count("loading") >= 2
    assert set(stored) <= {"created", "loading", "running", "ready"}


def test_the_live_price_is_recorded_while_watching(settings: Settings, client: VastAIClient, state: State,
                                                   vast: FakeVast, clock: FakeClock) -> None:
    """Finding 6: a host can raise the price; budgets charge the higher one."""
    answers = iter([health("unhealthy", "loading"), health("ready")])

    def probe(endpoint: str, key: str | None, model: str | None):  # type: ignore[no-untyped-def]
        vast.set_price(FIRST_INSTANCE_ID, "0.50")
        return next(answers)

    result = run_launch(settings, client, state, clock, probe=probe)
    (row,) = state.live_instances("vastai")
    assert result.ready and row.dph is not None and Decimal(row.dph) == Decimal("0.5")


def test_an_endpoint_port_containing_401_is_not_a_refused_key(settings: Settings, client: VastAIClient,
                                                              state: State, vast: FakeVast, clock: FakeClock) -> None:
    """Finding 11: decide on the error kind, never on text (ports like :40123 contain 401)."""
    answers = iter([health("unhealthy", "vastai: cannot connect to http://203.0.113.9:40123 (connection refused)"),
                    health("unhealthy", "HTTP 401 somewhere in a proxy page"), health("ready")])
    result = run_launch(settings, client, state, clock, probe=lambda e, k, m: next(answers))
    assert result.ready and create_ids(vast) == [102]


def test_vllm_refusing_the_key_stops_the_launch(settings: Settings, client: VastAIClient, state: State,
                                                clock: FakeClock) -> None:
    with (FakeVLLM(model=MODEL, api_key="not-the-key-gpuctl-made") as strict,
          FakeVast(api_key=KEY, offers=common.market(), clock=clock, endpoint_port=strict.port) as fake,
          VastAIClient(KEY, api_url=fake.url, sleep=lambda s: None) as api):
        local = load_settings(env={"VAST_URL": fake.url, "VASTAI_API_KEY": KEY}, home=settings.home)
        with pytest.raises(ProviderError) as err:
            run_launch(local, api, state, clock)  # the real probe, against a real (fake) vLLM
        assert err.value.kind == "auth" and "refused gpuctl's API key" in err.value.message
        assert create_ids(fake) == [102] and fake.live_ids() == set()
    assert state.live_instances("vastai") == []


def test_probe_raises_auth_only_for_a_refused_key() -> None:
    with FakeVLLM(model=MODEL, api_key="right") as strict:
        with pytest.raises(ProviderError) as err:
            lifecycle.probe_vllm(strict.url, "wrong", MODEL, timeout=5)
        assert err.value.kind == "auth"
        assert lifecycle.probe_vllm(strict.url, "right", MODEL, timeout=5).status == "ready"
    down = lifecycle.probe_vllm("http://127.0.0.1:1", "right", MODEL, timeout=2)  # nothing listens: not "auth"
    assert down.status == "unhealthy"


def test_create_that_fails_yet_creates_is_found_by_label_and_destroyed(settings: Settings, client: VastAIClient,
                                                                       state: State, vast: FakeVast, clock: FakeClock,
                                                                       monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real = client.create_instance
    calls: list[int] = []

    def create_then_time_out(offer_id: int, **kw):  # type: ignore[no-untyped-def]
        real(offer_id, **kw)
        calls.append(offer_id)
        if len(calls) == 1:
            raise ProviderError("Vast.ai create timed out", provider="vastai", kind="timeout")
        return real.__self__.list_instances()[-1].id  # type: ignore[attr-defined]

    monkeypatch.setattr(client, "create_instance", create_then_time_out)
    result = run_launch(settings, client, state, clock)
    assert result.ready and calls == [102, 101]
    first = state.instances("vastai")[0]
    assert first.status == "destroyed" and first.remote_id is not None  # found by its label
    assert vast.live_ids() == {result.instance_id}


def test_cdi_failure_destroys_excludes_the_machine_and_moves_on(settings: Settings, client: VastAIClient,
                                                                state: State, vast: FakeVast, clock: FakeClock) -> None:
    vast.fail_boot(offer_id=102)
    result = run_launch(settings, client, state, clock)
    assert result.ready and create_ids(vast) == [102, 101]
    failed = result.attempts[0]
    assert "CDI" in failed.reason and failed.instance_id is not None
    assert vast.instance(failed.instance_id).destroyed
    assert "50102" in state.excluded_machines("vastai")
    assert vast.live_ids() == {result.instance_id}
    # The machine stays excluded for the next launch, even though its offer is rentable again.
    assert 102 not in [c.offer.id for c in plan_launch(settings, client, state, clock=clock).search.candidates]


def test_stuck_loading_past_ten_minutes_is_destroyed(settings: Settings, client: VastAIClient, state: State,
                                                     vast: FakeVast, clock: FakeClock) -> None:
    vast.stick_loading(offer_id=102)
    start = clock()
    result = run_launch(settings, client, state, clock)
    assert result.ready and create_ids(vast) == [102, 101]
    assert "stuck in loading" in result.attempts[0].reason and clock() - start > 600
    first = state.instances("vastai")[0]
    assert first.status == "destroyed" and first.cost is not None and first.cost != "0"  # 10 min were billed
    assert "50102" in state.excluded_machines("vastai")


def test_all_attempts_fail_nothing_left_running(settings: Settings, client: VastAIClient, state: State,
                                                vast: FakeVast, clock: FakeClock) -> None:
    vast.add_offer(make_offer(108, dph_total="0.20", **OK))  # within $0.18 + 25%, like 101
    for offer_id in (102, 108, 101, 201, 401):
        vast.fail_boot(offer_id=offer_id)
    with pytest.raises(ProviderError, match="after 3 attempt"):
        run_launch(settings, client, state, clock)
    assert create_ids(vast) == [102, 108, 101]  # the limit
    assert vast.live_ids() == set() and state.live_instances("vastai") == []
    assert set(state.excluded_machines("vastai")) == {"50102", "50108", "50101"}


# -- retries stay within what the user confirmed (review finding 1) ------------------------------

OK = {"cuda_max_good": 13.0, "inet_down": 900.0, "reliability": 0.99}


def test_a_failed_cheap_offer_is_never_replaced_by_a_dearer_tier(settings: Settings, client: VastAIClient,
                                                                state: State, vast: FakeVast, clock: FakeClock) -> None:
    """The finding: the user confirmed an RTX 3090 at $0.18/h; its machine failed CDI, the other
    cheap offers were gone, and the retry rented an H100 SXM at $2.40/h with no second question."""
    vast.remove_offer(101)
    vast.remove_offer(201)
    vast.add_offer(make_offer(110, dph_total="0.30", **OK))  # same tier, but above $0.18 × 1.25
    vast.fail_boot(offer_id=102)
    plan = plan_launch(settings, client, state, clock=clock)
    assert plan.retry_max_dph == Decimal("0.225") and [t.name for t in plan.retry_tiers] == ["RTX 3090"]
    searches = len(vast.received("POST", "/api/v0/bundles/"))
    with pytest.raises(ProviderError) as err:
        launch(settings, plan, client=client, state=state, clock=clock, sleep=Sleeper(clock))
    assert create_ids(vast) == [102]  # never 110 ($0.30), never 401 (the H100 at $2.40)
    assert len(vast.received("POST", "/api/v0/bundles/")) == searches  # later tiers not even searched
    message = err.value.message
    assert err.value.exit_code == 1 and "CDI injection failure" in message
    assert "RTX 3090 tier's offers at most $0.225/h (the confirmed $0.18/h + 25%) are exhausted" in message
    assert "not rented without a new confirmation" in message and "gpuctl launch --dry-run" in (err.value.hint or "")
    assert vast.live_ids() == set() and state.live_instances("vastai") == []


def test_an_explicit_max_dph_is_the_retry_limit_but_not_a_licence_for_later_tiers(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    vast.remove_offer(101)
    vast.add_offer(make_offer(110, dph_total="0.28", **OK))  # above $0.225, within --max-dph
    vast.fail_boot(offer_id=102)
    result = run_launch(settings, client, state, clock, max_dph="0.30")  # what the user asked for
    assert result.ready and create_ids(vast) == [102, 110]
    vast.fail_boot(offer_id=110)
    vast.remove_offer(102)
    vast.add_offer(make_offer(111, dph_total="0.19", **OK))
    vast.fail_boot(offer_id=111)
    with pytest.raises(ProviderError, match=r"at most \$3.00/h \(--max-dph\) are exhausted; dearer offers and later"):
        run_launch(settings, client, state, clock, max_dph=3)  # the RTX 4090 at $0.40 fits $3, not the tier rule
    assert create_ids(vast)[2:] == [111] and 201 not in create_ids(vast)


def test_the_cli_confirmation_names_the_retry_limit_and_stops_at_it(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    asked = cli("launch")  # no terminal: refused, but the question is shown
    assert_exit(asked, 2)
    assert "Rent an instance with RTX 3090 at $0.18/h?" in asked.stderr
    assert "retries stay within $0.225/h and the RTX 3090 tier" in asked.stderr
    dry = json.loads(cli("--json", "launch", "--dry-run").stdout)
    assert dry["data"]["plan"]["retry_max_dph"] == "0.225"
    vast_env.remove_offer(101)
    vast_env.remove_offer(201)
    vast_env.fail_boot(offer_id=102)
    result = cli("launch", "--yes")
    assert_exit(result, 1)
    assert "are exhausted" in result.stderr and "gpuctl launch --dry-run" in result.stderr
    assert create_ids(vast_env) == [102] and vast_env.live_ids() == set()


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0.5", "0"])
def test_max_dph_must_be_a_finite_positive_number(cli, vast_env: FakeVast, value: str) -> None:  # type: ignore[no-untyped-def]
    """Finding 4: NaN compares false with every price, so `--max-dph nan` capped nothing."""
    result = cli("launch", "--dry-run", "--max-dph", value)
    assert_exit(result, 2)
    assert "--max-dph must be a finite number" in result.stderr
    assert vast_env.requests == []  # refused before any API call


def test_plan_launch_refuses_a_non_finite_max_dph(settings: Settings, client: VastAIClient, state: State,
                                                  vast: FakeVast, clock: FakeClock) -> None:
    for value in (float("nan"), float("inf"), Decimal("NaN")):
        with pytest.raises(UsageError, match="finite"):
            plan_launch(settings, client, state, clock=clock, max_dph=value)
    assert vast.requests == []


def test_vllm_that_never_answers_is_destroyed(settings: Settings, client: VastAIClient, state: State,
                                             vast: FakeVast, clock: FakeClock) -> None:
    probes: list[str] = []

    def probe(endpoint: str, key: str | None, model: str | None):  # type: ignore[no-untyped-def]
        probes.append(endpoint)
        return health("unhealthy", "connection refused")

    with pytest.raises(ProviderError, match="did not answer within 20 minutes"):
        run_launch(settings, client, state, clock, probe=probe, max_attempts=1)
    assert len(probes) > 100 and vast.live_ids() == set() and state.live_instances("vastai") == []


def test_exit_while_waiting_for_vllm_is_a_failed_attempt(settings: Settings, client: VastAIClient, state: State,
                                                         vast: FakeVast, clock: FakeClock) -> None:
    def probe(endpoint: str, key: str | None, model: str | None):  # type: ignore[no-untyped-def]
        for inst in vast.instances.values():
            inst.stopped = True  # the container dies while vLLM loads
        return health("unhealthy", "connection refused")

    with pytest.raises(ProviderError, match="container exited"):
        run_launch(settings, client, state, clock, probe=probe, max_attempts=1)
    assert vast.live_ids() == set()


# -- Ctrl-C ----------------------------------------------------------------------------------------


class InterruptAfter:
    def __init__(self, clock: FakeClock, n: int) -> None:
        self.clock, self.n = clock, n

    def __call__(self, seconds: float) -> None:
        self.n -= 1
        if self.n < 0:
            raise KeyboardInterrupt
        self.clock.advance(seconds)


def test_ctrl_c_while_loading_destroys_what_was_created(settings: Settings, client: VastAIClient, state: State,
                                                        vast: FakeVast, clock: FakeClock) -> None:
    with pytest.raises(LaunchInterrupted, match="destroyed instance") as err:
        run_launch(settings, client, state, clock, sleep=InterruptAfter(clock, 1))
    assert err.value.exit_code == 130
    assert len(vast.instances) == 1 and vast.live_ids() == set()
    (row,) = state.instances("vastai")
    assert row.status == "destroyed" and row.cost is not None


def test_ctrl_c_with_keep_keeps_it(settings: Settings, client: VastAIClient, state: State,
                                   vast: FakeVast, clock: FakeClock) -> None:
    with pytest.raises(LaunchInterrupted, match="kept instance"):
        run_launch(settings, client, state, clock, sleep=InterruptAfter(clock, 1), keep=True)
    assert len(vast.live_ids()) == 1
    (row,) = state.live_instances("vastai")
    assert row.status == "unattended" and row.remote_id == str(next(iter(vast.live_ids())))


def test_ctrl_c_before_the_create_is_listed_keeps_the_row_live(settings: Settings, client: VastAIClient,
                                                               state: State, vast: FakeVast, clock: FakeClock,
                                                               monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Finding 1: one look at a list that does not show it yet proves nothing."""
    vast.create_but_fail(1, status=500, visible_after_lists=2)
    real = client.create_instance

    def create_then_interrupt(offer_id: int, **kw):  # type: ignore[no-untyped-def]
        with contextlib.suppress(ProviderError):
            real(offer_id, **kw)
        raise KeyboardInterrupt  # Ctrl-C while the create was in flight

    monkeypatch.setattr(client, "create_instance", create_then_interrupt)
    with pytest.raises(LaunchInterrupted, match="whether an instance was created is unknown") as err:
        run_launch(settings, client, state, clock)
    assert "gpuctl cleanup" in (err.value.hint or "")
    (row,) = state.live_instances("vastai")
    assert row.status == "failed" and row.cost is None and vast.live_ids() == {FIRST_INSTANCE_ID}


def test_ctrl_c_during_the_create_call_finds_it_by_label(settings: Settings, client: VastAIClient, state: State,
                                                         vast: FakeVast, clock: FakeClock, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    real = client.create_instance

    def create_then_interrupt(offer_id: int, **kw):  # type: ignore[no-untyped-def]
        real(offer_id, **kw)
        raise KeyboardInterrupt  # the reply never reached us

    monkeypatch.setattr(client, "create_instance", create_then_interrupt)
    with pytest.raises(LaunchInterrupted):
        run_launch(settings, client, state, clock)
    assert len(vast.instances) == 1 and vast.live_ids() == set() and state.live_instances("vastai") == []


# -- budgets ---------------------------------------------------------------------------------------


def test_session_budget_refuses_before_any_write(cli, vast_env: FakeVast, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("VASTAI_SESSION_BUDGET_LIMIT", "0.10")  # 0.18 $/h × 45 min = $0.135
    result = cli("launch", "--yes")
    assert_exit(result, 1)
    assert "session budget of $0.10" in result.stderr and "nothing was created" in result.stderr
    assert vast_env.received("PUT") == [] and vast_env.live_ids() == set()


def test_total_budget_counts_what_was_spent(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    with open_state(gpuctl_home) as st:
        old = st.add_instance_intent(provider="vastai", label="gpuctl:default:0123456789ab", dph="1.00")
        st.mark_instance_destroyed(old, cost="14.90")
    result = cli("launch", "--yes")
    assert_exit(result, 1)
    assert "only $0.10 is left of the $15.00" in result.stderr and "$14.90 spent" in result.stderr
    assert vast_env.received("PUT") == []
    with open_state(gpuctl_home) as st:
        st.mark_instance_destroyed(old, cost="15.00")
    spent = cli("launch", "--yes")
    assert_exit(spent, 1)
    assert "budget is spent" in spent.stderr
    assert len(vast_env.received("POST", "/api/v0/bundles/")) == 1  # no search the second time: spent is spent


def test_total_budget_holds_a_keep_alive_for_every_live_instance(gpuctl_home: Path, clock: FakeClock,
                                                                  vllm: FakeVLLM) -> None:
    """Finding 2: six `launch --no-wait` at $0.18/h under a $0.50 budget all succeeded ($0.81
    committed). Each live instance may bill a full keep-alive more: 3 × $0.135 fit, not 4."""
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    with (FakeVast(api_key=KEY, offers=common.market(), clock=clock, endpoint_port=vllm.port,
                   consume_offers=False) as fake,
          VastAIClient(KEY, api_url=fake.url, sleep=lambda s: None) as api,
          open_state(gpuctl_home, clock=clock) as st):
        limited = load_settings(env={"VAST_URL": fake.url, "VASTAI_API_KEY": KEY, "VASTAI_BUDGET_LIMIT": "0.5"},
                                home=gpuctl_home)
        launched, refusals = [], []
        for _ in range(6):
            try:
                launched.append(run_launch(limited, api, st, clock, wait=False))
            except BudgetError as exc:
                refusals.append(exc)
        assert len(launched) == 3 and len(fake.live_ids()) == 3 and len(refusals) == 3
        assert "$0.405 held for live instances" in refusals[0].message
        plan = plan_launch(limited, api, st, clock=clock)
        assert plan.reserved == Decimal("0.405") and plan.as_dict()["reserved"] == "0.405"


def test_budget_check_and_intent_row_happen_under_the_global_launch_lock(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock,
        monkeypatch) -> None:  # type: ignore[no-untyped-def]
    lock = settings.home / "locks" / "launch.lock"
    held: list[bool] = []
    real = state.add_instance_intent

    def spy(**kw):  # type: ignore[no-untyped-def]
        with try_lock(lock) as free:
            held.append(not free)
        return real(**kw)

    monkeypatch.setattr(state, "add_instance_intent", spy)
    assert run_launch(settings, client, state, clock, wait=False).instance_id
    assert held == [True]
    with try_lock(lock) as free:  # and released afterwards
        assert free


def test_a_second_launch_waits_for_the_global_launch_lock(settings: Settings, client: VastAIClient, state: State,
                                                          vast: FakeVast, clock: FakeClock) -> None:
    plan = plan_launch(settings, client, state, clock=clock)
    results: list[object] = []

    def second() -> None:
        with open_state(settings.home, clock=clock) as st, VastAIClient(KEY, api_url=vast.url) as api:
            results.append(launch(settings, plan, client=api, state=st, clock=clock, wait=False))

    with budget_lock(settings.home):
        thread = threading.Thread(target=second)
        thread.start()
        thread.join(timeout=0.3)
        assert thread.is_alive() and vast.received("PUT") == [] and state.instances("vastai") == []
    thread.join(timeout=10)
    assert not thread.is_alive() and len(results) == 1 and len(vast.received("PUT")) == 1


def test_budget_is_checked_again_before_each_retry(settings: Settings, client: VastAIClient, state: State,
                                                   vast: FakeVast, clock: FakeClock) -> None:
    vast.fail_boot(offer_id=102)
    settings = load_settings(env={"VAST_URL": vast.url, "VASTAI_API_KEY": KEY,
                                  "VASTAI_SESSION_BUDGET_LIMIT": "0.15"}, home=settings.home)  # 0.22 × 0.75 > 0.15
    with pytest.raises(BudgetError, match="1 attempt"):
        run_launch(settings, client, state, clock)
    assert create_ids(vast) == [102] and vast.live_ids() == set() and state.live_instances("vastai") == []


def test_unknown_gpu_is_rejected_before_the_api(settings: Settings, client: VastAIClient, state: State,
                                                vast: FakeVast, clock: FakeClock) -> None:
    with pytest.raises(UsageError):
        plan_launch(settings, client, state, gpu="TPU v5", clock=clock)
    assert vast.requests == []
