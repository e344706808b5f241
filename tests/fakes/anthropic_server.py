"""A loopback fake of the Anthropic Messages API (`POST /v1/messages`), JSON and SSE.

It is shaped after facts/PROVIDERS.md "Anthropic (anthropic 2.10.0)" and after what the real
`anthropic` SDK 2.10.0 sends and parses, so tests can drive the real SDK through `base_url`.
It validates requests the way the real API does (alternating turns, top-level `system`,
required `max_tokens`, known model family) and has fault knobs for the failure modes gpuctl
must handle. It must never listen on anything but 127.0.0.1 and never talk to the network.

Tokens are whitespace-separated words: good enough to make `max_tokens` and usage testable.

    with FakeAnthropic(api_key="sk-ant-test") as fake:
        client = anthropic.AsyncAnthropic(api_key="sk-ant-test", base_url=fake.url)
"""

from __future__ import annotations

import json
import re
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

DEFAULT_REPLY = "Hello from the fake Anthropic API."

# Top-level fields the real API accepts on /v1/messages; anything else is a 400, as there.
_KNOWN_FIELDS = frozenset(
    {
        "model",
        "messages",
        "max_tokens",
        "system",
        "stop_sequences",
        "stream",
        "temperature",
        "top_p",
        "top_k",
        "metadata",
        "tools",
        "tool_choice",
        "thinking",
        "service_tier",
        "container",
        "output_config",
        "cache_control",
        "diagnostics",
        "inference_geo",
        "speed",
    }
)

_ERROR_TYPES = {
    400: "invalid_request_error",
    401: "authentication_error",
    403: "permission_error",
    404: "not_found_error",
    413: "request_too_large",
    429: "rate_limit_error",
    500: "api_error",
    529: "overloaded_error",
}

_ERROR_MESSAGES = {
    429: "Number of request tokens has exceeded your per-minute rate limit",
    500: "Internal server error",
    529: "Overloaded",
}


class _BadRequest(Exception):
    def __init__(self, message: str, status: int = 400) -> None:
        super().__init__(message)
        self.message = message
        self.status = status


def _tokens(text: str) -> list[str]:
    """Split into "tokens": each word with the whitespace after it, so "".join() is lossless."""
    return re.findall(r"\s*\S+\s*", text) if text.strip() else []


_BLOCK_TYPES = ("text", "image", "tool_use", "tool_result")


def _content_text(content: Any, where: str) -> str:
    """The text of a `content` (a string or a list of content blocks), validated like the API:
    text, image, tool_use and tool_result blocks; a tool block's JSON counts as its text."""
    if isinstance(content, str):
        if not content:
            raise _BadRequest(f"{where}: text content blocks must be non-empty")
        return content
    if isinstance(content, list) and content:
        parts = []
        for i, block in enumerate(content):
            kind = block.get("type") if isinstance(block, dict) else None
            if kind not in _BLOCK_TYPES:
                raise _BadRequest(f"{where}.{i}: unknown content block type {kind!r}")
            if kind == "text":
                if not isinstance(block.get("text"), str) or not block["text"]:
                    raise _BadRequest(f"{where}.{i}: text content blocks must be non-empty")
                parts.append(block["text"])
            elif kind == "image":
                source = block.get("source") or {}
                if source.get("type") == "base64":
                    if source.get("media_type") not in ("image/jpeg", "image/png", "image/gif", "image/webp"):
                        raise _BadRequest(f"{where}.{i}.source.media_type: unsupported image type")
                    if not isinstance(source.get("data"), str) or not source["data"]:
                        raise _BadRequest(f"{where}.{i}.source.data: Field required")
                elif source.get("type") != "url" or not str(source.get("url", "")).startswith("http"):
                    raise _BadRequest(f"{where}.{i}.source: must be a base64 or url source")
            elif kind == "tool_use":
                if not isinstance(block.get("id"), str) or not isinstance(block.get("name"), str) \
                        or not isinstance(block.get("input"), dict):
                    raise _BadRequest(f"{where}.{i}: tool_use needs id, name and an object input")
                parts.append(json.dumps(block["input"]))
            else:
                if not isinstance(block.get("tool_use_id"), str):
                    raise _BadRequest(f"{where}.{i}.tool_use_id: Field required")
                result = block.get("content", "")
                parts.append(result if isinstance(result, str) else _content_text(result, f"{where}.{i}.content"))
        return "".join(parts)
    raise _BadRequest(f"{where}: content must be a string or a non-empty list of content blocks")


def _blocks_of(message: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    content = message.get("content")
    return [b for b in content if isinstance(b, dict) and b.get("type") == kind] if isinstance(content, list) else []


# Anthropic's documented rule for tool names (no '.').
_TOOL_NAME = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")
# JSON Schema keywords structured output does not take (the SDK's `transform_schema` moves
# them into descriptions).
_SCHEMA_UNSUPPORTED = frozenset({"minimum", "maximum", "exclusiveMinimum", "exclusiveMaximum", "multipleOf",
                                 "minLength", "maxLength"})


def _validate_schema(schema: Any, where: str) -> None:
    """Structured output's rules: every object says `additionalProperties: false`, and no
    numeric or length constraints."""
    if not isinstance(schema, dict):
        return
    if schema.get("type") == "object" and schema.get("additionalProperties") is not False:
        raise _BadRequest(f"{where}: For 'object' type, 'additionalProperties' must be explicitly set to false")
    unsupported = sorted(_SCHEMA_UNSUPPORTED & set(schema))
    if unsupported:
        raise _BadRequest(f"{where}: property '{unsupported[0]}' is not supported")
    for key, sub in (schema.get("properties") or {}).items():
        _validate_schema(sub, f"{where}.properties.{key}")
    for key in ("items", "additionalProperties"):
        _validate_schema(schema.get(key), f"{where}.{key}")
    for key in ("anyOf", "allOf", "oneOf"):
        for i, sub in enumerate(schema.get(key) or ()):
            _validate_schema(sub, f"{where}.{key}.{i}")
    for key, sub in (schema.get("$defs") or {}).items():
        _validate_schema(sub, f"{where}.$defs.{key}")


def _validate_tools(body: dict[str, Any], messages: list[Any]) -> None:
    tools = body.get("tools")
    if tools is not None:
        if not isinstance(tools, list):
            raise _BadRequest("tools: Input should be a valid list")
        for i, tool in enumerate(tools):
            if not isinstance(tool, dict) or not isinstance(tool.get("name"), str) \
                    or not isinstance(tool.get("input_schema"), dict) or tool["input_schema"].get("type") != "object":
                raise _BadRequest(f"tools.{i}: needs name and an input_schema of type object")
            if not _TOOL_NAME.match(tool["name"]):
                raise _BadRequest(f"tools.{i}.custom.name: String should match pattern '^[a-zA-Z0-9_-]{{1,64}}$'")
            unknown = set(tool) - {"name", "description", "input_schema", "strict", "cache_control", "type"}
            if unknown:
                raise _BadRequest(f"tools.{i}.{sorted(unknown)[0]}: Extra inputs are not permitted")
        if len({t["name"] for t in tools}) != len(tools):
            raise _BadRequest("tools: Tool names must be unique.")
    choice = body.get("tool_choice")
    if choice is not None:
        names = {t["name"] for t in tools or []}
        if not isinstance(choice, dict) or choice.get("type") not in ("auto", "any", "tool", "none"):
            raise _BadRequest("tool_choice: must be auto, any, tool or none")
        if choice["type"] in ("any", "tool") and not tools:
            raise _BadRequest("tool_choice: may only be specified while providing tools")
        if choice["type"] == "tool" and choice.get("name") not in names:
            raise _BadRequest(f"tool_choice.name: {choice.get('name')!r} is not one of the tools")
    uses_tools = any(_blocks_of(m, "tool_use") or _blocks_of(m, "tool_result") for m in messages if isinstance(m, dict))
    if uses_tools and not tools:
        raise _BadRequest("Requests which include `tool_use` or `tool_result` blocks must define tools.")
    for i, message in enumerate(messages):
        # Every tool_result answers a tool_use of the message right before it...
        asked = {b.get("id") for b in _blocks_of(messages[i - 1], "tool_use")} if i else set()
        stray = [b.get("tool_use_id") for b in _blocks_of(message, "tool_result") if b.get("tool_use_id") not in asked]
        if stray:
            raise _BadRequest(f"messages.{i}.content: unexpected `tool_use_id` found in `tool_result` blocks: "
                              f"{stray[0]}. Each `tool_result` block must have a corresponding `tool_use` block "
                              "in the previous message.")
        # ...and every tool_use is answered by a tool_result in the very next (user) turn.
        ids = [b["id"] for b in _blocks_of(message, "tool_use")]
        if not ids:
            continue
        following = messages[i + 1] if i + 1 < len(messages) else None
        answered = {b.get("tool_use_id") for b in _blocks_of(following, "tool_result")} if following else set()
        missing = [t for t in ids if t not in answered]
        if following is not None and missing:
            raise _BadRequest(f"messages.{i + 1}: `tool_use` ids were found without `tool_result` blocks "
                              f"immediately after: {', '.join(missing)}")
    output = body.get("output_config")
    if output is not None:
        fmt = output.get("format") if isinstance(output, dict) else None
        if fmt is not None and (not isinstance(fmt, dict) or fmt.get("type") != "json_schema"
                                or not isinstance(fmt.get("schema"), dict)):
            raise _BadRequest("output_config.format: must be {type: json_schema, schema}")
        if fmt is not None:
            _validate_schema(fmt["schema"], "output_config.format.schema")


def validate_body(body: Any) -> tuple[str | None, list[dict[str, Any]]]:
    """Check a /v1/messages body like the real API; returns (system text, messages)."""
    if not isinstance(body, dict):
        raise _BadRequest("request body must be a JSON object")
    unknown = sorted(set(body) - _KNOWN_FIELDS)
    if unknown:
        raise _BadRequest(f"{unknown[0]}: Extra inputs are not permitted")
    model = body.get("model")
    if not isinstance(model, str) or not model:
        raise _BadRequest("model: Field required")
    max_tokens = body.get("max_tokens")
    if max_tokens is None:
        raise _BadRequest("max_tokens: Field required")
    if not isinstance(max_tokens, int) or isinstance(max_tokens, bool) or max_tokens < 1:
        raise _BadRequest("max_tokens: Input should be greater than or equal to 1")
    temperature = body.get("temperature")
    if temperature is not None and body.get("top_p") is not None:
        # Current Claude models (Haiku/Sonnet 4.5 and later) refuse the pair.
        raise _BadRequest("`temperature` and `top_p` cannot both be specified for this model. Please use only one.")
    if temperature is not None and (
        not isinstance(temperature, int | float) or not 0.0 <= float(temperature) <= 1.0
    ):
        raise _BadRequest("temperature: Input should be less than or equal to 1")
    stops = body.get("stop_sequences")
    if stops is not None and (
        not isinstance(stops, list) or not all(isinstance(s, str) and s.strip() for s in stops)
    ):
        raise _BadRequest(
            "stop_sequences: each stop sequence must be a string containing non-whitespace"
        )

    system: str | None = None
    if "system" in body:
        system = _content_text(body["system"], "system")

    messages = body.get("messages")
    if not isinstance(messages, list):
        raise _BadRequest("messages: Field required")
    if not messages:
        raise _BadRequest("messages: at least one message is required")
    previous = None
    for i, message in enumerate(messages):
        if not isinstance(message, dict):
            raise _BadRequest(f"messages.{i}: Input should be a valid dictionary")
        role = message.get("role")
        if role == "system":
            raise _BadRequest(
                f'messages.{i}.role: Unexpected role "system". The Messages API accepts a '
                'top-level `system` parameter, not "system" as an input message role.'
            )
        if role not in ("user", "assistant"):
            raise _BadRequest(f"messages.{i}.role: Input should be 'user' or 'assistant'")
        if i == 0 and role != "user":
            raise _BadRequest('messages: first message must use the "user" role')
        if role == previous:
            raise _BadRequest(
                f'messages: roles must alternate between "user" and "assistant", but found multiple "{role}" roles in a row'
            )
        previous = role
        text = _content_text(message.get("content"), f"messages.{i}.content")
        if role == "assistant" and i == len(messages) - 1 and text != text.rstrip():
            raise _BadRequest(
                "messages: final assistant content cannot end with trailing whitespace"
            )
        if role == "assistant" and _blocks_of(message, "tool_result"):
            raise _BadRequest(f"messages.{i}: tool_result blocks belong in a user turn")
    _validate_tools(body, messages)
    if not model.startswith("claude"):
        raise _BadRequest(f"model: {model}", status=404)
    return system, messages


class FakeAnthropic:
    """The fake server. Knobs are plain attributes; set them before (or between) requests.

    Knobs:
      reply_text           what the "model" answers
      status               force this HTTP status with Anthropic's error JSON (429, 500, 529, ...)
      status_times         ...for this many requests only, then serve normally (None: until reset)
      retry_after          the `retry-after` header sent with a forced 429 (and 529)
      first_byte_delay_s   wait this long before sending anything (a slow first byte)
      stream_error_after   in a stream, send an `event: error` after this many text deltas
      stream_cut_after     in a stream, stop after this many text deltas without `message_stop`:
      stream_cut_mode      "drop" closes the socket mid-body, "clean" ends the body normally
      malformed            answer 200 with an HTML page instead of JSON
      models               if set, the only model ids that exist (others: 404 not_found_error);
                           None accepts any id that starts with "claude"

    Records: `requests` (POSTs to /v1/messages), `stream_requests`, `auth_failures`,
    `bodies` (every parsed body), `last_body`, `last_headers`.
    """

    def __init__(
        self, *, api_key: str = "sk-ant-fake-key", reply_text: str = DEFAULT_REPLY
    ) -> None:
        self.api_key = api_key
        self.reply_text = reply_text
        self.status: int | None = None
        self.status_times: int | None = None
        self.retry_after: str = "7"
        self.first_byte_delay_s: float = 0.0
        self.stream_error_after: int | None = None
        self.stream_cut_after: int | None = None
        self.stream_cut_mode: str = "drop"
        self.malformed: bool = False
        self.models: set[str] | None = None
        # What the "model" calls when tools are given and it may: {"name", "input": {...}}
        # (None: only when tool_choice forces a call, the first or the named tool, input {}).
        self.tool_call: dict[str, Any] | None = None
        self.force_stop_reason: str | None = None  # e.g. "refusal": the stop_reason text answers end with

        self.requests = 0
        self.stream_requests = 0
        self.auth_failures = 0
        self.bodies: list[Any] = []
        self.last_body: Any = None
        self.last_headers: dict[str, str] = {}

        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._ids = 0
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle ---------------------------------------------------------------------------

    @property
    def url(self) -> str:
        """The base URL to give the SDK (it appends `/v1/messages`)."""
        if self._server is None:
            raise RuntimeError("FakeAnthropic is not started")
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> FakeAnthropic:
        handler = _make_handler(self)
        server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        server.daemon_threads = True
        self._server = server
        self._thread = threading.Thread(
            # A short poll interval keeps shutdown() (and so every test's teardown) fast.
            target=server.serve_forever,
            kwargs={"poll_interval": 0.02},
            name="fake-anthropic",
            daemon=True,
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        # Wake handlers that sleep on a slow-first-byte knob, so shutdown never waits on them.
        self._stopping.set()
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None
        if self._thread is not None:
            self._thread.join(timeout=5)
            self._thread = None

    def __enter__(self) -> FakeAnthropic:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    # -- the "model" ------------------------------------------------------------------------

    def _take_forced_status(self) -> int | None:
        with self._lock:
            if self.status is None or self.status_times == 0:
                return None
            if self.status_times is not None:
                self.status_times -= 1
            return self.status

    def _next_id(self) -> str:
        with self._lock:
            self._ids += 1
            return f"msg_fake{self._ids:06d}"

    def tool_use(self, body: dict[str, Any]) -> dict[str, Any] | None:
        """The tool_use block the "model" answers with, or None for text: when tools are given,
        tool_choice is not none, and the last user turn is not tool results (then it answers)."""
        tools = body.get("tools") or []
        choice = body.get("tool_choice") or {"type": "auto"}
        last = body["messages"][-1]
        if not tools or choice["type"] == "none" or _blocks_of(last, "tool_result"):
            return None
        if choice["type"] == "tool":
            name = choice["name"]
        elif self.tool_call is not None:
            name = self.tool_call["name"]
        elif choice["type"] == "any":
            name = tools[0]["name"]
        else:
            return None
        if self.tool_call is not None and self.tool_call["name"] == name:
            tool_input = self.tool_call.get("input", {})
        else:  # an input matching the tool's schema (a forced tool the knob does not name)
            from tests.fakes.vllm_server import schema_instance

            schema = next(t["input_schema"] for t in tools if t["name"] == name)
            tool_input = schema_instance(schema) if schema.get("properties") else {}
        return {"type": "tool_use", "id": f"toolu_fake{self._next_id()[-6:]}", "name": name, "input": tool_input}

    def generate(
        self, body: dict[str, Any], system: str | None
    ) -> tuple[list[str], str, str | None, int]:
        """Deltas, stop_reason, stop_sequence and input tokens for a valid body. Input tokens
        count the system prompt and the tool definitions too, as Anthropic bills them."""
        prompt = [system or ""] + [_content_text(m["content"], "content") for m in body["messages"]]
        prompt += [json.dumps(t) for t in body.get("tools") or []]
        input_tokens = sum(len(_tokens(p)) for p in prompt)
        stops: list[str] = body.get("stop_sequences") or []
        max_tokens: int = body["max_tokens"]
        deltas: list[str] = []
        text = ""
        reply = self.reply_text
        fmt = (body.get("output_config") or {}).get("format")
        if fmt is not None:  # structured output: the answer is JSON matching the schema
            from tests.fakes.vllm_server import schema_instance

            reply = json.dumps(schema_instance(fmt["schema"]))
        for token in _tokens(reply):
            candidate = text + token
            hits = [(candidate.find(s), s) for s in stops if s in candidate]
            if hits:
                cut, seq = min(hits)
                if cut > len(text):
                    deltas.append(candidate[len(text) : cut])
                return deltas, "stop_sequence", seq, input_tokens
            if len(deltas) >= max_tokens:
                return deltas, "max_tokens", None, input_tokens
            deltas.append(token)
            text = candidate
        return deltas, "end_turn", None, input_tokens


def _make_handler(fake: FakeAnthropic) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"
        server_version = "FakeAnthropic/1.0"

        def log_message(self, format: str, *args: Any) -> None:  # quiet: tests read counters
            return

        # -- plumbing --------------------------------------------------------------------

        def _send_json(
            self, status: int, payload: Any, headers: dict[str, str] | None = None
        ) -> None:
            data = json.dumps(payload).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.send_header("request-id", "req_fake")
            for name, value in (headers or {}).items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

        def _send_error(
            self, status: int, message: str, headers: dict[str, str] | None = None
        ) -> None:
            error_type = _ERROR_TYPES.get(status, "api_error")
            payload = {
                "type": "error",
                "error": {"type": error_type, "message": message},
                "request_id": "req_fake",
            }
            self._send_json(status, payload, headers)

        def _chunk(self, data: bytes) -> None:
            self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
            self.wfile.flush()

        def _event(self, name: str, payload: dict[str, Any]) -> None:
            self._chunk(f"event: {name}\ndata: {json.dumps(payload)}\n\n".encode())

        # -- routes ----------------------------------------------------------------------

        def do_GET(self) -> None:
            self._send_error(404, "Not found")

        def do_POST(self) -> None:
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if self.path.split("?")[0] != "/v1/messages":
                self._send_error(404, "Not found")
                return
            try:
                body: Any = json.loads(raw or b"null")
            except ValueError:
                body = None
            with fake._lock:
                fake.requests += 1
                fake.bodies.append(body)
                fake.last_body = body
                fake.last_headers = {k.lower(): v for k, v in self.headers.items()}
                if isinstance(body, dict) and body.get("stream"):
                    fake.stream_requests += 1

            if fake.first_byte_delay_s > 0 and fake._stopping.wait(fake.first_byte_delay_s):
                self.close_connection = True
                return

            if not self._authorized():
                with fake._lock:
                    fake.auth_failures += 1
                self._send_error(401, "invalid x-api-key")
                return
            if not self.headers.get("anthropic-version"):
                self._send_error(400, "anthropic-version: header is required")
                return
            status = fake._take_forced_status()
            if status is not None:
                headers = {"retry-after": fake.retry_after} if status in (429, 529) else {}
                self._send_error(status, _ERROR_MESSAGES.get(status, f"Error {status}"), headers)
                return
            if body is None:
                self._send_error(400, "There was an issue with the request body: invalid JSON")
                return
            try:
                system, _ = validate_body(body)
                if fake.models is not None and body["model"] not in fake.models:
                    raise _BadRequest(f"model: {body['model']}", status=404)
            except _BadRequest as exc:
                self._send_error(exc.status, exc.message)
                return
            if fake.malformed:
                page = b"<html><body>502 Bad Gateway (but sent as 200)</body></html>"
                self.send_response(200)
                self.send_header("Content-Type", "text/html")
                self.send_header("Content-Length", str(len(page)))
                self.end_headers()
                self.wfile.write(page)
                return

            deltas, stop_reason, stop_sequence, input_tokens = fake.generate(body, system)
            use = fake.tool_use(body)
            stop_reason = fake.force_stop_reason or stop_reason
            if use is not None:
                if body.get("stream"):
                    self._stream_tool_use(body, use, input_tokens)
                    return
                self._send_json(200, {
                    "id": fake._next_id(), "type": "message", "role": "assistant", "model": body["model"],
                    "content": [use], "stop_reason": "tool_use", "stop_sequence": None,
                    "usage": {"input_tokens": input_tokens, "output_tokens": len(_tokens(json.dumps(use["input"])))},
                })
                return
            if body.get("stream"):
                self._stream(body, deltas, stop_reason, stop_sequence, input_tokens)
            else:
                self._send_json(
                    200,
                    {
                        "id": fake._next_id(),
                        "type": "message",
                        "role": "assistant",
                        "model": body["model"],
                        "content": [{"type": "text", "text": "".join(deltas)}],
                        "stop_reason": stop_reason,
                        "stop_sequence": stop_sequence,
                        "usage": {"input_tokens": input_tokens, "output_tokens": len(deltas)},
                    },
                )

        def _authorized(self) -> bool:
            # SDK 2.10.0 sends `Authorization: Bearer <key>`; the real API also takes `x-api-key`.
            auth = self.headers.get("Authorization") or ""
            key = (
                auth[len("Bearer ") :]
                if auth.startswith("Bearer ")
                else self.headers.get("x-api-key")
            )
            return key == fake.api_key

        def _stream(
            self,
            body: dict[str, Any],
            deltas: list[str],
            stop_reason: str,
            stop_sequence: str | None,
            input_tokens: int,
        ) -> None:
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Cache-Control", "no-cache")
            self.send_header("Transfer-Encoding", "chunked")
            self.send_header("request-id", "req_fake")
            self.end_headers()
            self._event(
                "message_start",
                {
                    "type": "message_start",
                    "message": {
                        "id": fake._next_id(),
                        "type": "message",
                        "role": "assistant",
                        "model": body["model"],
                        "content": [],
                        "stop_reason": None,
                        "stop_sequence": None,
                        "usage": {"input_tokens": input_tokens, "output_tokens": 1},
                    },
                },
            )
            self._event(
                "content_block_start",
                {
                    "type": "content_block_start",
                    "index": 0,
                    "content_block": {"type": "text", "text": ""},
                },
            )
            self._event("ping", {"type": "ping"})
            for sent, delta in enumerate(deltas):
                if fake.stream_error_after is not None and sent >= fake.stream_error_after:
                    self._event(
                        "error",
                        {
                            "type": "error",
                            "error": {"type": "overloaded_error", "message": "Overloaded"},
                        },
                    )
                    self._chunk(b"")  # the terminating zero-length chunk
                    return
                if fake.stream_cut_after is not None and sent >= fake.stream_cut_after:
                    self._cut()
                    return
                self._event(
                    "content_block_delta",
                    {
                        "type": "content_block_delta",
                        "index": 0,
                        "delta": {"type": "text_delta", "text": delta},
                    },
                )
            if fake.stream_error_after is not None and fake.stream_error_after >= len(deltas):
                self._event(
                    "error",
                    {
                        "type": "error",
                        "error": {"type": "overloaded_error", "message": "Overloaded"},
                    },
                )
                self._chunk(b"")
                return
            if fake.stream_cut_after is not None:
                self._cut()
                return
            self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
            self._event(
                "message_delta",
                {
                    "type": "message_delta",
                    "delta": {"stop_reason": stop_reason, "stop_sequence": stop_sequence},
                    "usage": {"output_tokens": len(deltas)},
                },
            )
            self._event("message_stop", {"type": "message_stop"})
            self._chunk(b"")

        def _stream_tool_use(self, body: dict[str, Any], use: dict[str, Any], input_tokens: int) -> None:
            """A tool_use block as the API streams it: its start (id, name, input {}), then
            `input_json_delta` fragments of the input's JSON, then stop_reason tool_use."""
            self.send_response(200)
            self.send_header("Content-Type", "text/event-stream; charset=utf-8")
            self.send_header("Transfer-Encoding", "chunked")
            self.end_headers()
            self._event("message_start", {"type": "message_start", "message": {
                "id": fake._next_id(), "type": "message", "role": "assistant", "model": body["model"],
                "content": [], "stop_reason": None, "stop_sequence": None,
                "usage": {"input_tokens": input_tokens, "output_tokens": 1}}})
            self._event("content_block_start", {"type": "content_block_start", "index": 0,
                                                "content_block": {**use, "input": {}}})
            text = json.dumps(use["input"])
            for sent, i in enumerate(range(0, len(text), 5)):
                if fake.stream_cut_after is not None and sent >= fake.stream_cut_after:
                    self._cut()
                    return
                self._event("content_block_delta", {"type": "content_block_delta", "index": 0, "delta": {
                    "type": "input_json_delta", "partial_json": text[i:i + 5]}})
            self._event("content_block_stop", {"type": "content_block_stop", "index": 0})
            self._event("message_delta", {"type": "message_delta",
                                          "delta": {"stop_reason": "tool_use", "stop_sequence": None},
                                          "usage": {"output_tokens": len(_tokens(text))}})
            self._event("message_stop", {"type": "message_stop"})
            self._chunk(b"")

        def _cut(self) -> None:
            if fake.stream_cut_mode == "clean":
                self._chunk(b"")  # a well-formed body that simply lacks `message_stop`
            else:
                self.close_connection = True  # no terminating chunk: the peer sees a broken body

    return Handler
