"""The real command in a process of its own: start-up output, SIGTERM draining a stream in
flight then exiting 0, a drain that runs out (the stream is cut, the ledger says stopped),
SIGHUP reloading the profile, `--workers 2` with metrics over both, and the refusals that
happen before anything listens."""

from __future__ import annotations

import signal
from pathlib import Path

import httpx
import pytest

from gpuctl.routing.outcomes import STOPPED
from tests.fakes.vllm_server import FakeVLLM
from tests.support import assert_exit
from tests.support.routing import ledger
from tests.support.serve import CLIENT_KEY, MODEL, chain_env, spawned_gateway, wait_for

WORDS = " ".join(f"w{i}" for i in range(30))
BODY = {"model": MODEL, "messages": [{"role": "user", "content": "count"}], "stream": True}
AUTH = {"Authorization": f"Bearer {CLIENT_KEY}"}


def _models(url: str) -> list[str]:
    with httpx.Client(base_url=url, timeout=5) as http:
        return [m["id"] for m in http.get("/v1/models", headers=AUTH).json()["data"]]


def test_sigterm_lets_the_stream_in_flight_finish_then_exits_0(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    vllm.answer, vllm.chunk_delay = WORDS, 0.01
    with spawned_gateway(gpuctl_home, chain_env(vllm)) as gw:
        assert gw.started["event"] == "serve_started" and gw.started["status"]["provider"] == "modal"
        assert gw.started["client_keys"] == ["alice"] and CLIENT_KEY not in str(gw.started)
        with httpx.Client(base_url=gw.url, timeout=10) as http, \
                http.stream("POST", "/v1/chat/completions", json=BODY, headers=AUTH) as response:
            lines = response.iter_lines()
            next(line for line in lines if '"w0"' in line)
            gw.proc.send_signal(signal.SIGTERM)  # mid-stream
            rest = [line for line in lines if line]
        assert rest[-1] == "data: [DONE]" and any('w29"' in line for line in rest)
        assert gw.proc.wait(15) == 0
        with pytest.raises(httpx.ConnectError):  # nothing listens any more
            httpx.get(gw.url + "/health", timeout=2)
        out, err = gw.proc.communicate(timeout=5)
    assert "gpuctl serve stopped" in err and "Traceback" not in err
    (row,) = ledger(gpuctl_home)
    assert row.ok and row.key_name == "alice"
    assert '"status":200' in out  # its access-log line was written before the exit


def test_when_the_drain_runs_out_the_stream_is_cut_and_the_ledger_says_stopped(
        gpuctl_home: Path, vllm: FakeVLLM) -> None:
    vllm.answer, vllm.chunk_delay = " ".join(f"w{i}" for i in range(400)), 0.01  # 4 s of tokens
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    (gpuctl_home / "config.toml").write_text("[serve]\ndrain_s = 0.2\n")
    with spawned_gateway(gpuctl_home, chain_env(vllm)) as gw:
        with httpx.Client(base_url=gw.url, timeout=10) as http, \
                http.stream("POST", "/v1/chat/completions", json=BODY, headers=AUTH) as response:
            lines = response.iter_lines()
            next(line for line in lines if '"w0"' in line)
            gw.proc.send_signal(signal.SIGTERM)
            with pytest.raises(httpx.RemoteProtocolError):  # cut short: no [DONE]
                list(lines)
        assert gw.proc.wait(15) == 0
    (row,) = ledger(gpuctl_home)
    assert row.error == STOPPED and row.provider == "modal"
    wait_for(lambda: vllm.cancelled == 1, what="the upstream request to be cancelled")


def test_sighup_reloads_the_profile(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    gpuctl_home.mkdir(parents=True, exist_ok=True)
    config = gpuctl_home / "config.toml"
    config.write_text('[serve]\nmodel = "team-model-a"\n')
    with spawned_gateway(gpuctl_home, chain_env(vllm)) as gw:
        assert _models(gw.url) == ["team-model-a"]
        config.write_text('[serve]\nmodel = "team-model-b"\n')
        gw.proc.send_signal(signal.SIGHUP)
        wait_for(lambda: _models(gw.url) == ["team-model-b"], 10.0, "the reload")
        assert gw.proc.poll() is None  # SIGHUP does not stop it
        gw.proc.send_signal(signal.SIGINT)
        assert gw.proc.wait(15) == 0


def test_two_workers_serve_and_their_metrics_add_up(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    with spawned_gateway(gpuctl_home, chain_env(vllm), "--workers", "2", timeout=60) as gw:
        assert gw.started["workers"] == 2
        for _ in range(6):  # a new connection each time: both workers answer some
            with httpx.Client(base_url=gw.url, timeout=10) as http:
                assert http.post("/v1/chat/completions", json={**BODY, "stream": False}, headers=AUTH).status_code == 200
        with httpx.Client(base_url=gw.url, timeout=10) as http:
            text = http.get("/metrics").text
        gw.proc.send_signal(signal.SIGTERM)
        assert gw.proc.wait(30) == 0
    assert 'gpuctl_requests_total{outcome="ok",provider="modal"} 6.0' in text
    assert len(ledger(gpuctl_home)) == 6


def test_a_public_address_without_client_keys_is_refused(cli) -> None:  # type: ignore[no-untyped-def]
    result = cli("serve", "--host", "0.0.0.0", "--port", "0")
    assert_exit(result, 2)
    assert "refusing to listen on 0.0.0.0 without client keys" in result.stderr and "--insecure" in result.stderr


def test_bad_client_keys_are_refused_without_showing_them(cli, monkeypatch: pytest.MonkeyPatch) -> None:  # type: ignore[no-untyped-def]
    monkeypatch.setenv("GPUCTL_SERVE_API_KEYS", "alice:short")
    result = cli("serve", "--port", "0")
    assert_exit(result, 3)
    assert "'alice' is shorter than 16 characters" in result.stderr and "short" not in result.stderr.split("'alice'")[0]
    monkeypatch.setenv("GPUCTL_SERVE_API_KEYS", "sk-no-name-0123456789abcdef")
    result = cli("--json", "serve", "--port", "0")
    assert_exit(result, 3)
    assert "entry 1 is not 'name:key'" in result.stdout and "sk-no-name" not in result.stdout + result.stderr


def test_a_port_in_use_is_one_line(cli, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    result = cli("serve", "--port", str(vllm.port))
    assert_exit(result, 3)
    assert f"cannot listen on 127.0.0.1:{vllm.port}" in result.stderr and "Traceback" not in result.stderr


def test_startup_says_where_it_listens_and_who_answers_now(gpuctl_home: Path, vllm: FakeVLLM) -> None:
    import os
    import select
    import subprocess
    import sys

    env = {**{k: v for k, v in os.environ.items() if not k.startswith(("GPUCTL_", "MODAL_"))},
           **chain_env(vllm), "GPUCTL_HOME": str(gpuctl_home), "ADMIN_TOKEN": "admin-token-0123456789abcdef"}
    proc = subprocess.Popen([sys.executable, "-m", "gpuctl", "serve", "--port", "0"], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env=env)
    try:
        assert proc.stderr is not None
        # The pipe's own bytes, not its buffered reader: select() cannot see lines a reader
        # already holds, so readline() after select() waits for bytes that came long ago.
        fd, seen = proc.stderr.fileno(), b""
        while b"  answering now:" not in seen or not seen.endswith(b"\n"):
            ready, _, _ = select.select([fd], [], [], 30)
            assert ready, f"no start-up lines: {seen!r}"
            data = os.read(fd, 65536)
            assert data, f"gpuctl serve exited: {seen!r}"
            seen += data
        lines = seen.decode().splitlines(keepends=True)
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(15) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for stream in (proc.stdout, proc.stderr):
            if stream is not None:
                stream.close()
    text = "".join(lines)
    assert "gpuctl serve on http://127.0.0.1:" in text and "/v1, model Qwen/Qwen2.5-7B-Instruct" in text
    assert "client keys: alice" in text and "admin API: on" in text and "admin-token" not in text
    assert "→ modal: ready" in text and "answering now: modal" in text
