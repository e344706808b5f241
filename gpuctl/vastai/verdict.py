"""What an attempt's evidence means for the rest of the launch: a create Vast refused outright
(nothing was created) or one whose outcome is unknown, a live price the launch does not accept
(above the most it may pay, or past a budget once the projection is made at it), and a
container exit that blames the configuration rather than the host (the same exit message from
two machines; exit 3 when it names the model, a gated repo or a token).

Kept apart from `attempt.py` (which acts on these verdicts: destroys, excludes, stops) so the
rules read on their own. Must not: talk to Vast.ai, write the ledger, print or exit.
"""

from __future__ import annotations

import re
from collections.abc import Iterable
from decimal import Decimal

from gpuctl.config import Settings
from gpuctl.errors import ProviderError
from gpuctl.state import InstanceRow
from gpuctl.vastai import budget
from gpuctl.vastai.budget import money
from gpuctl.vastai.plan import budget_check

# An exit message that says one of these is about the model or the access to it: a setting.
CONFIG_MARKERS = ("repositorynotfounderror", "repository not found", "gatedrepoerror", "gated repo",
                  "access to model", "401 client error", "hf_token", "token", "not a valid model identifier",
                  "is not a local folder")


def create_refused(exc: ProviderError) -> bool:
    """Vast answered the create and said no (a 4xx, or 200 with `success: false`): nothing was
    created. Everything else (5xx, a timeout, a dropped connection, a garbled reply, a 408 a
    proxy may send after forwarding) leaves the outcome unknown."""
    if exc.status is None:
        return False
    if exc.status == 200:
        return exc.kind == "http"  # success false; "malformed" (no new_contract) may have created one
    return 400 <= exc.status < 500 and exc.status != 408


def price_refusal(settings: Settings, rows: Iterable[InstanceRow], *, row_id: int, gpu: str, live: Decimal,
                  limit: Decimal | None, limit_why: str, now: float) -> str | None:
    """Why the launch does not accept `live` $/h for ledger row `row_id` (None: it does): above
    `limit` (`limit_why` says whose), or past a budget with everything else that is spent and
    held, this row's time so far included."""
    if limit is not None and live > limit:
        return (f"the host raised its price to ${money(live)}/h, above the ${money(limit)}/h this launch accepts "
                f"({limit_why})")
    rows = list(rows)
    others = [r for r in rows if r.id != row_id]
    own = sum((budget.row_cost(r, now) for r in rows if r.id == row_id), Decimal(0))
    check = budget_check(settings, live, spent=budget.spent(others, now) + own,
                         reserved=budget.reserved(others, settings["vastai.keep_alive_minutes"]))
    if check.ok:
        return None
    return "the host raised its price: " + check.error(gpu).message.removesuffix("; nothing was created.")


def exit_signature(message: str) -> str:
    """An exit message with what differs from one machine to the next (numbers, hex ids) blurred,
    so the same failure on two hosts compares equal."""
    text = re.sub(r"0x[0-9a-f]+|[0-9a-f]{12,}|\d+", "#", message.lower())
    return " ".join(text.split())


def names_config(message: str, model: str | None) -> bool:
    """The exit message names the model, a gated or missing repository, or a token."""
    low = message.lower()
    return bool(model and model.lower() in low) or any(marker in low for marker in CONFIG_MARKERS)


def misconfigured_message(message: str, machines: tuple[int, int], *, model: str, config: bool) -> str:
    """Why the walk stops: the same exit on two machines is the configuration's, not theirs."""
    first, second = machines
    why = (f"check vastai.model ({model}) and, for a gated model, vastai.hf_token (HF_TOKEN)" if config else
           "check the container's settings (vastai.image, vastai.model, deploy/vastai/container.toml)")
    return (f"the container exited with the same message on two machines ({first}, {second}): {message}. That "
            f"is the configuration, not the hosts: {why}. The launch stops; neither machine is excluded")
