"""Where gpuctl's bundled data lives: `deploy/` and `configs/` beside the package in a checkout
or editable install, or under `<prefix>/share/gpuctl/` when installed from a wheel."""

from __future__ import annotations

import sys
from pathlib import Path

_PACKAGE_PARENT = Path(__file__).resolve().parent.parent


def asset_dir(name: str) -> Path:
    """`deploy` or `configs`: the checkout's copy if present, else the installed one."""
    local = _PACKAGE_PARENT / name
    if local.is_dir():
        return local
    for prefix in (sys.prefix, sys.base_prefix):
        installed = Path(prefix) / "share" / "gpuctl" / name
        if installed.is_dir():
            return installed
    return local  # let the caller report it missing, naming the expected place
