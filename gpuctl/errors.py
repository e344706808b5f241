"""One error tree for gpuctl, each class carrying its exit code and an optional hint.

Everything below `cli/` raises these; only `cli/main.py` turns them into an `Error: ...` line
(or a JSON envelope) and an exit code. Nothing here prints or exits.
"""

from __future__ import annotations

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
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return self.message


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


class ProviderError(GpuctlError):
    """A provider or its API failed. `kind` says how, so the router can decide to fail over.

    kinds: "connect" (refused, DNS), "timeout", "http" (an error status), "auth" (401/403),
    "not_found" (404, e.g. unknown model), "cold" (503 while a scaled-to-zero GPU wakes),
    "rate_limit" (429), "malformed" (not the JSON or SSE we expect), "stream_cut" (the
    stream ended without its terminator), "bad_request" (400: our request is wrong, a
    different provider would not help).
    """

    # Kinds where trying the next provider can help; a 400 means our request is wrong.
    FAILOVER_KINDS = frozenset(
        {"connect", "timeout", "http", "cold", "rate_limit", "malformed", "stream_cut", "auth", "not_found"}
    )

    def __init__(
        self,
        message: str,
        *,
        provider: str,
        kind: str = "http",
        status: int | None = None,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.provider = provider
        self.kind = kind
        self.status = status

    @property
    def exit_code(self) -> int:  # type: ignore[override]
        # A refused key is a credentials problem (exit 3), whichever provider refused it.
        return EXIT_CONFIG if self.kind == "auth" else EXIT_FAILURE

    @property
    def failover(self) -> bool:
        return self.kind in self.FAILOVER_KINDS

    @property
    def counts_against_breaker(self) -> bool:
        """A cold start or our own bad request says nothing about the backend's health."""
        return self.kind not in {"cold", "bad_request"}


class StreamBrokenError(ProviderError):
    """A stream failed after text was already shown: the request is not silently re-sent."""

    def __init__(self, message: str, *, provider: str, partial_text: str = "", hint: str | None = None) -> None:
        super().__init__(message, provider=provider, kind="stream_cut", hint=hint)
        self.partial_text = partial_text


class NoProviderError(ConfigError):
    """No provider is configured at all."""


class AllProvidersFailedError(GpuctlError):
    """Every configured provider was tried (or skipped) and none answered."""

    def __init__(self, message: str, *, reasons: list[str], hint: str | None = None,
                 credentials: bool = False) -> None:
        super().__init__(message, hint=hint)
        self.reasons = reasons
        if credentials:  # every provider refused its key: exit 3, like any credentials problem
            self.exit_code = EXIT_CONFIG


class LockHeldError(GpuctlError):
    """Another gpuctl process holds the lock (e.g. a concurrent cleanup)."""
