"""`gpuctl status` never hides a billing Vast.ai instance (issue 11 item 2): with only
VASTAI_API_KEY set, a live gpuctl instance in the ledger or on the account is shown (id, state,
$/h, age, endpoint), never "no provider is configured" nor "start one with `gpuctl launch`"."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from gpuctl.state import open_state
from gpuctl.vastai.instances import make_label
from tests.fakes.vastai_server import FakeVast, make_offer
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit, closed_port_url


def vast_rows(doc: dict) -> dict:  # type: ignore[type-arg]
    return next(p for p in doc["data"]["providers"] if p["provider"] == "vastai")


def never_hidden(text: str) -> None:
    assert "no provider is configured" not in text and "start one with `gpuctl launch`" not in text


def add_row(home: Path, vast: FakeVast | None, *, status: str, running: bool = False, dph: str = "0.18") -> tuple[int, int | None]:
    home.mkdir(parents=True, exist_ok=True)
    label = make_label(None)
    with open_state(home) as st:
        row_id = st.add_instance_intent(provider="vastai", label=label, gpu="RTX 3090", dph=dph, offer_id="102")
        iid = None
        if vast is not None:
            iid = vast.add_instance(label=label, offer=make_offer(102, dph_total=dph), running=running,
                                    created_at=st.clock() - 180)
            if not running:
                vast.instance(iid).polls = 2  # past null: "loading"
            st.set_instance_remote_id(row_id, str(iid))
        st.update_instance(row_id, status=status, created_at=st.clock() - 180)
    return row_id, iid


def test_a_loading_instance_is_shown_with_its_id_state_price_and_age(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    _, iid = add_row(gpuctl_home, vast_env, status="loading")
    result = cli("--json", "status")
    # Nothing can answer yet (exit 1, as for any status where nobody answers), but it is shown.
    assert_exit(result, 1)
    never_hidden(result.stdout + result.stderr)
    doc = json.loads(result.stdout)
    row = vast_rows(doc)
    (inst,) = row["instances"]
    assert inst["id"] == str(iid) and inst["state"] == "loading" and inst["dph"] == "0.18"
    assert 170 <= inst["age_s"] <= 400 and inst["endpoint"] is None and row["status"] == "loading"
    assert f"instance {iid} loading ($0.18/h" in doc["data"]["reason"]
    human = cli("status")
    assert_exit(human, 1)
    never_hidden(human.stdout + human.stderr)
    assert "vastai: billing now" in human.stdout and str(iid) in human.stdout and "loading" in human.stdout


def test_a_ready_instance_answers_status_exit_0_and_is_listed_with_its_endpoint(cli, vast_env: FakeVast,  # type: ignore[no-untyped-def]
                                                                                vllm: FakeVLLM) -> None:
    assert_exit(cli("launch", "--yes"), 0)
    result = cli("--json", "status")
    assert_exit(result, 0)
    doc = json.loads(result.stdout)
    assert doc["data"]["provider"] == "vastai" and doc["data"]["status"] == "ready"
    (inst,) = vast_rows(doc)["instances"]
    assert inst["state"] == "running" and inst["endpoint"] == f"http://127.0.0.1:{vllm.port}/v1"
    assert inst["dph"] == "0.18" and "ready" in inst["detail"]


def test_an_instance_only_the_api_knows_is_shown(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    """Launched from another machine (or the ledger was lost): the account's list shows it."""
    iid = vast_env.add_instance(label="gpuctl:laptop:0123456789ab", offer=make_offer(102, dph_total="0.18"))
    vast_env.add_instance(label="someone-elses-box")  # not gpuctl's: not shown
    result = cli("--json", "status")
    assert_exit(result, 1)
    never_hidden(result.stdout + result.stderr)
    (inst,) = vast_rows(json.loads(result.stdout))["instances"]
    assert inst["id"] == str(iid) and inst["state"] == "running" and "not in this machine's ledger" in inst["detail"]
    assert inst["endpoint"] is not None and inst["endpoint"].endswith("/v1")


def test_an_unconfirmed_create_is_shown(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    row_id, _ = add_row(gpuctl_home, None, status="unconfirmed")
    result = cli("--json", "status")
    assert_exit(result, 1)
    never_hidden(result.stdout + result.stderr)
    (inst,) = vast_rows(json.loads(result.stdout))["instances"]
    assert inst["id"] == f"ledger row {row_id}" and inst["state"] == "unconfirmed" and "held against the budget" in inst["detail"]


@pytest.mark.parametrize("api", ["down", "no key"])
def test_the_ledger_is_shown_when_the_api_cannot_be_asked(cli, vast_env: FakeVast, gpuctl_home: Path,  # type: ignore[no-untyped-def]
                                                          monkeypatch, api: str) -> None:
    _, iid = add_row(gpuctl_home, vast_env, status="loading")
    if api == "down":
        monkeypatch.setenv("VAST_URL", closed_port_url())
    else:
        monkeypatch.delenv("VASTAI_API_KEY")
    result = cli("--json", "status")
    assert_exit(result, 1)
    never_hidden(result.stdout + result.stderr)
    row = vast_rows(json.loads(result.stdout))
    (inst,) = row["instances"]
    assert inst["id"] == str(iid) and inst["state"] == "loading"
    assert ("could not be read" in row["instances_error"]) if api == "down" else ("not set" in row["instances_error"])


def test_with_nothing_live_status_still_says_how_to_start_one(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    result = cli("--json", "status")
    assert_exit(result, 3)
    assert "no provider is configured" in result.stderr


@pytest.mark.parametrize("priority", ["modal,anthropic", "modal"])
def test_a_priority_without_vastai_still_lists_its_billing_instances(cli, vast_env: FakeVast, gpuctl_home: Path,  # type: ignore[no-untyped-def]
                                                                     priority: str) -> None:
    """Review B, finding 7: `routing.priority` decides who answers, not what `status` shows: a
    billing instance is listed whatever the priority, and never "only vastai is configured"."""
    from tests.fakes.anthropic_server import FakeAnthropic

    _, iid = add_row(gpuctl_home, vast_env, status="loading")
    with FakeAnthropic(api_key="sk-ant-test-key-123456") as claude:
        env = {"GPUCTL_PRIORITY": priority, "ANTHROPIC_API_KEY": "sk-ant-test-key-123456",
               "ANTHROPIC_BASE_URL": claude.url}
        result = cli("--json", "status", env=env)
        human = cli("status", env=env)
    answers = "anthropic" in priority
    assert_exit(result, 0 if answers else 1)  # 1: nobody in the priority can answer, but it is no config error
    never_hidden(result.stdout + result.stderr)
    assert "only vastai" not in result.stdout + result.stderr
    doc = json.loads(result.stdout)
    row = vast_rows(doc)
    (inst,) = row["instances"]
    assert inst["id"] == str(iid) and inst["state"] == "loading" and row["configured"] is False
    assert "not in routing.priority" in row["detail"]
    assert doc["data"]["provider"] == ("anthropic" if answers else None)
    if not answers:
        assert f"instance {iid} loading" in doc["data"]["reason"] and "not in routing.priority" in doc["data"]["reason"]
    assert_exit(human, 0 if answers else 1)
    assert "vastai: billing now" in human.stdout and str(iid) in human.stdout


def test_a_ready_instance_outside_the_priority_is_not_said_to_be_used(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("launch", "--yes"), 0)
    result = cli("--json", "status", env={"GPUCTL_PRIORITY": "modal"})
    assert_exit(result, 1)  # was 3, "routing.priority lists modal but only vastai is configured", instance hidden
    assert "only vastai is configured" not in result.stdout + result.stderr
    row = vast_rows(json.loads(result.stdout))
    (inst,) = row["instances"]
    assert inst["detail"] == "ready, unused: routing.priority leaves vastai out"
    assert "billing; not in routing.priority (modal, from env GPUCTL_PRIORITY)" in row["detail"]


def test_what_status_says_of_held_creates_and_running_boxes_the_router_does_not_use(cli, vast_env: FakeVast,  # type: ignore[no-untyped-def]
                                                                                   gpuctl_home: Path) -> None:
    """Review B, finding 17: "billing, not answering yet" was said of a create of unknown outcome
    (nothing known to bill) and of a running orphan (whose vLLM may well answer)."""
    row_id, _ = add_row(gpuctl_home, None, status="unconfirmed")
    held = json.loads(cli("--json", "status").stdout)["data"]
    assert vast_rows({"data": held})["detail"].startswith(f"ledger row {row_id} unconfirmed ($0.18/h")
    assert "a create of unknown outcome, held against the budget" in held["reason"]
    assert "billing" not in vast_rows({"data": held})["detail"]
    with open_state(gpuctl_home) as st:
        st.mark_instance_destroyed(row_id, cost="0")
    iid = vast_env.add_instance(label="gpuctl:laptop:0123456789ab", offer=make_offer(102, dph_total="0.18"))
    orphan = json.loads(cli("--json", "status").stdout)["data"]
    detail = vast_rows({"data": orphan})["detail"]
    assert detail.startswith(f"instance {iid} running") and "the router does not use it" in detail
    assert "not answering yet" not in detail


def test_with_the_shared_ledger_down_what_bills_is_still_shown_and_chat_names_the_ledger(  # type: ignore[no-untyped-def]
        cli, vast_env: FakeVast, pg_cluster, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Issue 11 item 2 with issue 15's shared state: the ledger is away, the account is not."""
    monkeypatch.setenv("GPUCTL_STATE_URL", pg_url)
    assert_exit(cli("state", "info"), 0)  # the schema, before the fault
    iid = vast_env.add_instance(label="gpuctl:laptop:0123456789ab", offer=make_offer(102, dph_total="0.18"))
    pg_cluster.stop(immediate=True)
    try:
        status = cli("--json", "status")
        chat = cli("chat", "hi")
    finally:
        pg_cluster.start()
    assert_exit(status, 1)
    never_hidden(status.stdout + status.stderr)
    (inst,) = vast_rows(json.loads(status.stdout))["instances"]
    assert inst["id"] == str(iid) and inst["state"] == "running"
    assert_exit(chat, 1)
    never_hidden(chat.stdout + chat.stderr)
    assert "the instance ledger is unreachable" in chat.stderr and "Traceback" not in chat.stderr


def test_with_the_shared_ledger_down_destroy_still_stops_what_bills(  # type: ignore[no-untyped-def]
        cli, vast_env: FakeVast, pg_cluster, pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    """Launch and cleanup wait for the shared budget; stopping a bill never does: destroy works
    from the account's gpuctl labels, and cleanup settles the ledger once it is back."""
    monkeypatch.setenv("GPUCTL_STATE_URL", pg_url)
    assert_exit(cli("state", "info"), 0)
    ours = vast_env.add_instance(label="gpuctl:laptop:0123456789ab", offer=make_offer(102, dph_total="0.18"))
    other = vast_env.add_instance(label="gpuctl:laptop:ba9876543210", offer=make_offer(103, dph_total="0.18"))
    vast_env.add_instance(label="someone-elses-box")
    pg_cluster.stop(immediate=True)
    try:
        one = cli("--json", "destroy", str(ours), "--yes")
        rest = cli("--json", "destroy", "--all", "--yes")
    finally:
        pg_cluster.start()
    assert_exit(one, 0)
    assert_exit(rest, 0)
    assert json.loads(one.stdout)["data"]["ledger_error"] and "Traceback" not in one.stderr + rest.stderr
    assert [r["instance_id"] for r in json.loads(rest.stdout)["data"]["results"]] == [other]
    assert {vast_env.instance(i).label for i in vast_env.live_ids()} == {"someone-elses-box"}


def test_a_ledger_that_goes_away_between_plan_and_destroy_never_stops_the_destroy(  # type: ignore[no-untyped-def]
        vast_env: FakeVast, pg_cluster, pg_url: str, gpuctl_home: Path) -> None:
    from gpuctl.config import load_settings
    from gpuctl.state import open_for
    from gpuctl.vastai.client import VastAIClient
    from gpuctl.vastai.destroy import execute_destroy, plan_destroy
    from tests.support.vast import KEY

    settings = load_settings(env={"GPUCTL_STATE_URL": pg_url, "GPUCTL_HOME": str(gpuctl_home)}, home=gpuctl_home)
    state = open_for(settings)
    ours = vast_env.add_instance(label="gpuctl:laptop:0123456789ab", offer=make_offer(102, dph_total="0.18"))
    try:
        with VastAIClient(KEY, api_url=vast_env.url) as client:
            plan = plan_destroy(client, state, all_=True)
            pg_cluster.stop(immediate=True)  # the ledger goes away after the plan
            try:
                report = execute_destroy(client, state, plan, home=gpuctl_home)
            finally:
                pg_cluster.start()
    finally:
        state.close()
    assert [(o.target.instance_id, o.result) for o in report.outcomes] == [(ours, "destroyed")]
    assert vast_env.live_ids() == set()
