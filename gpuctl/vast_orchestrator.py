"""Deprecated: `gpuctl.vast_orchestrator` moved to `gpuctl.vastai.compat`. This re-export goes away in the next release."""

from __future__ import annotations

import warnings

from gpuctl.vastai.compat import *  # noqa: F403
from gpuctl.vastai.compat import GPUOrchestrator  # noqa: F401

warnings.warn("`gpuctl.vast_orchestrator` is deprecated; import from `gpuctl.vastai.compat` (or `gpuctl`) instead",
              DeprecationWarning, stacklevel=2)
