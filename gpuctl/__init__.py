"""gpuctl: run your own open-weight LLM endpoint cheaply, with a fallback that always answers.

The Python API keeps the names of the original vLLM multi-provider package. They are imported
lazily (PEP 562), so `import gpuctl` costs nothing until a name is used:

    from gpuctl import backend_manager
    provider = backend_manager.get_current_provider()
    status = await backend_manager.get_vllm_status()
    response = await backend_manager.chat_completion(messages=[...])
"""

from __future__ import annotations

from typing import Any

__version__ = "0.1.0"

_LAZY = {
    "BackendManager": ("gpuctl.routing.manager", "BackendManager"),
    "RoutedStream": ("gpuctl.routing.stream", "RoutedStream"),
    "ModalVLLMClient": ("gpuctl.modal.compat", "ModalVLLMClient"),
    "ModalOrchestrator": ("gpuctl.modal.compat", "ModalOrchestrator"),
    "init_modal_orchestrator": ("gpuctl.modal.compat", "init_modal_orchestrator"),
    "get_modal_orchestrator": ("gpuctl.modal.compat", "get_modal_orchestrator"),
    "is_modal_configured": ("gpuctl.modal.compat", "is_modal_configured"),
    "VastAIClient": ("gpuctl.vastai.client", "VastAIClient"),
    "GPUOrchestrator": ("gpuctl.vastai.compat", "GPUOrchestrator"),
    "ChatRequest": ("gpuctl.providers.base", "ChatRequest"),
    "ChatResponse": ("gpuctl.providers.base", "ChatResponse"),
    "GpuctlError": ("gpuctl.errors", "GpuctlError"),
}

# Module-level singletons the original package exported; created on first access.
_SINGLETONS = {
    "backend_manager": lambda: _load("BackendManager")(),
    "modal_orchestrator": lambda: _load("get_modal_orchestrator")(),
    "gpu_orchestrator": lambda: _load("GPUOrchestrator")(),
}

__all__ = ["__version__", *_LAZY, *_SINGLETONS]


def _load(name: str) -> Any:
    import importlib

    module, attr = _LAZY[name]
    return getattr(importlib.import_module(module), attr)


def __getattr__(name: str) -> Any:
    if name in _LAZY:
        value = _load(name)
    elif name in _SINGLETONS:
        value = _SINGLETONS[name]()
    else:
        raise AttributeError(f"module 'gpuctl' has no attribute {name!r}")
    globals()[name] = value  # cache: the next access is a plain attribute
    return value
