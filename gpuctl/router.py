"""Deprecated: `gpuctl.router` moved to `gpuctl.routing.manager`. This re-export goes away in the next release."""

from __future__ import annotations

import warnings

from gpuctl.routing.manager import *  # noqa: F403
from gpuctl.routing.manager import BackendManager, RoutedStream  # noqa: F401

warnings.warn("`gpuctl.router` is deprecated; import from `gpuctl.routing.manager` (or `gpuctl`) instead",
              DeprecationWarning, stacklevel=2)
