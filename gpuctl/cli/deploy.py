"""`gpuctl deploy modal`: deploy the bundled vLLM app to Modal.

Parses the flags, asks before a warm (billed) deployment, calls gpuctl.ops.deploy, renders the
plan and the result. No Modal, price or ledger logic here.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

import typer

from gpuctl.cli.context import app_context
from gpuctl.cli.group import new_app
from gpuctl.cli.output import Output

if TYPE_CHECKING:  # annotations inside function bodies only, never in the Typer signature
    from gpuctl.ops.deploy import DeployPlan

app = new_app(help="Deploy a vLLM endpoint.\n\nExample: [bold]gpuctl deploy modal --dry-run[/bold]")


# The settings `deploy modal`'s flags set, and the flag each is typed as (errors name the flag).
FLAGS = {"modal.model": "--model", "modal.gpu": "--gpu", "modal.scaledown_window_minutes": "--scaledown-window",
         "modal.min_containers": "--min-containers", "modal.max_containers": "--max-containers",
         "modal.app_name": "--app-name"}


@app.command("modal")
def modal(
    ctx: typer.Context,
    model: str = typer.Option(None, "--model", help="Hugging Face model id (default: modal.model)."),
    gpu: str = typer.Option(None, "--gpu", help="Modal GPU, e.g. L4, A100-80GB, H100, H100:2 (default: modal.gpu)."),
    scaledown_window: float = typer.Option(None, "--scaledown-window", help="Minutes a container stays up after the last request (2 s–60 min)."),
    min_containers: int = typer.Option(None, "--min-containers", help="0 scales to zero; 1 keeps a GPU warm (billed)."),
    max_containers: int = typer.Option(None, "--max-containers", help="How far traffic may scale out."),
    app_name: str = typer.Option(None, "--app-name", help="Modal app name."),
    dry_run: bool = typer.Option(False, "--dry-run", help="Print the plan and its price; spend nothing."),
    no_wait: bool = typer.Option(False, "--no-wait", help="Do not wait for the first healthy answer."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask before keeping containers warm (--min-containers ≥ 1)."),
) -> None:
    """Deploy vLLM on Modal and save the endpoint URL in the profile.

    Example: gpuctl deploy modal --gpu L4 --dry-run
    """
    from gpuctl.ops.deploy import deploy_modal, plan_modal_deploy

    actx = app_context(ctx)
    out = actx.out
    values = (model, gpu, scaledown_window, min_containers, max_containers, app_name)
    settings = actx.settings(dict(zip(FLAGS, values, strict=True)), FLAGS)
    plan = plan_modal_deploy(settings)
    if dry_run:
        out.result({"dry_run": True, "plan": plan.as_dict()})
        if not out.json_mode:
            _show_plan(out, plan)
            out.note("Dry run: nothing was deployed.")
        return
    if not out.json_mode:
        _show_plan(out, plan)
    if plan.spec.min_containers > 0:
        # Scale-to-zero costs nothing while idle; a warm container bills around the clock.
        from gpuctl.cli.prompts import confirm

        monthly = f"${plan.warm_cost_per_month:,.2f}/month" if plan.warm_cost_per_month is not None else "an unknown price"
        confirm(out, f"Keep {plan.spec.min_containers} {plan.spec.gpu} container(s) warm? That bills {monthly} "
                     "whatever the traffic.", yes=yes)
    with out.spinner("Deploying to Modal…") as spin:
        result = deploy_modal(settings, plan, wait=not no_wait, progress=spin.update)
    out.result({"dry_run": False, "plan": plan.as_dict(), "deployment": result.as_dict()})
    if not out.json_mode:
        out.print(f"Endpoint: {result.endpoint}", highlight=False)
        out.info(f"Saved modal.web_url in profile {result.profile}. " + (
            f"Ready after {result.waited_s:.0f}s." if result.ready else result.detail))


def _show_plan(out: Output, plan: DeployPlan) -> None:
    d = plan.as_dict()
    price = f"${plan.dollars_per_hour:.2f}/h per container while it runs" if plan.dollars_per_hour is not None else "price unknown"
    rows = [["app", d["app_name"]], ["model", d["model"]], ["GPU", d["gpu"]], ["image", d["image"]],
            ["price", f"{price} ({d['price_note']})"],
            ["scale", f"{d['min_containers']}–{d['max_containers']} containers × {d['max_inputs_per_container']} concurrent requests"],
            ["scaledown window", f"{d['scaledown_window_s']} s (billed after the last request)"],
            ["context", f"{d['max_model_len']} tokens"]]
    if plan.warm_cost_per_month:
        rows.append(["always warm", f"${plan.warm_cost_per_month:.2f}/month for {d['min_containers']} warm container(s)"])
    out.print(out.table(["plan", ""], rows))
