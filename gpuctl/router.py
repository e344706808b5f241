"""Deprecated: `gpuctl.router` moved to the `gpuctl.routing` package (`gpuctl.routing.manager`
for `BackendManager`). This re-export goes away in the next release."""

from __future__ import annotations

import warnings

from gpuctl.routing.manager import *  # noqa: F403
from gpuctl.routing.manager import BackendManager, RoutedStream  # noqa: F401
from gpuctl.routing.outcomes import STOPPED, Attempt, fallback_reason  # noqa: F401
from gpuctl.routing.policy import MAX_WAKE_S, WAKE_GRACE_S  # noqa: F401
from gpuctl.routing.registry import NO_PROVIDER_HINT  # noqa: F401
from gpuctl.routing.status import ProviderStatus, StatusReport  # noqa: F401

warnings.warn("`gpuctl.router` is deprecated; import from `gpuctl.routing.manager` (or `gpuctl`) instead",
              DeprecationWarning, stacklevel=2)
