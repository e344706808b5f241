"""A loopback fake of vLLM's OpenAI-compatible server, with fault injection.

Owns: behaving like a real vLLM 0.32 server as recorded in shared/facts/PROVIDERS.md
("vLLM OpenAI-compatible server"): /health, /version, /metrics, /v1/models,
/v1/chat/completions (plain and SSE streaming), vLLM's error shapes and API-key check; plus
knobs a test sets on the running server (slow first byte, fixed status, HTML proxy page,
malformed JSON, a stream cut mid-way, gaps between chunks) and per-path request counters.

Must not: listen anywhere but 127.0.0.1, sleep in a way `stop()` cannot interrupt, or print.
Fast enough for benchmarks: keep-alive HTTP/1.1, one write per SSE event, TCP_NODELAY.

    with FakeVLLM(answer="Hello there") as fake:
        fake.fail(503, times=1)          # the next request gets a 503, then normal service
        fake.url                          # http://127.0.0.1:PORT
        fake.hits("/v1/chat/completions")
"""

from __future__ import annotations

import collections
import contextlib
import json
import re
import socket
import threading
import time
import uuid
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest

VLLM_VERSION = "0.32.0"

PROXY_502_HTML = (
    b"<html>\r\n<head><title>502 Bad Gateway</title></head>\r\n<body>\r\n"
    b"<center><h1>502 Bad Gateway</h1></center>\r\n<hr><center>nginx/1.25.3</center>\r\n"
    b"</body>\r\n</html>\r\n"
)

_TOKEN_RE = re.compile(r"\s*\S+|\s+$")


def tokenize(text: str) -> list[str]:
    """The fake's tokens: each word with its leading whitespace ("Hi there" -> "Hi", " there").
    Joined, they give back `text`."""
    return _TOKEN_RE.findall(text)


def _content_text(content: Any) -> str:
    if isinstance(content, list):  # OpenAI content parts
        return " ".join(str(p.get("text", "")) for p in content if isinstance(p, dict))
    return "" if content is None else str(content)


def count_prompt_tokens(messages: Iterable[Mapping[str, Any]]) -> int:
    """Deterministic prompt size: one token per message (its role) plus one per word."""
    return sum(1 + len(_content_text(m.get("content")).split()) for m in messages)


@dataclass
class RecordedRequest:
    method: str
    path: str  # without the query string
    query: str
    headers: dict[str, str]
    body: bytes
    client_port: int  # the same port on two requests means a kept-alive connection

    def json(self) -> Any:
        return json.loads(self.body)


@dataclass
class _Fault:
    status: int
    body: bytes
    content_type: str
    headers: dict[str, str] = field(default_factory=dict)
    times: int | None = None  # None: every request until cleared
    paths: frozenset[str] | None = None  # None: every path


def _error(message: str, err_type: str, code: int, param: str | None = None) -> dict[str, Any]:
    return {"error": {"message": message, "type": err_type, "param": param, "code": code}}


class FakeVLLM:
    """A vLLM OpenAI-compatible server on 127.0.0.1. Every public attribute is a knob that may
    be changed while it runs (tests run the client in the same process)."""

    def __init__(
        self,
        *,
        model: str = "fake-model",
        answer: str = "Hello! I am a fake vLLM server.",
        api_key: str | None = None,
        max_model_len: int = 4096,
        tokens_per_chunk: int = 1,
        tool_call_parser: str | None = None,
        has_health: bool = True,
        usage_in_stream: bool = True,
    ) -> None:
        self.model = model
        # Tool calling: like vLLM, `tools` are refused (400) unless the server was started with
        # --enable-auto-tool-choice --tool-call-parser <parser>. `tool_call` is what the "model"
        # calls when it may: {"name": ..., "arguments": "<JSON text>"} (None: the first tool,
        # with arguments `{}`).
        self.tool_call_parser = tool_call_parser
        self.tool_call: dict[str, str] | None = None
        # Other OpenAI-compatible servers (llama.cpp, LM Studio, Ollama): no /health, usage
        # never in a stream, any model name accepted and answers naming `reply_model` (a
        # llama.cpp server may report a file path).
        self.has_health = has_health
        self.usage_in_stream = usage_in_stream
        self.reply_model: str | None = None
        self.root = f"/models/{model}"
        self.api_key = api_key
        self.max_model_len = max_model_len
        self.answer = answer
        self.tokens_per_chunk = tokens_per_chunk
        # Fault knobs.
        self.first_byte_delay = 0.0  # seconds before the response headers
        self.delay_paths: frozenset[str] | None = None  # None: every path
        self.chunk_delay = 0.0  # seconds between SSE events
        self.malformed_json = False  # 200 with a broken JSON body (chat, models)
        self.cut_after: int | None = None  # close the socket after K SSE events / half the body
        self.omit_done = False  # end the stream cleanly but without `data: [DONE]`
        self._fault: _Fault | None = None
        # Observations.
        self.requests: list[RecordedRequest] = []
        self.counts: collections.Counter[str] = collections.Counter()
        self.running = 0
        self.prompt_tokens_total = 0
        self.generation_tokens_total = 0
        self.finished: collections.Counter[str] = collections.Counter()
        # Streams whose client went away before the end: vLLM aborts such a request (its
        # `finished_reason="abort"`), so a GPU stops generating for nobody.
        self.cancelled = 0

        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._httpd: _Server | None = None
        self._thread: threading.Thread | None = None
        self._connections: set[socket.socket] = set()
        self._handler_threads: set[threading.Thread] = set()

    # --- lifecycle ---------------------------------------------------------------------

    def start(self) -> FakeVLLM:
        httpd = _Server(("127.0.0.1", 0), _Handler)
        httpd.fake = self
        self._httpd = httpd
        self._stopping.clear()
        self._thread = threading.Thread(
            target=httpd.serve_forever, kwargs={"poll_interval": 0.02}, name="fake-vllm", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        httpd, self._httpd = self._httpd, None
        if httpd is None:
            return
        self._stopping.set()  # wakes any handler waiting in a delay
        httpd.shutdown()
        with self._lock:
            connections = list(self._connections)
            threads = list(self._handler_threads)
        for conn in connections:  # unblock handlers waiting on idle keep-alive connections
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
        for thread in threads:
            thread.join(timeout=2.0)
        httpd.server_close()
        if self._thread is not None:
            self._thread.join(timeout=2.0)

    def __enter__(self) -> FakeVLLM:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    @property
    def port(self) -> int:
        assert self._httpd is not None, "FakeVLLM is not running"
        return int(self._httpd.server_address[1])

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    # --- knobs -------------------------------------------------------------------------

    def fail(
        self,
        status: int,
        *,
        body: bytes | str | dict[str, Any] | None = None,
        content_type: str | None = None,
        headers: Mapping[str, str] | None = None,
        times: int | None = None,
        paths: Iterable[str] | None = None,
    ) -> None:
        """Answer `status` (the next `times` requests, or all) on `paths` (or every path).
        The default body is plain text ("Service Unavailable"), like a proxy."""
        if isinstance(body, dict):
            raw, ctype = json.dumps(body).encode(), "application/json"
        elif isinstance(body, str):
            raw, ctype = body.encode(), "text/plain; charset=utf-8"
        elif body is None:
            from http import HTTPStatus

            raw, ctype = HTTPStatus(status).phrase.encode(), "text/plain; charset=utf-8"
        else:
            raw, ctype = body, "application/octet-stream"
        with self._lock:
            self._fault = _Fault(
                status=status,
                body=raw,
                content_type=content_type or ctype,
                headers=dict(headers or {}),
                times=times,
                paths=frozenset(paths) if paths is not None else None,
            )

    def fail_html(self, status: int = 502, *, times: int | None = None, paths: Iterable[str] | None = None) -> None:
        """An nginx-style HTML error page, as a proxy in front of a dead server sends."""
        self.fail(status, body=PROXY_502_HTML, content_type="text/html", times=times, paths=paths)

    def slow(self, seconds: float, *, paths: Iterable[str] | None = None) -> None:
        """Hold the response headers back by `seconds` (a cold start)."""
        self.first_byte_delay = seconds
        self.delay_paths = frozenset(paths) if paths is not None else None

    def reset_faults(self) -> None:
        with self._lock:
            self._fault = None
        self.first_byte_delay = 0.0
        self.delay_paths = None
        self.chunk_delay = 0.0
        self.malformed_json = False
        self.cut_after = None
        self.omit_done = False

    def hits(self, path: str) -> int:
        """How many requests reached `path` (faulted ones included)."""
        with self._lock:
            return self.counts[path]

    @property
    def total_hits(self) -> int:
        with self._lock:
            return sum(self.counts.values())

    # --- used by the handler -----------------------------------------------------------

    def _record(self, request: RecordedRequest) -> None:
        with self._lock:
            self.requests.append(request)
            self.counts[request.path] += 1

    def _take_fault(self, path: str) -> _Fault | None:
        with self._lock:
            fault = self._fault
            if fault is None or (fault.paths is not None and path not in fault.paths):
                return None
            if fault.times is not None:
                fault.times -= 1
                if fault.times <= 0:
                    self._fault = None
            return fault

    def _wait(self, seconds: float) -> bool:
        """Sleep unless the server is stopping; False if it is."""
        if seconds <= 0:
            return not self._stopping.is_set()
        return not self._stopping.wait(seconds)

    def metrics_text(self) -> str:
        labels = f'engine="0",model_name="{self.model}"'
        with self._lock:
            running, prompt, gen = self.running, self.prompt_tokens_total, self.generation_tokens_total
            finished = dict(self.finished)
        lines = [
            "# HELP python_gc_objects_collected_total Objects collected during gc",
            "# TYPE python_gc_objects_collected_total counter",
            'python_gc_objects_collected_total{generation="0"} 1234.0',
            "# HELP vllm:num_requests_running Number of requests in model execution batches.",
            "# TYPE vllm:num_requests_running gauge",
            f"vllm:num_requests_running{{{labels}}} {float(running)}",
            "# HELP vllm:num_requests_waiting Number of requests waiting to be processed.",
            "# TYPE vllm:num_requests_waiting gauge",
            f"vllm:num_requests_waiting{{{labels}}} 0.0",
            "# HELP vllm:kv_cache_usage_perc KV-cache usage. 1 means 100 percent usage.",
            "# TYPE vllm:kv_cache_usage_perc gauge",
            f"vllm:kv_cache_usage_perc{{{labels}}} 0.0",
            "# HELP vllm:prompt_tokens_total Number of prefill tokens processed.",
            "# TYPE vllm:prompt_tokens_total counter",
            f"vllm:prompt_tokens_total{{{labels}}} {float(prompt)}",
            f"vllm:prompt_tokens_created{{{labels}}} 1.7e+09",
            "# HELP vllm:generation_tokens_total Number of generation tokens processed.",
            "# TYPE vllm:generation_tokens_total counter",
            f"vllm:generation_tokens_total{{{labels}}} {float(gen)}",
            "# HELP vllm:request_success_total Count of successfully processed requests.",
            "# TYPE vllm:request_success_total counter",
        ]
        for reason in ("stop", "length", "abort"):
            lines.append(
                f'vllm:request_success_total{{engine="0",finished_reason="{reason}",model_name="{self.model}"}} '
                f"{float(finished.get(reason, 0))}"
            )
        lines += [
            "# HELP vllm:time_to_first_token_seconds Histogram of time to first token in seconds.",
            "# TYPE vllm:time_to_first_token_seconds histogram",
            f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="0.1",model_name="{self.model}"}} 0.0',
            f'vllm:time_to_first_token_seconds_bucket{{engine="0",le="+Inf",model_name="{self.model}"}} 0.0',
            f"vllm:time_to_first_token_seconds_count{{{labels}}} 0.0",
            f"vllm:time_to_first_token_seconds_sum{{{labels}}} 0.0",
        ]
        return "\n".join(lines) + "\n"


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # socketserver's default backlog of 5 resets connections when 32 clients connect at once.
    request_queue_size = 128
    fake: FakeVLLM

    def handle_error(self, request: Any, client_address: Any) -> None:
        # A client that hangs up mid-response is normal here (cut streams, timeouts): stay quiet.
        pass


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: _Server
    server_version = "uvicorn"
    sys_version = ""

    # --- plumbing ----------------------------------------------------------------------

    def setup(self) -> None:
        super().setup()
        # Small SSE writes must not wait for delayed ACKs (Nagle would add ~40 ms per event).
        self.connection.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        fake = self.server.fake
        with fake._lock:
            fake._connections.add(self.connection)
            fake._handler_threads.add(threading.current_thread())

    def finish(self) -> None:
        fake = self.server.fake
        with fake._lock:
            fake._connections.discard(self.connection)
            fake._handler_threads.discard(threading.current_thread())
        with contextlib.suppress(OSError):
            super().finish()

    def log_message(self, format: str, *args: Any) -> None:
        pass

    def _send(self, status: int, body: bytes, content_type: str, headers: Mapping[str, str] | None = None) -> None:
        self.send_response(status)
        if body or content_type:
            self.send_header("Content-Type", content_type)
        self.send_header("Content-Length", str(len(body)))
        for name, value in (headers or {}).items():
            self.send_header(name, value)
        self.end_headers()
        if body:
            self.wfile.write(body)

    def _send_json(self, status: int, payload: Any) -> None:
        self._send(status, json.dumps(payload).encode(), "application/json")

    def _client_gone(self) -> bool:
        """Has the client closed its side? (Readable with nothing to read: EOF.)"""
        import select

        readable, _, _ = select.select([self.connection], [], [], 0)
        if not readable:
            return False
        try:
            return self.connection.recv(1, socket.MSG_PEEK) == b""
        except OSError:
            return True

    def _cut(self) -> None:
        """Drop the connection without finishing the response, like a crashed server."""
        self.close_connection = True
        with contextlib.suppress(OSError):
            self.connection.shutdown(socket.SHUT_RDWR)

    # --- dispatch ----------------------------------------------------------------------

    def do_GET(self) -> None:
        self._dispatch("GET")

    def do_POST(self) -> None:
        self._dispatch("POST")

    def do_PUT(self) -> None:
        self._dispatch("PUT")

    def do_DELETE(self) -> None:
        self._dispatch("DELETE")

    def _dispatch(self, method: str) -> None:
        fake = self.server.fake
        path, _, query = self.path.partition("?")
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        fake._record(
            RecordedRequest(method, path, query, dict(self.headers.items()), body, int(self.client_address[1]))
        )

        delayed = fake.first_byte_delay > 0 and (fake.delay_paths is None or path in fake.delay_paths)
        if delayed and not fake._wait(fake.first_byte_delay):
            self._cut()
            return
        fault = fake._take_fault(path)
        if fault is not None:
            self._send(fault.status, fault.body, fault.content_type, fault.headers)
            return

        routes = {
            "/health": {"GET": self._health},
            "/version": {"GET": self._version},
            "/metrics": {"GET": self._metrics},
            "/v1/models": {"GET": self._models},
            "/v1/chat/completions": {"POST": self._chat},
        }
        # vLLM's key check is middleware: it runs before routing, so unknown /v1 paths get 401 too.
        if (
            path.startswith("/v1")
            and fake.api_key is not None
            and self.headers.get("Authorization") != f"Bearer {fake.api_key}"
        ):
            self._send_json(401, {"error": "Unauthorized"})
            return
        handlers = routes.get(path)
        if handlers is None:
            self._send_json(404, {"detail": "Not Found"})
        elif method not in handlers:
            self._send_json(405, {"detail": "Method Not Allowed"})
        else:
            handlers[method](body)

    # --- endpoints ---------------------------------------------------------------------

    def _health(self, body: bytes) -> None:
        if not self.server.fake.has_health:
            self._send_json(404, {"detail": "Not Found"})
            return
        self._send(200, b"", "")

    def _version(self, body: bytes) -> None:
        self._send_json(200, {"version": VLLM_VERSION})

    def _metrics(self, body: bytes) -> None:
        self._send(200, self.server.fake.metrics_text().encode(), "text/plain; version=0.0.4; charset=utf-8")

    def _models(self, body: bytes) -> None:
        fake = self.server.fake
        if fake.malformed_json:
            self._send(200, b'{"object": "list", "data": [{"id": ', "application/json")
            return
        self._send_json(
            200,
            {
                "object": "list",
                "data": [
                    {
                        "id": fake.model,
                        "object": "model",
                        "created": int(time.time()),
                        "owned_by": "vllm",
                        "root": fake.root,
                        "parent": None,
                        "max_model_len": fake.max_model_len,
                        "permission": [],
                    }
                ],
            },
        )

    def _chat(self, body: bytes) -> None:
        fake = self.server.fake
        try:
            req = json.loads(body)
        except ValueError as exc:
            self._send_json(400, _error(f"JSON decode error: {exc}", "Bad Request", 400))
            return
        if not isinstance(req, dict) or not isinstance(req.get("messages"), list) or not req["messages"]:
            self._send_json(400, _error("Field required: messages", "BadRequestError", 400, "messages"))
            return
        model = req.get("model")
        if model is not None and model != fake.model and fake.reply_model is None:
            self._send_json(
                404,
                _error(
                    f"The model `{model}` does not exist. Valid aliases: {fake.model}.", "NotFoundError", 404, "model"
                ),
            )
            return
        prompt_tokens = count_prompt_tokens(req["messages"])
        if prompt_tokens > fake.max_model_len:
            self._send_json(
                400,
                _error(
                    f"This model's maximum context length is {fake.max_model_len} tokens. However, your "
                    f"request has {prompt_tokens} input tokens. Please reduce the length of the input messages.",
                    "BadRequestError",
                    400,
                ),
            )
            return
        # vLLM's own precedence: `max_completion_tokens or max_tokens`.
        max_tokens = req.get("max_completion_tokens") or req.get("max_tokens")
        if max_tokens is None:
            max_tokens = fake.max_model_len - prompt_tokens
        if not isinstance(max_tokens, int) or max_tokens < 1:
            self._send_json(400, _error(f"max_tokens must be at least 1, got {max_tokens}.", "BadRequestError", 400))
            return
        if max_tokens > fake.max_model_len:
            self._send_json(
                400,
                _error(
                    f"'max_tokens' or 'max_completion_tokens' is too large: {max_tokens}. This model's maximum "
                    f"context length is {fake.max_model_len} tokens and your request has {prompt_tokens} input "
                    f"tokens ({max_tokens} > {fake.max_model_len} - {prompt_tokens}).",
                    "BadRequestError",
                    400,
                    "max_tokens",
                ),
            )
            return
        # A prompt that fits but leaves too little room is cut short, not refused.
        limit = min(max_tokens, fake.max_model_len - prompt_tokens)
        stop = req.get("stop") or []
        stops = [stop] if isinstance(stop, str) else [str(s) for s in stop]
        if req.get("tool_choice") not in (None, "none") and not req.get("tools"):
            self._send_json(400, _error("When using `tool_choice`, `tools` must be set.", "BadRequestError", 400))
            return
        if req.get("tools") and fake.tool_call_parser is None:
            self._send_json(400, _error('"auto" tool choice requires --enable-auto-tool-choice and --tool-call-parser '
                                        "to be set", "BadRequestError", 400))
            return
        call = _tool_call(fake, req)
        text = json.dumps(_instance(req["response_format"])) if _wants_json(req) else fake.answer
        if call is not None:
            # The model writes the call as hermes text; vLLM's parser turns it into tool_calls
            # only when the call is complete. Cut short by max_tokens, it stays raw text.
            text = "<tool_call>" + json.dumps({"name": call["name"], "arguments": json.loads(call["arguments"] or "{}")})
        pieces, finish_reason, stop_reason = _generate(tokenize(text), limit, stops)
        if call is not None and finish_reason != "length":
            pieces, stop_reason = [], None
            # vLLM says `stop` for a named tool_choice although the message holds tool_calls.
            finish_reason = "stop" if isinstance(req.get("tool_choice"), dict) else "tool_calls"
        usage = {
            "prompt_tokens": prompt_tokens,
            "total_tokens": prompt_tokens + len(pieces),
            "completion_tokens": len(pieces),
            "prompt_tokens_details": None,
        }
        def finished() -> None:
            # Counted when generation ends, before the last bytes go out, as vLLM's metrics are:
            # a client that has its answer can read the counters at once.
            with fake._lock:
                fake.prompt_tokens_total += prompt_tokens
                fake.generation_tokens_total += len(pieces)
                fake.finished[finish_reason] += 1

        with fake._lock:
            fake.running += 1
        try:
            if req.get("stream"):
                include_usage = bool((req.get("stream_options") or {}).get("include_usage")) and fake.usage_in_stream
                self._stream(pieces, finish_reason, stop_reason, usage if include_usage else None,
                             call if finish_reason != "length" else None, req, finished)
            else:
                self._plain(pieces, finish_reason, stop_reason, usage,
                            call if finish_reason != "length" else None, req, finished)
        finally:
            with fake._lock:
                fake.running -= 1

    def _plain(self, pieces: list[str], finish_reason: str, stop_reason: str | None, usage: dict[str, Any],
               call: dict[str, str] | None, req: dict[str, Any], finished: Callable[[], None]) -> bool:
        fake = self.server.fake
        if fake.malformed_json:
            self._send(200, b'{"id": "chatcmpl-1", "object": "chat.completion", "choices": [{"mess', "application/json")
            return False
        payload = {
            "id": f"chatcmpl-{uuid.uuid4().hex}",
            "object": "chat.completion",
            "created": int(time.time()),
            "model": fake.reply_model or fake.model,
            "choices": [
                {
                    "index": i,
                    "message": {
                        "role": "assistant",
                        "content": "".join(pieces),  # "" beside tool_calls, as vLLM does
                        "refusal": None,
                        "annotations": None,
                        "audio": None,
                        "function_call": None,
                        "tool_calls": [] if call is None else [{
                            "id": f"chatcmpl-tool-{uuid.uuid4().hex[:16]}", "type": "function",
                            "function": {"name": call["name"], "arguments": call["arguments"]},
                        }],
                        "reasoning_content": None,
                    },
                    "logprobs": {"content": [{"token": p, "logprob": -0.5, "bytes": None, "top_logprobs": []}
                                             for p in pieces]} if req.get("logprobs") else None,
                    "finish_reason": finish_reason,
                    "stop_reason": stop_reason,
                }
                for i in range(int(req.get("n") or 1))
            ],
            "service_tier": None,
            "system_fingerprint": None,
            "usage": usage,
            "prompt_logprobs": None,
            "kv_transfer_params": None,
        }
        data = json.dumps(payload).encode()
        if fake.cut_after is not None:
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data[: len(data) // 2])
            self._cut()
            return False
        finished()
        self._send(200, data, "application/json")
        return True

    def _stream(
        self, pieces: list[str], finish_reason: str, stop_reason: str | None, usage: dict[str, Any] | None,
        call: dict[str, str] | None, req: dict[str, Any], finished: Callable[[], None],
    ) -> bool:
        fake = self.server.fake
        self.send_response(200)
        self.send_header("Content-Type", "text/event-stream; charset=utf-8")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()

        head = json.dumps(
            {
                "id": f"chatcmpl-{uuid.uuid4().hex}",
                "object": "chat.completion.chunk",
                "created": int(time.time()),
                "model": fake.reply_model or fake.model,
            },
            separators=(",", ":"),
        )[:-1]
        events: list[str] = [
            head + ',"choices":[{"index":0,"delta":{"role":"assistant","content":""},"logprobs":null,"finish_reason":null}]}'
        ]
        if call is not None:
            # vLLM: content null with the call's id, type, index and name; then argument fragments.
            first = {"id": f"chatcmpl-tool-{uuid.uuid4().hex[:16]}", "type": "function", "index": 0,
                     "function": {"name": call["name"]}}
            events.append(head + ',"choices":[{"index":0,"delta":{"content":null,"tool_calls":[' + json.dumps(first)
                          + ']},"logprobs":null,"finish_reason":null}]}')
            arguments = call["arguments"]
            for i in range(0, len(arguments), 7):
                fragment = {"index": 0, "function": {"arguments": arguments[i:i + 7]}}
                events.append(head + ',"choices":[{"index":0,"delta":{"tool_calls":[' + json.dumps(fragment)
                              + ']},"logprobs":null,"finish_reason":null}]}')
            events.append(head + ',"choices":[{"index":0,"delta":{},"logprobs":null,"finish_reason":'
                          + json.dumps(finish_reason) + "}]}")
            pieces = []
        step = max(1, fake.tokens_per_chunk)
        groups = ["".join(pieces[i : i + step]) for i in range(0, len(pieces), step)] or ([] if call else [""])
        for n, text in enumerate(groups):
            last = n == len(groups) - 1
            finish = json.dumps(finish_reason) if last else "null"
            extra = f',"stop_reason":{json.dumps(stop_reason)}' if last else ""
            events.append(
                head
                + ',"choices":[{"index":0,"delta":{"content":'
                + json.dumps(text)
                + '},"logprobs":null,"finish_reason":'
                + finish
                + extra
                + "}]}"
            )
        if usage is not None:
            events.append(head + ',"choices":[],"usage":' + json.dumps(usage, separators=(",", ":")) + "}")
        if fake.malformed_json:
            events.insert(1, '{"id": "chatcmpl-1", "choices": [{"del')

        write = self.wfile.write
        for count, event in enumerate(events):
            if fake.cut_after is not None and count >= fake.cut_after:
                self._cut()
                return False
            if count and fake.chunk_delay > 0 and not fake._wait(fake.chunk_delay):
                self._cut()
                return False
            data = ("data: " + event + "\n\n").encode()
            try:
                if self._client_gone():
                    raise ConnectionResetError
                write(b"%x\r\n%s\r\n" % (len(data), data))
            except OSError:  # the client hung up mid-stream: abort, as vLLM does
                with fake._lock:
                    fake.cancelled += 1
                    fake.finished["abort"] += 1
                self.close_connection = True
                return False
        finished()
        if not fake.omit_done:
            done = b"data: [DONE]\n\n"
            write(b"%x\r\n%s\r\n" % (len(done), done))
        write(b"0\r\n\r\n")
        return True


def _tool_call(fake: FakeVLLM, req: dict[str, Any]) -> dict[str, str] | None:
    """The call the "model" makes: when tools are given, tool_choice is not "none", and the
    conversation does not end with a tool result (then it answers in text)."""
    tools = req.get("tools") or []
    choice = req.get("tool_choice", "auto")
    last = req["messages"][-1] if req["messages"] else {}
    if not tools or choice == "none" or (isinstance(last, dict) and last.get("role") == "tool"):
        return None
    if isinstance(choice, dict):
        return {"name": choice["function"]["name"], "arguments": (fake.tool_call or {}).get("arguments", "{}")}
    if fake.tool_call is None and choice != "required":
        return None
    return fake.tool_call or {"name": tools[0]["function"]["name"], "arguments": "{}"}


def _wants_json(req: dict[str, Any]) -> bool:
    rf = req.get("response_format")
    return isinstance(rf, dict) and rf.get("type") in ("json_object", "json_schema")


def _instance(rf: dict[str, Any]) -> Any:
    """A value matching the requested schema (vLLM's guided decoding would produce one)."""
    schema = (rf.get("json_schema") or {}).get("schema") if rf.get("type") == "json_schema" else None
    return schema_instance(schema or {"type": "object", "properties": {"answer": {"type": "string"}}})


def schema_instance(schema: dict[str, Any]) -> Any:
    kind = schema.get("type")
    if "enum" in schema:
        return schema["enum"][0]
    if kind == "object":
        return {k: schema_instance(v) for k, v in (schema.get("properties") or {}).items()}
    if kind == "array":
        return [schema_instance(schema.get("items") or {"type": "string"})]
    return {"integer": 1, "number": 1.5, "boolean": True, "null": None}.get(str(kind), "fake")


def _generate(tokens: list[str], limit: int, stops: list[str]) -> tuple[list[str], str, str | None]:
    """The pieces emitted (one per token), finish_reason and stop_reason, like vLLM: a stop
    string ends the answer before it (finish "stop", stop_reason = the string); running out
    of `limit` tokens first gives finish "length"."""
    if not stops:
        if len(tokens) > limit:
            return tokens[:limit], "length", None
        return list(tokens), "stop", None
    pieces: list[str] = []
    text = ""
    for tok in tokens:
        if len(pieces) >= limit:
            return pieces, "length", None
        new = text + tok
        hits = [(new.find(s), s) for s in stops if s and new.find(s) >= 0]
        if hits:
            idx, matched = min(hits)
            pieces.append(new[len(text) : idx] if idx >= len(text) else "")
            return pieces, "stop", matched
        pieces.append(tok)
        text = new
    return pieces, "stop", None


@pytest.fixture
def fake_vllm() -> Iterator[FakeVLLM]:
    """A running FakeVLLM (no API key), stopped after the test."""
    with FakeVLLM() as fake:
        yield fake
