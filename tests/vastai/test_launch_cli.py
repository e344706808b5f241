"""`gpuctl launch` through the real app, against the loopback Vast.ai fake with a fake vLLM as
the instance's endpoint: the happy path through the router and `gpuctl chat`, --dry-run, the
flags, the confirmation, budgets, Ctrl-C, and the exit codes."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from gpuctl.config import load_settings
from gpuctl.state import open_state
from gpuctl.vastai import watch
from gpuctl.vastai.container import find_vllm_key
from tests.fakes.vastai_server import FakeVast
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit
from tests.support.vast import KEY, MODEL, create_ids


def test_launch_picks_the_cheapest_waits_for_vllm_then_the_router_answers_through_it(
        cli, vast_env: FakeVast, vllm: FakeVLLM, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    result = cli("launch", "--yes")
    assert_exit(result, 0)
    assert "legacy provider" in result.stderr and "Modal is recommended" in result.stderr
    assert create_ids(vast_env) == [102]  # the cheapest acceptable offer of the first tier
    (create,) = vast_env.received("PUT")
    settings = load_settings(home=gpuctl_home, env={"VASTAI_API_KEY": KEY})
    # Issue 11 item 13: no profile was created or activated; the key lives in the state (0600),
    # saved before the create, and the launch says where.
    assert not (gpuctl_home / "profiles").exists() and not (gpuctl_home / "config.toml").exists()
    assert settings.get("vastai.vllm_api_key") is None
    with open_state(gpuctl_home) as st:
        key = find_vllm_key(settings, st)
    assert key and f"kept in the state database ({gpuctl_home / 'state.db'})" in result.stderr
    assert (gpuctl_home / "state.db").stat().st_mode & 0o777 == 0o600
    body = create.body
    assert body["label"].startswith("gpuctl:env:") and body["image"].startswith("vllm/vllm-openai:v")
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

    # The router now finds the ready instance in the ledger (test_chat_cli_answers_through_vast
    # asks through `gpuctl chat`).
    from gpuctl.routing.manager import BackendManager

    async def ask():  # type: ignore[no-untyped-def]
        async with BackendManager(load_settings(home=gpuctl_home, env={"VASTAI_API_KEY": KEY})) as manager:
            return await manager.chat_completion(messages=[{"role": "user", "content": "hi"}], max_tokens=16)

    vllm.api_key = key  # from now on the fake vLLM refuses any other key: routing must find it in the state
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
    assert_exit(result, 0)
    assert "Hello from Vast" in result.stdout
    assert vllm.hits("/v1/chat/completions") >= 2  # the launch's 1-token probe, then the chat


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
    result = cli("launch", "--dry-run")
    assert_exit(result, 3)
    assert "No Vast.ai API key" in result.stderr and "VASTAI_API_KEY" in result.stderr


def test_no_wait_returns_once_created(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    doc = json.loads(cli("--json", "launch", "--yes", "--no-wait").stdout)
    instance = doc["data"]["instance"]
    assert instance["ready"] is False and instance["endpoint"] is None
    with open_state(gpuctl_home) as st:
        (row,) = st.live_instances("vastai")
    assert row.status == "unattended" and row.remote_id == str(instance["instance_id"])
    assert vast_env.received("GET", f"/api/v0/instances/{instance['instance_id']}/") == []


def test_a_create_of_unknown_outcome_in_the_cli_is_held_and_the_launch_goes_on(cli, vast_env: FakeVast,  # type: ignore[no-untyped-def]
                                                                            gpuctl_home: Path) -> None:
    vast_env.create_but_fail(1, status=504, visible_after_lists=1000)
    result = cli("launch", "--yes")
    assert_exit(result, 0)
    assert "held against the budget" in result.stderr and "gpuctl cleanup" in result.stderr
    assert "unconfirmed" in result.stdout  # the attempts table: offer 102 unconfirmed, 101 ready
    assert create_ids(vast_env) == [102, 101] and len(vast_env.live_ids()) == 2
    with open_state(gpuctl_home) as st:
        held, ready = st.live_instances("vastai")
    assert held.status == "unconfirmed" and held.remote_id is None and ready.status == "ready"


def test_ctrl_c_in_the_cli_destroys_and_exits_130(cli, vast_env: FakeVast, monkeypatch, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    def interrupted(*args: object) -> None:
        raise KeyboardInterrupt

    monkeypatch.setattr(watch, "probe_vllm", interrupted)
    result = cli("launch", "--yes")
    assert_exit(result, 130)
    assert "interrupted: destroyed instance" in result.stderr
    assert vast_env.live_ids() == set()
    with open_state(gpuctl_home) as st:
        assert st.live_instances("vastai") == []


def test_the_cli_confirmation_names_the_retry_limit_and_yes_goes_on_down_the_tiers(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    asked = cli("launch")  # no terminal: refused, but the question is shown
    assert_exit(asked, 2)
    assert "Rent an instance with RTX 3090 at $0.18/h?" in asked.stderr
    assert "retries stay within $0.225/h and the RTX 3090 tier; you are asked once before anything dearer" in asked.stderr
    dry = json.loads(cli("--json", "launch", "--dry-run").stdout)
    assert dry["data"]["plan"]["retry_max_dph"] == "0.225"
    vast_env.remove_offer(101)
    vast_env.remove_offer(201)
    vast_env.fail_boot(offer_id=102)
    # Issue 11 item 4: --yes confirmed anything within the budgets: the H100 ($2.40/h × 45 min =
    # $1.80, inside the $2 session budget) is the next acceptable offer down the tiers.
    result = cli("--json", "launch", "--yes")
    assert_exit(result, 0)
    doc = json.loads(result.stdout)["data"]["instance"]
    assert doc["tier"] == "H100" and [a["outcome"] for a in doc["attempts"]] == ["failed", "ready"]
    assert "CDI" in doc["attempts"][0]["reason"] and doc["attempts"][0]["dph"] == "0.18"
    assert create_ids(vast_env) == [102, 401] and vast_env.live_ids() == {doc["instance_id"]}
    assert "Past the RTX 3090 tier's offers" in result.stderr
    capped = cli("launch", "--yes", "--max-dph", "0.5")  # 102's machine is excluded now; the H100 is too dear
    assert_exit(capped, 1)
    assert "no acceptable Vast.ai offer" in capped.stderr and create_ids(vast_env) == [102, 401]


@pytest.mark.parametrize("value", ["nan", "inf", "-inf", "-0.5", "0"])
def test_max_dph_must_be_a_finite_positive_number(cli, vast_env: FakeVast, value: str) -> None:  # type: ignore[no-untyped-def]
    """Finding 4: NaN compares false with every price, so `--max-dph nan` capped nothing."""
    result = cli("launch", "--dry-run", "--max-dph", value)
    assert_exit(result, 2)
    assert "--max-dph must be a finite number" in result.stderr
    assert vast_env.requests == []  # refused before any API call


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


# -- issue 11: dry runs that would not proceed, the one question, the legacy note -----------------


def test_a_dry_run_over_budget_or_without_an_offer_is_exit_1(cli, vast_env: FakeVast, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Item 6: 0 only when a real launch would proceed."""
    monkeypatch.setenv("VASTAI_SESSION_BUDGET_LIMIT", "0.10")  # 0.18 $/h × 45 min = $0.135
    over = cli("--json", "launch", "--dry-run")
    assert_exit(over, 1)
    doc = json.loads(over.stdout)
    assert doc["status"] == "error" and doc["exit_code"] == 1 and doc["errors"][0]["type"] == "PlanOverBudget"
    assert doc["data"]["plan"]["choice"]["offer_id"] == 102 and doc["data"]["plan"]["budget"]["ok"] is False
    human = cli("launch", "--dry-run")
    assert_exit(human, 1)
    assert "OVER BUDGET" in human.stderr and "session budget of $0.10" in human.stderr
    monkeypatch.delenv("VASTAI_SESSION_BUDGET_LIMIT")
    none = cli("--json", "launch", "--dry-run", "--max-dph", "0.05")
    assert_exit(none, 1)
    doc = json.loads(none.stdout)
    assert doc["status"] == "error" and "no acceptable Vast.ai offer" in doc["errors"][0]["message"]
    assert doc["data"]["plan"]["choice"] is None
    assert_exit(cli("launch", "--dry-run"), 0)  # within budget: a real launch would proceed
    assert vast_env.received("PUT") == []


def test_an_interactive_launch_asks_once_before_a_dearer_tier(cli, vast_env: FakeVast, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    import typer

    from gpuctl.cli import launch as cli_launch
    from gpuctl.cli import prompts

    questions: list[str] = []
    answers = [True]
    monkeypatch.setattr(prompts, "confirm", lambda out, question, yes: questions.append(question))  # "Rent …?" yes
    monkeypatch.setattr(cli_launch, "can_ask", lambda out: True)
    monkeypatch.setattr(typer, "confirm", lambda text, **kw: questions.append(text) or answers.pop(0))
    vast_env.fail_boot(offer_id=102)
    vast_env.fail_boot(offer_id=101)
    result = cli("launch")
    assert_exit(result, 0)
    assert len(questions) == 2 and questions[0].startswith("Rent an instance with RTX 3090")
    assert "The RTX 3090 tier's offers at most $0.225/h did not come up (2 attempt(s), each destroyed)" in questions[1]
    assert "next: RTX 4090 at $0.40/h" in questions[1]
    assert create_ids(vast_env) == [102, 101, 201]
    vast_env.fail_boot(offer_id=201)
    vast_env.add_offer(vast_env.offers[102] | {"id": 103, "machine_id": 50103, "reliability": 0.99})
    vast_env.fail_boot(offer_id=103)
    answers.append(False)
    declined = cli("launch")
    assert_exit(declined, 1)
    assert "are exhausted" in declined.stderr and create_ids(vast_env)[3:] == [103]


def test_the_legacy_note_shows_once_a_day(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    """Item 21: a reminder, not a nag on every command (launch and destroy share it)."""
    import time

    first = cli("launch", "--dry-run")
    assert_exit(first, 0)
    assert "legacy provider" in first.stderr
    for args in (("launch", "--dry-run"), ("destroy", "--all", "--dry-run")):
        again = cli(*args)
        assert_exit(again, 0)
        assert "legacy provider" not in again.stderr
    (gpuctl_home / "legacy-note-shown").write_text(f"{time.time() - 25 * 3600}\n")  # a day later
    later = cli("destroy", "--all", "--dry-run")
    assert "legacy provider" in later.stderr


def test_with_an_active_profile_the_vllm_key_is_saved_there_and_never_shown(cli, vast_env: FakeVast,  # type: ignore[no-untyped-def]
                                                                           gpuctl_home: Path) -> None:
    """Item 13: the active profile (0600) when there is one; no other profile is made or activated."""
    assert_exit(cli("profile", "create", "dev"), 0)
    assert_exit(cli("profile", "use", "dev"), 0)
    result = cli("--json", "launch", "--yes", "--no-wait")
    assert_exit(result, 0)
    settings = load_settings(home=gpuctl_home, env={"VASTAI_API_KEY": KEY})
    key = settings["vastai.vllm_api_key"]
    assert key and settings.source("vastai.vllm_api_key") == "profile dev"
    assert json.loads(result.stdout)["data"]["instance"]["vllm_key_where"] == "profile dev"
    assert key not in result.stdout + result.stderr
    assert sorted(p.name for p in (gpuctl_home / "profiles").iterdir()) == ["dev.toml"]
    assert (gpuctl_home / "profiles" / "dev.toml").stat().st_mode & 0o777 == 0o600
    assert vast_env.received("PUT")[0].body["label"].startswith("gpuctl:dev:")


# -- review B findings 2, 3, 9, 10 through the command ---------------------------------------------


def test_max_dph_is_inclusive_at_the_search(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    """Finding 10: offer 102 costs exactly $0.18/h; the query said `lt`, so it was never offered."""
    result = cli("--json", "launch", "--dry-run", "--max-dph", "0.18")
    assert_exit(result, 0)
    assert json.loads(result.stdout)["data"]["plan"]["choice"]["offer_id"] == 102
    bodies = [r.body for r in vast_env.received("POST", "/api/v0/bundles/")]
    assert bodies and all(b["dph_total"] == {"lte": "0.18"} for b in bodies)


def test_a_keep_alive_of_zero_still_projects_the_boot_allowance(cli, vast_env: FakeVast, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Finding 3: $2.40/h × 0 min passed a $0.01 session budget."""
    monkeypatch.setenv("VASTAI_KEEP_ALIVE_MINUTES", "0")
    monkeypatch.setenv("VASTAI_SESSION_BUDGET_LIMIT", "0.01")
    result = cli("launch", "--dry-run", "--gpu", "H100")
    assert_exit(result, 1)
    assert "× 30 min boot allowance (keep-alive 0 min) = $1.20" in result.stderr and "OVER BUDGET" in result.stderr
    assert "over the 30-minute boot allowance" in result.stderr
    assert_exit(cli("launch", "--yes", "--gpu", "H100"), 1)
    assert vast_env.received("PUT") == []


def test_the_launch_summary_shows_the_price_the_host_raised_to(cli, vast_env: FakeVast, monkeypatch) -> None:  # type: ignore[no-untyped-def]
    """Finding 2: the ledger recorded the raise but the summary printed the offer's $0.18/h."""
    from tests.fakes.vastai_server import FIRST_INSTANCE_ID
    from tests.support.vast import health

    def probe(endpoint: str, key: str | None, model: str | None):  # type: ignore[no-untyped-def]
        vast_env.set_price(FIRST_INSTANCE_ID, "0.21")  # within the confirmed $0.225/h: kept
        return health("ready")

    monkeypatch.setattr(watch, "probe_vllm", probe)
    result = cli("--json", "launch", "--yes")
    assert_exit(result, 0)
    instance = json.loads(result.stdout)["data"]["instance"]
    assert instance["dph"] == "0.21" and instance["attempts"][-1]["dph"] == "0.21"
    human = cli("launch", "--yes", "--max-dph", "0.25")
    assert_exit(human, 0)


def test_a_dry_run_counts_the_excluded_machines_and_forget_excluded_tries_them_again(  # type: ignore[no-untyped-def]
        cli, vast_env: FakeVast, gpuctl_home: Path) -> None:
    """Finding 9: after the walk excluded every healthy machine, a dry run said only "no
    acceptable offer"."""
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    with open_state(gpuctl_home) as st:
        for machine in ("50102", "50101"):
            st.exclude_machine("vastai", machine, "the container exited")
    none = cli("launch", "--dry-run", "--gpu", "RTX 3090")
    assert_exit(none, 1)
    assert "no acceptable Vast.ai offer" in none.stderr
    assert "2 machine(s) that failed a launch in the last 24 h are excluded" in none.stderr
    assert "`gpuctl launch --forget-excluded` tries them again" in none.stderr
    dry = cli("--json", "launch", "--dry-run", "--gpu", "RTX 3090", "--forget-excluded")
    assert_exit(dry, 0)
    assert json.loads(dry.stdout)["data"]["plan"]["choice"]["offer_id"] == 102
    with open_state(gpuctl_home) as st:
        assert set(st.excluded_machines("vastai")) == {"50102", "50101"}  # a dry run changes nothing
    launched = cli("--json", "launch", "--yes", "--gpu", "RTX 3090", "--forget-excluded")
    assert_exit(launched, 0)
    assert create_ids(vast_env) == [102]
    with open_state(gpuctl_home) as st:
        assert st.excluded_machines("vastai") == {}


def test_a_model_typo_is_exit_3_and_excludes_nothing(cli, vast_env: FakeVast, gpuctl_home: Path,  # type: ignore[no-untyped-def]
                                                     monkeypatch) -> None:
    typo = "container exited with code 1: huggingface_hub.errors.RepositoryNotFoundError: 404 Repository Not Found"
    for offer_id in (102, 101, 201, 401):
        vast_env.exit_on_boot(offer_id=offer_id, msg=typo)
    monkeypatch.setenv("VASTAI_MODEL", "Qwen/Qwen2.5-7B-Instruc")
    result = cli("--json", "launch", "--yes")
    assert_exit(result, 3)
    doc = json.loads(result.stdout)
    assert doc["errors"][0]["type"] == "LaunchMisconfigured" and len(doc["data"]["attempts"]) == 2
    assert "check vastai.model (Qwen/Qwen2.5-7B-Instruc)" in doc["errors"][0]["message"]
    assert create_ids(vast_env) == [102, 101] and vast_env.live_ids() == set()
    vast_env.reset_faults()
    dry = cli("launch", "--dry-run")
    assert_exit(dry, 0)
    assert "excluded" not in dry.stderr
