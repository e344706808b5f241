"""Which providers exist and how each is built from settings. Adding a provider starts here.

A slot is *configured* when its settings are present (the seed's rules): Modal if
`modal.web_url` (MODAL_WEB_URL), Vast.ai if `vastai.api_key` and a ready instance in the ledger,
Anthropic if `anthropic.api_key`, and `endpoint` if `endpoint.url`. Building a slot never
touches the network; provider modules are imported only for configured slots.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from gpuctl.config import Settings
from gpuctl.providers.base import Provider
from gpuctl.state import State


@dataclass
class Slot:
    name: str
    provider: Provider | None  # None when not configured
    why_not: str | None = None  # what to set, when not configured
    endpoint: str | None = None  # for display, never with credentials

    @property
    def configured(self) -> bool:
        return self.provider is not None


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
    url = settings.get("modal.web_url")
    if not url:
        return Slot("modal", None, "set MODAL_WEB_URL, or run `gpuctl deploy modal`")
    provider = _vllm(settings, "modal", url, settings.get("modal.api_key"), settings["modal.model"])
    return Slot("modal", provider, endpoint=getattr(provider, "endpoint", url))


def build_vastai(settings: Settings, state: State | None) -> Slot:
    if not settings.get("vastai.api_key"):
        return Slot("vastai", None, "set VASTAI_API_KEY, then `gpuctl launch`")
    ready = None
    if state is not None:
        for row in reversed(state.live_instances("vastai")):
            if row.status == "ready" and row.endpoint:
                ready = row
                break
    if ready is None or not ready.endpoint:
        return Slot("vastai", None, "no running Vast.ai instance: start one with `gpuctl launch`")
    provider = _vllm(settings, "vastai", ready.endpoint, settings.get("vastai.vllm_api_key"), settings["vastai.model"])
    return Slot("vastai", provider, endpoint=getattr(provider, "endpoint", ready.endpoint))


def build_anthropic(settings: Settings, state: State | None) -> Slot:
    key = settings.get("anthropic.api_key")
    if not key:
        return Slot("anthropic", None, "set ANTHROPIC_API_KEY")
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
    return Slot("anthropic", provider, endpoint=(base_url or "https://api.anthropic.com").rstrip("/") + "/v1")


def build_endpoint(settings: Settings, state: State | None) -> Slot:
    url = settings.get("endpoint.url")
    if not url:
        return Slot("endpoint", None, "set endpoint.url (GPUCTL_ENDPOINT_URL) to your own OpenAI-compatible server")
    provider = _vllm(settings, "endpoint", url, settings.get("endpoint.api_key"), settings.get("endpoint.model"))
    return Slot("endpoint", provider, endpoint=getattr(provider, "endpoint", url))


# name → builder. To add a provider: implement `providers.base.Provider`, add a builder here,
# add its name to config.PROVIDERS (and its settings to config.KEYS); routing picks it up
# from `routing.priority`.
BUILDERS: dict[str, Callable[[Settings, State | None], Slot]] = {
    "modal": build_modal,
    "vastai": build_vastai,
    "anthropic": build_anthropic,
    "endpoint": build_endpoint,
}


def build_slots(settings: Settings, state: State | None, names: list[str]) -> list[Slot]:
    return [BUILDERS[name](settings, state) for name in names]
