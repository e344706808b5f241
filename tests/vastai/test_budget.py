"""The pure budget arithmetic (`gpuctl.vastai.budget`): costs are $/h × lifetime, and the
verdict on one launch against the session and total budgets."""

from __future__ import annotations

from decimal import Decimal

from gpuctl.errors import BudgetError
from gpuctl.state import InstanceRow
from gpuctl.vastai import budget


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


def test_the_projection_never_covers_less_than_the_boot_allowance() -> None:
    """Review B finding 3: with `vastai.keep_alive_minutes = 0` any GPU passed ($2.40/h × 0 = $0),
    yet the launch watches a box for up to the loading and health deadlines, billed."""
    from gpuctl.vastai import watch

    assert budget.BOOT_ALLOWANCE_MINUTES * 60 == watch.LOADING_TIMEOUT_S + watch.HEALTH_TIMEOUT_S
    assert budget.projection(Decimal("2.40"), 0) == Decimal("1.20")  # 30 minutes
    assert budget.projection(Decimal("2.40"), 10) == Decimal("1.20")
    assert budget.projection(Decimal("0.14"), 45) == Decimal("0.105")  # a longer keep-alive as before
    zero = budget.check(Decimal("2.40"), spent_so_far=Decimal(0), session_limit=0.01, total_limit=0.02,
                        keep_alive_minutes=0)
    assert not zero.ok and zero.projection == Decimal("1.20") and zero.as_dict()["projection_minutes"] == 30
    assert "30 min boot allowance (keep-alive 0 min) = $1.20" in zero.summary()
    assert "over the 30-minute boot allowance" in zero.error("H100").message
    assert "--max-dph 0.02" in (zero.error("H100").hint or "")  # $0.01 over half an hour
    held = budget.reserved([row(dph="2.40")], 0)
    assert held == Decimal("1.20")  # a live box holds the allowance too
