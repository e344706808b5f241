"""The one place gpuctl builds httpx clients: explicit timeouts, retries, redacted logging.

Owns: the `Timeouts` budget (with a separate, longer first-byte budget for GPU cold starts),
retry with exponential backoff for 429/502/503/504 (honouring Retry-After), written once as a
wrapping transport so every client gets it (a request can opt out of all but a 429 with
Retry-After: `RETRY_RATE_LIMITED_ONLY`), DEBUG logging of method/URL/status/elapsed on the
"gpuctl.http" logger, and `redact()` for anything that may hold a key.

Must not: know any provider's API, map errors to the error tree (each provider does that),
print, or log a header value, key or token. Imported only on code paths that do HTTP, never
by `gpuctl --help`.
"""

from __future__ import annotations

import asyncio
import email.utils
import functools
import ipaddress
import logging
import ssl
import time
import urllib.request
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime

import httpx

from gpuctl.http import lean
from gpuctl.redact import redact

log = logging.getLogger("gpuctl.http")

RETRY_STATUSES = frozenset({429, 502, 503, 504})

# Statuses that prove the server did not act on the request, so even a POST may be re-sent.
# A 502/504 from a proxy may come after the upstream already acted (e.g. created an instance).
_REFUSED_STATUSES = frozenset({429, 503})

# Methods re-sent after a failure that may have reached the server. PUT is left out on
# purpose: Vast.ai creates instances with `PUT /asks/{id}/`, and a duplicate bills. A request
# can opt in or out with `extensions={"idempotent": True | False}`.
_IDEMPOTENT_METHODS = frozenset({"GET", "HEAD", "OPTIONS", "DELETE"})

# A request that must never be re-sent once it may have reached the server (Vast.ai's create:
# a duplicate bills) sets `extensions={"retry": RETRY_RATE_LIMITED_ONLY}`: only a 429 that
# names its wait (Retry-After) is re-sent, since that answer proves nothing was done. Its
# caller settles every other unknown outcome itself (the create looks for its label).
RETRY_RATE_LIMITED_ONLY = "rate_limited_only"

# A server asking us to wait longer than this is not coming back soon: give its answer to the
# caller (who may fail over) instead of blocking the command.
MAX_RETRY_AFTER = 30.0


@dataclass(frozen=True)
class Timeouts:
    """Time budgets in seconds. httpx's `read` also covers waiting for the response headers,
    so clients get read = `first_byte`; streaming readers bound the gap between chunks with
    `read` themselves (see providers/openai_compat.py)."""

    connect: float = 5.0  # TCP/TLS connect
    first_byte: float = 120.0  # until response headers arrive: long enough for a GPU cold start
    read: float = 30.0  # max gap between chunks once a stream has started
    write: float = 10.0
    pool: float = 5.0

    def as_httpx(self) -> httpx.Timeout:
        return httpx.Timeout(connect=self.connect, read=self.first_byte, write=self.write, pool=self.pool)


# --- redaction: gpuctl.redact owns the patterns -----------------------------------------


class _RedactingFilter(logging.Filter):
    """httpx logs every request's full URL at INFO ("HTTP Request: GET ..."): mask it too."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = redact(record.getMessage())
        record.args = None
        return True


def _install_log_redaction() -> None:
    httpx_log = logging.getLogger("httpx")
    if not any(isinstance(f, _RedactingFilter) for f in httpx_log.filters):
        httpx_log.addFilter(_RedactingFilter())


_install_log_redaction()


def _url_for_log(url: httpx.URL) -> str:
    return redact(str(url.copy_with(username=None, password=None)))


# --- retry policy ------------------------------------------------------------------------


def _is_idempotent(request: httpx.Request) -> bool:
    flag = request.extensions.get("idempotent")
    if isinstance(flag, bool):
        return flag
    return request.method.upper() in _IDEMPOTENT_METHODS


def _rate_limited_only(request: httpx.Request) -> bool:
    return request.extensions.get("retry") == RETRY_RATE_LIMITED_ONLY


def _retry_after(response: httpx.Response) -> float | None:
    """Seconds from a Retry-After header (delta-seconds or an HTTP date), or None."""
    value = response.headers.get("retry-after")
    if not value:
        return None
    value = value.strip()
    try:
        return max(0.0, float(value))
    except ValueError:
        pass
    try:
        when = email.utils.parsedate_to_datetime(value)
    except (TypeError, ValueError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    return max(0.0, (when - datetime.now(UTC)).total_seconds())


@dataclass(frozen=True)
class _RetryPolicy:
    retries: int
    backoff: float

    def _backoff(self, attempt: int) -> float:
        return min(self.backoff * (2**attempt), MAX_RETRY_AFTER)

    def delay_for_response(self, request: httpx.Request, response: httpx.Response, attempt: int) -> float | None:
        """Seconds to wait before re-sending, or None to hand this response to the caller."""
        if attempt >= self.retries or response.status_code not in RETRY_STATUSES:
            return None
        if _rate_limited_only(request):
            wait = _retry_after(response) if response.status_code == 429 else None
            return wait if wait is not None and wait <= MAX_RETRY_AFTER else None
        if response.status_code not in _REFUSED_STATUSES and not _is_idempotent(request):
            return None
        wait = _retry_after(response)
        if wait is None:
            return self._backoff(attempt)
        return wait if wait <= MAX_RETRY_AFTER else None

    def delay_for_error(self, request: httpx.Request, exc: httpx.TransportError, attempt: int) -> float | None:
        if attempt >= self.retries or _rate_limited_only(request):
            return None
        # Never sent: always safe to re-send.
        if isinstance(exc, httpx.ConnectError | httpx.ConnectTimeout | httpx.PoolTimeout):
            return self._backoff(attempt)
        # A read/write timeout already spent its whole budget; re-sending would multiply the
        # wait (and for a POST, maybe the work).
        if isinstance(exc, httpx.TimeoutException):
            return None
        # A dropped connection (stale keep-alive, reset) may have reached the server.
        if isinstance(exc, httpx.NetworkError | httpx.RemoteProtocolError) and _is_idempotent(request):
            return self._backoff(attempt)
        return None


def _log_response(request: httpx.Request, response: httpx.Response, started: float, attempt: int) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "%s %s -> %d in %.3fs%s",
            request.method,
            _url_for_log(request.url),
            response.status_code,
            time.monotonic() - started,
            f" (attempt {attempt + 1})" if attempt else "",
        )


def _log_error(request: httpx.Request, exc: Exception, started: float, attempt: int) -> None:
    if log.isEnabledFor(logging.DEBUG):
        log.debug(
            "%s %s failed after %.3fs: %s: %s%s",
            request.method,
            _url_for_log(request.url),
            time.monotonic() - started,
            type(exc).__name__,
            redact(str(exc)),
            f" (attempt {attempt + 1})" if attempt else "",
        )


def _log_retry(request: httpx.Request, delay: float, why: str) -> None:
    log.debug("retrying %s %s in %.2fs after %s", request.method, _url_for_log(request.url), delay, why)


class _AsyncRetryTransport(httpx.AsyncBaseTransport):
    def __init__(
        self,
        inner: httpx.AsyncBaseTransport,
        policy: _RetryPolicy,
        sleep: Callable[[float], Awaitable[None]],
    ) -> None:
        self._inner = inner
        self._policy = policy
        self._sleep = sleep

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                response = await self._inner.handle_async_request(request)
            except httpx.TransportError as exc:
                _log_error(request, exc, started, attempt)
                delay = self._policy.delay_for_error(request, exc, attempt)
                if delay is None:
                    raise
                _log_retry(request, delay, type(exc).__name__)
            else:
                _log_response(request, response, started, attempt)
                delay = self._policy.delay_for_response(request, response, attempt)
                if delay is None:
                    return response
                await response.aclose()
                _log_retry(request, delay, f"HTTP {response.status_code}")
            await self._sleep(delay)
            attempt += 1

    async def aclose(self) -> None:
        await self._inner.aclose()


class _RetryTransport(httpx.BaseTransport):
    def __init__(self, inner: httpx.BaseTransport, policy: _RetryPolicy, sleep: Callable[[float], None]) -> None:
        self._inner = inner
        self._policy = policy
        self._sleep = sleep

    def handle_request(self, request: httpx.Request) -> httpx.Response:
        attempt = 0
        while True:
            started = time.monotonic()
            try:
                response = self._inner.handle_request(request)
            except httpx.TransportError as exc:
                _log_error(request, exc, started, attempt)
                delay = self._policy.delay_for_error(request, exc, attempt)
                if delay is None:
                    raise
                _log_retry(request, delay, type(exc).__name__)
            else:
                _log_response(request, response, started, attempt)
                delay = self._policy.delay_for_response(request, response, attempt)
                if delay is None:
                    return response
                response.close()
                _log_retry(request, delay, f"HTTP {response.status_code}")
            self._sleep(delay)
            attempt += 1

    def close(self) -> None:
        self._inner.close()


# --- proxies -----------------------------------------------------------------------------


def _env_proxy_mounts() -> dict[str, str | None]:
    """URL pattern -> proxy URL (None: direct), from HTTP(S)_PROXY / ALL_PROXY / NO_PROXY.

    httpx only reads these when no transport is passed, and we always pass one (the retry
    wrapper), so this mirrors what httpx would have done. Loopback is never proxied.
    """
    found = urllib.request.getproxies()
    mounts: dict[str, str | None] = {}
    for scheme in ("http", "https", "all"):
        proxy = found.get(scheme)
        if proxy:
            mounts[f"{scheme}://"] = proxy if "://" in proxy else f"http://{proxy}"
    if not mounts:
        return {}
    for host in [h.strip() for h in found.get("no", "").split(",")] + ["localhost", "127.0.0.1"]:
        if host == "*":
            return {}
        if not host or "/" in host:
            continue  # CIDR ranges cannot be expressed as httpx URL patterns
        try:
            address = ipaddress.ip_address(host.strip("[]"))
        except ValueError:
            mounts[f"all://{host}" if host.lower() == "localhost" else f"all://*{host}"] = None
        else:
            mounts[f"all://[{address}]" if address.version == 6 else f"all://{address}"] = None
    return mounts


# --- builders ----------------------------------------------------------------------------


@functools.cache
def _ssl_context() -> ssl.SSLContext:
    # Loading the CA bundle costs ~20 ms per transport; one context serves every client.
    return httpx.create_ssl_context()


def build_async_client(
    *,
    base_url: str,
    headers: Mapping[str, str] | None = None,
    timeouts: Timeouts = Timeouts(),
    retries: int = 2,
    transport: httpx.AsyncBaseTransport | None = None,
    sleep: Callable[[float], Awaitable[None]] | None = None,
    backoff: float = 0.5,
) -> httpx.AsyncClient:
    """An AsyncClient with gpuctl's timeouts, retries and logging. `retries=0` for callers
    that fail over themselves (the router must not wait on a dead backend)."""
    if retries < 0:
        raise ValueError("retries must be >= 0")
    policy = _RetryPolicy(retries=retries, backoff=backoff)
    do_sleep = sleep or asyncio.sleep

    def wrap(inner: httpx.AsyncBaseTransport) -> httpx.AsyncBaseTransport:
        return _AsyncRetryTransport(inner, policy, do_sleep)

    mounts: dict[str, httpx.AsyncBaseTransport | None] = {}
    if transport is None:
        for pattern, proxy in _env_proxy_mounts().items():
            mounts[pattern] = wrap(httpx.AsyncHTTPTransport(proxy=proxy, verify=_ssl_context()))
        if base_url.startswith("http://") and lean.enabled():
            transport = lean.LeanTransport()  # a vLLM on this host or LAN: see http/lean.py
    return httpx.AsyncClient(
        base_url=base_url,
        headers=dict(headers or {}),
        timeout=timeouts.as_httpx(),
        transport=wrap(transport or httpx.AsyncHTTPTransport(verify=_ssl_context())),
        mounts=mounts or None,
    )


def build_client(
    *,
    base_url: str,
    headers: Mapping[str, str] | None = None,
    timeouts: Timeouts = Timeouts(),
    retries: int = 3,
    transport: httpx.BaseTransport | None = None,
    sleep: Callable[[float], None] | None = None,
    backoff: float = 0.5,
) -> httpx.Client:
    """A sync Client (Vast.ai REST, cleanup) with the same timeouts, retries and logging."""
    if retries < 0:
        raise ValueError("retries must be >= 0")
    policy = _RetryPolicy(retries=retries, backoff=backoff)
    do_sleep = sleep or time.sleep

    def wrap(inner: httpx.BaseTransport) -> httpx.BaseTransport:
        return _RetryTransport(inner, policy, do_sleep)

    mounts: dict[str, httpx.BaseTransport | None] = {}
    if transport is None:
        for pattern, proxy in _env_proxy_mounts().items():
            mounts[pattern] = wrap(httpx.HTTPTransport(proxy=proxy, verify=_ssl_context()))
    return httpx.Client(
        base_url=base_url,
        headers=dict(headers or {}),
        timeout=timeouts.as_httpx(),
        transport=wrap(transport or httpx.HTTPTransport(verify=_ssl_context())),
        mounts=mounts or None,
    )
