"""Start-up time: `gpuctl --help`, `gpuctl cost estimate`, `gpuctl profile list` against a bare
Typer app with the same command names (our framework's floor) and `python -m modal --help`."""

from __future__ import annotations

import sys
import tempfile
from pathlib import Path

from bench.common import Row, median, wall_times

BARE_APP = '''
import typer
app = typer.Typer()
deploy = typer.Typer(); cost = typer.Typer(); profile = typer.Typer()
app.add_typer(deploy, name="deploy"); app.add_typer(cost, name="cost"); app.add_typer(profile, name="profile")
@deploy.command("modal")
def modal(gpu: str = typer.Option(None)) -> None: """Deploy."""
@app.command()
def status() -> None: """Status."""
@app.command()
def chat(prompt: str = typer.Argument(None)) -> None: """Chat."""
@app.command()
def launch() -> None: """Launch."""
@app.command()
def destroy() -> None: """Destroy."""
@app.command()
def cleanup() -> None: """Cleanup."""
@cost.command("estimate")
def estimate() -> None: """Estimate."""
@cost.command("report")
def report() -> None: """Report."""
@profile.command("list")
def list_() -> None: """List."""
if __name__ == "__main__":
    app()
'''


def run(*, runs: int = 10) -> list[Row]:
    py = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        bare = Path(tmp) / "bare_typer.py"
        bare.write_text(BARE_APP)
        env = {"GPUCTL_HOME": str(Path(tmp) / "home"), "GPUCTL_EVENT_LOG": "0", "NO_COLOR": "1"}
        bare_help = median(wall_times([py, str(bare), "--help"], runs, env=env))
        bare_list = median(wall_times([py, str(bare), "profile", "list"], runs, env=env))
        ours_help = median(wall_times([py, "-m", "gpuctl", "--help"], runs, env=env))
        ours_cost = median(wall_times([py, "-m", "gpuctl", "cost", "estimate"], runs, env=env))
        ours_list = median(wall_times([py, "-m", "gpuctl", "profile", "list"], runs, env=env))
        modal_help = median(wall_times([py, "-m", "modal", "--help"], max(3, runs // 2), env=env))
    base = f"bare Typer {bare_help * 1000:.0f} ms"
    return [
        Row("`gpuctl --help` vs bare Typer app", base, f"{ours_help * 1000:.0f} ms = {ours_help / bare_help:.2f}×",
            "≤ 1.2×", ours_help <= 1.2 * bare_help),
        Row("`gpuctl --help` vs `python -m modal --help`", f"modal {modal_help * 1000:.0f} ms",
            f"{ours_help / modal_help:.2f}×", "≤ 0.5×", ours_help <= 0.5 * modal_help),
        Row("`gpuctl cost estimate` vs bare Typer app", base,
            f"{ours_cost * 1000:.0f} ms = {ours_cost / bare_help:.2f}×", "≤ 2×", ours_cost <= 2 * bare_help),
        Row("`gpuctl profile list` vs bare Typer app", f"bare `profile list` {bare_list * 1000:.0f} ms",
            f"{ours_list * 1000:.0f} ms = {ours_list / bare_list:.2f}×", "≤ 2×", ours_list <= 2 * bare_list),
    ]
