"""The answer renderers without a network: plain streaming, Markdown by block (each block
once, linear in the answer), the live tail bounded by the screen, and the wait spinner's words."""

from __future__ import annotations

import io

from rich.console import Console

from gpuctl.cli.chat.render import StreamRenderer, WaitIndicator


class CountingFile(io.StringIO):
    def __init__(self) -> None:
        super().__init__()
        self.writes = 0

    def write(self, s: str) -> int:
        self.writes += 1
        return super().write(s)


def terminal(width: int = 80) -> tuple[Console, io.StringIO]:
    sink = io.StringIO()
    return Console(file=sink, force_terminal=True, width=width, height=30, color_system="standard",
                   soft_wrap=True), sink


def test_plain_writes_each_chunk_once_and_ends_with_a_newline() -> None:
    sink = CountingFile()
    r = StreamRenderer(sink, markdown=True)  # a file is never a terminal: stays plain
    chunks = ["Hello", " **world**", "\n", "[not markup]"]
    for c in chunks:
        r.feed(c)
    r.finish()
    r.finish()  # idempotent
    assert sink.getvalue() == "".join(chunks) + "\n"
    assert sink.writes == len(chunks) + 1 and not r.markdown


def test_plain_console_that_is_not_a_terminal_has_no_control_codes() -> None:
    sink = io.StringIO()
    console = Console(file=sink, width=80)
    r = StreamRenderer(console, markdown=True)
    r.feed("# Title\n\n`code` and **bold**\n")
    r.finish()
    assert sink.getvalue() == "# Title\n\n`code` and **bold**\n"


def spy_blocks(console: Console) -> list[str]:
    """The Markdown source of every block the renderer prints, in order."""
    blocks: list[str] = []
    original = console.print

    def spy(*objects, **kw):  # type: ignore[no-untyped-def]
        blocks.extend(o.markup for o in objects if type(o).__name__ == "Markdown")
        return original(*objects, **kw)

    console.print = spy  # type: ignore[method-assign]
    return blocks


def test_markdown_renders_each_completed_block_once() -> None:
    console, sink = terminal()
    blocks = spy_blocks(console)
    now = [0.0]
    r = StreamRenderer(console, markdown=True, clock=lambda: now[0])
    text = ("# Heading\n\nFirst **para**graph\nstill first.\n\n```python\nx = 1\n\ny = 2\n```\n"
            "Last paragraph")
    pieces = text.replace(" ", "\0 ").split("\0")  # token-ish pieces, newlines inside them
    assert "".join(pieces) == text
    for piece in pieces:
        r.feed(piece)
        now[0] += 1.0  # every feed may refresh the live tail
    r.finish()
    assert blocks == ["# Heading", "First **para**graph\nstill first.", "```python\nx = 1\n\ny = 2\n```",
                      "Last paragraph"]
    assert r.blocks == 4
    out = sink.getvalue()
    assert "\x1b[" in out and "Heading" in out and "x = 1" in out


def test_markdown_block_boundaries_are_found_across_chunks() -> None:
    console, _ = terminal()
    r = StreamRenderer(console, markdown=True, clock=lambda: 0.0)
    for ch in "one\n\ntwo\n\n~~~\ncode\n\n~~~\nthree":  # one character per feed
        r.feed(ch)
    assert r.blocks == 3  # "three" is still being written
    r.finish()
    assert r.blocks == 4


def test_markdown_cost_is_linear_in_blocks_not_tokens() -> None:
    """Each block is rendered once however many tokens it took; refreshes of the block still
    being written are throttled by time, so a fast stream renders almost nothing extra."""
    console, _ = terminal()
    blocks = spy_blocks(console)
    r = StreamRenderer(console, markdown=True, clock=lambda: 0.0)
    paragraphs = 50
    for _ in range(paragraphs):
        for _ in range(40):
            r.feed(" word")
        r.feed("\n\n")
    r.finish()
    assert len(blocks) == paragraphs == r.blocks
    assert all(b == " word" * 40 for b in blocks)


def test_tail_is_bounded_by_the_screen() -> None:
    console, _ = terminal(width=40)
    r = StreamRenderer(console, markdown=True, clock=lambda: 0.0)
    for _ in range(5000):
        r.feed(" word")  # one endless paragraph
    tail = r._tail()
    assert len(tail) <= 40 * 29 and tail.endswith("word")
    r.finish()


def test_wait_indicator_words() -> None:
    now = [0.0]
    provider = ["modal"]
    sink = io.StringIO()
    w = WaitIndicator(Console(file=sink), lambda: provider[0], clock=lambda: now[0],
                      likely_cold=lambda name: name == "modal")
    assert w.message().startswith("waiting for modal…")  # a warm Modal answers at once
    now[0] = 12.4
    assert w.message().startswith("Modal is starting a GPU container") and "(12s)" in w.message()
    provider[0] = "anthropic"
    assert w.message().startswith("waiting for anthropic…")
    w.start()  # not a terminal: draws nothing, and stop is safe
    w.stop()
    assert sink.getvalue() == ""
