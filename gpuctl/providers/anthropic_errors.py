"""How the `anthropic` SDK fails, in the error tree: its exceptions → `ProviderError`.

A private helper of `anthropic.AnthropicProvider`. It imports the SDK only inside `map` (the
SDK is already loaded by then: an error came from it), never at module level, and it never
puts the API key in a message: server text is scrubbed of it (a proxy may echo it).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from typing import Any

from gpuctl.errors import Kind, ProviderError, retry_after_seconds
from gpuctl.providers.anthropic_mapping import NAME

KEY_HINT = "Set ANTHROPIC_API_KEY, or anthropic.api_key in your gpuctl profile."


def _error(message: str, kind: Kind, status: int | None = None, hint: str | None = None) -> ProviderError:
    return ProviderError(message, provider=NAME, kind=kind, status=status, hint=hint)


@dataclass(frozen=True)
class AnthropicErrors:
    """The mapping for one provider: its timeout and endpoint go into messages, its key never."""

    timeout_s: float
    endpoint: str
    api_key: str | None = field(default=None, repr=False)

    def map(self, exc: Exception, *, in_stream: bool = False) -> ProviderError | None:
        """The ProviderError for an SDK/transport failure; None for anything else (a bug)."""
        import anthropic
        import httpx2  # the SDK's HTTP stack; already imported by `anthropic`

        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, anthropic.APITimeoutError):
            return _error(f"Anthropic API timed out after {self.timeout_s:g} s", Kind.TIMEOUT)
        if isinstance(exc, anthropic.APIConnectionError):
            return _error(f"cannot connect to the Anthropic API at {self.endpoint}", Kind.CONNECT)
        if isinstance(exc, anthropic.APIStatusError):
            return self.status(exc, in_stream=in_stream)
        if isinstance(exc, anthropic.APIResponseValidationError | json.JSONDecodeError):
            # JSON that does not parse: a proxy's error page, a garbled event.
            return _error(
                "Anthropic API answered with something that is not its JSON (check anthropic.base_url)",
                Kind.MALFORMED,
            )
        if isinstance(exc, httpx2.TimeoutException):
            return _error(f"Anthropic stream stalled for {self.timeout_s:g} s", Kind.TIMEOUT)
        if isinstance(exc, httpx2.TransportError):
            # Raised while reading a stream body: the SDK only wraps errors of the request itself.
            return _error("Anthropic stream was cut off before it finished", Kind.STREAM_CUT)
        return None

    def status(self, exc: Any, *, in_stream: bool) -> ProviderError:
        """An `APIStatusError` (or an `event: error` inside a 200 stream) by its status."""
        status: int = exc.status_code
        detail = self.scrub(getattr(exc, "api_message", None) or getattr(exc, "type", None) or "")
        suffix = f": {detail}" if detail else ""
        if status < 400:
            # An `event: error` inside a 200 stream (e.g. overloaded_error mid-answer).
            return _error(f"Anthropic stream failed with an error event{suffix}", Kind.STREAM_CUT, status)
        if status in (401, 403):
            what = "rejected the API key" if status == 401 else "refused the request (permission)"
            return _error(f"Anthropic API {what} ({status})", Kind.AUTH, status, hint=KEY_HINT)
        if status == 404:
            return _error(f"Anthropic API: not found ({status}){suffix}", Kind.NOT_FOUND, status,
                          hint="Check anthropic.model (e.g. claude-haiku-4-5).")
        if status == 429:
            retry_after = exc.response.headers.get("retry-after")
            wait = f"; retry after {self.scrub(retry_after)} s" if retry_after else ""
            limited = _error(f"Anthropic API rate limit (429){wait}", Kind.RATE_LIMIT, status)
            limited.retry_after_s = retry_after_seconds(retry_after)
            return limited
        if status == 529:
            return _error("Anthropic API is overloaded (529)", Kind.HTTP, status)
        if status >= 500:
            return _error(f"Anthropic API server error ({status}){suffix}", Kind.HTTP, status)
        if status in (400, 413, 422):
            return _error(f"Anthropic API rejected the request ({status}){suffix}", Kind.BAD_REQUEST, status)
        if status == 402:
            return _error("Anthropic API: payment required (402)", Kind.HTTP, status,
                          hint="Check the billing of the Anthropic account behind ANTHROPIC_API_KEY.")
        return _error(f"Anthropic API error ({status}){suffix}", Kind.HTTP, status)

    def scrub(self, text: str) -> str:
        """Server text, shortened, with our key removed should a proxy ever echo it."""
        text = " ".join(str(text).split())[:200]
        if self.api_key:
            text = text.replace(self.api_key, "***")
        return text
