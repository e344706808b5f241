"""REPL input without a terminal: \"\"\" blocks joined into one multi-line input."""

from __future__ import annotations

from gpuctl.cli.chat.lines import PlainLines, open_block, unwrap


def test_triple_quote_blocks() -> None:
    assert open_block('"""') and open_block('"""\nabc') and not open_block('"""\nabc\n"""')
    assert not open_block("plain") and unwrap('"""\na\nb\n"""') == "a\nb"
    lines = PlainLines(iter(['"""', "a", "", "b", '"""', "next", '"""one line"""']))
    runner = None
    assert lines.read(runner) == "a\n\nb"  # type: ignore[arg-type]
    assert lines.read(runner) == "next"  # type: ignore[arg-type]
    assert lines.read(runner) == "one line"  # type: ignore[arg-type]
    assert lines.read(runner) is None  # type: ignore[arg-type]
