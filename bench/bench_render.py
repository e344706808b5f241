"""Chat rendering cost (CPU time) of a long streamed answer, against printing the same chunks raw.

`gpuctl chat` streams raw text by default (`chat.markdown = false`); with `--markdown` it renders
each finished block once. Both must stay linear in the answer's length (no re-render of the
whole text per token, the known trap of live Markdown views).
"""

from __future__ import annotations

import io
import os
import time

from rich.console import Console

from bench.common import Row


def _chunks(tokens: int) -> list[str]:
    """An answer shaped like a model's: paragraphs, a list and a code block, one token a chunk."""
    words = []
    for i in range(tokens):
        if i % 400 == 399:
            words.append("\n\n```python\nprint('x')\n```\n\n")
        elif i % 120 == 119:
            words.append("\n\n- item one\n- item two\n\n")
        elif i % 60 == 59:
            words.append(".\n\n")
        else:
            words.append(f" word{i % 97}")
    return words


def _cpu(fn) -> float:  # type: ignore[no-untyped-def]
    started = time.process_time()
    fn()
    return time.process_time() - started


def _raw(chunks: list[str]) -> float:
    with open(os.devnull, "w") as sink:
        def go() -> None:
            for chunk in chunks:
                sink.write(chunk)
                sink.flush()
        return _cpu(go)


def _ours(chunks: list[str], *, markdown: bool) -> float:
    from gpuctl.cli.chat.render import StreamRenderer

    with open(os.devnull, "w") as sink:
        console = Console(file=sink if not markdown else io.StringIO(), force_terminal=markdown, width=100,
                          color_system=None if not markdown else "standard")
        # A clock that advances 10 ms a chunk: the live tail of a Markdown block refreshes at
        # most every 80 ms, as it would for a model streaming 100 tokens/s.
        ticks = iter(range(10**9))
        renderer = StreamRenderer(console, markdown=markdown, clock=lambda: next(ticks) * 0.01)

        def go() -> None:
            for chunk in chunks:
                renderer.feed(chunk)
            renderer.finish()
        return _cpu(go)


def run(*, tokens: int = 20_000, repeats: int = 9) -> list[Row]:
    # CPU time of deterministic work: the fastest of several runs is its cost; slower runs
    # measured the machine (GC, page faults, a neighbour), not the renderer.
    # Interleaved, so a slow spell of the machine hits every measurement alike.
    small, large = _chunks(tokens), _chunks(2 * tokens)
    runs: dict[str, list[float]] = {"raw": [], "plain": [], "plain2": [], "md": [], "md2": []}
    for i in range(repeats):
        runs["raw"].append(_raw(small))
        runs["plain"].append(_ours(small, markdown=False))
        runs["plain2"].append(_ours(large, markdown=False))
        if i % 3 == 0:
            runs["md"].append(_ours(small, markdown=True))
            runs["md2"].append(_ours(large, markdown=True))
    raw, plain, plain2, md, md2 = (min(runs[k]) for k in ("raw", "plain", "plain2", "md", "md2"))
    n = f"{tokens:,}"
    return [
        Row(f"`gpuctl chat` rendering a {n}-token answer (CPU, default)", f"raw print {raw * 1000:.1f} ms",
            f"{plain * 1000:.1f} ms = {plain / raw:.2f}×", "≤ 2×", plain <= 2 * raw),
        Row(f"… linear: {2 * tokens:,} vs {n} tokens (default)", f"{plain * 1000:.1f} ms",
            f"{plain2 * 1000:.1f} ms = {plain2 / plain:.2f}×", "≤ 2.2×", plain2 <= 2.2 * plain),
        Row(f"… with `--markdown` ({n} tokens; linearity is the target)", f"raw print {raw * 1000:.1f} ms",
            f"{md * 1000:.0f} ms = {md / raw:.0f}×", "informational", True),
        Row(f"… linear with `--markdown`: {2 * tokens:,} vs {n} tokens", f"{md * 1000:.0f} ms",
            f"{md2 * 1000:.0f} ms = {md2 / md:.2f}×", "≤ 2.2×", md2 <= 2.2 * md),
    ]
