"""How an answer reaches the screen (or a pipe) chunk by chunk, and the wait before it.

Owns: `StreamRenderer` (an answer as it streams: plain text, or Markdown rendered block by
block) and `WaitIndicator` (the spinner before the first token). The lines around an answer and
the two chat UIs that use these are in `ui.py`.

Rendering stays linear in the answer's length, the known trap being live Markdown that
re-renders the whole text on every token. Plain mode writes each chunk once. Markdown mode
renders each *completed* block (paragraph, heading, fenced code) exactly once; the block still
being written shows as raw text in a small transient region holding only its last screenful,
refreshed at most every `refresh_s` seconds — so a refresh costs a screenful, not the answer.

Must not: read input, touch the database or the network.
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable
from typing import TYPE_CHECKING, TextIO

from rich.console import Console
from rich.markup import escape

if TYPE_CHECKING:
    from rich.live import Live
    from rich.status import Status

# A fence opens a code block: up to three spaces, then ``` or ~~~ (CommonMark).
_FENCE = re.compile(r"^ {0,3}(`{3,}|~{3,})")
COLD_START = "{name} is starting a GPU container, usually 10–30 s…"  # a scaled-to-zero provider
# A warm Modal answers in well under a second; only then is "starting a container" the truth.
COLD_AFTER_S = 1.0


class StreamRenderer:
    """Write an answer as it streams: `feed(text)` per chunk, then `finish()` once.

    `target` is a rich Console or a text file. With `markdown=True` and a terminal console,
    completed blocks are rendered as Markdown; otherwise text is written as it comes, with no
    colour or control codes.
    """

    def __init__(self, target: Console | TextIO, markdown: bool = False, *,
                 clock: Callable[[], float] = time.monotonic, refresh_s: float = 0.08) -> None:
        self.console = target if isinstance(target, Console) else None
        self.markdown = bool(markdown and self.console is not None and self.console.is_terminal)
        self._file: TextIO = self.console.file if self.console is not None else target  # type: ignore[assignment]
        self.clock = clock
        self.refresh_s = refresh_s
        self.chars = 0
        self.blocks = 0  # Markdown blocks rendered (each exactly once)
        self._last = ""  # the last character written in plain mode
        self._lines: list[str] = []  # completed lines of the block being written
        self._partial: list[str] = []  # pieces of the line being written
        self._fence: str | None = None
        self._live: Live | None = None
        self._refreshed = -math.inf
        self._finished = False

    # -------------------------------------------------------------- plain

    def feed(self, text: str) -> None:
        if not text:
            return
        self.chars += len(text)
        if not self.markdown:
            self._file.write(text)
            self._file.flush()
            self._last = text[-1]
            return
        start = 0
        while True:
            nl = text.find("\n", start)
            if nl < 0:
                if start < len(text):
                    self._partial.append(text[start:])
                break
            self._partial.append(text[start:nl])
            line = "".join(self._partial)
            self._partial.clear()
            self._line(line)
            start = nl + 1
        now = self.clock()
        if now - self._refreshed >= self.refresh_s:
            self._refreshed = now
            self._show_tail(refresh=True)

    def finish(self) -> None:
        """Flush what is left (an interrupted answer too) and end with a newline."""
        if self._finished:
            return
        self._finished = True
        if not self.markdown:
            if self.chars and self._last != "\n":
                self._file.write("\n")
                self._file.flush()
            return
        if self._partial:
            line = "".join(self._partial)
            self._partial.clear()
            self._line(line)
        self._flush_block()
        if self._live is not None:
            self._live.stop()
            self._live = None

    # -------------------------------------------------------------- markdown by block

    def _line(self, line: str) -> None:
        stripped = line.strip()
        if self._fence is not None:
            self._lines.append(line)
            if stripped and set(stripped) == {self._fence[0]} and len(stripped) >= len(self._fence):
                self._fence = None
                self._flush_block()
            return
        match = _FENCE.match(line)
        if match:
            self._flush_block()
            self._fence = match.group(1)
            self._lines.append(line)
        elif not stripped:
            self._flush_block()
        elif stripped.startswith("#"):  # a heading is a block of its own: show it at once
            self._flush_block()
            self._lines.append(line)
            self._flush_block()
        else:
            self._lines.append(line)

    def _flush_block(self) -> None:
        if not self._lines:
            return
        from rich.markdown import Markdown

        assert self.console is not None
        block = "\n".join(self._lines)
        self._lines.clear()
        # Drop the raw copy from the live region first (a refresh is what hands Live the new
        # renderable; printing alone would redraw the stale one under the rendered block).
        self._show_tail(refresh=True)
        if self.blocks:
            self.console.print()
        self.console.print(Markdown(block), soft_wrap=False)
        self.blocks += 1

    def _show_tail(self, *, refresh: bool) -> None:
        from rich.text import Text

        assert self.console is not None
        if self._live is None:
            if not self._lines and not self._partial:
                return
            from rich.live import Live

            self._live = Live(console=self.console, auto_refresh=False, transient=True,
                              redirect_stdout=False, redirect_stderr=False, vertical_overflow="crop")
            self._live.start()
        # Wrap explicitly: a soft-wrapping console would leave the terminal to wrap, and Live
        # could then not erase the rows it did not know it had drawn.
        self._live.update(Text(self._tail(), style="dim", no_wrap=False, overflow="fold"), refresh=refresh)

    def _tail(self) -> str:
        """The last screenful of the block being written, computed from its end only."""
        assert self.console is not None
        width = max(20, self.console.width)
        rows = max(1, min(self.console.height - 1, 20))
        budget = width * rows
        pieces: list[str] = []
        size = 0
        for piece in reversed(self._partial):
            pieces.append(piece)
            size += len(piece)
            if size >= budget:
                break
        partial = "".join(reversed(pieces))[-budget:]
        used = max(1, math.ceil(len(partial) / width))
        lines: list[str] = []
        for line in reversed(self._lines):
            need = max(1, math.ceil(len(line) / width))
            if used + need > rows:
                break
            lines.append(line)
            used += need
        lines.reverse()
        lines.append(partial)
        return "\n".join(lines)


class WaitIndicator:
    """The spinner on stderr before the first token: elapsed time and what is happening."""

    def __init__(self, console: Console, trying: Callable[[], str | None], *,
                 clock: Callable[[], float] = time.monotonic,
                 likely_cold: Callable[[str], bool] = lambda name: False) -> None:
        self.console = console
        self.trying = trying
        self.likely_cold = likely_cold  # idle past its scaledown window: a slow start is a cold start
        self.clock = clock
        self.started = clock()
        self._status: Status | None = None

    def message(self) -> str:
        elapsed = self.clock() - self.started
        provider = self.trying()
        if provider and elapsed >= COLD_AFTER_S and self.likely_cold(provider):
            what = COLD_START.format(name=provider.capitalize())
        else:
            what = f"waiting for {provider or 'a provider'}…"
        return f"{escape(what)} [dim]({elapsed:.0f}s)[/dim]"

    def start(self) -> None:
        if self.console.is_terminal and self._status is None:
            self._status = self.console.status(self.message())
            self._status.start()

    def tick(self) -> None:
        if self._status is not None:
            self._status.update(self.message())

    def stop(self) -> None:
        if self._status is not None:
            self._status.stop()
            self._status = None
