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


def test_save_never_overwrites_unless_asked(tmp_path: Path) -> None:
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    turns = [Turn("user", "hi"), Turn("assistant", "hello")]
    target = tmp_path / "chat.md"
    target.write_text("my notes", encoding="utf-8")
    with pytest.raises(UsageError, match="already exists: not overwritten") as refused:
        transcript.save(target, turns, system_prompt="", conversation_id=1)
    assert refused.value.hint is not None and f"/save! {target}" in refused.value.hint
    assert target.read_text(encoding="utf-8") == "my notes"  # untouched
    transcript.save(target, turns, system_prompt="", conversation_id=1, replace=True)  # /save!
    assert target.read_text(encoding="utf-8").startswith("# gpuctl chat — conversation 1")
    fresh = transcript.save(tmp_path / "new.json", turns, system_prompt="", conversation_id=1)
    assert json.loads(fresh.read_text(encoding="utf-8"))["messages"][1]["content"] == "hello"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["chat.md", "new.json"]  # no temp files left


def test_save_without_hard_links_still_refuses_to_overwrite(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import errno
    import os

    def no_links(src: object, dst: object) -> None:
        raise OSError(errno.EPERM, "Operation not permitted")  # FAT, some FUSE mounts

    monkeypatch.setattr(os, "link", no_links)
    tmp_path = tmp_path / "out"
    tmp_path.mkdir()
    turns = [Turn("user", "hi")]
    (tmp_path / "taken.md").write_text("keep me", encoding="utf-8")
    with pytest.raises(UsageError, match="already exists"):
        transcript.save(tmp_path / "taken.md", turns, system_prompt="", conversation_id=None)
    assert (tmp_path / "taken.md").read_text(encoding="utf-8") == "keep me"
    transcript.save(tmp_path / "free.md", turns, system_prompt="", conversation_id=None)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["free.md", "taken.md"]
