"""gpuctl's error tree as HTTP statuses, in one table, as `cli/main.py` maps it to exit codes.

Owns: `ApiError` (an answer in OpenAI's error shape `{"error": {"message", "type", "param",
"code"}}`, with its status and headers), `STATUSES` (error class → status, type, code) and
`api_error` (any exception → the `ApiError` to send). Messages are redacted once more on the
way out: nothing a provider echoed may leak a key into a response.

Must not: do I/O, or decide anything from an error's text (kinds and typed attempts only).
"""

from __future__ import annotations

import json
import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

from gpuctl.errors import (
    AllProvidersFailedError,
    BudgetError,
    ConfigError,
    GpuctlError,
    Kind,
    LockHeldError,
    NoProviderError,
    NotAvailableError,
    PartialError,
    ProviderError,
    StreamBrokenError,
    UsageError,
)
from gpuctl.redact import redact
from gpuctl.routing.outcomes import Attempt, Outcome


@dataclass
class ApiError(Exception):
    """One error answer. `extra` adds keys inside `error` (the SDKs ignore what they don't know)."""

    status: int
    message: str
    type: str = "invalid_request_error"
    code: str | None = None
    param: str | None = None
    headers: list[tuple[bytes, bytes]] = field(default_factory=list)
    extra: dict[str, Any] = field(default_factory=dict)

    def __str__(self) -> str:
        return self.message

    def body(self) -> bytes:
        error: dict[str, Any] = {"message": redact(self.message), "type": self.type, "param": self.param,
                                 "code": self.code}
        error.update(self.extra)
        return json.dumps({"error": error}).encode()


# First match along the error's class order wins; ProviderError's status depends on its kind.
STATUSES: tuple[tuple[type[GpuctlError], int, str, str | None], ...] = (
    (StreamBrokenError, 502, "upstream_error", "stream_broken"),
    (NoProviderError, 503, "service_unavailable", "no_provider_configured"),
    (UsageError, 400, "invalid_request_error", None),
    (ConfigError, 500, "configuration_error", None),  # the gateway's own settings (a missing key)
    (BudgetError, 402, "budget_exceeded", "budget_exceeded"),
    (LockHeldError, 409, "conflict", "locked"),
    (PartialError, 207, "partial", "partial"),
    (NotAvailableError, 501, "not_implemented", None),
    (GpuctlError, 500, "server_error", None),
)

PROVIDER_STATUSES: dict[str, tuple[int, str]] = {
    Kind.BAD_REQUEST: (400, "invalid_request_error"),  # the provider says the request is wrong
    Kind.UNSUPPORTED: (400, "invalid_request_error"),  # the one provider asked cannot serve it
    Kind.RATE_LIMIT: (429, "rate_limit_exceeded"),
    Kind.TIMEOUT: (504, "upstream_timeout"),
    Kind.NOT_FOUND: (404, "not_found_error"),
}


def api_error(exc: BaseException) -> ApiError:
    """The answer for an exception that ends a request (an unknown one is a plain 500)."""
    if isinstance(exc, ApiError):
        return exc
    if isinstance(exc, AllProvidersFailedError):
        return nobody_answered(exc)
    if isinstance(exc, ProviderError) and not isinstance(exc, StreamBrokenError):
        status, kind_type = PROVIDER_STATUSES.get(exc.kind, (502, "upstream_error"))
        return ApiError(status, _with_hint(exc), kind_type, str(exc.kind), param=getattr(exc, "param", None),
                        headers=retry_after([exc.retry_after_s]) if status == 429 else [],
                        extra={"provider": exc.provider})
    if isinstance(exc, GpuctlError):
        for cls, status, err_type, code in STATUSES:
            if isinstance(exc, cls):
                # A request no provider can serve names the parameter (`n`, `tools`), as OpenAI's 400s do.
                error = ApiError(status, _with_hint(exc), err_type, code, param=getattr(exc, "param", None))
                data = getattr(exc, "data", None)
                if data is not None:
                    error.extra["data"] = data
                return error
    return ApiError(500, "internal error in gpuctl serve (see its log)", "server_error", "internal_error")


def nobody_answered(exc: AllProvidersFailedError) -> ApiError:
    """502 when a provider was tried and failed; 503 when none could be tried now (breakers
    open, a GPU waking up). The per-provider reasons go in `error.providers`."""
    attempts = [a for a in exc.attempts if isinstance(a, Attempt)]
    failed = [a for a in attempts if a.outcome is Outcome.FAILED]
    status, err_type = (502, "upstream_error") if failed else (503, "service_unavailable")
    code, headers = "no_provider_answered", []
    if failed and all(a.reason.error_kind == Kind.RATE_LIMIT for a in failed):
        # Every provider tried is rate limited: the client should slow down, not retry now, so
        # it gets OpenAI's 429 (its SDK backs off), with the longest wait the servers asked for.
        status, err_type, code = 429, "rate_limit_exceeded", "rate_limit_exceeded"
        headers = retry_after([a.reason.retry_after_s for a in failed])
    error = ApiError(status, exc.message, err_type, code, headers=headers, extra={"providers": providers(attempts)})
    if exc.hint:
        error.extra["hint"] = exc.hint
    return error


def retry_after(waits: Sequence[float | None]) -> list[tuple[bytes, bytes]]:
    """The Retry-After header for the longest of `waits` the servers gave (none: no header)."""
    known = [w for w in waits if w is not None]
    return [(b"retry-after", str(math.ceil(max(known))).encode())] if known else []


def providers(attempts: Sequence[Attempt]) -> list[dict[str, Any]]:
    return [{"provider": a.provider, "outcome": a.outcome.value, "reason": a.reason.kind.value,
             "error_kind": a.reason.error_kind, "message": redact(a.text)} for a in attempts]


def _with_hint(exc: GpuctlError) -> str:
    return f"{exc.message} ({exc.hint})" if exc.hint else exc.message
