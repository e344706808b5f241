"""The one handler around a launch's walk (step 7 of `launch.py`'s safety argument): Ctrl-C
(SIGTERM, a caller's KeyboardInterrupt such as the gateway's stop) at any moment, inside an
attempt or between attempts, and any error once a box came up, leave nothing billing unseen.
Every live ledger row this launch wrote that has an instance id is destroyed (kept with
`--keep` on Ctrl-C), and the message names each row and its state as the ledger has it then:
destroyed, kept, a create of unknown outcome still held, or what may still bill.

Kept apart from `launch.py` (the walk) and `attempt.py` (one attempt's own abort, which runs
first): this is the last word, after either. Must not: create anything, retry, print or exit.
"""

from __future__ import annotations

from gpuctl.errors import GpuctlError, Kind, ProviderError
from gpuctl.events import log_event
from gpuctl.vastai.attempt import Attempter, LaunchInterrupted, describe
from gpuctl.vastai.instances import PROVIDER, destroy_remote, mark_destroyed
from gpuctl.vastai.launch_errors import ledger_story


def stopped(at: Attempter, exc: BaseException, *, pending: bool) -> BaseException:
    """What to raise for `exc`, once this launch's instances are seen to: `exc` itself when the
    walk ended on its own terms (nothing pending: each box is already settled and said), else a
    LaunchInterrupted (exit 130) or the error naming what may still bill."""
    interrupted = isinstance(exc, KeyboardInterrupt | LaunchInterrupted)
    if not interrupted and not pending:
        return exc
    not_swept = sweep(at, keep=interrupted and at.keep)
    rows = [r for r in (at.state.get_instance(i) for i in at.rows) if r is not None]
    parts, hints = ledger_story(rows, not_swept=not_swept)
    log_event("vastai_launch_stopped", interrupted=interrupted, rows=list(at.rows), live=[r.id for r in rows if r.live])
    if interrupted:
        story = "; ".join(parts) if parts else "nothing was created"
        return LaunchInterrupted(f"interrupted: {story}.", hint="; ".join(hints) or None)
    if not hints:
        return exc  # a bug after the box came up: it is destroyed now; the traceback stays
    return ProviderError(f"the launch failed ({describe(exc)}) and {'; '.join(parts)}.", provider=PROVIDER,
                         kind=exc.kind if isinstance(exc, ProviderError) else Kind.HTTP, hint="; ".join(hints))


def sweep(at: Attempter, *, keep: bool) -> list[int]:
    """Destroy each live row of this launch that has an instance id (with `keep`: leave them, a
    booting one marked unattended for cleanup). Returns the rows not reached: a second Ctrl-C
    stops the sweep (they still bill, and the message says so)."""
    rows = [r for r in (at.state.get_instance(i) for i in at.rows) if r is not None and r.live and r.remote_id]
    for n, row in enumerate(rows):
        if keep:
            if row.status not in ("ready", "unattended", "failed"):
                at.state.update_instance(row.id, status="unattended", status_msg="kept after Ctrl-C (--keep)")
            continue
        try:
            destroy_remote(at.client, int(str(row.remote_id)))
        except KeyboardInterrupt:
            at.state.update_instance(row.id, status="failed",
                                     status_msg="launch interrupted; destroy sent, its answer never read")
            return [r.id for r in rows[n + 1:]]
        except (ProviderError, OSError) as err:
            detail = err.message if isinstance(err, GpuctlError) else str(err)
            at.state.update_instance(row.id, status="failed",
                                     status_msg=f"launch interrupted; destroying it failed: {detail}"[:500])
            continue
        mark_destroyed(at.state, row, at.clock(), note="launch interrupted")
        log_event("vastai_launch_aborted", instance_id=row.remote_id, interrupted=True, outcome="destroyed")
    return []
