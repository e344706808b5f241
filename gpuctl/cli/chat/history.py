"""`gpuctl chat --list`: the stored conversations, so `--conversation ID` can resume one.

Renders what `gpuctl.ops.chat.list_conversations` returns: a table for people (local time,
the first line of the first question, who answered last, the tokens its answers used), or the
envelope with `--json`. Must not: open the state or compute anything.
"""

from __future__ import annotations

from datetime import datetime

from gpuctl.cli.context import AppContext

COLUMNS = ["id", "last active", "messages", "provider", "tokens", "first line"]


def show_history(actx: AppContext, *, limit: int) -> None:
    from gpuctl.errors import UsageError
    from gpuctl.ops.chat import list_conversations

    if limit < 0:
        raise UsageError(f"--limit must not be negative (got {limit})", hint="0 lists every conversation")
    out = actx.out
    data = list_conversations(actx.settings(), limit=limit or None)
    out.result(data)
    if out.json_mode:
        return
    items = data["conversations"]
    if not items:
        out.info("No stored conversations yet: `gpuctl chat` starts one.")
        return
    rows = [[str(c["id"]), _local(c["updated_at"]), str(c["messages"]), c["provider"] or "—",
             f"{c['tokens']:,}" if c["tokens"] else "—", c["first_line"]] for c in items]
    out.print(out.table(COLUMNS, rows, fixed=range(len(COLUMNS) - 1)))
    more = data["total"] - len(items)
    out.note("Resume one: gpuctl chat --conversation ID (or --continue for the last)."
             + (f" {more} older: --list --limit 0 shows all." if more > 0 else ""))


def _local(iso_utc: str) -> str:
    """An ISO UTC time as the local date and minute, the way people read a history."""
    return datetime.fromisoformat(iso_utc).astimezone().strftime("%Y-%m-%d %H:%M")
