"""Where gpuctl's bundled files are, and reading the deploy ones: deploy/ and configs/.

Owns: locating deploy/ and configs/ (`asset_dir`: the checkout's copy, else the installed
share/gpuctl/ one), the one vLLM pin (deploy/versions.toml), the Modal app file, the Vast.ai
container settings with the vLLM arguments rendered from their template, and the model → tool
call parser table (deploy/tool_parsers.toml). Every TOML
file is read with `gpuctl.config.read_toml`; those in configs/ by their owners (costs.catalog,
vastai.tiers, the example profiles by config).
Must not: import modal, talk to a provider, or repeat the vLLM version anywhere
(deploy/versions.toml is the only pin).
"""

from __future__ import annotations

import re
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from gpuctl.config.files import read_toml
from gpuctl.errors import ConfigError

# The repository root in a checkout or editable install (deploy/ and configs/ sit next to the
# package). A module constant so tests can point it elsewhere.
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


_RESTORE = "Restore it from the gpuctl repository."
_VERSION_RE = re.compile(r"^\d+\.\d+\.\d+([.+-]?[A-Za-z0-9.]+)?$")


@dataclass(frozen=True)
class VllmPin:
    """The vLLM build both providers run: `vllm/vllm-openai:vX.Y.Z`."""

    version: str
    image: str
    tag: str

    @property
    def ref(self) -> str:
        """The full Docker reference, e.g. `vllm/vllm-openai:vX.Y.Z`."""
        return f"{self.image}:{self.tag}"


def deploy_dir() -> Path:
    """The deploy/ directory, or ConfigError when this install does not ship it."""

    path = asset_dir("deploy")
    if not (path / "versions.toml").is_file():
        raise ConfigError(
            f"gpuctl's deploy files are missing (looked in {path})",
            hint="Reinstall gpuctl (`make install`, or `pip install .`): deploy/ ships with it.",
        )
    return path


def versions_file() -> Path:
    return deploy_dir() / "versions.toml"


def vllm_pin() -> VllmPin:
    """The one vLLM pin, from deploy/versions.toml `[vllm]`."""
    path = versions_file()
    table = read_toml(path, missing_hint=_RESTORE).get("vllm")
    if not isinstance(table, dict):
        raise ConfigError(f"{path} has no [vllm] table")
    version, image = table.get("version"), table.get("image")
    if not isinstance(version, str) or not _VERSION_RE.match(version):
        raise ConfigError(f"{path}: [vllm] version must look like 1.2.3, got {version!r}")
    if not isinstance(image, str) or not image:
        raise ConfigError(f"{path}: [vllm] image must name a Docker image")
    template = table.get("tag", "v{version}")
    if not isinstance(template, str) or "{version}" not in template:
        # A literal tag would be a second copy of the version, free to drift from the first.
        raise ConfigError(f"{path}: [vllm] tag must be a template containing {{version}}")
    return VllmPin(version=version, image=image, tag=template.format(version=version))


def modal_app_file() -> Path:
    """deploy/modal/vllm_app.py, the file `gpuctl deploy modal` hands to `modal deploy`."""
    path = deploy_dir() / "modal" / "vllm_app.py"
    if not path.is_file():
        raise ConfigError(f"{path} is missing", hint=_RESTORE)
    return path


def vast_container_settings() -> dict[str, Any]:
    """deploy/vastai/container.toml with the image resolved from the pin.

    Returns {"image": "vllm/vllm-openai:vX.Y.Z", "disk_gb": 40, "ports": [8000],
    "docker_options": "-p 8000:8000", "vllm": {..., "args": [template...]}}.
    """
    path = deploy_dir() / "vastai" / "container.toml"
    data = read_toml(path, missing_hint=_RESTORE)
    instance, vllm = data.get("instance"), data.get("vllm")
    if not isinstance(instance, dict) or not isinstance(vllm, dict) or "args" not in vllm:
        raise ConfigError(f"{path} needs [instance] and [vllm] tables with vllm.args")
    return {
        "image": vllm_pin().ref,
        "disk_gb": int(instance["disk_gb"]),
        "ports": [int(p) for p in instance.get("ports", [])],
        "docker_options": str(instance.get("docker_options", "")),
        "vllm": dict(vllm),
    }


# vLLM's parser names: lowercase letters, digits, '_' and '-' (`llama3_json`, `granite-20b-fc`).
TOOL_PARSER_RE = re.compile(r"^[a-z0-9_-]{1,40}$")


def tool_call_parser(model: str, override: str | None = None) -> str | None:
    """vLLM's --tool-call-parser for `model`: `override` (a profile's; "none" turns tool
    calling off), else deploy/tool_parsers.toml (the exact id, then the longest prefix, both
    ignoring case, as Hugging Face ids do); None: start without tool calling."""
    if override is not None and override.strip():
        name = override.strip()
        if name.lower() == "none":
            return None
        if not TOOL_PARSER_RE.match(name):
            raise ConfigError(f"tool_call_parser {name!r} is not a vLLM parser name (e.g. hermes, llama3_json)")
        return name
    path = deploy_dir() / "tool_parsers.toml"
    data = read_toml(path, missing_hint=_RESTORE)
    wanted = model.lower()
    found = {m.lower(): v for m, v in (data.get("models") or {}).items()}.get(wanted)
    if found is None:
        prefixes = {p: v for p, v in (data.get("prefixes") or {}).items() if wanted.startswith(p.lower())}
        found = prefixes[max(prefixes, key=len)] if prefixes else None
    if found is not None and not (isinstance(found, str) and TOOL_PARSER_RE.match(found)):
        raise ConfigError(f"{path}: the parser for {model!r} must be a vLLM parser name, got {found!r}")
    return found


def render_vllm_args(
    settings: dict[str, Any], *, model: str, api_key: str, served_model_name: str | None = None,
    tool_call_parser: str | None = None,
) -> list[str]:
    """The `vllm serve` arguments for a Vast.ai instance, from the container.toml template;
    with tool calling on when there is a `tool_call_parser` (see `tool_call_parser`)."""
    vllm = settings["vllm"]
    values = {
        "model": model,
        "served_model_name": served_model_name or model,
        "api_key": api_key,
        "port": vllm["port"],
        "max_model_len": vllm["max_model_len"],
        "max_num_seqs": vllm["max_num_seqs"],
        "gpu_memory_utilization": vllm["gpu_memory_utilization"],
    }
    args = [str(arg).format(**values) for arg in vllm["args"]]
    if vllm.get("enforce_eager"):
        args.append("--enforce-eager")
    if tool_call_parser:
        args += ["--enable-auto-tool-choice", "--tool-call-parser", tool_call_parser]
    return args
