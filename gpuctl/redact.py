"""Masking of secrets in anything gpuctl shows, logs or writes as JSON.

Pure string functions, no imports beyond `re`, so that logging and the CLI can use them
without pulling in the HTTP stack.
"""

from __future__ import annotations

import functools
import re
from collections.abc import Iterable, Mapping
from typing import Any

_SECRET_SOURCES: tuple[tuple[str, str], ...] = (
    # Authorization header values ("Bearer token" in prose is left alone).
    (r"(?i)\b(Bearer)\s+(?!(?:token|key)s?\b)[^\s\"',;]+", r"\1 ***"),
    (r"(?i)\b(Basic)\s+[A-Za-z0-9+/=]{8,}", r"\1 ***"),
    # name=value / "name": "value" where the name ends in key/token/secret/password (or is
    # authorization): headers
    # (x-api-key), query strings, JSON, env dumps (MODAL_TOKEN_SECRET=..., HF_TOKEN=...).
    # The lookbehind starts a name only where a word starts: without it a long run of word
    # characters is tried from every position, which is quadratic (a 20 kB `model` took 24 s).
    (
        r"(?i)((?<![\w.\-])[\w.\-]*(?:api[_-]?key|[_-]key|token|secret|password|passwd|authorization)"
        r"[\"']?\s*[:=]\s*[\"']?)"
        r"(?!\*\*\*|Bearer\b|Basic\b|null\b|[^\s\"']*…)[^\s\"'&,;{}\[\]]+",
        r"\1***",
    ),
    # A bare `key=` only in a query string (`?key=...`): in JSON, "key" is an ordinary field name.
    (r"([?&]key=)[^&\s\"']+", r"\1***"),
    (r"\bsk-ant-[A-Za-z0-9_\-]{8,}", "sk-ant-***"),
    (r"\bsk-[A-Za-z0-9_\-]{16,}", "sk-***"),
    (r"\bhf_[A-Za-z0-9]{8,}", "hf_***"),
    (r"\b(ak|as)-[A-Za-z0-9]{12,}", r"\1-***"),  # Modal token id / secret
    # Vast.ai keys are 64 hex digits; image digests ("sha256:<hex>") are kept.
    (r"(?<![:\w])[0-9a-fA-F]{64}(?!\w)", "***"),
    # Credentials inside a URL: scheme://user:pass@host keeps the user, masks the password
    # (an already masked `user:***@` stays as it is).
    # (A scheme starts where no scheme character precedes it: with `\b`, "a.a.a…" is tried from
    # every dot, which is quadratic.)
    (r"((?<![a-zA-Z0-9+.\-])[a-zA-Z0-9+.\-]+://[^/\s:@]*:)(?!\*\*\*@)[^/\s@]+@", r"\1***@"),
)


@functools.cache
def _patterns() -> tuple[tuple[re.Pattern[str], str], ...]:
    # Compiled on first use: `gpuctl --help` never redacts, and compiling costs ~1.5 ms.
    return tuple((re.compile(source), replacement) for source, replacement in _SECRET_SOURCES)


SECRET_WORDS = ("key", "token", "secret", "password", "authorization")


# The secret values this process was configured with (`remember_secrets`), longest first so
# that a key containing another is masked whole. A configured key is masked wherever it
# appears, whatever its shape: an upstream quoting it back in an error names no pattern.
_KNOWN: list[str] = []
_SHORTEST_KNOWN = 8  # shorter values are too likely to be ordinary words to mask everywhere


def remember_secrets(values: Iterable[str], *, named_keys: Iterable[str] = ()) -> None:
    """Mask these values in everything `redact` sees: a key as it is, whole; of a URL its
    password, and the pieces of it a driver may quote; of each list of named keys in
    `named_keys` (`alice:sk-1,bob:sk-2`, serve.api_keys) each key, never its name (names are
    shown: `cost report --by key`)."""
    known = set(_KNOWN)
    for value in values:
        if "://" in value:
            known.update(_url_secrets(value))
        elif len(value.strip()) >= _SHORTEST_KNOWN:
            known.add(value.strip())
    for listed in named_keys:
        for item in re.split(r"[\s,]+", listed.strip()):
            key = item.partition(":")[2] if ":" in item else item
            if len(key) >= _SHORTEST_KNOWN:
                known.add(key)
    _KNOWN[:] = sorted(known, key=len, reverse=True)


def _url_secrets(url: str) -> list[str]:
    """A URL's password, and (with a raw `@`, `/` or `%` in it) the pieces a driver quotes apart:
    libpq reads `pa@ss@host` as host `ss@host`. The user, host and database names are shown, so
    a password equal to one of them (or a piece that is) is left: masking it would mask them."""
    found = _URL_PASSWORD.match(url)
    if found is None:
        return []
    start = len(found.group(1)) + 1
    secret = url[start:found.end() - 1]
    shown = set(re.split(r"[/:@?&=.]", url[:start - 1] + "@" + url[found.end():]))
    pieces = {secret, *re.split(r"[@/%:]", secret)}
    return [p for p in pieces if len(p) >= 3 and p not in shown]


def redact(text: str) -> str:
    """Mask configured secrets, bearer tokens, API keys and URL credentials anywhere in `text`."""
    for secret in _KNOWN:
        if secret in text:
            text = text.replace(secret, "***")
    for pattern, replacement in _patterns():
        text = pattern.sub(replacement, text)
    return text


def is_secret_name(name: str) -> bool:
    """Whether a setting or field name holds a credential (api_key, token_secret, ...)."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS) and not lowered.endswith(("_tokens", "max_tokens"))


# Up to the last `@`: a password may hold `/` or a raw `@` (libpq takes them), and masking too
# much of a URL is better than showing the end of a password.
_URL_PASSWORD = re.compile(r"^([a-zA-Z][a-zA-Z0-9+.\-]*://[^/\s:@]*):\S*@")
_QUERY_PASSWORD = re.compile(r"(?i)([?&]password=)[^&\s]*")


def mask_url(url: str) -> str:
    """A URL with its password masked and the rest kept, so it can still be recognised:
    `postgresql://gpuctl:***@db:5432/gpuctl?sslmode=require` (also `?password=...`)."""
    masked = _URL_PASSWORD.sub(r"\1:***@", url)
    return _QUERY_PASSWORD.sub(r"\1***", masked)


def mask_secret(value: str | None) -> str | None:
    """Show enough of a key to recognise it, never enough to use it: `sk-ant-…f3a9`. A URL
    keeps everything but its password (`mask_url`)."""
    if not value:
        return value
    if "://" in value:
        return mask_url(value)
    if len(value) < 12:
        return "****"
    prefix = ""
    for known in ("sk-ant-", "sk-", "hf_"):
        if value.startswith(known):
            prefix = known
            break
    return f"{prefix}…{value[-4:]}"


def redact_mapping(data: Mapping[str, Any]) -> dict[str, Any]:
    """A copy of `data` (nested) with secret-named values masked and other strings redacted."""
    out: dict[str, Any] = {}
    for key, value in data.items():
        if isinstance(value, Mapping):
            out[key] = redact_mapping(value)
        elif isinstance(value, str) and is_secret_name(str(key)):
            out[key] = mask_secret(value)
        elif isinstance(value, str):
            out[key] = redact(value)
        else:
            out[key] = value
    return out
