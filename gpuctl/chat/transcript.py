"""`/save FILE`: a conversation as a Markdown or JSON transcript, written atomically.

Owns the two transcript formats and the atomic write (temp file in the same directory, then
`os.replace`, so a crash never leaves half a file; an existing file is replaced whole). The file
is created 0600: a transcript can hold whatever was pasted into the chat.
Must not: read the database (it gets the turns) or print.
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from gpuctl.chat.session import Turn
from gpuctl.errors import UsageError

FORMATS = (".md", ".markdown", ".json")


def to_json(turns: Sequence[Turn], *, system_prompt: str, conversation_id: int | None,
            saved_at: float) -> dict[str, Any]:
    return {
        "conversation_id": conversation_id,
        "saved_at": saved_at,
        "system_prompt": system_prompt,
        "messages": [
            {"role": t.role, "content": t.content, "partial": t.partial, "provider": t.provider, "model": t.model}
            for t in turns
        ],
    }


def to_markdown(turns: Sequence[Turn], *, system_prompt: str, conversation_id: int | None,
                saved_at: float) -> str:
    when = time.strftime("%Y-%m-%d %H:%M", time.localtime(saved_at))
    title = f"conversation {conversation_id}" if conversation_id is not None else "new conversation"
    parts = [f"# gpuctl chat — {title}", f"_Saved {when}._"]
    if system_prompt:
        parts.append(f"**System:** {system_prompt}")
    for turn in turns:
        if turn.role == "user":
            parts.append(f"## You\n\n{turn.content}")
            continue
        via = " · ".join(x for x in (turn.provider, turn.model) if x)
        heading = "## Assistant" + (f" ({via})" if via else "")
        body = turn.content
        if turn.partial:
            body += "\n\n_(partial answer: stopped or broken off)_"
        parts.append(f"{heading}\n\n{body}")
    return "\n\n".join(parts) + "\n"


def save(path: Path, turns: Sequence[Turn], *, system_prompt: str, conversation_id: int | None,
         now: float | None = None) -> Path:
    """Write the transcript; the format follows the suffix (.md or .json). Returns the path."""
    path = path.expanduser()
    suffix = path.suffix.lower()
    if suffix not in FORMATS:
        raise UsageError(f"cannot tell the format of {path.name!r}", hint="use a .md or .json file name")
    saved_at = time.time() if now is None else now
    if suffix == ".json":
        doc = to_json(turns, system_prompt=system_prompt, conversation_id=conversation_id, saved_at=saved_at)
        text = json.dumps(doc, ensure_ascii=False, indent=2) + "\n"
    else:
        text = to_markdown(turns, system_prompt=system_prompt, conversation_id=conversation_id, saved_at=saved_at)
    write_atomic(path, text)
    return path


def write_atomic(path: Path, text: str) -> None:
    directory = path.parent if str(path.parent) else Path(".")
    if not directory.is_dir():
        raise UsageError(f"cannot save to {path}: {directory} is not a directory")
    try:
        fd, tmp = tempfile.mkstemp(dir=directory, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as exc:
        raise UsageError(f"cannot save to {path}: {exc.strerror or exc}") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.replace(tmp, path)
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UsageError(f"cannot save to {path}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
