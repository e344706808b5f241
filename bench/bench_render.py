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

from bench.common import Row, median


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
    from gpuctl.chat.render import StreamRenderer

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


def run(*, tokens: int = 20_000, repeats: int = 5) -> list[Row]:
    small, large = _chunks(tokens), _chunks(2 * tokens)
    raw = median([_raw(small) for _ in range(repeats)])
    plain = median([_ours(small, markdown=False) for _ in range(repeats)])
    plain2 = median([_ours(large, markdown=False) for _ in range(repeats)])
    md = median([_ours(small, markdown=True) for _ in range(max(1, repeats // 2))])
    md2 = median([_ours(large, markdown=True) for _ in range(max(1, repeats // 2))])
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
