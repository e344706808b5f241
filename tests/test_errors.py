"""The error tree: drawn at the top of errors.py, exit codes by class, kinds as typed values."""

from __future__ import annotations

import inspect
import json
import re

import pytest

from gpuctl import errors
from gpuctl.errors import FAILOVER_KINDS, Kind, ProviderError, StreamBrokenError


def _classes() -> dict[str, type]:
    return {name: cls for name, cls in vars(errors).items()
            if inspect.isclass(cls) and issubclass(cls, Exception) and cls.__module__ == errors.__name__}


def test_the_drawn_tree_is_every_class_with_its_parent() -> None:
    doc = errors.__doc__ or ""
    drawn: dict[str, str | None] = {}
    parents: list[tuple[int, str]] = []
    for line in doc.splitlines():
        match = re.match(r"^(\s*(?:[│ ]*[├└]── )?)(\w+Error)\b", line)
        if not match:
            continue
        depth = len(match.group(1))
        while parents and parents[-1][0] >= depth:
            parents.pop()
        drawn[match.group(2)] = parents[-1][1] if parents else None
        parents.append((depth, match.group(2)))
    classes = _classes()
    assert set(drawn) == set(classes)
    for name, parent in drawn.items():
        base = classes[name].__bases__[0]
        assert (base.__name__ if base is not Exception else None) == parent, name


def test_kinds_keep_their_text() -> None:
    error = ProviderError("x", provider="p", kind="auth")
    assert error.kind is Kind.AUTH and error.kind == "auth" and json.dumps(error.kind) == '"auth"'
    assert error.exit_code == errors.EXIT_CONFIG
    assert StreamBrokenError("x", provider="p").kind is Kind.STREAM_CUT
    with pytest.raises(ValueError):
        ProviderError("x", provider="p", kind="no_such_kind")


def test_failover_and_breaker_by_kind() -> None:
    assert {"connect", "timeout", "http", "cold", "rate_limit", "malformed", "stream_cut", "auth",
            "not_found", "unsupported"} == FAILOVER_KINDS
    unsupported = ProviderError("x", provider="p", kind=Kind.UNSUPPORTED)  # a capability: try the next, no breaker
    assert unsupported.failover and not unsupported.counts_against_breaker
    assert ProviderError.FAILOVER_KINDS is FAILOVER_KINDS
    cold = ProviderError("x", provider="p", kind=Kind.COLD)
    bad = ProviderError("x", provider="p", kind=Kind.BAD_REQUEST)
    cut = ProviderError("x", provider="p", kind=Kind.STREAM_CUT)
    assert cold.failover and not cold.counts_against_breaker
    assert not bad.failover and not bad.counts_against_breaker
    assert cut.failover and cut.counts_against_breaker and cut.exit_code == errors.EXIT_FAILURE
    # a refused key fails over but never opens a breaker: it is a setting to fix (exit 3)
    refused = ProviderError("x", provider="p", kind=Kind.AUTH, status=401)
    assert refused.failover and not refused.counts_against_breaker and refused.exit_code == errors.EXIT_CONFIG


def test_a_lone_surrogate_in_a_message_becomes_encodable() -> None:
    """A server's JSON may escape half a surrogate pair; the message goes into headers, logs and
    the ledger, none of which can encode it (a ledger row was lost this way)."""
    from gpuctl.errors import GpuctlError, ProviderError

    error = ProviderError("prompt contains invalid text \ud83d near the end", provider="modal", hint="see \udc00")
    assert error.message == "prompt contains invalid text ? near the end" and error.hint == "see ?"
    error.message.encode()  # would raise UnicodeEncodeError
    assert GpuctlError("déjà vu").message == "déjà vu"  # other text untouched
