"""`gpuctl launch`: start vLLM on the cheapest acceptable Vast.ai GPU (legacy provider)."""

from __future__ import annotations

import contextlib
import signal
import sys
from collections.abc import Callable, Iterator
from typing import TYPE_CHECKING

import typer

from gpuctl.cli.context import app_context
from gpuctl.cli.output import Output, Spinner
from gpuctl.errors import UsageError

if TYPE_CHECKING:  # annotations inside function bodies only, never in the Typer signature
    from gpuctl.vastai.launch import Escalation, LaunchResult
    from gpuctl.vastai.plan import LaunchPlan


def launch(
    ctx: typer.Context,
    provider: str = typer.Argument("vastai", help="Only vastai launches instances (Modal scales itself)."),
    gpu: str = typer.Option(None, "--gpu", help="Only this GPU tier (e.g. 'RTX 3090')."),
    max_dph: float = typer.Option(None, "--max-dph", help="Highest $/h to accept (retries stay within it too)."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Show candidates and the choice; spend nothing."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Return once created; do not wait for vLLM."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask: rent, and if a box fails go on down the tiers "
                                                        "within the budgets (and --max-dph)."),
    keep: bool = typer.Option(False, "--keep", help="On Ctrl-C, keep what was created."),
    forget_excluded: bool = typer.Option(False, "--forget-excluded",
                                         help="Try again the machines excluded after failed launches (with "
                                              "--dry-run: plan as if; nothing is changed)."),
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
    settings = actx.settings()
    note = ops.legacy_note(settings)  # once a day, not on every command
    if note:
        out.note(note)
    with ops.session(settings) as vast, actx.state() as state:
        with out.spinner("Searching Vast.ai offers…") as spin:
            planned = vast.plan(state, gpu=gpu, max_dph=max_dph, progress=spin.update, forget_excluded=forget_excluded)
        plan = planned.plan
        if not out.json_mode:
            _show_plan(out, plan)
        planned.check()  # no offer, or over budget: exit 1 (a dry run too), the plan in --json's data
        if dry_run:
            out.result(planned.as_dict())
            if not out.json_mode:
                out.note("Dry run: nothing was created.")
            return
        running = [r for r in plan.live if r.remote_id]
        if running:
            out.warn(f"{len(running)} gpuctl Vast.ai instance(s) are already live; this launch adds another.")
        if len(running) < len(plan.live):
            out.warn(f"{len(plan.live) - len(running)} create(s) of unknown outcome are held against the budget "
                     "(`gpuctl status` lists them; `gpuctl cleanup` settles them).")
        assert plan.choice is not None and plan.budget is not None
        offer = plan.choice.offer
        confirm(out, f"Rent an instance with {offer.gpu_name} at ${money(offer.dph_total)}/h? It bills until destroyed "
                     f"(${money(plan.budget.projection)} per {plan.budget.window}). "
                     f"If it fails to start, retries stay within ${money(plan.retry_max_dph)}/h and the "
                     f"{plan.choice.tier.name} tier; you are asked once before anything dearer.", yes=yes)
        with sigterm_as_ctrl_c(), out.spinner(f"Launching on Vast.ai: {offer.gpu_name}…") as spin:
            # --yes confirmed anything within the budgets (and --max-dph): the whole tier fallback.
            escalate: bool | Callable[[Escalation], bool] = True if yes else (
                lambda asked: _ask_dearer(out, spin, asked))
            launched = vast.start(state, planned, wait=not no_wait, keep=keep, escalate=escalate,
                                  progress=spin.update)
    out.result(launched.as_dict())
    if out.json_mode:
        return
    result = launched.instance
    assert result is not None
    _show_attempts(out, result)
    if result.ready:
        out.print(f"Endpoint: {result.openai_base}", highlight=False)
        out.info(f"Instance {result.instance_id}: {result.gpu} at ${money(Decimal(result.dph))}/h, ready after "
                 f"{result.waited_s:.0f}s; `gpuctl chat` now uses it.")
    else:
        out.info(f"Instance {result.instance_id} created ({result.gpu} at ${money(Decimal(result.dph))}/h); not waiting for vLLM. "
                 "The next `gpuctl cleanup` marks it ready once vLLM answers.")
    out.note(f"Its vLLM API key is kept in {result.vllm_key_where}.")
    out.note(f"It bills until destroyed: `gpuctl destroy {result.instance_id} --yes`. `gpuctl cleanup` (cron) "
             f"destroys it after {settings['vastai.keep_alive_minutes']:g} idle minutes.")


def _show_attempts(out: Output, result: LaunchResult) -> None:
    """Every offer tried before the one that worked: which, at what $/h, and why it failed."""
    failed = result.attempts[:-1]
    if not failed:
        return
    from decimal import Decimal

    from gpuctl.vastai.budget import money

    rows = [[a.tier, a.offer_id, a.gpu, money(Decimal(a.dph)), a.outcome, a.reason] for a in result.attempts]
    out.print("")
    out.print(out.table(["tier", "offer", "GPU", "$/h", "outcome", "why"], rows, title="Attempts"))  # prose wraps by words
    for a in result.unconfirmed:
        out.warn(f"ledger row {a.ledger_row}: the create from offer {a.offer_id} may have made an instance all the "
                 "same; it is held against the budget until `gpuctl cleanup` sees it (and destroys it) or settles it.")


def can_ask(out: Output) -> bool:
    """Someone at a terminal can answer (never with --json)."""
    return not out.json_mode and sys.stdin.isatty()


def _ask_dearer(out: Output, spin: Spinner, asked: Escalation) -> bool:
    """The one question an interactive launch may ask: go past what was confirmed? The spinner
    pauses while it is asked; no terminal (or Ctrl-C at the prompt) means no."""
    from gpuctl.vastai.budget import money

    nxt = asked.next.offer
    within = f"at most ${money(asked.confirmed_dph)}/h " if asked.confirmed_dph is not None else ""
    question = (f"The {asked.confirmed_tier} tier's offers {within}did not come up ({len(asked.attempts)} attempt(s), "
                f"each destroyed). Go on to dearer offers and later tiers within the budget (next: "
                f"{nxt.gpu_name} at ${money(nxt.dph_total)}/h, tier {asked.next.tier.name})?")
    if not can_ask(out):
        return False
    spin.__exit__(None, None, None)
    try:
        return bool(typer.confirm(question, default=False, err=True))
    except (typer.Abort, KeyboardInterrupt, EOFError):
        return False
    finally:
        spin.__enter__()


@contextlib.contextmanager
def sigterm_as_ctrl_c() -> Iterator[None]:
    """`kill`, `timeout` and systemd send SIGTERM: treat it as Ctrl-C so a launch destroys what
    it created (or keeps it with --keep) instead of dying with an instance booting, and a
    destroy says what state each instance is in."""

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
    if plan.excluded_note:
        out.info(plan.excluded_note[0].upper() + plan.excluded_note[1:] + ".")
    elif plan.forget_excluded:
        out.info("Machines excluded after failed launches are tried again (--forget-excluded).")
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
