"""docs/adding-a-provider.md stays true: follow its steps with a toy provider and route to it.

Each step is done the way the doc says (the settings and the builder are patched in for the
test instead of edited into the source); then what step 4 promises is checked: `gpuctl status`
checks it, requests go to it, it has a breaker in the state database, the router fails over
from it and to it, and its usage is in the ledger.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from gpuctl import config
from gpuctl.config import Key, Settings, load_settings
from gpuctl.errors import ProviderError
from gpuctl.providers.base import ChatRequest, ChatResponse, Health, StreamChunk, Unsupported, Usage
from gpuctl.routing.manager import BackendManager
from gpuctl.routing.registry import BUILDERS, Slot
from gpuctl.state import State, open_state
from tests.fakes.anthropic_server import FakeAnthropic
from tests.support import assert_exit
from tests.support.routing import KEY, MESSAGES, ledger

DOC = Path(__file__).resolve().parents[2] / "docs" / "adding-a-provider.md"


# Step 1: implement the protocol (failures become ProviderError with a kind).
class ToyProvider:
    name = "toy"

    def __init__(self, url: str) -> None:
        self.url = url

    def is_configured(self) -> bool:
        return True

    def unsupported(self, request: ChatRequest) -> Unsupported | None:
        # A toy that only talks: any request with tools goes to a provider that can call them.
        return Unsupported("tools", "cannot call tools") if request.tools else None

    def _check(self) -> None:
        if self.url.endswith("down"):
            raise ProviderError(f"toy: cannot reach {self.url}", provider=self.name, kind="connect")

    async def health(self, *, deep: bool = False) -> Health:
        try:
            self._check()
        except ProviderError as exc:
            return Health(self.name, "unhealthy", endpoint=self.url, detail=exc.message)
        return Health(self.name, "ready", endpoint=self.url, latency_s=0.001, models=("toy-1",))

    async def chat(self, request: ChatRequest) -> ChatResponse:
        self._check()
        return ChatResponse("toy says hi", self.name, "toy-1", Usage(3, 3), "stop")

    async def stream(self, request: ChatRequest) -> AsyncIterator[StreamChunk]:
        self._check()
        for word in ("toy ", "says ", "hi"):
            yield StreamChunk(text=word)
        yield StreamChunk(finish_reason="stop", usage=Usage(3, 3), model="toy-1")

    async def aclose(self) -> None:
        pass


# Step 3: a builder; no provider (and a hint) when its settings are missing.
def build_toy(settings: Settings, state: State | None) -> Slot:
    url = settings.get("toy.url")
    if not url:
        return Slot("toy", None, "set toy.url (GPUCTL_TOY_URL)")
    return Slot("toy", ToyProvider(url), endpoint=url)


@pytest.fixture
def toy(monkeypatch: pytest.MonkeyPatch) -> None:
    # Step 2: its settings in KEYS, its name in PROVIDERS.
    key = Key("toy", "url", str, None, ("GPUCTL_TOY_URL",), doc="where the toy provider lives")
    added = {"KEYS": (*config.KEYS, key), "KEYS_BY_NAME": {**config.KEYS_BY_NAME, key.dotted: key},
             "SECTIONS": (*config.SECTIONS, "toy"), "PROVIDERS": (*config.PROVIDERS, "toy")}
    # The table lives in gpuctl/config/keys.py; its siblings and the facade hold the same names.
    for module in (config, config.keys, config.resolve, config.profiles):
        for name, value in added.items():
            if hasattr(module, name):
                monkeypatch.setattr(module, name, value)
    # Step 3: registered.
    monkeypatch.setitem(BUILDERS, "toy", build_toy)


def test_the_doc_names_the_steps_this_test_follows() -> None:
    text = DOC.read_text(encoding="utf-8")
    for where in ("gpuctl/providers/base.py", "`KEYS` in `gpuctl/config/keys.py`", "`PROVIDERS`",
                  "gpuctl/routing/registry.py", "`BUILDERS`", "gpuctl profile set routing.priority",
                  "tests/routing/test_fallback.py", "tests/support/fake_provider.FakeProvider"):
        assert where in text, where
    for path in ("gpuctl/providers/base.py", "gpuctl/routing/registry.py", "tests/routing/test_fallback.py",
                 "tests/support/fake_provider.py"):
        assert (DOC.parents[1] / path).is_file(), path


def test_a_toy_provider_added_as_the_doc_says_is_routed_to(toy: None, cli, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    # Step 4: put it in the priority.
    assert_exit(cli("profile", "create", "toyland"), 0)
    assert_exit(cli("profile", "set", "routing.priority", "toy,anthropic"), 0)
    assert_exit(cli("profile", "set", "toy.url", "http://toy.invalid/up"), 0)
    with FakeAnthropic(api_key=KEY, reply_text="Hi from Claude") as claude:
        env = {"ANTHROPIC_API_KEY": KEY, "ANTHROPIC_BASE_URL": claude.url}

        def ask(**kw: object):  # type: ignore[no-untyped-def]
            async def go():  # type: ignore[no-untyped-def]
                async with BackendManager(load_settings(env=env, home=gpuctl_home)) as m:
                    return await m.chat_completion(MESSAGES, **kw)
            return asyncio.run(go())

        # `gpuctl status` health-checks it, and it answers first.
        result = cli("status", "--json", env=env)
        assert_exit(result, 0)
        data = json.loads(result.stdout)["data"]
        assert data["provider"] == "toy" and data["providers"][0]["status"] == "ready"
        assert data["providers"][0]["models"] == ["toy-1"]
        assert ask().text == "toy says hi" and ask(stream=False).provider == "toy"
        assert ledger(gpuctl_home)[-1].provider == "toy"  # its usage is in the ledger

        # It fails: the router fails over from it, and its breaker counts the failure.
        assert_exit(cli("profile", "set", "toy.url", "http://toy.invalid/down"), 0)
        response = ask()
        assert response.provider == "anthropic" and response.fallback_reason == "toy: cannot reach http://toy.invalid/down"
        with open_state(gpuctl_home) as st:
            assert st.get_breaker("toy").failures == 1

        # And to it, when the provider before it fails.
        assert_exit(cli("profile", "set", "toy.url", "http://toy.invalid/up"), 0)
        assert_exit(cli("profile", "set", "routing.priority", "anthropic,toy"), 0)
        claude.status = 529
        response = ask()
        assert response.provider == "toy" and (response.fallback_reason or "").startswith("anthropic:")
        with open_state(gpuctl_home) as st:
            assert st.get_breaker("toy").failures == 0  # its answer closed the breaker again
    rows = [(r.provider, r.ok) for r in ledger(gpuctl_home)]
    assert rows == [("toy", True), ("toy", True), ("toy", False), ("anthropic", True), ("anthropic", False),
                    ("toy", True)]
