"""Both bundled vLLM deployments start with tool calling on (issue 13): the parser comes from the
per-model table deploy/tool_parsers.toml, a profile overrides it, "none" turns it off."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from types import ModuleType

import pytest

from gpuctl import bundle
from gpuctl.config import load_settings
from gpuctl.errors import ConfigError
from gpuctl.modal.deploy import ModalDeploySpec, spec_from_settings
from gpuctl.state import open_state
from gpuctl.vastai.container import create_spec

API_KEY = {"VLLM_API_KEY": "k"}


def tool_flags(args: list[str]) -> list[str]:
    return [a for i, a in enumerate(args) if a == "--enable-auto-tool-choice"
            or (i and args[i - 1] == "--tool-call-parser") or a == "--tool-call-parser"]


@pytest.mark.parametrize(("model", "parser"), [
    ("Qwen/Qwen2.5-7B-Instruct", "hermes"), ("Qwen/Qwen2.5-14B-Instruct-AWQ", "hermes"),
    ("meta-llama/Llama-3.1-8B-Instruct", "llama3_json"), ("mistralai/Mistral-7B-Instruct-v0.3", "mistral"),
    ("someone/unknown-model", None),
])
def test_the_table_names_each_models_parser(model: str, parser: str | None) -> None:
    assert bundle.tool_call_parser(model) == parser
    assert bundle.tool_call_parser(model, "pythonic") == "pythonic"
    assert bundle.tool_call_parser(model, "none") is None
    with pytest.raises(ConfigError):
        bundle.tool_call_parser(model, "Hermes; rm -rf /")


def test_the_modal_app_starts_vllm_with_tool_calling(load_app: Callable[..., ModuleType]) -> None:
    cmd = load_app().vllm_command(load_app().SETTINGS, API_KEY)
    assert tool_flags(cmd) == ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    llama = load_app(GPUCTL_MODAL_MODEL="meta-llama/Llama-3.1-8B-Instruct")
    assert tool_flags(llama.vllm_command(llama.SETTINGS, API_KEY))[-1] == "llama3_json"
    off = load_app(GPUCTL_MODAL_TOOL_CALL_PARSER="none")
    assert tool_flags(off.vllm_command(off.SETTINGS, API_KEY)) == []
    unknown = load_app(GPUCTL_MODAL_MODEL="someone/unknown-model")
    assert tool_flags(unknown.vllm_command(unknown.SETTINGS, API_KEY)) == []
    with pytest.raises(ValueError, match="TOOL_CALL_PARSER"):
        load_app(GPUCTL_MODAL_TOOL_CALL_PARSER="Bad Parser")


def test_the_container_gets_the_parser_resolved(load_app: Callable[..., ModuleType]) -> None:
    app = load_app()
    env = app.container_env(app.SETTINGS)
    assert env["GPUCTL_MODAL_TOOL_PARSER"] == "hermes"  # the table is not mounted there
    baked = {"GPUCTL_VLLM_VERSION": "1.0.0", "GPUCTL_VLLM_IMAGE": "x:v1", "GPUCTL_MODAL_ADD_PYTHON": "3.12",
             "GPUCTL_MODAL_TOOL_PARSER": "hermes"}
    assert app.load_settings(baked, remote=True)["tool_parser"] == "hermes"


def test_a_profile_overrides_the_modal_parser(tmp_path: Path) -> None:
    settings = load_settings(env={"GPUCTL_MODAL_TOOL_CALL_PARSER": "pythonic"}, home=tmp_path)
    spec = spec_from_settings(settings)
    assert spec.tool_call_parser == "pythonic" and spec.env()["GPUCTL_MODAL_TOOL_CALL_PARSER"] == "pythonic"
    assert ModalDeploySpec().env()["GPUCTL_MODAL_TOOL_CALL_PARSER"] == ""  # the app looks the model up


def test_the_vast_container_starts_vllm_with_tool_calling(tmp_path: Path) -> None:
    container = bundle.vast_container_settings()
    args = bundle.render_vllm_args(container, model="Qwen/Qwen2.5-7B-Instruct", api_key="k",
                                   tool_call_parser=bundle.tool_call_parser("Qwen/Qwen2.5-7B-Instruct"))
    assert tool_flags(args) == ["--enable-auto-tool-choice", "--tool-call-parser", "hermes"]
    env = {"VASTAI_API_KEY": "x", "GPUCTL_VASTAI_VLLM_API_KEY": "vllm-key"}
    with open_state(tmp_path) as state:
        assert tool_flags(create_spec(load_settings(env=env, home=tmp_path), state).args)[-1] == "hermes"
        off = create_spec(load_settings(env={**env, "GPUCTL_VASTAI_TOOL_CALL_PARSER": "none"}, home=tmp_path), state)
    assert tool_flags(off.args) == []


@pytest.mark.parametrize("model", ["qwen/Qwen2.5-7B-Instruct", "Qwen/qwen2.5-7b-instruct", "QWEN/QWEN2.5-14B"])
def test_the_table_ignores_case_as_hugging_face_does(model: str, load_app: Callable[..., ModuleType]) -> None:
    """Issue 13 review, finding 15: a differently cased id deployed without tool calling."""
    assert bundle.tool_call_parser(model) == "hermes"
    app = load_app(GPUCTL_MODAL_MODEL=model)
    assert tool_flags(app.vllm_command(app.SETTINGS, API_KEY))[-1] == "hermes"


def test_vllms_parser_names_with_a_dash_are_accepted(load_app: Callable[..., ModuleType]) -> None:
    assert bundle.tool_call_parser("ibm-granite/granite-20b-functioncalling", "granite-20b-fc") == "granite-20b-fc"
    app = load_app(GPUCTL_MODAL_TOOL_CALL_PARSER="granite-20b-fc")
    assert tool_flags(app.vllm_command(app.SETTINGS, API_KEY))[-1] == "granite-20b-fc"
    for bad in ("Hermes", "hermes fc", "a" * 41):
        with pytest.raises(ConfigError):
            bundle.tool_call_parser("m/x", bad)
