"""The seed's `GPUOrchestrator` (Vast.ai, deprecated), re-exported for `from gpuctl import GPUOrchestrator`."""
from __future__ import annotations

from gpuctl.vast.orchestrator import GPUOrchestrator as GPUOrchestrator
