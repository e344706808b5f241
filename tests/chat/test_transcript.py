"""/save files: Markdown and JSON transcripts, written atomically and private (0600)."""

from __future__ import annotations

import json
import stat
from pathlib import Path

import pytest

from gpuctl.chat import transcript
from gpuctl.chat.session import Turn
from gpuctl.errors import UsageError


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
