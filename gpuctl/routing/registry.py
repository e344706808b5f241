"""Which providers exist and how each is built from settings. Adding a provider starts here.

Owns every provider-specific fact the router needs, as properties of a `Slot` set by its
builder (how it bills, whether it scales to zero, its event name, what an idle slot is called),
so that nothing else in `routing/` names a provider. Also the priority order's one implicit
rule (`priority`) and the hint for "nothing configured".

A slot is *configured* when its settings are present (the original package's rules): Modal if
`modal.web_url` (MODAL_WEB_URL), Vast.ai if `vastai.api_key` and a ready instance in the ledger,
Anthropic if `anthropic.api_key`, and `endpoint` if `endpoint.url`. Building a slot never
touches the network; provider modules are imported only for configured slots.
"""

from __future__ import annotations

import enum
from collections.abc import Callable
from dataclasses import dataclass

from gpuctl.config import Settings
from gpuctl.providers.base import Provider
from gpuctl.state import State, StateUnavailableError

NO_PROVIDER_HINT = ("set MODAL_WEB_URL (or run `gpuctl deploy modal`), VASTAI_API_KEY with `gpuctl launch`, "
                    "or ANTHROPIC_API_KEY")


class Billing(enum.Enum):
    """How one request is priced in the ledger (`routing.ledger`)."""

    TOKENS = "tokens"  # the model's $/M tokens from the catalog
    GPU_SECONDS = "gpu_seconds"  # the request's own seconds at the catalog's $/s for `Slot.gpu`
    ELSEWHERE = "elsewhere"  # not per request: a Vast.ai box bills by lifetime (`gpuctl cost report`),
    # and your own endpoint is yours


@dataclass
class Slot:
    """One provider in the priority order, and what the router must know about it."""

    name: str
    provider: Provider | None  # None when not configured
    why_not: str | None = None  # what to set, when not configured
    endpoint: str | None = None  # for display, never with credentials
    # Scales to zero after this many idle seconds: silence may mean "waking up", not "down",
    # and a status probe would start (and bill) a GPU. None: always on.
    scaledown_s: float | None = None
    billing: Billing = Billing.ELSEWHERE
    gpu: str | None = None  # the catalog's GPU name, for Billing.GPU_SECONDS
    event_prefix: str | None = None  # "<prefix>_chat_completion" goes to the event log per answer
    idle_note: str | None = None  # the status word for an unconfigured slot that is merely idle
    prefetch: str | None = None  # a slow-to-import module an interactive chat may load early

    @property
    def configured(self) -> bool:
        return self.provider is not None

    @property
    def scales_to_zero(self) -> bool:
        return self.scaledown_s is not None


def _timeouts(settings: Settings):  # type: ignore[no-untyped-def]
    from gpuctl.http.client import Timeouts

    return Timeouts(
        connect=settings["routing.connect_timeout_s"],
        first_byte=settings["routing.first_byte_timeout_s"],
        read=settings["routing.read_timeout_s"],
    )


def _vllm(settings: Settings, name: str, url: str, api_key: str | None, model: str | None) -> Provider:
    from gpuctl.providers.openai_compat import VLLMEndpoint

    return VLLMEndpoint(url, provider=name, api_key=api_key, model=model, timeouts=_timeouts(settings), retries=0)


def build_modal(settings: Settings, state: State | None) -> Slot:
    # Even unconfigured, Modal is the one that scales to zero (a chat asks `likely_cold`).
    traits = {"scaledown_s": float(settings["modal.scaledown_window_minutes"]) * 60,
              "billing": Billing.GPU_SECONDS, "gpu": settings["modal.gpu"], "event_prefix": "modal"}
    url = settings.get("modal.web_url")
    if not url:
        return Slot("modal", None, "set MODAL_WEB_URL, or run `gpuctl deploy modal`", **traits)
    provider = _vllm(settings, "modal", url, settings.get("modal.api_key"), settings["modal.model"])
    return Slot("modal", provider, endpoint=getattr(provider, "endpoint", url), **traits)


def build_vastai(settings: Settings, state: State | None) -> Slot:
    if not settings.get("vastai.api_key"):
        return Slot("vastai", None, "set VASTAI_API_KEY, then `gpuctl launch`")
    ready = None
    if state is not None:
        try:
            rows = state.live_instances("vastai")
        except StateUnavailableError as exc:  # a shared state that is down: the others still answer
            return Slot("vastai", None, f"the instance ledger is unreachable: {exc.message}")
        for row in reversed(rows):
            if row.status == "ready" and row.endpoint:
                ready = row
                break
    if ready is None or not ready.endpoint:
        # A key with no instance running is not "unconfigured": status says what it is.
        return Slot("vastai", None, "no running Vast.ai instance: start one with `gpuctl launch`",
                    idle_note="no instance")
    provider = _vllm(settings, "vastai", ready.endpoint, settings.get("vastai.vllm_api_key"), settings["vastai.model"])
    return Slot("vastai", provider, endpoint=getattr(provider, "endpoint", ready.endpoint))


def build_anthropic(settings: Settings, state: State | None) -> Slot:
    key = settings.get("anthropic.api_key")
    if not key:
        return Slot("anthropic", None, "set ANTHROPIC_API_KEY", billing=Billing.TOKENS)
    from gpuctl.providers.anthropic import AnthropicProvider

    base_url = settings.get("anthropic.base_url")
    provider = AnthropicProvider(
        api_key=key,
        model=settings["anthropic.model"],
        max_tokens=settings["anthropic.max_tokens"],
        base_url=base_url,
        timeout_s=settings["routing.first_byte_timeout_s"],
        max_retries=0,
    )
    return Slot("anthropic", provider, endpoint=(base_url or "https://api.anthropic.com").rstrip("/") + "/v1",
                billing=Billing.TOKENS, prefetch="anthropic")  # its SDK takes ~1 s to import


def build_endpoint(settings: Settings, state: State | None) -> Slot:
    url = settings.get("endpoint.url")
    if not url:
        return Slot("endpoint", None, "set endpoint.url (GPUCTL_ENDPOINT_URL) to your own OpenAI-compatible server")
    provider = _vllm(settings, "endpoint", url, settings.get("endpoint.api_key"), settings.get("endpoint.model"))
    return Slot("endpoint", provider, endpoint=getattr(provider, "endpoint", url))


# name → builder. To add a provider: implement `providers.base.Provider`, add a builder here,
# add its name to config.PROVIDERS (and its settings to config.KEYS); routing picks it up
# from `routing.priority` (docs/adding-a-provider.md).
BUILDERS: dict[str, Callable[[Settings, State | None], Slot]] = {
    "modal": build_modal,
    "vastai": build_vastai,
    "anthropic": build_anthropic,
    "endpoint": build_endpoint,
}


def priority(settings: Settings) -> list[str]:
    """`routing.priority`, plus one rule: a user's own endpoint that is configured but not
    listed goes before the paid API."""
    order = list(settings["routing.priority"])
    if settings.get("endpoint.url") and "endpoint" not in order:
        at = order.index("anthropic") if "anthropic" in order else len(order)
        order.insert(at, "endpoint")
    return order


def build_slots(settings: Settings, state: State | None, names: list[str]) -> list[Slot]:
    return [BUILDERS[name](settings, state) for name in names]
