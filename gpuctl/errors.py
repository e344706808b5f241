"""One error tree for gpuctl, each class carrying its exit code and an optional hint.

Everything below `cli/` raises these; only `cli/main.py` turns them into an `Error: ...` line
(or a JSON envelope) and an exit code. Nothing here prints or exits.

The tree (exit code in brackets; ProviderError's depends on its `kind`):

    GpuctlError [1]
     ├── UsageError [2]                bad input on the command line
     ├── ConfigError [3]               a profile, config file or environment value
     │    ├── CredentialsError [3]     a key or token missing or refused
     │    └── NoProviderError [3]      no provider configured at all
     ├── NotAvailableError [1]         a capability not built yet
     ├── BudgetError [1]               spending would pass a budget; nothing was spent
     ├── PartialError [4]              some of the work succeeded (cleanup removed 3 of 4)
     ├── ProviderError [1, 3 if auth]  a provider or its API failed; `kind` says how (Kind)
     │    └── StreamBrokenError        a stream failed after text was shown
     ├── AllProvidersFailedError [1]   every provider tried, none answered (3 if all refused keys)
     └── LockHeldError [1]             another gpuctl process holds the lock

Other modules may add a leaf next to their code (a subclass of one of these, keeping its exit
code); the tree above is every class defined here, and a test keeps it so.
"""

from __future__ import annotations

from enum import StrEnum

# Exit codes, documented in the README ("Exit codes").
EXIT_OK = 0
EXIT_FAILURE = 1
EXIT_USAGE = 2
EXIT_CONFIG = 3
EXIT_PARTIAL = 4
EXIT_INTERRUPTED = 130


class GpuctlError(Exception):
    """A known failure: one line for the user, plus a hint that says how to fix it."""

    exit_code = EXIT_FAILURE

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        message = _encodable(message)
        super().__init__(message)
        self.message = message
        self.hint = None if hint is None else _encodable(hint)

    def __str__(self) -> str:
        return self.message


def _encodable(text: str) -> str:
    """`text` with any lone UTF-16 surrogate (a server's JSON may escape one, `"\\ud83d"`) made
    `?`: the message goes into headers, logs and the ledger, and none of them can encode it."""
    return text if text.isascii() else text.encode("utf-8", "replace").decode("utf-8")


def retry_after_seconds(value: str | None) -> float | None:
    """A Retry-After header's delay in seconds (its HTTP-date form is not used by the servers
    gpuctl talks to, and is ignored), or None."""
    try:
        seconds = float(value) if value else None
    except ValueError:
        return None
    return seconds if seconds is not None and 0 <= seconds < 86_400 else None


class UsageError(GpuctlError):
    """Bad input on the command line (a negative number, an unknown GPU)."""

    exit_code = EXIT_USAGE


class ConfigError(GpuctlError):
    """A profile, config file or environment value is wrong or missing."""

    exit_code = EXIT_CONFIG


class CredentialsError(ConfigError):
    """A provider key or token is missing or was refused."""


class NotAvailableError(GpuctlError):
    """A command whose capability is not built yet."""


class BudgetError(GpuctlError):
    """Spending would pass a configured budget; nothing was spent."""


class PartialError(GpuctlError):
    """Some of the work succeeded and some failed (cleanup removed 3 of 4)."""

    exit_code = EXIT_PARTIAL

    def __init__(self, message: str, *, hint: str | None = None, data: object = None) -> None:
        super().__init__(message, hint=hint)
        self.data = data


class Kind(StrEnum):
    """How a provider failed. A StrEnum: `exc.kind == "auth"` and JSON output keep the text."""

    CONNECT = "connect"  # refused, DNS, unreachable
    TIMEOUT = "timeout"
    HTTP = "http"  # an error status with no more specific kind
    AUTH = "auth"  # 401/403: the key is missing or refused
    NOT_FOUND = "not_found"  # 404, e.g. an unknown model
    COLD = "cold"  # 503 while a scaled-to-zero GPU wakes
    RATE_LIMIT = "rate_limit"  # 429
    MALFORMED = "malformed"  # not the JSON or SSE we expect
    STREAM_CUT = "stream_cut"  # the stream ended without its terminator
    BAD_REQUEST = "bad_request"  # 400: our request is wrong, another provider would not help
    UNSUPPORTED = "unsupported"  # this provider lacks a capability the request needs (tools): try the next


# Kinds where trying the next provider can help; a 400 means our request is wrong.
FAILOVER_KINDS = frozenset(Kind) - {Kind.BAD_REQUEST}
# A cold start, our own bad request or a missing capability says nothing about the backend's
# health, and a refused key is a setting to fix (exit 3), not an outage: a breaker it opened
# would outlive the fix.
NOT_BREAKER_KINDS = frozenset({Kind.COLD, Kind.BAD_REQUEST, Kind.AUTH, Kind.UNSUPPORTED})


class ProviderError(GpuctlError):
    """A provider or its API failed. `kind` (a `Kind`) says how, so the router can decide to
    fail over; a plain string naming a kind is accepted and converted."""

    FAILOVER_KINDS = FAILOVER_KINDS

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        kind: Kind | str = Kind.HTTP,
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.provider = provider
        self.kind = Kind(kind)
        self.status = status
        self.retry_after_s: float | None = None  # a 429's Retry-After, when the server sent one

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        # A refused key is a credentials problem (exit 3), whichever provider refused it.
        return EXIT_CONFIG if self.kind == Kind.AUTH else EXIT_FAILURE

    @property
    def failover(self) -> bool:
        return self.kind in FAILOVER_KINDS

    @property
    def counts_against_breaker(self) -> bool:
        """A cold start, our own bad request or a refused key says nothing about the backend's health."""
        return self.kind not in NOT_BREAKER_KINDS


class StreamBrokenError(ProviderError):
    """A stream failed after text was already shown: the request is not silently re-sent."""

    def __init__(self, message: str, *, provider: str, partial_text: str = "", hint: str | None = None,
                 partial_tool_calls: tuple[object, ...] = ()) -> None:
        super().__init__(message, provider=provider, kind=Kind.STREAM_CUT, hint=hint)
        self.partial_text = partial_text
        # The tool calls streamed before the break (gpuctl.providers.base.ToolCall), the last
        # one cut short: errors sit below providers, so they are not typed here.
        self.partial_tool_calls = partial_tool_calls


class NoProviderError(ConfigError):
    """No provider is configured at all."""


class AllProvidersFailedError(GpuctlError):
    """Every configured provider was tried (or skipped) and none answered."""

    def __init__(self, message: str, *, reasons: list[str], hint: str | None = None,
                 credentials: bool = False, attempts: tuple[object, ...] = ()) -> None:
        super().__init__(message, hint=hint)
        self.reasons = reasons  # one line per provider, for people
        # The router's typed attempts (gpuctl.routing.outcomes.Attempt), for code that decides
        # (an HTTP status, a retry time): errors sit below routing, so they are not typed here.
        self.attempts = attempts
        if credentials:  # every provider refused its key: exit 3, like any credentials problem
            self.exit_code = EXIT_CONFIG


class LockHeldError(GpuctlError):
    """Another gpuctl process holds the lock (e.g. a concurrent cleanup)."""
