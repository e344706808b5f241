"""`gpuctl launch`: start vLLM on the cheapest acceptable Vast.ai GPU (legacy provider)."""

from __future__ import annotations

import contextlib
import signal
from collections.abc import Iterator
from typing import TYPE_CHECKING

import typer

from gpuctl.cli.context import app_context
from gpuctl.cli.output import Output
from gpuctl.errors import UsageError

if TYPE_CHECKING:  # annotations inside function bodies only, never in the Typer signature
    from gpuctl.vastai.plan import LaunchPlan


def launch(
    ctx: typer.Context,
    provider: str = typer.Argument("vastai", help="Only vastai launches instances (Modal scales itself)."),
    gpu: str = typer.Option(None, "--gpu", help="Only this GPU tier (e.g. 'RTX 3090')."),
    max_dph: float = typer.Option(None, "--max-dph", help="Highest $/h to accept (retries stay within it too)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show candidates and the choice; spend nothing."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once created; do not wait for vLLM."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
    keep: bool = typer.Option(False, "--keep", help="On Ctrl-C, keep what was created."),
) -> None:
    """Launch vLLM on a Vast.ai GPU within budget.

    Example: gpuctl launch --dry-run
    """
    from decimal import Decimal

    from gpuctl.cli.prompts import confirm
    from gpuctl.ops import launch as ops
    from gpuctl.vastai.budget import money

    actx = app_context(ctx)
    out = actx.out
    if provider.lower() not in ("vastai", "vast"):
        hint = "Modal scales by itself: `gpuctl deploy modal`" if provider.lower() == "modal" else "e.g. `gpuctl launch vastai`"
        raise UsageError(f"only Vast.ai instances are launched, not {provider!r}", hint=hint)
    ops.check_max_dph(max_dph)  # NaN or inf would cap nothing: refused before any API call
    out.note(ops.LEGACY_NOTE)
    settings = actx.settings()
    with ops.session(settings) as vast, actx.state() as state:
        with out.spinner("Searching Vast.ai offers…") as spin:
            planned = vast.plan(state, gpu=gpu, max_dph=max_dph, progress=spin.update)
        plan = planned.plan
        if not out.json_mode:
            _show_plan(out, plan)
        if dry_run:
            out.result(planned.as_dict())
            if not out.json_mode:
                out.note("Dry run: nothing was created.")
            return
        ops.check_plan(plan)
        if plan.live:
            out.warn(f"{len(plan.live)} gpuctl Vast.ai instance(s) are already live; this launch adds another.")
        assert plan.choice is not None and plan.budget is not None
        offer = plan.choice.offer
        confirm(out, f"Rent an instance with {offer.gpu_name} at ${money(offer.dph_total)}/h? It bills until destroyed "
                     f"(${money(plan.budget.projection)} per {plan.budget.keep_alive_minutes:g}-minute keep-alive). "
                     f"If it fails to start, retries stay within ${money(plan.retry_max_dph)}/h and the "
                     f"{plan.choice.tier.name} tier.", yes=yes)
        with _sigterm_as_ctrl_c(), out.spinner(f"Launching on Vast.ai: {offer.gpu_name}…") as spin:
            launched = vast.start(state, planned, wait=not no_wait, keep=keep, progress=spin.update)
    out.result(launched.as_dict())
    if out.json_mode:
        return
    result = launched.instance
    assert result is not None
    if result.ready:
        out.print(f"Endpoint: {result.openai_base}", highlight=False)
        out.info(f"Instance {result.instance_id}: {result.gpu} at ${money(Decimal(result.dph))}/h, ready after "
                 f"{result.waited_s:.0f}s; `gpuctl chat` now uses it.")
    else:
        out.info(f"Instance {result.instance_id} created ({result.gpu} at ${money(Decimal(result.dph))}/h); not waiting for vLLM. "
                 "The next `gpuctl cleanup` marks it ready once vLLM answers.")
    out.note(f"It bills until destroyed: `gpuctl destroy {result.instance_id} --yes`. `gpuctl cleanup` (cron) "
             f"destroys it after {settings['vastai.keep_alive_minutes']:g} idle minutes.")


@contextlib.contextmanager
def _sigterm_as_ctrl_c() -> Iterator[None]:
    """`kill`, `timeout` and systemd send SIGTERM: treat it as Ctrl-C so the launch destroys
    what it created (or keeps it with --keep) instead of dying with an instance booting."""

    def interrupt(signum: int, frame: object) -> None:
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, interrupt)
    except ValueError:  # not the main thread (an embedding caller): leave signals alone
        yield
        return
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def _show_plan(out: Output, plan: LaunchPlan) -> None:
    from gpuctl.vastai.budget import money

    empty = [name for name, n in plan.search.checked if n == 0]
    if empty:
        out.info("No acceptable offers: " + ", ".join(empty) + ".")
    if not plan.search.candidates:
        return
    rows = [["*" if i == 0 else "", c.tier.name, c.offer.gpu_name, money(c.offer.dph_total), f"{c.offer.reliability:.3f}",
             c.offer.geolocation or "?", c.offer.id] for i, c in enumerate(plan.search.candidates[:10])]
    out.print(out.table(["", "tier", "GPU", "$/h", "reliability", "location", "offer"], rows))
    assert plan.choice is not None  # the first candidate
    choice = plan.choice.offer
    out.info(f"Choice: offer {choice.id}, {choice.gpu_name} at ${money(choice.dph_total)}/h in "
             f"{choice.geolocation or 'an unknown location'} (machine {choice.machine_id}).")
    if plan.budget is not None:
        verdict = "within budget" if plan.budget.ok else "OVER BUDGET"
        out.info(f"Budget: {plan.budget.summary()}: {verdict}.")
