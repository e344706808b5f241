"""`gpuctl chat` as a real process: in a pseudo-terminal (line editing, Ctrl-C mid-answer,
Ctrl-D) and with real pipes (the issue's done-when case)."""

from __future__ import annotations

import contextlib
import os
import select
import signal
import stat
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from gpuctl.state import open_state
from tests.fakes.vllm_server import FakeVLLM

pytestmark = pytest.mark.skipif(not hasattr(os, "forkpty"), reason="needs a pseudo-terminal")

ROOT = Path(__file__).resolve().parents[3]
LONG = "Streaming " + " ".join(f"w{i}" for i in range(400)) + " end."


@pytest.fixture
def vllm() -> Iterator[FakeVLLM]:
    with FakeVLLM(model="fake-model", answer=LONG) as fake:
        yield fake


def chat_env(fake: FakeVLLM) -> dict[str, str]:
    env = dict(os.environ)  # GPUCTL_HOME and the scrubbed variables come from conftest
    env.update(MODAL_WEB_URL=fake.url, MODAL_MODEL="fake-model", GPUCTL_PRIORITY="modal",
               PYTHONPATH=str(ROOT), TERM="xterm", COLUMNS="100", LINES="30",
               PROMPT_TOOLKIT_NO_CPR="1")  # nobody answers cursor-position queries in a test pty
    env.pop("NO_COLOR", None)
    return env


class Pty:
    """A child process on a pseudo-terminal, read with deadlines (no sleeping)."""

    def __init__(self, args: list[str], env: dict[str, str]) -> None:
        pid, fd = os.forkpty()
        if pid == 0:  # the child: become gpuctl at once
            try:
                os.execve(sys.executable, [sys.executable, "-m", "gpuctl", *args], env)
            finally:
                os._exit(127)
        self.pid, self.fd = pid, fd
        self.seen = b""
        self.pos = 0

    def expect(self, needle: bytes, timeout: float = 10.0) -> bytes:
        """Read until `needle` appears after the previous match; returns the output up to it."""
        deadline = time.monotonic() + timeout
        while needle not in self.seen[self.pos:]:
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"{needle!r} not seen; output tail: {self.seen[-1500:]!r}")
            ready, _, _ = select.select([self.fd], [], [], left)
            if ready:
                try:
                    data = os.read(self.fd, 65536)
                except OSError:  # EIO: the child closed the terminal
                    data = b""
                if not data:
                    raise AssertionError(f"{needle!r} not seen before exit; tail: {self.seen[-1500:]!r}")
                self.seen += data
        end = self.seen.index(needle, self.pos) + len(needle)
        new, self.pos = self.seen[self.pos:end], end
        return new

    def send(self, data: bytes) -> None:
        os.write(self.fd, data)

    def wait(self, timeout: float = 10.0) -> int:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid, status = os.waitpid(self.pid, os.WNOHANG)
            if pid:
                return os.waitstatus_to_exitcode(status)
            ready, _, _ = select.select([self.fd], [], [], 0.05)
            if ready:  # keep draining, or a child writing to a full terminal never exits
                with contextlib.suppress(OSError):
                    self.seen += os.read(self.fd, 65536)
        raise AssertionError(f"gpuctl chat did not exit; tail: {self.seen[-1500:]!r}")

    def close(self) -> None:
        try:
            os.kill(self.pid, signal.SIGKILL)
            os.waitpid(self.pid, 0)
        except (ProcessLookupError, ChildProcessError):
            pass
        os.close(self.fd)


@pytest.fixture
def spawn() -> Iterator:  # type: ignore[type-arg]
    children: list[Pty] = []

    def start(args: list[str], env: dict[str, str]) -> Pty:
        child = Pty(args, env)
        children.append(child)
        return child

    yield start
    for child in children:
        child.close()


def test_ctrl_c_mid_answer_stops_that_answer_and_keeps_the_session(  # type: ignore[no-untyped-def]
        spawn, vllm: FakeVLLM, gpuctl_home: Path) -> None:
    vllm.chunk_delay = 0.01  # ~4 s for the whole answer: Ctrl-C lands mid-way
    child = spawn(["chat"], chat_env(vllm))
    child.expect(b"Ctrl-D to exit")
    child.expect(b">")
    child.send(b"first question\r")
    child.expect(b"w10 ")  # the answer is streaming
    child.send(b"\x03")  # the terminal turns this into SIGINT, like a real Ctrl-C
    after = child.expect(b"partial answer is kept")
    assert b"partial answer kept" in after  # the stats line of the stopped answer
    child.expect(b">")  # ...and the prompt is back: the session goes on
    vllm.chunk_delay = 0.0
    child.send(b"second question\r")
    child.expect(b"end.")
    child.expect(b"tok/s")
    child.expect(b">")
    child.send(b"\x04")  # Ctrl-D at an empty prompt
    assert child.wait() == 0

    with open_state(gpuctl_home) as st:
        conv = st.last_conversation()
        assert conv is not None
        rows = [(m.role, m.partial) for m in st.messages(conv.id)]
        messages = st.messages(conv.id)
    assert rows == [("user", False), ("assistant", True), ("user", False), ("assistant", False)]
    partial = messages[1].content
    assert partial.startswith("Streaming w0 w1") and len(partial) < len(LONG)
    # the model saw the partial answer as part of the conversation
    last = [r.json() for r in vllm.requests if r.path == "/v1/chat/completions"][-1]
    assert [m["content"] for m in last["messages"][1:]] == ["first question", partial, "second question"]
    history = gpuctl_home / "chat_history"
    assert stat.S_IMODE(history.stat().st_mode) == 0o600
    assert b"first question" in history.read_bytes()


def test_ctrl_c_at_an_empty_prompt_exits_0(spawn, vllm: FakeVLLM) -> None:  # type: ignore[no-untyped-def]
    child = spawn(["chat"], chat_env(vllm))
    child.expect(b"Ctrl-D to exit")
    child.expect(b">")
    child.send(b"typed but not sent")
    child.expect(b"sent")
    child.send(b"\x03")  # clears the line, like a shell
    child.send(b"\x03")  # at the empty prompt: leave
    assert child.wait() == 0
    assert not [r for r in vllm.requests if r.path == "/v1/chat/completions"]


def test_ctrl_c_in_one_shot_exits_130(spawn, vllm: FakeVLLM, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    vllm.chunk_delay = 0.01
    child = spawn(["chat", "tell me"], chat_env(vllm))
    child.expect(b"w10 ")
    child.send(b"\x03")
    child.expect(b"interrupted")
    assert child.wait() == 130
    with open_state(gpuctl_home) as st:
        conv = st.last_conversation()
        assert conv is not None and [m.partial for m in st.messages(conv.id)] == [False, True]


def test_done_when_piped_session_through_real_pipes(vllm: FakeVLLM, tmp_path: Path) -> None:
    """`printf 'hello\\n/cost\\n/exit\\n' | gpuctl chat`: the streamed answer, a cost line, exit 0."""
    vllm.answer = "Hello from the fake vLLM."
    proc = subprocess.run(
        [sys.executable, "-m", "gpuctl", "chat"], input=b"hello\n/cost\n/exit\n",
        capture_output=True, env=chat_env(vllm), timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    out = proc.stdout.decode()
    assert out.startswith("Hello from the fake vLLM.\n")
    assert "Session spend: " in out and "estimated for 1 answer (modal: 1 answer" in out
    assert b"\x1b" not in proc.stdout + proc.stderr  # pipes get plain text
    assert proc.stderr.decode().startswith("modal · fake-model · ")


def test_done_when_json_tail_is_the_summary(vllm: FakeVLLM, tmp_path: Path) -> None:
    """`gpuctl chat "hi" --json | tail -1` is a summary with provider and usage."""
    import json

    proc = subprocess.run(
        [sys.executable, "-m", "gpuctl", "chat", "hi", "--json"], stdin=subprocess.DEVNULL,
        capture_output=True, env=chat_env(vllm), timeout=60, cwd=tmp_path,
    )
    assert proc.returncode == 0, proc.stderr.decode()
    last = json.loads(proc.stdout.decode().splitlines()[-1])
    assert last["type"] == "summary" and last["provider"] == "modal"
    assert last["usage"]["completion_tokens"] == len(LONG.split())


def test_multiline_input_and_command_completion(spawn, vllm: FakeVLLM, gpuctl_home: Path) -> None:  # type: ignore[no-untyped-def]
    vllm.answer = "ok."
    child = spawn(["chat"], chat_env(vllm))
    child.expect(b"Ctrl-D to exit")
    child.expect(b">")
    child.send(b"line one\x1b\rline two\r")  # Esc-Enter adds a line, Enter sends
    child.expect(b"tok/s")
    child.expect(b">")
    child.send(b'"""\rA\r\rB\r"""\r')  # Enter inside a """ block adds a line
    child.expect(b"tok/s")
    child.expect(b">")
    child.send(b"/co")
    child.expect(b"/co")
    child.send(b"\t")  # Tab completes /cost...
    child.expect(b"st")
    child.send(b"\r")  # ...and Enter runs it
    child.expect(b"Session spend")
    child.send(b"/exit\r")
    assert child.wait() == 0
    questions = [r.json()["messages"][-1]["content"] for r in vllm.requests if r.path == "/v1/chat/completions"]
    assert questions == ["line one\nline two", "A\n\nB"]
