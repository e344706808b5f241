"""Masking of secrets in anything gpuctl shows, logs or writes as JSON.

Pure string functions, no imports beyond `re`, so that logging and the CLI can use them
without pulling in the HTTP stack.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

# Key-looking tokens: Anthropic, Hugging Face, Modal, OpenAI-style, and any Bearer credential.
_PATTERNS = (
    re.compile(r"(?i)(bearer\s+)[A-Za-z0-9._~+/=-]{4,}"),
    re.compile(r"\bsk-ant-[A-Za-z0-9_-]{6,}"),
    re.compile(r"\bsk-[A-Za-z0-9_-]{16,}"),
    re.compile(r"\bhf_[A-Za-z0-9]{10,}"),
    re.compile(r"\b(?:ak|as|wk|ws)-[A-Za-z0-9]{16,}"),
    re.compile(r"(?i)((?:api[_-]?key|token|secret|password)=)[^&\s\"']+"),
)

SECRET_WORDS = ("key", "token", "secret", "password", "authorization")


def redact(text: str) -> str:
    """Return `text` with anything that looks like a credential replaced by `***`."""
    out = text
    for pattern in _PATTERNS:
        if pattern.groups:
            out = pattern.sub(lambda m: m.group(1) + "***", out)
        else:
            out = pattern.sub("***", out)
    return out


def is_secret_name(name: str) -> bool:
    """Whether a setting or field name holds a credential (api_key, token_secret, ...)."""
    lowered = name.lower()
    return any(word in lowered for word in SECRET_WORDS) and not lowered.endswith(("_tokens", "max_tokens"))


def mask_secret(value: str | None) -> str | None:
    """Show enough of a key to recognise it, never enough to use it: `sk-ant-…f3a9`."""
    if not value:
        return value
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
