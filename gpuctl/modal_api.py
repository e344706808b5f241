"""Deprecated: `gpuctl.modal_api` moved to `gpuctl.modal.compat`. This re-export goes away in the next release."""

from __future__ import annotations

import warnings

from gpuctl.modal.compat import *  # noqa: F403
from gpuctl.modal.compat import (  # noqa: F401
              ModalOrchestrator,
              ModalVLLMClient,
              get_modal_orchestrator,
              init_modal_orchestrator,
              is_modal_configured,
)

warnings.warn("`gpuctl.modal_api` is deprecated; import from `gpuctl.modal.compat` (or `gpuctl`) instead",
              DeprecationWarning, stacklevel=2)
