"""Watching a new instance (`gpuctl.vastai.watch`): status polls stored as ledger statuses
cleanup knows, the live price recorded, bad hosts (CDI, stuck loading, an exited container)
destroyed and excluded, and the readiness probe (a refused key is fatal, nothing else)."""

from __future__ import annotations

import dataclasses
from decimal import Decimal

import pytest

from gpuctl.config import Settings, load_settings
from gpuctl.errors import ProviderError
from gpuctl.state import State
from gpuctl.vastai import watch
from gpuctl.vastai.client import VastAIClient
from gpuctl.vastai.plan import plan_launch
from tests.fakes.vastai_server import FIRST_INSTANCE_ID, FakeClock, FakeVast
from tests.fakes.vllm_server import FakeVLLM
from tests.support.vast import KEY, MODEL, create_ids, health, market, run_launch


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
    """Finding 6: a host can raise the price; budgets charge the higher one. (A raise within what
    the launch accepts, here the confirmed $0.18/h + 25%, is kept; review B finding 2 refuses
    one beyond it: tests/vastai/test_price.py.)"""
    answers = iter([health("unhealthy", "loading"), health("ready")])

    def probe(endpoint: str, key: str | None, model: str | None):  # type: ignore[no-untyped-def]
        vast.set_price(FIRST_INSTANCE_ID, "0.20")
        return next(answers)

    result = run_launch(settings, client, state, clock, probe=probe)
    (row,) = state.live_instances("vastai")
    assert result.ready and row.dph is not None and Decimal(row.dph) == Decimal("0.2")
    assert result.instance_id == FIRST_INSTANCE_ID and Decimal(result.dph) == Decimal("0.2")  # the real $/h


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
          FakeVast(api_key=KEY, offers=market(), clock=clock, endpoint_port=strict.port) as fake,
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
            watch.probe_vllm(strict.url, "wrong", MODEL, timeout=5)
        assert err.value.kind == "auth"
        assert watch.probe_vllm(strict.url, "right", MODEL, timeout=5).status == "ready"
    down = watch.probe_vllm("http://127.0.0.1:1", "right", MODEL, timeout=2)  # nothing listens: not "auth"
    assert down.status == "unhealthy"


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


# -- review B finding 1: `gpuctl destroy` during a launch stops it; nothing is rented in its place --


class DestroyAllAfter:
    """The launcher's sleep: after `n` sleeps, `gpuctl destroy --all --yes` runs (as another
    process would, on the same ledger), once; the clock moves as a Sleeper's does."""

    def __init__(self, clock: FakeClock, client: VastAIClient, state: State, n: int) -> None:
        self.clock, self.client, self.state, self.n = clock, client, state, n
        self.reports: list[object] = []

    def __call__(self, seconds: float) -> None:
        self.n -= 1
        if self.n == 0:
            from gpuctl.vastai.destroy import execute_destroy, plan_destroy

            plan = plan_destroy(self.client, self.state, all_=True)
            self.reports.append(execute_destroy(self.client, self.state, plan, clock=self.clock))
        self.clock.advance(seconds)


@pytest.mark.parametrize("phase", ["loading", "waiting_for_vllm"])
def test_destroy_all_during_a_launch_ends_it_without_renting_a_replacement(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock, phase: str) -> None:
    """The repro: destroy killed the box the launch watched; the launch read the disappearance as
    a failed attempt, rented offer 101 and exited 0, leaving a new instance billing."""
    from gpuctl.vastai.launch import LaunchFailed

    sleeper = DestroyAllAfter(clock, client, state, n=1 if phase == "loading" else 4)
    answers = iter([health("unhealthy", "loading")] * 10 + [health("ready")])
    with pytest.raises(LaunchFailed) as err:
        run_launch(settings, client, state, clock, sleep=sleeper, escalate=True, probe=lambda e, k, m: next(answers))
    message = err.value.message
    assert f"instance {FIRST_INSTANCE_ID} was destroyed by `gpuctl destroy` while the launch watched it; not " \
           "replaced" in message and err.value.exit_code == 1
    assert create_ids(vast) == [102]  # never 101: what the user destroyed is not replaced
    assert vast.live_ids() == set() and state.live_instances("vastai") == []
    assert state.excluded_machines("vastai") == {}  # the host did nothing wrong
    (report,) = sleeper.reports
    (outcome,) = report.outcomes  # type: ignore[attr-defined]
    assert outcome.result == "destroyed" and "the launch that was watching it stops" in (outcome.note or "")
    assert [a["outcome"] for a in err.value.data["attempts"]] == ["destroyed"]


def test_a_destroy_requested_but_not_done_is_finished_by_the_launch(settings: Settings, client: VastAIClient,
                                                                    state: State, vast: FakeVast,
                                                                    clock: FakeClock) -> None:
    """`gpuctl destroy` tells the launch before its request; if that request fails (or the other
    process dies), the launch itself destroys the instance: the user asked for it gone."""
    from gpuctl.vastai.instances import request_destroy
    from gpuctl.vastai.launch import LaunchFailed

    def sleep(seconds: float) -> None:
        (row,) = state.live_instances("vastai")
        request_destroy(state, row.label)  # the mark, without the destroy
        clock.advance(seconds)

    with pytest.raises(LaunchFailed, match="destroyed by `gpuctl destroy`"):
        run_launch(settings, client, state, clock, sleep=sleep, escalate=True)
    assert create_ids(vast) == [102] and vast.live_ids() == set() and state.live_instances("vastai") == []
    from gpuctl.vastai.instances import destroy_requested

    assert not destroy_requested(state, state.instances("vastai")[0].label)  # handled: forgotten


def test_an_instance_that_vanishes_on_its_own_is_still_a_failed_attempt(settings: Settings, client: VastAIClient,
                                                                        state: State, vast: FakeVast,
                                                                        clock: FakeClock) -> None:
    def sleep(seconds: float) -> None:
        first = vast.instances.get(FIRST_INSTANCE_ID)
        if first is not None:
            first.destroyed = True  # gone from the account; no gpuctl command did it
        clock.advance(seconds)

    result = run_launch(settings, client, state, clock, sleep=sleep)
    assert result.ready and create_ids(vast) == [102, 101]
    assert "disappeared" in result.attempts[0].reason and result.attempts[0].outcome == "failed"


def test_destroy_all_while_the_launch_looks_for_a_create_of_unknown_outcome_ends_it(
        settings: Settings, client: VastAIClient, state: State, vast: FakeVast, clock: FakeClock) -> None:
    """The same, a step earlier: the create answered 500, and `destroy --all` matched its box by
    label while the launch was still looking for it."""
    from gpuctl.vastai.launch import LaunchFailed

    vast.create_but_fail(1, status=500, visible_after_lists=1)
    sleeper = DestroyAllAfter(clock, client, state, n=1)  # the first wait between looks
    with pytest.raises(LaunchFailed, match="destroyed by `gpuctl destroy` while the launch looked for it; not "
                                           "replaced"):
        run_launch(settings, client, state, clock, sleep=sleeper, escalate=True)
    assert create_ids(vast) == [102] and vast.live_ids() == set() and state.live_instances("vastai") == []
    (report,) = sleeper.reports
    assert [o.result for o in report.outcomes] == ["destroyed"]  # type: ignore[attr-defined]
