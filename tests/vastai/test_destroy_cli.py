"""`gpuctl destroy [vastai] [ID | LABEL | --all] [--force]` through the real app: only what
gpuctl created, the list and the ledger both consulted, id-less rows, and the exit codes
(4 partial, 1 when nothing succeeded or the list cannot be read)."""

from __future__ import annotations

import json
from pathlib import Path

from gpuctl.state import open_state
from tests.fakes.vastai_server import FakeVast
from tests.support import assert_exit


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
    gone = cli("--json", "destroy", str(iid), "--yes")  # already destroyed and marked: it does not exist
    assert_exit(gone, 1)  # a failure, not a usage error (issue 11, item 8)
    assert json.loads(gone.stdout)["errors"][0]["message"].endswith("does not exist (or is already destroyed)")
    assert_exit(cli("destroy", "--yes"), 2)  # neither an id nor --all
    assert_exit(cli("destroy", "12", "--all", "--yes"), 2)


def test_destroy_all_covers_labels_and_ledger_and_spares_others(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    assert_exit(cli("launch", "--yes"), 0)
    stray = vast_env.add_instance(label="gpuctl:laptop:0123456789ab")  # another ledger's instance
    mine = vast_env.add_instance(label="my-own-box")  # not gpuctl's: never touched
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
    vast_env.add_instance(label="gpuctl:laptop:0123456789ab")
    vast_env.set_list_fault("malformed")
    for args in (("destroy", "--all", "--yes"), ("destroy", "--all", "--dry-run")):
        result = cli(*args)
        assert_exit(result, 1)
        assert "instance list could not be read" in result.stderr
    result = cli("--json", "destroy", "--all", "--yes")
    assert_exit(result, 1)
    assert json.loads(result.stdout)["status"] == "error"
    assert len(vast_env.live_ids()) == 1


def test_an_id_less_row_on_an_empty_account_is_cleared_by_destroy_all(cli, vast_env: FakeVast,  # type: ignore[no-untyped-def]
                                                                       gpuctl_home: Path) -> None:
    """Issue 11 item 3: a create of unknown outcome on an otherwise empty account. The list says
    `total_instances: 0`: `destroy --all` clears the row and exits 0 (nothing is left)."""
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    with open_state(gpuctl_home) as st:
        row_id = st.add_instance_intent(provider="vastai", label="gpuctl:default:0123456789ab", dph="0.18")
        st.update_instance(row_id, status="unconfirmed", created_at=st.clock() - 3600)
    cleaned = cli("cleanup")  # one listing that lacks it: a sighting, not proof
    assert_exit(cleaned, 0)
    every = cli("--json", "destroy", "--all", "--yes")
    assert_exit(every, 0)
    assert json.loads(every.stdout)["data"]["results"][0]["result"] == "marked"
    with open_state(gpuctl_home) as st:
        assert st.live_instances("vastai") == [] and st.get_instance(row_id).cost == "0"  # type: ignore[union-attr]
    assert_exit(cli("cleanup"), 0)


def test_an_id_less_row_behind_a_bare_empty_list_is_cleared_by_naming_its_label(cli, vast_env: FakeVast,  # type: ignore[no-untyped-def]
                                                                                gpuctl_home: Path) -> None:
    """The way out when the list cannot show anything (`{"instances": []}`, the 2026 leak): no
    list proves the create never happened; the user, having checked, can say so."""
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    with open_state(gpuctl_home) as st:
        row_id = st.add_instance_intent(provider="vastai", label="gpuctl:default:0123456789ab", dph="0.18")
        st.update_instance(row_id, status="unconfirmed", created_at=st.clock() - 3600)
    vast_env.set_list_fault("empty")
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
    vast_env.set_list_fault(None)
    assert_exit(cli("cleanup"), 0)
    assert_exit(cli("destroy", "gpuctl:default:0123456789ab", "--yes"), 2)  # nothing left by that label


def test_destroy_by_label_destroys_the_instance_that_carries_it(cli, vast_env: FakeVast) -> None:  # type: ignore[no-untyped-def]
    iid = vast_env.add_instance(label="gpuctl:laptop:0123456789ab")
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
    prod = vast_env.add_instance(label="my-prod-training")
    bare = vast_env.add_instance(label=None)
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


def test_ctrl_c_during_destroy_says_what_state_each_instance_is_in(cli, vast_env: FakeVast, gpuctl_home: Path,  # type: ignore[no-untyped-def]
                                                                   monkeypatch) -> None:
    """Issue 11 item 20: done, sent (confirm with `gpuctl status`), or never touched (still billing)."""
    from gpuctl.vastai.client import VastAIClient

    ids = [vast_env.add_instance(label=f"gpuctl:default:{n:012x}") for n in (1, 2, 3)]
    real = VastAIClient.destroy_instance
    calls: list[int] = []

    def destroy_then_ctrl_c(self: VastAIClient, instance_id: int) -> None:
        calls.append(instance_id)
        if len(calls) == 2:
            real(self, instance_id)  # the DELETE went out; its answer never reached us
            raise KeyboardInterrupt
        real(self, instance_id)

    monkeypatch.setattr(VastAIClient, "destroy_instance", destroy_then_ctrl_c)
    result = cli("destroy", "--all", "--yes")
    assert_exit(result, 130)
    first, sent, untouched = ids
    assert f"instance {first} destroyed" in result.stderr
    assert f"instance {sent}: destroy sent; confirm with `gpuctl status`" in result.stderr
    assert f"not destroyed, still billing: instance {untouched}" in result.stderr
    assert vast_env.live_ids() == {untouched}
    calls[:] = [0]  # the next destroy is "the second": Ctrl-C again
    doc = json.loads(cli("--json", "destroy", "--all", "--yes").stdout)
    assert doc["exit_code"] == 130 and doc["status"] == "error"
    assert [r["result"] for r in doc["data"]["results"]] == ["sent"]


def test_destroying_an_instance_a_launch_still_watches_says_so(cli, vast_env: FakeVast, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    """Review B finding 1: the destroy says the launch stops (and does not replace it), and tells
    that launch before its destroy request."""
    from gpuctl.vastai.instances import destroy_requested, launch_lock
    from tests.support.vast import launched_row

    gpuctl_home.mkdir(parents=True, exist_ok=True)
    with open_state(gpuctl_home) as st:
        row_id, instance_id = launched_row(st, vast_env, status="loading")
        label = st.get_instance(row_id).label  # type: ignore[union-attr]
        with launch_lock(st, label):  # a launch is watching it
            result = cli("destroy", "--all", "--yes")
            assert_exit(result, 0)
            assert destroy_requested(st, label)
        assert f"{instance_id}: destroyed" in result.stderr + result.stdout
        assert "the launch that was watching it stops: it does not rent a replacement" in result.stderr + result.stdout
        doc = json.loads(cli("--json", "destroy", "--all", "--yes").stdout)  # nothing left; no launch to tell
        assert doc["exit_code"] == 0 and vast_env.live_ids() == set()
