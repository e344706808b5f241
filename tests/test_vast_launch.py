"""`gpuctl launch` / `destroy` against the loopback Vast.ai fake with a fake vLLM as the
instance's endpoint: the happy path through the router, failure paths, Ctrl-C, budgets."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gpuctl.config import Settings, load_settings
from gpuctl.errors import BudgetError, ProviderError, UsageError
from gpuctl.providers.vastai import VastAIClient
from gpuctl.state import State, open_state
from gpuctl.vast import lifecycle
from gpuctl.vast.lifecycle import LaunchInterrupted, launch, plan_launch
from tests import test_vast_common as common
from tests.conftest import assert_exit
from tests.fakes.vastai_server import FakeClock, FakeVast
from tests.fakes.vllm_server import FakeVLLM
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
    from gpuctl.router import BackendManager

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


def test_destroy_failure_is_partial(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    first = json.loads(cli("--json", "launch", "--yes").stdout)["data"]["instance"]["instance_id"]
    second = json.loads(cli("--json", "launch", "--yes").stdout)["data"]["instance"]["instance_id"]
    vast_env.fail_destroy(first)
    result = cli("--json", "destroy", "--all", "--yes")
    assert_exit(result, 4)
    doc = json.loads(result.stdout)
    assert doc["status"] == "partial" and doc["data"]["failed"] == 1
    assert vast_env.live_ids() == {first} and second not in vast_env.live_ids()


# -- failure paths (fake clock) ---------------------------------------------------------------------


def test_create_500_moves_to_the_next_offer(settings: Settings, client: VastAIClient, state: State,
                                             vast: FakeVast, clock: FakeClock) -> None:
    vast.fail_creates_for(offer_id=102)
    result = run_launch(settings, client, state, clock)
    assert result.ready and create_ids(vast) == [102, 101]
    assert [a.outcome for a in result.attempts] == ["failed", "ready"] and "HTTP 500" in result.attempts[0].reason
    rows = state.instances("vastai")
    assert rows[0].status == "destroyed" and rows[0].cost == "0" and rows[0].remote_id is None
    assert state.excluded_machines("vastai") == {}  # a server error says nothing about the machine
    assert vast.live_ids() == {result.instance_id}


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
    for offer_id in (102, 101, 201, 401):
        vast.fail_boot(offer_id=offer_id)
    with pytest.raises(ProviderError, match="after 3 attempt"):
        run_launch(settings, client, state, clock)
    assert create_ids(vast) == [102, 101, 201]  # the limit, walking on to the next tier
    assert vast.live_ids() == set() and state.live_instances("vastai") == []
    assert set(state.excluded_machines("vastai")) == {"50102", "50101", "50201"}


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


def test_budget_is_checked_again_before_each_retry(settings: Settings, client: VastAIClient, state: State,
                                                   vast: FakeVast, clock: FakeClock) -> None:
    vast.fail_boot(offer_id=102)
    settings = load_settings(env={"VAST_URL": vast.url, "VASTAI_API_KEY": KEY,
                                  "VASTAI_SESSION_BUDGET_LIMIT": "0.15"}, home=settings.home)  # 0.25 × 0.75 > 0.15
    with pytest.raises(BudgetError, match="1 attempt"):
        run_launch(settings, client, state, clock)
    assert create_ids(vast) == [102] and vast.live_ids() == set() and state.live_instances("vastai") == []


def test_unknown_gpu_is_rejected_before_the_api(settings: Settings, client: VastAIClient, state: State,
                                                vast: FakeVast, clock: FakeClock) -> None:
    with pytest.raises(UsageError):
        plan_launch(settings, client, state, gpu="TPU v5", clock=clock)
    assert vast.requests == []
