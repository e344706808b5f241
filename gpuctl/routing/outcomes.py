"""What the router did with each provider, as typed values: reasons, attempts, the fallback.

Owns: `ReasonKind` (why a provider did not answer, including "it cannot do this request"), `Reason` and `Attempt` (frozen, with a
`text` for display), `Fallback` (the attempts worth telling the user about an answer),
`RoutedResponse` (a `ChatResponse` carrying its `Fallback`), and `give_up` (which error ends a
request nobody answered). Decisions read the typed fields, never
the text: the text is rendering only, and it reads as it always did ("modal: waking up (cold
start, usually 10–30 s)"), because the ledger, `--json` and the chat stats line show it.

Must not: do I/O, read settings, or know a provider's name.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, fields

from gpuctl.errors import AllProvidersFailedError, Kind, NoProviderError, ProviderError
from gpuctl.providers.base import ChatResponse, Unsupported, UnsupportedError
from gpuctl.providers.chat_api import RequestError
from gpuctl.routing.registry import NO_PROVIDER_HINT

STOPPED = "stopped by user"  # the ledger's error for an answer the user interrupted
# How to get past an open breaker without waiting for its cooldown (a deep probe that
# generates a token closes it: `routing.status`).
RETRY_NOW = ("a breaker closes by itself at the time shown; to retry now, `gpuctl status --deep` probes "
             "every provider and closes the breaker of each one that answers")


def without_name(provider: str, message: str) -> str:
    """A provider's message without its own name in front, so reasons read 'modal: refused'
    once (VLLMEndpoint starts its messages with its name). Display only: never inspected."""
    prefix = f"{provider}: "
    return message[len(prefix):] if message.startswith(prefix) else message


class Outcome(enum.Enum):
    """What became of one provider for one request (the answering one has no attempt)."""

    SKIPPED = "skipped"  # not tried: not configured, its breaker says no, or it cannot do the request
    COLD = "cold"  # scaled to zero and waking up: tried later only if nobody else answers
    FAILED = "failed"  # tried (or probed) and it failed


class ReasonKind(enum.Enum):
    NOT_CONFIGURED = "not_configured"
    BREAKER_OPEN = "breaker_open"
    HALF_OPEN_PROBING = "half_open_probing"  # another request (in any process) probes it now
    WAKING = "waking"  # a short health probe found it cold: it is starting a container
    STILL_WAKING = "still_waking"  # probed cold moments ago: not probed again yet
    WAKE_TIMED_OUT = "wake_timed_out"  # "waking" for longer than any cold start: down
    FAILED = "failed"  # an error (`error_kind` is the ProviderError kind) or a failed probe
    UNSUPPORTED = "unsupported"  # it cannot do what the request asks ("cannot do n=2"; `param` names it)


_OUTCOME = {
    ReasonKind.NOT_CONFIGURED: Outcome.SKIPPED,
    ReasonKind.BREAKER_OPEN: Outcome.SKIPPED,
    ReasonKind.HALF_OPEN_PROBING: Outcome.SKIPPED,
    ReasonKind.WAKING: Outcome.COLD,
    ReasonKind.STILL_WAKING: Outcome.COLD,
    ReasonKind.WAKE_TIMED_OUT: Outcome.FAILED,
    ReasonKind.FAILED: Outcome.FAILED,
    ReasonKind.UNSUPPORTED: Outcome.SKIPPED,
}


@dataclass(frozen=True)
class Reason:
    """Why one provider did not answer. `detail` is display material (a hint, the breaker's
    words, an error message without the provider's name); `seconds` is how long it has been
    waking; `error_kind` is the failure's `ProviderError.kind` ("timeout", "auth", ...);
    `param` the OpenAI parameter a provider cannot do (UNSUPPORTED)."""

    kind: ReasonKind
    detail: str = ""
    error_kind: str | None = None
    seconds: float | None = None
    param: str | None = None
    retry_after_s: float | None = None  # a rate limit's Retry-After (FAILED with error_kind rate_limit)

    @classmethod
    def not_configured(cls, hint: str) -> Reason:
        return cls(ReasonKind.NOT_CONFIGURED, hint)

    @classmethod
    def breaker_open(cls, why: str) -> Reason:
        return cls(ReasonKind.BREAKER_OPEN, why)

    @classmethod
    def half_open_probing(cls) -> Reason:
        return cls(ReasonKind.HALF_OPEN_PROBING)

    @classmethod
    def waking(cls) -> Reason:
        return cls(ReasonKind.WAKING)

    @classmethod
    def still_waking(cls, seconds: float) -> Reason:
        return cls(ReasonKind.STILL_WAKING, seconds=seconds)

    @classmethod
    def wake_timed_out(cls, seconds: float, detail: str) -> Reason:
        return cls(ReasonKind.WAKE_TIMED_OUT, detail, seconds=seconds)

    @classmethod
    def failed(cls, detail: str, error_kind: str | None = None) -> Reason:
        return cls(ReasonKind.FAILED, detail, error_kind)

    @classmethod
    def unsupported(cls, what: Unsupported) -> Reason:
        return cls(ReasonKind.UNSUPPORTED, what.text, param=what.param)

    @classmethod
    def from_error(cls, provider: str, exc: ProviderError) -> Reason:
        if isinstance(exc, UnsupportedError):  # e.g. a vLLM started without tool calling
            return cls(ReasonKind.UNSUPPORTED, without_name(provider, exc.message), exc.kind, param=exc.param)
        return cls(ReasonKind.FAILED, without_name(provider, exc.message), exc.kind,
                   retry_after_s=exc.retry_after_s)

    @property
    def outcome(self) -> Outcome:
        return _OUTCOME[self.kind]

    @property
    def text(self) -> str:
        """The reason in words, without the provider's name."""
        kind = self.kind
        if kind is ReasonKind.NOT_CONFIGURED:
            return f"not configured ({self.detail})"
        if kind is ReasonKind.HALF_OPEN_PROBING:
            return "breaker half-open: another request is probing it"
        if kind is ReasonKind.WAKING:
            return "waking up (cold start, usually 10–30 s)"
        if kind is ReasonKind.STILL_WAKING:
            return f"still waking up (cold start began {self.seconds or 0:.0f}s ago)"
        if kind is ReasonKind.WAKE_TIMED_OUT:
            return f"still not answering {self.seconds or 0:.0f}s after it began waking up ({self.detail})"
        return self.detail  # BREAKER_OPEN: the breaker's words; FAILED: the error's; UNSUPPORTED: "cannot do n=2"


@dataclass(frozen=True)
class Attempt:
    """What the router did with one provider for one request."""

    provider: str
    reason: Reason

    @property
    def outcome(self) -> Outcome:
        return self.reason.outcome

    @property
    def text(self) -> str:
        """'modal: waking up (cold start, usually 10–30 s)'."""
        return f"{self.provider}: {self.reason.text}"


@dataclass(frozen=True)
class Fallback:
    """Why an answer came from a later provider: the failures, open breakers and cold starts
    before it (providers that are simply not configured are not news)."""

    attempts: tuple[Attempt, ...]

    @classmethod
    def of(cls, attempts: Iterable[Attempt]) -> Fallback | None:
        told = tuple(a for a in attempts if a.reason.kind is not ReasonKind.NOT_CONFIGURED)
        return cls(told) if told else None

    @property
    def text(self) -> str:
        """'modal: waking up (…); vastai: breaker open until …': the ledger's and JSON's
        `fallback_reason`."""
        return "; ".join(a.text for a in self.attempts)


@dataclass(frozen=True)
class RoutedResponse(ChatResponse):
    """A complete answer as the router returns it: a `ChatResponse` (with `fallback_reason`
    as text, as always) that also carries the typed `fallback`."""

    fallback: Fallback | None = None

    @classmethod
    def of(cls, response: ChatResponse, *, provider: str, latency_s: float,
           fallback: Fallback | None) -> RoutedResponse:
        values = {f.name: getattr(response, f.name) for f in fields(ChatResponse)}
        values.update(provider=provider, latency_s=latency_s,
                      fallback_reason=None if fallback is None else fallback.text)
        return cls(**values, fallback=fallback)


def fallback_reason(attempts: Sequence[Attempt]) -> str | None:
    """`Fallback.of(attempts)` as text, or None (the `fallback_reason` string of an answer)."""
    fallback = Fallback.of(attempts)
    return None if fallback is None else fallback.text


def keys_refused(failures: Iterable[str | None]) -> bool:
    """The one rule, for chat and `gpuctl status` alike, for "the key was refused" (exit 3): some
    provider could not answer, and each that could not refused its key. `failures` holds the
    `ProviderError.kind` of each provider that was tried and failed, and None for each one its
    open breaker kept out (a breaker opens for an outage: never a refused key)."""
    kinds = list(failures)
    return bool(kinds) and all(kind == Kind.AUTH for kind in kinds)


def join_hints(first: str | None, then: str) -> str:
    """Two hints as one: "Set X in your profile. A breaker closes…", never "profile.; a breaker"."""
    if not first:
        return then
    first = first.rstrip()
    if first.endswith((".", "!", "?")):
        return f"{first} {then[:1].upper()}{then[1:]}"
    return f"{first}; {then}"


def give_up(attempts: Sequence[Attempt], last: ProviderError | None) -> Exception:
    """The error for a request no provider answered: nothing configured (exit 3), a request
    no configured provider can serve (a `RequestError` naming the parameter: a 400), the one
    request error as it is (a 400 is the request's fault), or every reason in one message."""
    told = [a for a in attempts if a.reason.kind is not ReasonKind.NOT_CONFIGURED]
    if not told:
        if len(attempts) == 1:  # one provider was asked for by name
            return NoProviderError(f"{attempts[0].provider} is not configured", hint=attempts[0].reason.detail)
        return NoProviderError("no provider is configured", hint=NO_PROVIDER_HINT)
    if all(a.reason.kind is ReasonKind.UNSUPPORTED for a in told):
        cannot = "; ".join(f"{a.provider} {a.reason.detail}" for a in told)
        return RequestError(f"no configured provider can serve this request: {cannot}", param=told[0].reason.param,
                            hint=last.hint if last is not None and last.hint else
                            "drop or change that parameter, or configure a provider that can do it")
    failed = [a for a in told if a.outcome is Outcome.FAILED]
    if last is not None and len(failed) == 1 and not last.failover:
        return last
    reasons = [a.text for a in told]
    hint = last.hint if last is not None else "see `gpuctl status` for each provider's health"
    blocked = [a for a in told if a.reason.kind in (ReasonKind.BREAKER_OPEN, ReasonKind.HALF_OPEN_PROBING)]
    if blocked:
        hint = join_hints(hint if last is not None and last.hint else None, RETRY_NOW)
    # A breaker opens for an outage, never for a refused key (`keys_refused`: status's rule too).
    credentials = keys_refused([a.reason.error_kind for a in failed] + [None for _ in blocked])
    if credentials:
        refused = "the key was refused" if len(failed) == 1 else "the keys were refused"
        message = f"{refused}: " + "; ".join(reasons)
    else:
        message = "no provider could answer: " + "; ".join(reasons)
    return AllProvidersFailedError(message, reasons=reasons, hint=hint, credentials=credentials, attempts=tuple(told))
