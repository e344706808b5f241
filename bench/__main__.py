"""`python -m bench` (`make bench`): run every benchmark, print the table, write docs/benchmarks.md.

`python -m bench --tiny` runs each at a toy size (the test suite does this so the scripts don't rot).
"""

from __future__ import annotations

import argparse
import sys

from bench.common import REPO, Row, machine


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench")
    parser.add_argument("--tiny", action="store_true", help="toy sizes: check the scripts run, measure nothing")
    parser.add_argument("--no-write", action="store_true", help="do not write docs/benchmarks.md")
    args = parser.parse_args(argv)
    from bench import (
        bench_fidelity,
        bench_render,
        bench_router,
        bench_serve,
        bench_startup,
        bench_state,
    )

    rows: list[Row] = []
    if args.tiny:
        rows += bench_startup.run(runs=1)
        rows += bench_router.run(requests=5, stream_chunks=50, stream_runs=1, batches=1)
        rows += bench_fidelity.run(n=20, repeats=1)
        rows += bench_render.run(tokens=500, repeats=1)
        rows += bench_state.run(requests=50, report_rows=2000, runs=1, open_runs=3)
        rows += bench_serve.run(requests=5, streams=2, seconds=0.2, starts=1)
    else:
        rows += bench_startup.run(runs=15)
        rows += bench_router.run()
        rows += bench_fidelity.run()
        rows += bench_render.run()
        rows += bench_state.run()
        rows += bench_serve.run()
    info = machine()
    header = ["| what | baseline (same run) | measured | target | met |", "|---|---|---|---|---|"]
    table = "\n".join(header + [r.as_markdown() for r in rows])
    print(table)
    if not args.tiny and not args.no_write:
        text = (
            "# Benchmarks\n\n"
            f"Measured by `make bench` on {info['date']}: {info['cpu']}, {info['cores']} cores, "
            f"Python {info['python']} ({info['platform']}).\n\n"
            "Every figure is against a baseline measured in the same run (the machine is shared and noisy).\n\n"
            + table + "\n"
        )
        (REPO / "docs" / "benchmarks.md").write_text(text)
        print(f"\nwrote {REPO / 'docs' / 'benchmarks.md'}", file=sys.stderr)
    return 0 if all(r.ok for r in rows) or args.tiny else 1


if __name__ == "__main__":
    raise SystemExit(main())
