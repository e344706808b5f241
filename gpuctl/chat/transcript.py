"""`/save FILE`: a conversation as a Markdown or JSON transcript, written atomically.

Owns the two transcript formats and the atomic write (temp file in the same directory, then
linked into place, so a crash never leaves half a file). An existing file is never overwritten
unless asked (`/save! FILE`), and then it is replaced whole. The file is created 0600: a
transcript can hold whatever was pasted into the chat.
Must not: read the database (it gets the turns) or print.
"""

from __future__ import annotations

import contextlib
import errno
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
         now: float | None = None, replace: bool = False) -> Path:
    """Write the transcript; the format follows the suffix (.md or .json). Returns the path.
    An existing file is refused (UsageError naming `/save!`) unless `replace`."""
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
    write_atomic(path, text, replace=replace)
    return path


def _place_new(tmp: str, path: Path) -> None:
    """Move `tmp` to `path` only if nothing is there (FileExistsError otherwise)."""
    try:
        os.link(tmp, path)  # atomic, and it cannot clobber: FileExistsError if a file is there
    except FileExistsError:
        raise
    except OSError as exc:  # a file system without hard links (FAT, some FUSE mounts)
        if exc.errno not in (errno.EPERM, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EMLINK):
            raise
        if path.exists():
            raise FileExistsError(errno.EEXIST, "exists", str(path)) from None
        os.replace(tmp, path)
        return
    os.unlink(tmp)


def write_atomic(path: Path, text: str, *, replace: bool = True) -> None:
    """`replace=False`: the file appears only if none is there (a link cannot clobber one, so a
    file created meanwhile is not lost either)."""
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
        if replace:
            os.replace(tmp, path)
        else:
            _place_new(tmp, path)
    except FileExistsError:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UsageError(f"{path} already exists: not overwritten",
                         hint=f"`/save! {path}` replaces it, or choose another name") from None
    except OSError as exc:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise UsageError(f"cannot save to {path}: {exc.strerror or exc}") from None
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
