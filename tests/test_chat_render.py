"""The chat renderers without a network: plain streaming, Markdown by block, the stats and cost
lines, the spinner's words, and transcripts."""

from __future__ import annotations

import io
import json
import stat
from decimal import Decimal
from pathlib import Path

import pytest
from rich.console import Console

from gpuctl.chat import transcript
from gpuctl.chat.render import (
    MODAL_COLD,
    JsonUI,
    StreamRenderer,
    WaitIndicator,
    cost_line,
    fallback_lines,
    money,
    stats_line,
)
from gpuctl.chat.repl import PlainLines, open_block, unwrap
from gpuctl.chat.session import Answer, Spend, Turn
from gpuctl.errors import UsageError
from gpuctl.providers.base import Usage


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
    w = WaitIndicator(Console(file=io.StringIO()), lambda: provider[0], clock=lambda: now[0])
    assert w.message().startswith("waiting for modal…")  # a warm Modal answers at once
    now[0] = 12.4
    assert w.message().startswith(MODAL_COLD) and "(12s)" in w.message()
    provider[0] = "anthropic"
    assert w.message().startswith("waiting for anthropic…")
    w.start()  # not a terminal: draws nothing, and stop is safe
    w.stop()


@pytest.mark.parametrize(("value", "shown"), [
    (None, "cost n/a"), (Decimal(0), "$0.00"), (Decimal("0.000123456"), "~$0.00012"),
    (Decimal("0.0049"), "~$0.0049"), (Decimal("1.234"), "~$1.23"), (Decimal("0.0000001"), "<$0.000001"),
])
def test_money(value: Decimal | None, shown: str) -> None:
    assert money(value) == shown


def test_stats_and_fallback_lines() -> None:
    answer = Answer("hi", "anthropic", "claude-haiku-4-5", Usage(10, 50), Decimal("0.00026"),
                    fallback_reason="modal: waking up (cold start, usually 10–30 s); vastai: breaker open",
                    ttft_s=0.5, latency_s=1.5)
    assert stats_line(answer) == ("anthropic · claude-haiku-4-5 · 10 in / 50 out tokens · 50.0 tok/s · "
                                  "TTFT 0.50 s · ~$0.00026")
    assert fallback_lines(answer.fallback_reason) == [
        "fell back from modal: waking up (cold start, usually 10–30 s)", "fell back from vastai: breaker open"]
    assert fallback_lines(None) == []


def test_cost_line() -> None:
    spend = {"modal": Spend(2, 10, 20, Decimal("0.0004")), "vastai": Spend(1, 5, 5, Decimal(0), unpriced=1)}
    total = Spend(3, 15, 25, Decimal("0.0004"), unpriced=1)
    line = cost_line(spend, total)
    assert line.startswith("Session spend: ~$0.00040 estimated for 3 answers (")
    assert "modal: 2 answers, 10 in / 20 out tokens, ~$0.00040" in line and "vastai: 1 answer" in line
    assert cost_line({}, Spend()) == "Session spend: $0.00 (no answers yet)"


def test_json_ui_summary_shape() -> None:
    events: list[dict[str, object]] = []
    ui = JsonUI(events.append)
    ui.text("Hi")
    ui.done(Answer("Hi", "modal", "m", Usage(3, 1), Decimal("1E-7"), conversation_id=7, ttft_s=0.1, latency_s=0.2))
    ui.error(UsageError("bad"), final=True)
    assert events[0] == {"type": "chunk", "text": "Hi"}
    summary = events[1]
    assert summary["cost"] == "0.0000001" and summary["usage"] == {
        "prompt_tokens": 3, "completion_tokens": 1, "total_tokens": 4}
    assert set(summary) >= {"type", "text", "provider", "model", "usage", "cost", "fallback_reason",
                            "conversation_id", "ttft_s", "latency_s"}
    assert events[2]["type"] == "error" and events[2]["exit_code"] == 2
    json.dumps(events)  # all of it serialisable


def test_triple_quote_blocks() -> None:
    assert open_block('"""') and open_block('"""\nabc') and not open_block('"""\nabc\n"""')
    assert not open_block("plain") and unwrap('"""\na\nb\n"""') == "a\nb"
    lines = PlainLines(iter(['"""', "a", "", "b", '"""', "next", '"""one line"""']))
    runner = None
    assert lines.read(runner) == "a\n\nb"  # type: ignore[arg-type]
    assert lines.read(runner) == "next"  # type: ignore[arg-type]
    assert lines.read(runner) == "one line"  # type: ignore[arg-type]
    assert lines.read(runner) is None  # type: ignore[arg-type]


def test_transcript_atomic_write_formats(tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    turns = [Turn("user", "hi"), Turn("assistant", "partial ans", partial=True, provider="modal", model="m")]
    md = transcript.save(tmp_path / "c.md", turns, system_prompt="Sys", conversation_id=3, now=0.0)
    text = md.read_text(encoding="utf-8")
    assert "**System:** Sys" in text and "## Assistant (modal · m)\n\npartial ans" in text
    assert "_(partial answer: stopped or broken off)_" in text
    assert stat.S_IMODE(md.stat().st_mode) == 0o600
    js = transcript.save(tmp_path / "c.JSON", turns, system_prompt="", conversation_id=None, now=0.0)
    assert json.loads(js.read_text(encoding="utf-8"))["messages"][1]["partial"] is True
    with pytest.raises(UsageError, match="not a directory"):
        transcript.save(tmp_path / "missing" / "c.md", turns, system_prompt="", conversation_id=None)
    with pytest.raises(UsageError, match="format"):
        transcript.save(tmp_path / "c.txt", turns, system_prompt="", conversation_id=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["c.JSON", "c.md"]
