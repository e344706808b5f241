"""How a vLLM OpenAI-compatible server fails, in the error tree: every httpx transport error,
error status and unexpected body becomes a `ProviderError` (kind + one-line message + hint).

A private helper of `openai_compat.VLLMEndpoint`, which builds one `VLLMErrors` per failure with
its provider name, public endpoint and timeouts; also the endpoint URL's validation
(`normalise_base_url`) and public form (`public_endpoint`), and `raise_broken` (a failure after text was shown). Pure: no I/O (listing the served models for a
404 is the client's job), no printing, and no key in a message (every message is redacted).
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from typing import Any, NoReturn

import httpx

from gpuctl.errors import ConfigError, Kind, ProviderError, StreamBrokenError, retry_after_seconds
from gpuctl.http.client import Timeouts
from gpuctl.providers.base import HealthStatus, UnsupportedError
from gpuctl.redact import redact

MAX_DETAIL = 200  # longest piece of a server's message quoted in ours
HTML_PAGE = "got an HTML page, not JSON — a proxy error?"
_DNS_FAILURES = ("name or service not known", "nodename nor servname", "getaddrinfo", "name resolution")


def one_line(text: str, limit: int = MAX_DETAIL) -> str:
    """Server text on one line, shortened, redacted."""
    text = " ".join(text.split())
    return redact(text if len(text) <= limit else text[: limit - 1] + "…")


def looks_like_html(content_type: str, body: bytes) -> bool:
    if "html" in content_type.lower():
        return True
    head = body[:200].lstrip().lower()
    return head.startswith((b"<!doctype html", b"<html", b"<head", b"<body"))


def server_message(body: bytes | str) -> str | None:
    """vLLM's error text from {"error": {"message"}}, {"error": "..."} or {"detail": ...}."""
    try:
        data = json.loads(body)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    error = data.get("error")
    if isinstance(error, dict) and error.get("message"):
        return str(error["message"])
    if isinstance(error, str):
        return error
    if data.get("detail"):
        return str(data["detail"])
    return None


def refuses_tools(body: bytes) -> bool:
    """Is this 400 vLLM refusing `tools` because it was started without tool calling?"""
    server = server_message(body) or ""
    return "enable-auto-tool-choice" in server or "tool-call-parser" in server


def names_a_model(body: bytes) -> str | None:
    """The server's message when a 404 is about the model (not the path), else None."""
    server = server_message(body) or ""
    return server if "model" in server.lower() else None


def health_of(error: ProviderError, *, deep: bool) -> tuple[HealthStatus, str]:
    """What a failed /v1/models (or, when `deep`, a failed 1-token completion) says about health."""
    if not deep:
        return ("unhealthy" if error.kind in (Kind.AUTH, Kind.CONNECT) else "degraded"), error.message
    if error.kind in (Kind.COLD, Kind.TIMEOUT):
        return "cold", error.message
    if error.kind in (Kind.AUTH, Kind.NOT_FOUND, Kind.BAD_REQUEST):
        return "unhealthy", error.message
    return "degraded", f"/health answered, but it cannot generate: {error.message}"


@dataclass(frozen=True)
class VLLMErrors:
    """The ProviderErrors of one endpoint: `provider` names it, `endpoint` is its public URL."""

    provider: str
    endpoint: str
    timeouts: Timeouts
    has_key: bool

    def error(self, message: str, *, kind: Kind, status: int | None = None, hint: str | None = None) -> ProviderError:
        return ProviderError(redact(message), provider=self.provider, kind=kind, status=status, hint=hint)

    def tools_refused(self, why: str) -> UnsupportedError:
        """vLLM answered 400 to `tools`: it was started without tool calling (a capability, not a fault)."""
        return UnsupportedError(
            f"{self.provider}: cannot call tools: {why}", provider=self.provider, param="tools",
            hint="redeploy with gpuctl (its vLLM deployments turn tool calling on), or start vLLM with "
                 "--enable-auto-tool-choice --tool-call-parser <parser> (hermes for Qwen2.5)")

    def malformed(self, what: str, why: str) -> ProviderError:
        return self.error(f"{self.provider}: unexpected {what} from {self.endpoint}: {why}", kind=Kind.MALFORMED)

    def transport(self, exc: httpx.HTTPError, what: str) -> ProviderError:
        p, where = self.provider, self.endpoint
        if isinstance(exc, httpx.ConnectTimeout):
            return self.error(
                f"{p}: timed out connecting to {where} after {self.timeouts.connect:g}s",
                kind=Kind.CONNECT,
                hint="the host is unreachable: check the URL, your network, or whether the instance still exists",
            )
        if isinstance(exc, httpx.ConnectError):
            text = str(exc).lower()
            if any(s in text for s in _DNS_FAILURES):
                return self.error(
                    f"{p}: cannot resolve the host of {where}",
                    kind=Kind.CONNECT,
                    hint="check the endpoint URL (a Modal app that was stopped loses its URL)",
                )
            return self.error(
                f"{p}: cannot connect to {where} (connection refused): the endpoint is down",
                kind=Kind.CONNECT,
                hint="start or redeploy the server; a vLLM server whose engine died exits, so it refuses connections",
            )
        if isinstance(exc, httpx.ReadTimeout):
            return self.error(
                f"{p}: no response from {where} within {self.timeouts.first_byte:g}s ({what})",
                kind=Kind.TIMEOUT,
                hint="a cold start may take longer than the first-byte timeout: raise it, or retry in a minute",
            )
        if isinstance(exc, httpx.TimeoutException):
            return self.error(f"{p}: {what} timed out ({type(exc).__name__})", kind=Kind.TIMEOUT)
        if isinstance(exc, httpx.RemoteProtocolError | httpx.ReadError):
            return self.error(
                f"{p}: {where} closed the connection before the response was complete ({what})",
                kind=Kind.STREAM_CUT,
                hint="the server may have crashed or restarted; the answer was not used",
            )
        if isinstance(exc, httpx.DecodingError):
            return self.error(f"{p}: could not decode the response to {what}", kind=Kind.MALFORMED)
        return self.error(f"{p}: {what} failed: {type(exc).__name__}: {one_line(str(exc))}", kind=Kind.CONNECT)

    def status(self, response: httpx.Response, body: bytes, what: str) -> ProviderError:
        """An error status. A 404 that names a model is `model_not_found`'s (the caller asks)."""
        status, p, where = response.status_code, self.provider, self.endpoint
        if looks_like_html(response.headers.get("content-type", ""), body):
            detail = HTML_PAGE
        else:
            server = server_message(body)
            detail = one_line(server) if server else (one_line(body.decode("utf-8", "replace")) or "no details")
        if status in (401, 403):
            sent = "the API key was refused" if self.has_key else "no API key was sent"
            return self.error(
                f"{p}: HTTP {status} from {where}: {sent}", kind=Kind.AUTH, status=status,
                hint=f"set {p}.api_key to the key the vLLM server was started with (--api-key)",
            )
        if status == 404:
            return self.error(
                f"{p}: HTTP 404 for {what} at {where}: {detail}", kind=Kind.NOT_FOUND, status=404,
                hint="is this the root of a vLLM OpenAI-compatible server? (the URL should not include a path)",
            )
        if status == 503:
            return self.error(
                f"{p}: HTTP 503 from {where}: cold start or GPU quota ({detail})", kind=Kind.COLD, status=503,
                hint="from a provider that scales to zero (Modal), a container may be waking: retry in a minute; "
                     "otherwise (or if it persists) the server is overloaded or down: `gpuctl status` shows it",
            )
        if status == 429:
            after = response.headers.get("retry-after")
            limited = self.error(
                f"{p}: rate limited by {where} (HTTP 429{f', retry after {after}s' if after else ''})",
                kind=Kind.RATE_LIMIT, status=429, hint="wait and retry, or lower the request rate",
            )
            limited.retry_after_s = retry_after_seconds(after)
            return limited
        if status == 400 or status == 422:
            return self.error(
                f"{p}: the server rejected the request: {detail}", kind=Kind.BAD_REQUEST, status=status,
                hint="check max_tokens against the model's context length and the message format",
            )
        return self.error(
            f"{p}: HTTP {status} {response.reason_phrase or ''} from {where} ({what}): {detail}",
            kind=Kind.HTTP,
            status=status,
            hint="a proxy in front of the server answered: the server behind it may be down or restarting"
            if detail.startswith("got an HTML page")
            else "the server failed: check its logs",
        )

    def model_not_found(self, server: str, served: list[str]) -> ProviderError:
        wanted = re.search(r"`([^`]*)`", server)
        name = f"'{wanted.group(1)}' " if wanted else ""
        served_text = ", ".join(served) if served else "unknown"
        return self.error(
            f"{self.provider}: model {name}is not served at {self.endpoint}; served: {served_text}",
            kind=Kind.NOT_FOUND,
            status=404,
            hint=f"set {self.provider}.model to a served name (or leave it unset to use the server's model)",
        )

    def body(self, response: httpx.Response, body: bytes, what: str) -> Any:
        """The JSON of a 200 answer, or the error for an HTML page or broken JSON."""
        if looks_like_html(response.headers.get("content-type", ""), body):
            raise self.error(
                f"{self.provider}: {what} at {self.endpoint}: {HTML_PAGE}",
                kind=Kind.MALFORMED,
                status=response.status_code,
            )
        try:
            return json.loads(body)
        except ValueError:
            raise self.error(
                f"{self.provider}: {what} at {self.endpoint} returned malformed JSON ({len(body)} bytes)",
                kind=Kind.MALFORMED,
                status=response.status_code,
                hint="is this a vLLM OpenAI-compatible server?",
            ) from None

    def not_sse(self, content_type: str, raw: bytes) -> ProviderError:
        if looks_like_html(content_type, raw):
            return self.malformed("streaming chat", HTML_PAGE)
        return self.malformed("streaming chat", f"expected an SSE stream, got {content_type or 'no content type'}")

    def stalled(self, gap: float) -> ProviderError:
        return self.error(
            f"{self.provider}: the stream from {self.endpoint} stalled: no data for {gap:g}s",
            kind=Kind.TIMEOUT,
            hint="the server may be overloaded or stuck; the partial answer was not used",
        )

    def incomplete(self) -> ProviderError:
        return self.error(
            f"{self.provider}: the stream from {self.endpoint} ended before its finish (no [DONE] or no finish reason): the answer is incomplete",
            kind=Kind.STREAM_CUT,
            hint="the server may have crashed or restarted; retry the request",
        )


def normalise_base_url(base_url: str) -> str:
    """The server root: no trailing slash, no trailing /v1 (users paste either form)."""
    url = base_url.strip().rstrip("/")
    if url.endswith("/v1"):
        url = url[: -len("/v1")]
    parsed = httpx.URL(url) if url else None
    if parsed is None or parsed.scheme not in ("http", "https") or not parsed.host:
        raise ConfigError(
            f"endpoint URL must look like https://host or http://host:port, got {redact(base_url)!r}",
            hint="set the provider's URL to the vLLM server root (a trailing /v1 is fine)",
        )
    return url


def public_endpoint(root: str) -> str:
    """A server root as the OpenAI base URL users paste into other tools: "<root>/v1",
    without credentials, query or fragment."""
    url = httpx.URL(root).copy_with(username=None, password=None, query=None, fragment=None)
    return redact(str(url).rstrip("/")) + "/v1"


def raise_broken(exc: ProviderError, shown: list[str]) -> NoReturn:
    """Once text has been shown, a failure must not look like a clean (fail-over-able) error."""
    if shown and not isinstance(exc, StreamBrokenError):
        raise StreamBrokenError(
            exc.message,
            provider=exc.provider,
            partial_text="".join(shown),
            hint="the text shown so far is incomplete; the request was not re-sent",
        ) from None
    raise exc
