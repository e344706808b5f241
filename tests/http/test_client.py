"""gpuctl.http: timeouts, retries (with injected sleep), proxies, and redaction in logs."""

from __future__ import annotations

import asyncio
import logging
import socket
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from email.utils import format_datetime

import httpx
import pytest

from gpuctl.http import client as gh
from gpuctl.http.client import RETRY_STATUSES, Timeouts, build_async_client, build_client, redact
from tests.fakes.vllm_server import FakeVLLM

KEY = "sk-test-0123456789abcdefSECRET"


@pytest.fixture
def fake() -> Iterator[FakeVLLM]:
    with FakeVLLM() as server:
        yield server


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Script:
    """A MockTransport handler that answers from a list (a Response, or an exception to raise)."""

    def __init__(self, *steps: httpx.Response | Exception) -> None:
        self.steps = list(steps)
        self.seen: list[httpx.Request] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        self.seen.append(request)
        step = self.steps.pop(0)
        if isinstance(step, Exception):
            raise step
        return step


def sync_client(script: Script, sleeps: list[float], **kw: object) -> httpx.Client:
    return build_client(
        base_url="https://api.example.test",
        transport=httpx.MockTransport(script),
        sleep=sleeps.append,
        **kw,  # type: ignore[arg-type]
    )


def run_async(script: Script, sleeps: list[float], call: Callable[[httpx.AsyncClient], object], **kw: object) -> object:
    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def main() -> object:
        async with build_async_client(
            base_url="https://api.example.test",
            transport=httpx.MockTransport(script),
            sleep=fake_sleep,
            **kw,  # type: ignore[arg-type]
        ) as client:
            return await call(client)  # type: ignore[misc]

    return asyncio.run(main())


# --- timeouts ----------------------------------------------------------------------------


def test_httpx_read_timeout_is_the_first_byte_budget() -> None:
    t = Timeouts(connect=1.0, first_byte=90.0, read=7.0, write=2.0, pool=3.0).as_httpx()
    assert (t.connect, t.read, t.write, t.pool) == (1.0, 90.0, 2.0, 3.0)
    with build_client(base_url="http://127.0.0.1:1", timeouts=Timeouts(first_byte=42.0)) as client:
        assert client.timeout.read == 42.0


def test_retry_statuses() -> None:
    assert frozenset({429, 502, 503, 504}) == RETRY_STATUSES


# --- retries (MockTransport, injected sleep) ---------------------------------------------


def test_429_then_200_retries_with_backoff() -> None:
    script = Script(httpx.Response(429), httpx.Response(200, json={"ok": True}))
    sleeps: list[float] = []
    with sync_client(script, sleeps) as client:
        response = client.get("/x")
    assert response.status_code == 200
    assert len(script.seen) == 2
    assert sleeps == [0.5]


def test_async_429_then_200() -> None:
    script = Script(httpx.Response(429), httpx.Response(429), httpx.Response(200, text="ok"))
    sleeps: list[float] = []
    response = run_async(script, sleeps, lambda c: c.get("/x"), retries=2)
    assert isinstance(response, httpx.Response) and response.status_code == 200
    assert sleeps == [0.5, 1.0]  # exponential


def test_retry_after_seconds_is_honoured() -> None:
    script = Script(httpx.Response(503, headers={"Retry-After": "7"}), httpx.Response(200))
    sleeps: list[float] = []
    with sync_client(script, sleeps) as client:
        assert client.get("/x").status_code == 200
    assert sleeps == [7.0]


def test_retry_after_http_date_is_honoured() -> None:
    when = format_datetime(datetime.now(UTC) + timedelta(seconds=10), usegmt=True)
    script = Script(httpx.Response(429, headers={"Retry-After": when}), httpx.Response(200))
    sleeps: list[float] = []
    with sync_client(script, sleeps) as client:
        assert client.get("/x").status_code == 200
    assert len(sleeps) == 1 and 8.0 <= sleeps[0] <= 10.0


def test_retry_after_beyond_the_cap_is_handed_back_not_waited() -> None:
    script = Script(httpx.Response(429, headers={"Retry-After": "3600"}), httpx.Response(200))
    sleeps: list[float] = []
    with sync_client(script, sleeps) as client:
        assert client.get("/x").status_code == 429
    assert sleeps == [] and len(script.seen) == 1


def test_no_retry_on_500() -> None:
    script = Script(httpx.Response(500), httpx.Response(200))
    sleeps: list[float] = []
    with sync_client(script, sleeps) as client:
        assert client.get("/x").status_code == 500
    assert sleeps == [] and len(script.seen) == 1


def test_retries_exhausted_returns_the_last_answer() -> None:
    script = Script(httpx.Response(502), httpx.Response(502), httpx.Response(504))
    sleeps: list[float] = []
    with sync_client(script, sleeps, retries=2) as client:
        assert client.get("/x").status_code == 504
    assert sleeps == [0.5, 1.0]


def test_retries_zero_never_retries() -> None:
    script = Script(httpx.Response(503), httpx.Response(200))
    sleeps: list[float] = []
    response = run_async(script, sleeps, lambda c: c.get("/x"), retries=0)
    assert isinstance(response, httpx.Response) and response.status_code == 503
    assert sleeps == [] and len(script.seen) == 1


def test_post_is_not_resent_after_502_but_is_after_503() -> None:
    # A 502/504 may come after the upstream acted (e.g. created an instance); 429/503 did not.
    sleeps: list[float] = []
    script = Script(httpx.Response(502), httpx.Response(200))
    with sync_client(script, sleeps) as client:
        assert client.post("/x", json={}).status_code == 502
    script = Script(httpx.Response(503), httpx.Response(200))
    with sync_client(script, sleeps) as client:
        assert client.post("/x", json={"a": 1}).status_code == 200
    assert script.seen[0].content == script.seen[1].content == b'{"a":1}'


def test_put_opts_in_and_get_opts_out_with_the_idempotent_extension() -> None:
    sleeps: list[float] = []
    script = Script(httpx.Response(504), httpx.Response(200))
    with sync_client(script, sleeps) as client:
        assert client.put("/label", json={}, extensions={"idempotent": True}).status_code == 200
    script = Script(httpx.ConnectError("boom"), httpx.Response(200))
    with sync_client(script, sleeps) as client:
        # never sent: safe to re-send even when marked non-idempotent
        assert client.put("/asks/1/", json={}, extensions={"idempotent": False}).status_code == 200
    script = Script(httpx.RemoteProtocolError("dropped"), httpx.Response(200))
    with sync_client(script, sleeps) as client, pytest.raises(httpx.RemoteProtocolError):
        client.put("/asks/1/", json={})


def test_connect_error_is_retried_then_raised() -> None:
    script = Script(httpx.ConnectError("refused"), httpx.ConnectError("refused"), httpx.Response(200))
    sleeps: list[float] = []
    with sync_client(script, sleeps) as client:
        assert client.post("/x", json={}).status_code == 200
    script = Script(*(httpx.ConnectError("refused") for _ in range(4)))
    with sync_client(script, sleeps, retries=3) as client, pytest.raises(httpx.ConnectError):
        client.get("/x")
    assert len(script.seen) == 4


def test_read_timeout_is_not_retried() -> None:
    script = Script(httpx.ReadTimeout("slow"), httpx.Response(200))
    sleeps: list[float] = []
    with sync_client(script, sleeps) as client, pytest.raises(httpx.ReadTimeout):
        client.get("/x")
    assert sleeps == []


def test_dropped_connection_retried_only_when_idempotent() -> None:
    script = Script(httpx.ReadError("reset"), httpx.Response(200))
    sleeps: list[float] = []
    response = run_async(script, sleeps, lambda c: c.get("/x"))
    assert isinstance(response, httpx.Response) and response.status_code == 200
    script = Script(httpx.ReadError("reset"), httpx.Response(200))
    with pytest.raises(httpx.ReadError):
        run_async(script, sleeps, lambda c: c.post("/x", json={}))


def test_negative_retries_rejected() -> None:
    with pytest.raises(ValueError):
        build_client(base_url="http://x", retries=-1)


# --- retries against a real loopback server ----------------------------------------------


def test_loopback_503_then_200_is_retried(fake: FakeVLLM) -> None:
    fake.fail(503, times=1, paths={"/version"})
    sleeps: list[float] = []

    async def fake_sleep(seconds: float) -> None:
        sleeps.append(seconds)

    async def main() -> httpx.Response:
        async with build_async_client(base_url=fake.url, sleep=fake_sleep) as client:
            return await client.get("/version")

    response = asyncio.run(main())
    assert response.status_code == 200 and response.json() == {"version": "0.32.0"}
    assert fake.hits("/version") == 2 and sleeps == [0.5]


def test_loopback_refused_connection_is_retried_then_raised() -> None:
    sleeps: list[float] = []
    with (
        build_client(base_url=f"http://127.0.0.1:{closed_port()}", retries=2, sleep=sleeps.append) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get("/health")
    assert sleeps == [0.5, 1.0]


def test_loopback_is_never_proxied(fake: FakeVLLM, monkeypatch: pytest.MonkeyPatch) -> None:
    # A dead proxy for everything: loopback must still be reached directly.
    dead = f"http://127.0.0.1:{closed_port()}"
    monkeypatch.setenv("HTTP_PROXY", dead)
    monkeypatch.setenv("HTTPS_PROXY", dead)
    monkeypatch.setenv("NO_PROXY", "internal.example")
    mounts = gh._env_proxy_mounts()
    assert mounts["http://"] == dead and mounts["https://"] == dead
    assert mounts["all://127.0.0.1"] is None and mounts["all://*internal.example"] is None
    with build_client(base_url=fake.url, retries=0) as client:
        assert client.get("/health").status_code == 200


def test_no_proxy_star_disables_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HTTPS_PROXY", "proxy.example:3128")
    monkeypatch.setenv("NO_PROXY", "*")
    assert gh._env_proxy_mounts() == {}
    monkeypatch.setenv("NO_PROXY", "")
    assert gh._env_proxy_mounts()["https://"] == "http://proxy.example:3128"


# --- redaction ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "secret"),
    [
        ("Authorization: Bearer xyz", "xyz"),
        ("Authorization: Bearer sk-abcdef1234567890XYZ", "sk-abcdef1234567890XYZ"),
        ("x-api-key: sk-ant-api03-abcdefghijkl", "sk-ant-api03-abcdefghijkl"),
        ("key sk-ant-api03-abcdefghijkl leaked", "api03-abcdefghijkl"),
        ("HF_TOKEN=hf_abcdefghijklmnop", "hf_abcdefghijklmnop"),
        ("token hf_abcdefghijklmnop in text", "abcdefghijklmnop"),
        ("MODAL_TOKEN_SECRET=as-abcdefghijklmnop", "abcdefghijklmnop"),
        ('{"api_key": "s3cr3t-value"}', "s3cr3t-value"),
        ("https://user:pa55word@host.example/v1", "pa55word"),
        ("GET /x?api_key=zzz-top&a=1", "zzz-top"),
        ("vast key " + "ab12" * 16, "ab12" * 16),
    ],
)
def test_redact_masks_secrets(text: str, secret: str) -> None:
    out = redact(text)
    assert secret not in out
    assert "***" in out


@pytest.mark.parametrize(
    "text",
    [
        "sent as a Bearer token",
        "max_tokens: 5000 is too large",
        "Token missing",
        "image sha256:" + "ab" * 32,
        "GET http://127.0.0.1:8000/v1/models -> 200",
        '{"key": "web-1", "cost": "0.01"}',  # a report's group key is no credential
    ],
)
def test_redact_leaves_ordinary_text_alone(text: str) -> None:
    assert redact(text) == text


@pytest.fixture
def debug_logs(caplog: pytest.LogCaptureFixture, monkeypatch: pytest.MonkeyPatch) -> pytest.LogCaptureFixture:
    """Capture DEBUG from every logger (httpx's and httpcore's too), even after a CLI test set
    up the "gpuctl" logger with propagate=False and a WARNING level."""
    monkeypatch.setattr(logging.getLogger("gpuctl"), "propagate", True)
    caplog.set_level(logging.DEBUG)
    caplog.set_level(logging.DEBUG, logger="gpuctl")
    return caplog


def test_logs_show_method_url_status_and_never_the_key(fake: FakeVLLM, debug_logs: pytest.LogCaptureFixture) -> None:
    caplog = debug_logs
    fake.fail(503, times=1, paths={"/version"})

    async def fake_sleep(seconds: float) -> None:
        pass

    async def main() -> None:
        async with build_async_client(
            base_url=fake.url,
            headers={"Authorization": f"Bearer {KEY}", "x-api-key": KEY},
            sleep=fake_sleep,
        ) as client:
            assert (await client.get("/version", params={"api_key": KEY})).status_code == 200

    asyncio.run(main())
    ours = [r.getMessage() for r in caplog.records if r.name == "gpuctl.http"]
    assert any(m.startswith("GET http://127.0.0.1:") and "/version" in m and "-> 503" in m for m in ours), ours
    assert any("-> 200" in m and "attempt 2" in m for m in ours), ours
    assert any(m.startswith("retrying GET") for m in ours), ours
    assert KEY not in caplog.text
    assert KEY in fake.requests[0].headers["Authorization"]  # it was really sent


def test_failed_request_is_logged_without_the_key(debug_logs: pytest.LogCaptureFixture) -> None:
    caplog = debug_logs
    with (
        build_client(
            base_url=f"http://127.0.0.1:{closed_port()}", headers={"Authorization": f"Bearer {KEY}"}, retries=0
        ) as client,
        pytest.raises(httpx.ConnectError),
    ):
        client.get("/v1/models", params={"token": KEY})
    assert "ConnectError" in caplog.text and "/v1/models" in caplog.text
    assert KEY not in caplog.text


def test_a_configured_secret_is_masked_whatever_its_shape(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpuctl import redact as module
    from gpuctl.config.resolve import load_settings

    monkeypatch.setattr(module, "_KNOWN", [])
    load_settings(env={"GPUCTL_MODAL_API_KEY": "modalvllmkey-XYZ123", "GPUCTL_HOME": "/nonexistent-home"})
    # An upstream quoting the key back in prose matches no pattern: only knowing it masks it.
    out = redact("upstream refused token modalvllmkey-XYZ123 (tried /v1?key=qsecret777)")
    assert "modalvllmkey-XYZ123" not in out and "qsecret777" not in out and "upstream refused token ***" in out


def test_redact_is_linear_on_long_runs_of_word_characters() -> None:
    # Was quadratic: a 20 kB `model` in a 404 held the gateway's event loop for 24 s. No timing
    # here (bench/ measures speed): at 2 MB, quadratic would not finish within the CI's limit.
    for text in ("A" * 2_000_000, "key" * 500_000, "a.b-c_" * 300_000):
        assert redact(text) == text


@pytest.mark.parametrize("password", ["Ab3/dEf+Gh=", "s3cr@tZZ", "pa%ss-w0rd"])
def test_a_state_url_password_is_masked_whole_and_in_the_pieces_a_driver_quotes(
        password: str, monkeypatch: pytest.MonkeyPatch) -> None:
    from gpuctl import redact as module
    from gpuctl.redact import mask_url, remember_secrets

    url = f"postgresql://gp:{password}@localhost:5999/gpuctl"
    assert mask_url(url) == "postgresql://gp:***@localhost:5999/gpuctl"
    monkeypatch.setattr(module, "_KNOWN", [])
    remember_secrets([url])
    tail = password.replace("%", "@").replace("/", "@").split("@")[-1]
    quoted = f"failed to resolve host '{tail}@localhost'; invalid token \"{password}\""
    out = redact(quoted)
    assert password not in out and f"'{tail}@" not in out
    assert redact("postgresql is the backend") == "postgresql is the backend"  # words of the URL stay


def test_remembered_secrets_never_mask_the_names_around_them(monkeypatch: pytest.MonkeyPatch) -> None:
    from gpuctl import redact as module
    from gpuctl.redact import remember_secrets

    monkeypatch.setattr(module, "_KNOWN", [])
    keys = "analytics:sk-client-key-000111222,frontend:zzzzzzzzzzzz"
    remember_secrets(["postgresql://gpuctl:gpuctl@db/gpuctl", keys, "tenantid-0123456789:secretpart-abcdefgh"],
                     named_keys=[keys])
    out = redact("run `gpuctl cleanup`; by key: analytics, frontend; zzzzzzzzzzzz sk-client-key-000111222; "
                 "token tenantid-0123456789:secretpart-abcdefgh")
    assert out == "run `gpuctl cleanup`; by key: analytics, frontend; *** ***; token ***"  # a key with a colon: whole


@pytest.mark.parametrize("before", ["", "-", ".", "1", "x+", "see "])
def test_url_credentials_are_masked_whatever_comes_before_the_scheme(before: str) -> None:
    assert "hunter2secret" not in redact(f"{before}postgresql://u:hunter2secret@db/x")


@pytest.mark.parametrize("shape", ["a.a.", "a-a-", "a:a:", "a/a/", "a@a@", "a://", "Bearer ", "key=", "0a", "sk-"])
def test_redact_is_linear_on_repeated_shapes(shape: str) -> None:
    text = shape * (2_000_000 // len(shape))  # quadratic would not finish within the CI's limit
    assert len(redact(text)) > 0
