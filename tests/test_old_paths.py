"""Old module paths users may import keep working for one release, with a DeprecationWarning."""

from __future__ import annotations

import importlib
import sys

import pytest

OLD = {
    "gpuctl.router": ("BackendManager", "gpuctl.routing.manager"),
    "gpuctl.modal_api": ("ModalOrchestrator", "gpuctl.modal.compat"),
    "gpuctl.vast_orchestrator": ("GPUOrchestrator", "gpuctl.vastai.compat"),
}


@pytest.mark.parametrize("old", sorted(OLD))
def test_old_path_re_exports_with_a_warning(old: str) -> None:
    name, new = OLD[old]
    sys.modules.pop(old, None)
    with pytest.warns(DeprecationWarning, match=new.replace(".", r"\.")):
        module = importlib.import_module(old)
    assert getattr(module, name) is getattr(importlib.import_module(new), name)
