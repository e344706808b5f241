"""Which providers exist and how each is built from settings. Adding a provider starts here.

Owns every provider-specific fact the router needs, as properties of a `Slot` set by its
builder (how it bills, whether it scales to zero, its event name, what an idle slot is called),
so that nothing else in `routing/` names a provider. Also the priority order's one implicit
rule (`priority`) and the hint for "nothing configured".

A slot is *configured* when its settings are present (the original package's rules): Modal if
`modal.web_url` (MODAL_WEB_URL), Vast.ai if `vastai.api_key` and a ready instance in the ledger,
Anthropic if `anthropic.api_key`, and `endpoint` if `endpoint.url`. Building a slot never
touches the network; provider modules are imported only for configured slots. A provider that
rents machines by the hour also gives its slot `rentals` (what bills now, configured or not),
which only `gpuctl status` calls: it may ask the provider's API. Status asks it even when
`routing.priority` leaves the provider out (`RENTERS`, `renters_outside`): what bills is never hidden.

Each configured slot also gets its `breaker_key` (`breaker_key`): the breaker, the "waking"
memory and the last health check belong to a provider *and what it talks to* (endpoint, a hash
of the key, the model), so a fixed setting starts fresh instead of inheriting the breaker its
broken predecessor opened.
"""

from __future__ import annotations

import enum
import hashlib
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from urllib.parse import urlsplit

from gpuctl.config import Settings
from gpuctl.errors import NoProviderError
from gpuctl.providers.base import Provider, Rentals
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
    event_prefix: str | None = None  # "<prefix>_chat_completion" goes to the event log per answer (default: name)
    idle_note: str | None = None  # the status word for an unconfigured slot that is merely idle
    prefetch: str | None = None  # a slow-to-import module an interactive chat may load early
    # What this provider rents by the hour now (billing whatever the traffic), for `gpuctl status`;
    # None: it rents nothing. May use the network; never raises for a provider failure.
    rentals: Callable[[], Awaitable[Rentals]] | None = None
    # Where this slot's breaker, "waking" and last-health memory live in the state (`breaker_key`);
    # "" means the slot's name (an unconfigured slot, or one a test builds by hand).
    breaker_key: str = ""
    # Configured, but its setting cannot be read now (the shared instance ledger is down): a
    # failure the chain names as such, never "not configured".
    unreadable: bool = False

    def __post_init__(self) -> None:
        if not self.breaker_key:
            self.breaker_key = self.name
        if not self.event_prefix:
            self.event_prefix = self.name

    @property
    def configured(self) -> bool:
        return self.provider is not None

    @property
    def in_chain(self) -> bool:
        """Configured, or configured but unreadable now: a reason of its own in the chain, so
        "no provider is configured" is never said of it."""
        return self.configured or self.unreadable

    @property
    def scales_to_zero(self) -> bool:
        return self.scaledown_s is not None


def breaker_key(name: str, url: str, api_key: str | None, model: str | None) -> str:
    """`modal|https://x.modal.run|k:3f2a91c04b7e|Qwen/Qwen2.5-7B-Instruct`: the provider and what it
    talks to. The key enters only as a truncated SHA-256 (never the key itself; with any
    user:password inside the URL, which the shown URL drops), so changing MODAL_WEB_URL,
    ANTHROPIC_API_KEY, the Vast.ai instance or the model gives a fresh breaker."""
    parts = urlsplit(url)
    secret = "\0".join(x for x in (api_key or "", parts.password or "", parts.username or "") if x)
    digest = hashlib.sha256(f"gpuctl-breaker\0{secret}".encode()).hexdigest()[:12] if secret else "-"
    # The same server however it is spelled: no credentials, host in lower case, no "/" or "/v1" at the end.
    shown = parts._replace(netloc=parts.netloc.rpartition("@")[2].lower()).geturl().rstrip("/")
    shown = shown.removesuffix("/v1")
    return f"{name}|{shown}|k:{digest}|{model or '-'}"


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
    key, model = settings.get("modal.api_key"), settings["modal.model"]
    provider = _vllm(settings, "modal", url, key, model)
    return Slot("modal", provider, endpoint=getattr(provider, "endpoint", url),
                breaker_key=breaker_key("modal", url, key, model), **traits)


def vastai_rentals(settings: Settings, state: State | None, *, routed: bool = True) -> Callable[[], Awaitable[Rentals]]:
    async def rentals() -> Rentals:  # the ledger's live rows and, with a key, the account's list
        from gpuctl.vastai.inventory import rentals as vast_rentals

        return await vast_rentals(settings, state, routed=routed)

    return rentals


def build_vastai(settings: Settings, state: State | None) -> Slot:
    from gpuctl.vastai.container import find_vllm_key

    rentals = vastai_rentals(settings, state)
    if not settings.get("vastai.api_key"):
        return Slot("vastai", None, "set VASTAI_API_KEY, then `gpuctl launch`", rentals=rentals)
    try:
        live = state.live_instances("vastai") if state is not None else []
    except StateUnavailableError as exc:  # a shared state that is down: the others still answer
        # What bills is still listed (the account's list needs no ledger): status never hides it.
        return Slot("vastai", None, f"the instance ledger is unreachable: {exc.message}", rentals=rentals,
                    unreadable=True)
    ready = next((r for r in reversed(live) if r.status == "ready" and r.endpoint), None)
    if ready is None or not ready.endpoint:
        # A key with no instance ready is not "unconfigured": status says what it is, and never
        # "start one" while an instance bills (status lists those from `rentals`).
        why = ("no Vast.ai instance is ready yet: `gpuctl status` lists those that bill" if live
               else "no running Vast.ai instance: start one with `gpuctl launch`")
        return Slot("vastai", None, why, idle_note="no instance", rentals=rentals)
    key, model = find_vllm_key(settings, state), settings["vastai.model"]
    provider = _vllm(settings, "vastai", ready.endpoint, key, model)
    return Slot("vastai", provider, endpoint=getattr(provider, "endpoint", ready.endpoint), rentals=rentals,
                breaker_key=breaker_key("vastai", ready.endpoint, key, model))


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
    endpoint = (base_url or "https://api.anthropic.com").rstrip("/") + "/v1"
    return Slot("anthropic", provider, endpoint=endpoint, billing=Billing.TOKENS,
                prefetch="anthropic",  # its SDK takes ~1 s to import
                breaker_key=breaker_key("anthropic", endpoint, key, settings["anthropic.model"]))


def build_endpoint(settings: Settings, state: State | None) -> Slot:
    url = settings.get("endpoint.url")
    if not url:
        return Slot("endpoint", None, "set endpoint.url (GPUCTL_ENDPOINT_URL) to your own OpenAI-compatible server")
    key, model = settings.get("endpoint.api_key"), settings.get("endpoint.model")
    provider = _vllm(settings, "endpoint", url, key, model)
    return Slot("endpoint", provider, endpoint=getattr(provider, "endpoint", url),
                breaker_key=breaker_key("endpoint", url, key, model))


# name → builder. To add a provider: implement `providers.base.Provider`, add a builder here,
# add its name to config.PROVIDERS (and its settings to config.KEYS); routing picks it up
# from `routing.priority` (docs/adding-a-provider.md).
BUILDERS: dict[str, Callable[[Settings, State | None], Slot]] = {
    "modal": build_modal,
    "vastai": build_vastai,
    "anthropic": build_anthropic,
    "endpoint": build_endpoint,
}


# name → what it rents now, for providers that rent machines by the hour: `gpuctl status` lists
# them whatever `routing.priority` says (`renters_outside`), because they bill all the same.
RENTERS: dict[str, Callable[..., Callable[[], Awaitable[Rentals]]]] = {  # (settings, state, *, routed)
    "vastai": vastai_rentals,
}


def renters_outside(settings: Settings, state: State | None, order: Sequence[str]) -> list[Slot]:
    """A slot (never routable: no provider) for each renting provider `order` leaves out, so
    status can show what it bills; building one touches no network."""
    source = settings.source("routing.priority")
    why = (f"not in routing.priority ({', '.join(order) or 'nothing'}, from "
           f"{'the default' if source == 'default' else source}): the router never sends it requests")
    return [Slot(name, None, why, rentals=make(settings, state, routed=False))
            for name, make in RENTERS.items() if name not in order]


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


def nothing_configured(settings: Settings, state: State | None, order: Sequence[str]) -> NoProviderError:
    """The error for "no provider in `order` can be used": what to set, or, when the providers
    that are configured are simply not in `routing.priority`, exactly that."""
    elsewhere = [name for name in BUILDERS if name not in order and BUILDERS[name](settings, state).configured]
    if not elsewhere:
        return NoProviderError("no provider is configured", hint=NO_PROVIDER_HINT)
    verb = "is" if len(elsewhere) == 1 else "are"
    source = settings.source("routing.priority")
    return NoProviderError(
        f"routing.priority lists {', '.join(order) or 'nothing'} but only {', '.join(elsewhere)} {verb} configured",
        hint=f"add {' and '.join(elsewhere)} to routing.priority (from {'the default' if source == 'default' else source}),"
             f" e.g. GPUCTL_PRIORITY={','.join([*order, *elsewhere])}",
    )
