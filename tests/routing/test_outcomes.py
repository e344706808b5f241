"""Typed reasons: each kind's words (what the ledger, --json and chat show), what a fallback
tells, and which error ends a request nobody answered."""

from __future__ import annotations

import pytest

from gpuctl.errors import AllProvidersFailedError, NoProviderError, ProviderError
from gpuctl.routing.outcomes import (
    Attempt,
    Fallback,
    Outcome,
    Reason,
    ReasonKind,
    fallback_reason,
    give_up,
    join_hints,
    keys_refused,
    without_name,
)
from gpuctl.routing.registry import NO_PROVIDER_HINT


@pytest.mark.parametrize(("reason", "outcome", "text"), [
    (Reason.not_configured("set MODAL_WEB_URL"), Outcome.SKIPPED, "not configured (set MODAL_WEB_URL)"),
    (Reason.breaker_open("breaker open until 12:00:00 after 3 failures (refused)"), Outcome.SKIPPED,
     "breaker open until 12:00:00 after 3 failures (refused)"),
    (Reason.half_open_probing(), Outcome.SKIPPED, "breaker half-open: another request is probing it"),
    (Reason.waking(), Outcome.COLD, "waking up (cold start, usually 10–30 s)"),
    (Reason.still_waking(10.4), Outcome.COLD, "still waking up (cold start began 10s ago)"),
    (Reason.wake_timed_out(1200.0, "503"), Outcome.FAILED, "still not answering 1200s after it began waking up (503)"),
    (Reason.failed("connection refused", "connect"), Outcome.FAILED, "connection refused"),
])
def test_each_reason_reads_as_before(reason: Reason, outcome: Outcome, text: str) -> None:
    assert reason.outcome is outcome and reason.text == text
    assert Attempt("modal", reason).text == f"modal: {text}"


def test_every_kind_has_an_outcome() -> None:
    assert {Reason(kind).outcome for kind in ReasonKind} == set(Outcome)


def test_an_error_reason_says_the_provider_once() -> None:
    exc = ProviderError("modal: cannot connect (connection refused)", provider="modal", kind="connect")
    reason = Reason.from_error("modal", exc)
    assert (reason.kind, reason.error_kind, reason.detail) == (ReasonKind.FAILED, "connect",
                                                               "cannot connect (connection refused)")
    assert without_name("anthropic", "Anthropic API is overloaded (529)") == "Anthropic API is overloaded (529)"


def test_a_fallback_tells_everything_but_unconfigured_providers() -> None:
    attempts = [Attempt("vastai", Reason.not_configured("set VASTAI_API_KEY")),
                Attempt("modal", Reason.waking()),
                Attempt("endpoint", Reason.half_open_probing())]
    fallback = Fallback.of(attempts)
    assert fallback is not None and [a.provider for a in fallback.attempts] == ["modal", "endpoint"]
    assert fallback.text == fallback_reason(attempts) == (
        "modal: waking up (cold start, usually 10–30 s); endpoint: breaker half-open: another request is probing it")
    assert Fallback.of(attempts[:1]) is None and fallback_reason(attempts[:1]) is None


def test_giving_up_with_nothing_configured() -> None:
    one = give_up([Attempt("endpoint", Reason.not_configured("set endpoint.url (GPUCTL_ENDPOINT_URL) first"))], None)
    assert isinstance(one, NoProviderError) and one.message == "endpoint is not configured"
    assert one.hint == "set endpoint.url (GPUCTL_ENDPOINT_URL) first"  # parentheses and all
    several = give_up([Attempt("modal", Reason.not_configured("a")), Attempt("anthropic", Reason.not_configured("b"))],
                      None)
    assert isinstance(several, NoProviderError) and several.hint == NO_PROVIDER_HINT


def test_giving_up_after_one_request_error_shows_it_as_it_is() -> None:
    bad = ProviderError("anthropic: rejected (400)", provider="anthropic", kind="bad_request", status=400)
    attempts = [Attempt("modal", Reason.not_configured("a")), Attempt("anthropic", Reason.from_error("anthropic", bad))]
    assert give_up(attempts, bad) is bad


def test_giving_up_lists_every_told_reason() -> None:
    last = ProviderError("anthropic: overloaded (529)", provider="anthropic", kind="http", hint="try later")
    attempts = [Attempt("vastai", Reason.not_configured("a")), Attempt("modal", Reason.waking()),
                Attempt("anthropic", Reason.from_error("anthropic", last))]
    error = give_up(attempts, last)
    assert isinstance(error, AllProvidersFailedError) and error.hint == "try later" and error.exit_code == 1
    assert error.reasons == ["modal: waking up (cold start, usually 10–30 s)", "anthropic: overloaded (529)"]
    assert [a.provider for a in error.attempts] == ["modal", "anthropic"]  # typed, for code that decides
    assert error.message == "no provider could answer: " + "; ".join(error.reasons)


def test_an_open_breaker_beside_a_refused_key_is_not_a_credentials_error() -> None:
    """Review B, finding 16: modal's breaker open + a wrong Anthropic key said "the key was
    refused: modal: breaker open…" (exit 3); a breaker opens for an outage, so it is exit 1,
    as `gpuctl status` says (`keys_refused`). And the hints join as sentences."""
    refused = ProviderError("anthropic: Anthropic API refused the key (401)", provider="anthropic", kind="auth",
                            hint="Set ANTHROPIC_API_KEY, or anthropic.api_key in your gpuctl profile.")
    attempts = [Attempt("modal", Reason.breaker_open("breaker open until 12:00:00 after 3 failures (refused)")),
                Attempt("anthropic", Reason.from_error("anthropic", refused))]
    error = give_up(attempts, refused)
    assert isinstance(error, AllProvidersFailedError) and error.exit_code == 1
    assert error.message.startswith("no provider could answer: modal: breaker open")
    assert error.hint is not None and "profile.; " not in error.hint
    assert error.hint.startswith("Set ANTHROPIC_API_KEY, or anthropic.api_key in your gpuctl profile. A breaker closes")
    alone = give_up([Attempt("anthropic", Reason.from_error("anthropic", refused)),
                     Attempt("modal", Reason.not_configured("set MODAL_WEB_URL"))], refused)
    assert isinstance(alone, AllProvidersFailedError) and alone.exit_code == 3  # every one tried refused its key
    assert alone.message.startswith("the key was refused: anthropic: ")


def test_the_one_key_refused_rule() -> None:
    assert keys_refused(["auth"]) and keys_refused(["auth", "auth"])
    assert not keys_refused([]) and not keys_refused(["auth", None]) and not keys_refused(["auth", "connect"])
    assert join_hints(None, "retry") == "retry" and join_hints("check x", "retry") == "check x; retry"
    assert join_hints("Check x. ", "retry now") == "Check x. Retry now"
