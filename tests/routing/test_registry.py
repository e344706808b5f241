"""The registry: one builder per provider name, and the provider traits the router reads from
slots (so that nothing else in routing/ names a provider)."""

from __future__ import annotations

import ast
from pathlib import Path

from gpuctl import config
from gpuctl.config import load_settings
from gpuctl.routing import registry
from gpuctl.routing.registry import BUILDERS, Billing, build_slots, priority
from gpuctl.state import open_state


def test_every_provider_name_has_a_builder() -> None:
    assert tuple(BUILDERS) == config.PROVIDERS


def test_slots_carry_the_provider_traits(gpuctl_home: Path) -> None:
    settings = load_settings(env={"MODAL_SCALEDOWN_WINDOW_MINUTES": "2", "VASTAI_API_KEY": "k", "MODAL_GPU_TYPE": "A10G",
                                  "ANTHROPIC_API_KEY": "sk-ant-fake"}, home=gpuctl_home)
    with open_state(gpuctl_home) as st:
        modal, vastai, anthropic, endpoint = build_slots(settings, st, list(BUILDERS))
    assert not modal.configured and modal.scales_to_zero and modal.scaledown_s == 120.0  # even unconfigured
    assert (modal.billing, modal.gpu, modal.event_prefix) == (Billing.GPU_SECONDS, "A10G", "modal")
    assert not vastai.configured and vastai.idle_note == "no instance" and not vastai.scales_to_zero
    assert anthropic.configured and anthropic.billing is Billing.TOKENS and anthropic.prefetch == "anthropic"
    assert endpoint.billing is Billing.ELSEWHERE and endpoint.idle_note is None
    no_key = BUILDERS["vastai"](load_settings(env={}, home=gpuctl_home), None)
    assert no_key.idle_note is None and "VASTAI_API_KEY" in (no_key.why_not or "")


def test_a_configured_endpoint_goes_before_the_paid_api(gpuctl_home: Path) -> None:
    env = {"GPUCTL_ENDPOINT_URL": "http://127.0.0.1:9", "GPUCTL_PRIORITY": "modal,anthropic"}
    assert priority(load_settings(env=env, home=gpuctl_home)) == ["modal", "endpoint", "anthropic"]
    assert priority(load_settings(env={**env, "GPUCTL_PRIORITY": "modal"}, home=gpuctl_home)) == ["modal", "endpoint"]
    assert priority(load_settings(env={"GPUCTL_PRIORITY": "modal"}, home=gpuctl_home)) == ["modal"]


def test_the_router_names_no_provider() -> None:
    """Provider names (and their settings) appear in the registry only, not in the policy."""
    folder = Path(registry.__file__).parent
    found = []
    for path in sorted(folder.glob("*.py")):
        if path.name in ("registry.py", "__init__.py"):
            continue
        tree = ast.parse(path.read_text(encoding="utf-8"))
        # the JSON's "endpoint" key is a field name, not the provider
        keys = {id(k) for d in ast.walk(tree) if isinstance(d, ast.Dict) for k in d.keys if k is not None}
        for node in ast.walk(tree):
            if isinstance(node, ast.Constant) and isinstance(node.value, str) and id(node) not in keys:
                value = node.value.lower()
                if any(value == name or value.startswith(f"{name}.") or value.startswith(f"{name}_")
                       for name in config.PROVIDERS):
                    found.append(f"{path.name}:{node.lineno}: {node.value!r}")
    assert not found, found
