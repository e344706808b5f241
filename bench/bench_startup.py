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
        commands = {
            "bare_help": [py, str(bare), "--help"],
            "bare_list": [py, str(bare), "profile", "list"],
            "ours_help": [py, "-m", "gpuctl", "--help"],
            "ours_cost": [py, "-m", "gpuctl", "cost", "estimate"],
            "ours_list": [py, "-m", "gpuctl", "profile", "list"],
        }
        # Round-robin, one process each per round: a slow spell of the machine hits all alike.
        times: dict[str, list[float]] = {name: [] for name in commands}
        for cmd in commands.values():
            wall_times(cmd, 1, env=env, warmup=False)  # warm the page cache and .pyc files
        for _ in range(runs):
            for name, cmd in commands.items():
                times[name] += wall_times(cmd, 1, env=env, warmup=False)
        bare_help, bare_list, ours_help, ours_cost, ours_list = (
            median(times[k]) for k in ("bare_help", "bare_list", "ours_help", "ours_cost", "ours_list"))
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
