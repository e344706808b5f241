"""The Anthropic fallback: our OpenAI-shaped `ChatRequest` over the official `anthropic` SDK.

Owns the message mapping (OpenAI-style turns → `system=` plus alternating user/assistant
turns), the mapping back (text, usage, stop reason, timings) and the mapping of SDK errors to
`ProviderError`. It must not import `anthropic` at module level (the import costs ~1.1 s and
`gpuctl --help` must stay fast), must not retry (the router fails over; the SDK would obey
`retry-after` without a cap), must not read config files, and must never put the API key in
a message, an endpoint or a log.
"""

from __future__ import annotations

import json
import os
import time
from collections.abc import AsyncIterator, Callable, Sequence
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from gpuctl.errors import ProviderError, StreamBrokenError, UsageError
from gpuctl.providers.base import (
    ChatRequest,
    ChatResponse,
    Health,
    HealthStatus,
    Message,
    StreamChunk,
    Usage,
)

if TYPE_CHECKING:
    from anthropic import AsyncAnthropic

NAME = "anthropic"
DEFAULT_MODEL = "claude-haiku-4-5"
DEFAULT_BASE_URL = "https://api.anthropic.com"

# A conversation that opens with an assistant turn (a chat UI's greeting, say) is rejected by
# the API. We keep that turn and put this minimal user turn before it, rather than silently
# dropping what the assistant said.
LEADING_USER_TURN = "(conversation start)"

KEY_HINT = "Set ANTHROPIC_API_KEY, or anthropic.api_key in your gpuctl profile."

# Anthropic's stop reasons in OpenAI's vocabulary, which the rest of gpuctl speaks.
_FINISH_REASONS = {
    "end_turn": "stop",
    "stop_sequence": "stop",
    "max_tokens": "length",
    "model_context_window_exceeded": "length",
    "tool_use": "tool_calls",
    "refusal": "content_filter",
    "pause_turn": "stop",
}

_SYSTEM_ROLES = frozenset({"system", "developer"})  # "developer" is OpenAI's newer name for system


def to_anthropic_messages(messages: Sequence[Message]) -> tuple[str | None, list[dict[str, str]]]:
    """Map OpenAI-style messages to Anthropic's `(system, messages)`. Pure; raises UsageError.

    Rules (the API rejects anything else):
    - every system (or "developer") message, wherever it stands, goes to the top-level
      `system`, joined by blank lines; None when there is none;
    - messages with empty content are dropped (the API rejects empty text blocks);
    - consecutive turns of the same role are merged, joined by a blank line;
    - a conversation that starts with an assistant turn gets `LEADING_USER_TURN` before it;
    - a final assistant turn (a prefill the model continues) loses trailing whitespace,
      which the API rejects there;
    - no user or assistant content at all is a UsageError.
    """
    system_parts: list[str] = []
    turns: list[dict[str, str]] = []
    for message in messages:
        role = message.role
        if role in _SYSTEM_ROLES:
            if message.content.strip():
                system_parts.append(message.content)
            continue
        if role not in ("user", "assistant"):
            raise UsageError(
                f"Anthropic cannot take a message with role {role!r}",
                hint="Use only system, user and assistant messages.",
            )
        if not message.content.strip():
            continue
        if turns and turns[-1]["role"] == role:
            turns[-1]["content"] += "\n\n" + message.content
        else:
            turns.append({"role": role, "content": message.content})

    if not turns:
        raise UsageError(
            "There is nothing to send: the conversation has no user message.",
            hint="Add at least one user message.",
        )
    if turns[0]["role"] == "assistant":
        turns.insert(0, {"role": "user", "content": LEADING_USER_TURN})
    if turns[-1]["role"] == "assistant":
        turns[-1]["content"] = turns[-1]["content"].rstrip()
    system = "\n\n".join(system_parts) if system_parts else None
    return system, turns


def _redact_url(url: str) -> str:
    """The URL without user:password, so it can be shown in `status`."""
    parts = urlsplit(url)
    if parts.username is None and parts.password is None:
        return url
    host = parts.hostname or ""
    if parts.port is not None:
        host = f"{host}:{parts.port}"
    return urlunsplit((parts.scheme, host, parts.path, parts.query, parts.fragment))


class AnthropicProvider:
    """The `Provider` for Anthropic's Messages API, through `anthropic.AsyncAnthropic`."""

    name = NAME

    def __init__(
        self,
        *,
        api_key: str | None,
        model: str = DEFAULT_MODEL,
        max_tokens: int = 2048,
        base_url: str | None = None,
        timeout_s: float = 60.0,
        max_retries: int = 0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._api_key = api_key or None
        self.model = model
        self.max_tokens = max_tokens
        # An empty ANTHROPIC_BASE_URL breaks the SDK instead of meaning "unset": treat it as None.
        self.base_url = (base_url or "").strip() or None
        self.timeout_s = timeout_s
        self.max_retries = max_retries
        self._clock = clock
        self._client: AsyncAnthropic | None = None

    def __repr__(self) -> str:  # never the key
        return f"AnthropicProvider(model={self.model!r}, configured={self.is_configured()})"

    # -- the protocol ---------------------------------------------------------------------

    def is_configured(self) -> bool:
        return bool(self._api_key)

    @property
    def endpoint(self) -> str:
        return _redact_url(self.base_url or DEFAULT_BASE_URL)

    async def health(self, *, deep: bool = False) -> Health:
        """Configured means ready, without a call: every Messages call is billed. `deep`
        sends a 1-token request and reports what happened (it never raises ProviderError)."""
        if not self.is_configured():
            return Health(
                provider=self.name,
                status="unconfigured",
                endpoint=self.endpoint,
                detail=f"no API key. {KEY_HINT}",
            )
        if not deep:
            return Health(
                provider=self.name,
                status="ready",
                endpoint=self.endpoint,
                detail="API key set (not checked; use --deep)",
            )
        client = self._get_client()
        started = self._clock()
        try:
            await client.messages.create(
                model=self.model, max_tokens=1, messages=[{"role": "user", "content": "ping"}]
            )
        except Exception as exc:
            error = self._map_error(exc)
            if error is None:
                raise
            # Busy is not down: the key works, the service is shedding load.
            status: HealthStatus = (
                "degraded" if error.kind == "rate_limit" or error.status == 529 else "unhealthy"
            )
            return Health(
                provider=self.name,
                status=status,
                endpoint=self.endpoint,
                latency_s=self._clock() - started,
                detail=error.message,
            )
        return Health(
            provider=self.name,
            status="ready",
            endpoint=self.endpoint,
            latency_s=self._clock() - started,
            detail=f"{self.model} answered",
            models=(self.model,),
        )

    async def chat(self, request: ChatRequest) -> ChatResponse:
        kwargs = self._create_kwargs(request)
        client = self._get_client()
        started = self._clock()
        try:
            message = await client.messages.create(**kwargs)
        except Exception as exc:
            error = self._map_error(exc)
            if error is None:
                raise
            raise error from exc  # the SDK error stays in the chain for --debug; it holds no key
        latency = self._clock() - started

        content = getattr(message, "content", None)
        usage = getattr(message, "usage", None)
        if not isinstance(content, list) or usage is None:
            raise ProviderError(
                "Anthropic API answered with something that is not a message (check anthropic.base_url)",
                provider=self.name,
                kind="malformed",
            )
        text = "".join(
            block.text
            for block in content
            if getattr(block, "type", None) == "text"
            and isinstance(getattr(block, "text", None), str)
        )
        return ChatResponse(
            text=text,
            provider=self.name,
            model=str(getattr(message, "model", None) or kwargs["model"]),
            usage=Usage(
                prompt_tokens=int(getattr(usage, "input_tokens", 0) or 0),
                completion_tokens=int(getattr(usage, "output_tokens", 0) or 0),
            ),
            finish_reason=_finish_reason(getattr(message, "stop_reason", None)),
            latency_s=latency,
            # Without streaming the first token reaches us with the whole answer.
            ttft_s=latency,
        )

    def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        """Text chunks, then one chunk with `finish_reason`, `usage` and `model`. Like any async
        generator, every error (a bad request included) is raised from iteration, not this call."""
        return self._stream(request)

    async def aclose(self) -> None:
        client, self._client = self._client, None
        if client is not None:
            await client.close()

    # -- internals ------------------------------------------------------------------------

    def _get_client(self) -> AsyncAnthropic:
        if self._client is not None:
            return self._client
        if not self._api_key:
            raise ProviderError(
                "Anthropic is not configured: no API key",
                provider=self.name,
                kind="auth",
                hint=KEY_HINT,
            )
        import anthropic  # slow (~1.1 s): only when the fallback is actually used

        base_url = self.base_url
        if base_url is None and not os.environ.get("ANTHROPIC_BASE_URL", "").strip():
            # The SDK would read ANTHROPIC_BASE_URL itself, and an empty one breaks it.
            base_url = DEFAULT_BASE_URL
        self._client = anthropic.AsyncAnthropic(
            api_key=self._api_key,
            base_url=base_url,
            # A refused or unroutable host should fail over fast; reads may take a while.
            timeout=anthropic.Timeout(self.timeout_s, connect=min(5.0, self.timeout_s)),
            max_retries=self.max_retries,
        )
        return self._client

    def _model_for(self, request: ChatRequest) -> str:
        # A vLLM model name (Qwen/...) must never be sent to Anthropic.
        if request.model and request.model.startswith("claude"):
            return request.model
        return self.model

    def _create_kwargs(self, request: ChatRequest) -> dict[str, Any]:
        system, turns = to_anthropic_messages(request.messages)
        # anthropic.max_tokens caps what the paid fallback may generate per answer.
        max_tokens = min(request.max_tokens, self.max_tokens) if request.max_tokens > 0 else self.max_tokens
        if max_tokens < 1:
            raise UsageError(f"max_tokens must be at least 1, not {max_tokens}")
        kwargs: dict[str, Any] = {
            "model": self._model_for(request),
            "max_tokens": max_tokens,
            "messages": turns,
        }
        if system is not None:
            kwargs["system"] = system
        stops = [s for s in request.stop if s.strip()]  # the API rejects whitespace-only stops
        if stops:
            kwargs["stop_sequences"] = stops
        if request.temperature is not None:
            # SDK 2.10.0 has no `temperature` argument; `extra_body` is its documented way to
            # send API fields it lacks. OpenAI's range is 0–2, Anthropic's 0–1: clamp.
            kwargs["extra_body"] = {"temperature": min(max(float(request.temperature), 0.0), 1.0)}
        return kwargs

    async def _stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        kwargs = self._create_kwargs(request)
        client = self._get_client()
        model = str(kwargs["model"])
        input_tokens = 0
        output_tokens = 0
        stop_reason: str | None = None
        finished = False
        shown: list[str] = []
        try:
            events = await client.messages.create(**kwargs, stream=True)
        except Exception as exc:
            error = self._map_error(exc)
            if error is None:
                raise
            raise error from exc
        try:
            async with events:
                async for event in events:
                    kind = getattr(event, "type", None)
                    if kind == "message_start":
                        model = str(getattr(event.message, "model", None) or model)
                        input_tokens = int(getattr(event.message.usage, "input_tokens", 0) or 0)
                    elif kind == "content_block_delta":
                        text = getattr(event.delta, "text", None)
                        if getattr(event.delta, "type", None) == "text_delta" and text:
                            shown.append(text)
                            yield StreamChunk(text=text)
                    elif kind == "message_delta":
                        stop_reason = getattr(event.delta, "stop_reason", None) or stop_reason
                        usage = event.usage
                        output_tokens = int(getattr(usage, "output_tokens", 0) or 0)
                        if getattr(usage, "input_tokens", None) is not None:
                            input_tokens = int(usage.input_tokens)
                    elif kind == "message_stop":
                        finished = True
        except Exception as exc:
            error = self._map_error(exc, in_stream=True)
            if error is None:
                raise
            raise self._broken(error, shown) from exc
        if not finished:
            raise self._broken(
                ProviderError(
                    "Anthropic stream ended before message_stop",
                    provider=self.name,
                    kind="stream_cut",
                ),
                shown,
            )
        yield StreamChunk(
            finish_reason=_finish_reason(stop_reason),
            usage=Usage(prompt_tokens=input_tokens, completion_tokens=output_tokens),
            model=model,
        )

    def _broken(self, error: ProviderError, shown: list[str]) -> ProviderError:
        """After text was shown the request must not be silently re-sent: say so."""
        if not shown:
            return error
        return StreamBrokenError(
            f"{error.message} after part of the answer was shown",
            provider=self.name,
            partial_text="".join(shown),
            hint=error.hint,
        )

    def _map_error(self, exc: Exception, *, in_stream: bool = False) -> ProviderError | None:
        """The ProviderError for an SDK/transport failure; None for anything else (a bug)."""
        import anthropic
        import httpx2  # the SDK's HTTP stack; already imported by `anthropic`

        if isinstance(exc, ProviderError):
            return exc
        if isinstance(exc, anthropic.APITimeoutError):
            return ProviderError(
                f"Anthropic API timed out after {self.timeout_s:g} s",
                provider=self.name,
                kind="timeout",
            )
        if isinstance(exc, anthropic.APIConnectionError):
            return ProviderError(
                f"cannot connect to the Anthropic API at {self.endpoint}",
                provider=self.name,
                kind="connect",
            )
        if isinstance(exc, anthropic.APIStatusError):
            return self._map_status(exc, in_stream=in_stream)
        if isinstance(exc, anthropic.APIResponseValidationError | json.JSONDecodeError):
            # JSON that does not parse: a proxy's error page, a garbled event.
            return ProviderError(
                "Anthropic API answered with something that is not its JSON (check anthropic.base_url)",
                provider=self.name,
                kind="malformed",
            )
        if isinstance(exc, httpx2.TimeoutException):
            return ProviderError(
                f"Anthropic stream stalled for {self.timeout_s:g} s",
                provider=self.name,
                kind="timeout",
            )
        if isinstance(exc, httpx2.TransportError):
            # Raised while reading a stream body: the SDK only wraps errors of the request itself.
            return ProviderError(
                "Anthropic stream was cut off before it finished",
                provider=self.name,
                kind="stream_cut",
            )
        return None

    def _map_status(self, exc: Any, *, in_stream: bool) -> ProviderError:
        status: int = exc.status_code
        detail = self._scrub(getattr(exc, "api_message", None) or getattr(exc, "type", None) or "")
        suffix = f": {detail}" if detail else ""
        if status < 400:
            # An `event: error` inside a 200 stream (e.g. overloaded_error mid-answer).
            return ProviderError(
                f"Anthropic stream failed with an error event{suffix}",
                provider=self.name,
                kind="stream_cut",
                status=status,
            )
        if status in (401, 403):
            what = "rejected the API key" if status == 401 else "refused the request (permission)"
            return ProviderError(
                f"Anthropic API {what} ({status})",
                provider=self.name,
                kind="auth",
                status=status,
                hint=KEY_HINT,
            )
        if status == 404:
            return ProviderError(
                f"Anthropic API: not found ({status}){suffix}",
                provider=self.name,
                kind="not_found",
                status=status,
                hint="Check anthropic.model (e.g. claude-haiku-4-5).",
            )
        if status == 429:
            retry_after = exc.response.headers.get("retry-after")
            wait = f"; retry after {self._scrub(retry_after)} s" if retry_after else ""
            return ProviderError(
                f"Anthropic API rate limit (429){wait}",
                provider=self.name,
                kind="rate_limit",
                status=status,
            )
        if status == 529:
            return ProviderError(
                "Anthropic API is overloaded (529)", provider=self.name, kind="http", status=status
            )
        if status >= 500:
            return ProviderError(
                f"Anthropic API server error ({status}){suffix}",
                provider=self.name,
                kind="http",
                status=status,
            )
        if status in (400, 413, 422):
            return ProviderError(
                f"Anthropic API rejected the request ({status}){suffix}",
                provider=self.name,
                kind="bad_request",
                status=status,
            )
        if status == 402:
            return ProviderError(
                "Anthropic API: payment required (402)",
                provider=self.name,
                kind="http",
                status=status,
                hint="Check the billing of the Anthropic account behind ANTHROPIC_API_KEY.",
            )
        return ProviderError(
            f"Anthropic API error ({status}){suffix}",
            provider=self.name,
            kind="http",
            status=status,
        )

    def _scrub(self, text: str) -> str:
        """Server text, shortened, with our key removed should a proxy ever echo it."""
        text = " ".join(str(text).split())[:200]
        if self._api_key:
            text = text.replace(self._api_key, "***")
        return text


def _finish_reason(stop_reason: str | None) -> str | None:
    if stop_reason is None:
        return None
    return _FINISH_REASONS.get(stop_reason, stop_reason)
