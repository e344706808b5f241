"""The Modal names of the original vLLM multi-provider package, kept for Python users:
`ModalVLLMClient`, `ModalOrchestrator`, `init_modal_orchestrator`, `get_modal_orchestrator`,
`is_modal_configured` (and `gpuctl.modal_orchestrator`, the singleton).

A thin layer over the shared vLLM endpoint client and the state store (metrics: total requests,
last health response time, uptime). Must not: route between providers (`gpuctl.routing` does),
deploy (`gpuctl.ops.deploy`), or open the state any way but `gpuctl.state.open_for`.
"""

from __future__ import annotations

import time
from collections.abc import Iterable, Mapping
from typing import Any

from gpuctl.config import Settings, load_settings
from gpuctl.errors import ConfigError
from gpuctl.providers.base import ChatRequest, ChatResponse
from gpuctl.providers.openai_compat import VLLMEndpoint
from gpuctl.state import State


class ModalVLLMClient(VLLMEndpoint):
    """HTTP client for the Modal endpoint under its original name, with the original `health_check()`."""

    def __init__(self, base_url: str, **kwargs: Any) -> None:
        kwargs.setdefault("provider", "modal")
        super().__init__(base_url, **kwargs)

    async def health_check(self) -> dict[str, Any]:
        health = await self.health()
        return {"healthy": health.status == "ready", "status": health.status, "detail": health.detail,
                "response_time_s": health.latency_s, "endpoint": health.endpoint}


def is_modal_configured(settings: Settings | None = None) -> bool:
    """True when a Modal endpoint URL is set (MODAL_WEB_URL or modal.web_url)."""
    settings = settings or load_settings()
    return bool(settings.get("modal.web_url"))


class ModalOrchestrator:
    """Endpoint, status, chat and metrics for the Modal deployment."""

    def __init__(self, settings: Settings | None = None, *, state: State | None = None) -> None:
        self.settings = settings or load_settings()
        url = self.settings.get("modal.web_url")
        if not url:
            raise ConfigError("Modal is not configured", hint="set MODAL_WEB_URL, or run `gpuctl deploy modal`")
        from gpuctl.http.client import Timeouts

        self.client = ModalVLLMClient(
            url, api_key=self.settings.get("modal.api_key"), model=self.settings["modal.model"],
            timeouts=Timeouts(connect=self.settings["routing.connect_timeout_s"],
                              first_byte=self.settings["routing.first_byte_timeout_s"],
                              read=self.settings["routing.read_timeout_s"]),
        )
        self._state = state
        self.started_at = time.time()

    @property
    def state(self) -> State:
        if self._state is None:
            from gpuctl.state import open_for

            self._state = open_for(self.settings)
        return self._state

    def get_endpoint(self) -> str:
        return self.client.endpoint

    async def get_status(self, *, deep: bool = False) -> dict[str, Any]:
        """`{"status": ready|cold|degraded|unhealthy, "endpoint", "provider": "modal", "reason", ...}`."""
        health = await self.client.health(deep=deep)
        self.state.set_metric("modal", "last_health", {"status": health.status, "latency_s": health.latency_s,
                                                       "at": time.time()})
        if health.status not in ("ready", "cold"):
            from gpuctl.events import log_event

            log_event("vllm_health_check_failed", provider="modal", detail=health.detail)
        return {"status": health.status, "endpoint": health.endpoint or self.get_endpoint(), "provider": "modal",
                "reason": health.detail, "models": list(health.models), "metrics": self.metrics()}

    async def chat_completion(self, messages: Iterable[Mapping[str, Any]], *, temperature: float | None = 0.7,
                              max_tokens: int = 2048) -> ChatResponse:
        request = ChatRequest.from_openai(messages, temperature=temperature, max_tokens=max_tokens)
        response = await self.client.chat(request)
        self.state.bump_metric("modal", "total_requests")
        return response

    def metrics(self) -> dict[str, Any]:
        stored = self.state.metrics("modal")
        last = stored.get("last_health") or {}
        return {"total_requests": int(stored.get("total_requests", 0)),
                "last_health_response_time_s": last.get("latency_s"),
                "uptime_hours": round((time.time() - self.started_at) / 3600, 4)}

    async def aclose(self) -> None:
        await self.client.aclose()
        if self._state is not None:
            self._state.close()
            self._state = None


_orchestrator: ModalOrchestrator | None = None


def init_modal_orchestrator(settings: Settings | None = None) -> ModalOrchestrator | None:
    """Create the global orchestrator if Modal is configured (logging
    `modal_orchestrator_initialized`, as the original did); returns None when it is not."""
    global _orchestrator
    settings = settings or load_settings()
    if not is_modal_configured(settings):
        _orchestrator = None
        return None
    _orchestrator = ModalOrchestrator(settings)
    from gpuctl.events import log_event

    log_event("modal_orchestrator_initialized", modal_web_url=settings.get("modal.web_url"))
    return _orchestrator


def get_modal_orchestrator() -> ModalOrchestrator:
    """The global orchestrator, created on first use."""
    orchestrator = _orchestrator or init_modal_orchestrator()
    if orchestrator is None:
        raise ConfigError("Modal is not configured", hint="set MODAL_WEB_URL, or run `gpuctl deploy modal`")
    return orchestrator
