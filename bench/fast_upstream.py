"""A minimal, fast vLLM-shaped upstream for bench/bench_serve.py: an asyncio protocol (uvloop)
answering `/health`, `/v1/models` and `/v1/chat/completions` (JSON, or SSE with one event per
token: `max_tokens` tokens), keep-alive HTTP/1.1, each SSE event its own write.

The test fake (tests/fakes/vllm_server.py) is a thread per connection and costs ~1.5 ms a
request: in front of it, the gateway's own time would drown in the upstream's. This one costs
tens of microseconds, so what the benchmark sees added is the gateway's.

    python -m bench.fast_upstream      # prints its URL, serves until stdin closes
"""

from __future__ import annotations

import asyncio
import json
import sys
import time

MODEL = "bench-model"


def _chunk_head(created: int) -> bytes:
    return (b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","created":' + str(created).encode()
            + b',"model":"' + MODEL.encode() + b'","choices":[{"index":0,"delta":')


class Upstream(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]  (uvloop's is not a subclass)
        self.buffer = b""

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value)
            if len(self.buffer) < end + 4 + length:
                return
            body = self.buffer[end + 4:end + 4 + length]
            self.buffer = self.buffer[end + 4 + length:]
            method, path, _ = head[0].split(" ", 2)
            self.answer(method, path.partition("?")[0], body)

    def send(self, status: str, body: bytes, ctype: bytes = b"application/json") -> None:
        self.transport.write(b"HTTP/1.1 " + status.encode() + b"\r\ncontent-type: " + ctype
                             + b"\r\ncontent-length: " + str(len(body)).encode() + b"\r\n\r\n" + body)

    def answer(self, method: str, path: str, body: bytes) -> None:
        if path == "/health":
            self.send("200 OK", b"", b"text/plain")
        elif path == "/v1/models":
            self.send("200 OK", json.dumps({"object": "list", "data": [{"id": MODEL, "object": "model"}]}).encode())
        elif path == "/v1/chat/completions" and method == "POST":
            request = json.loads(body)
            tokens = int(request.get("max_tokens") or 16)
            if request.get("stream"):
                self.stream(tokens)
            else:
                self.whole(tokens)
        else:
            self.send("404 Not Found", b'{"detail":"Not Found"}')

    def whole(self, tokens: int) -> None:
        text = " ".join(["tok"] * tokens)
        self.send("200 OK", json.dumps({
            "id": "chatcmpl-bench", "object": "chat.completion", "created": int(time.time()), "model": MODEL,
            "choices": [{"index": 0, "message": {"role": "assistant", "content": text}, "finish_reason": "stop"}],
            "usage": {"prompt_tokens": 5, "completion_tokens": tokens, "total_tokens": 5 + tokens}}).encode())

    def stream(self, tokens: int) -> None:
        write = self.transport.write
        head = _chunk_head(int(time.time()))
        write(b"HTTP/1.1 200 OK\r\ncontent-type: text/event-stream\r\ntransfer-encoding: chunked\r\n\r\n")

        def event(data: bytes) -> None:
            write(b"%x\r\n%s\r\n" % (len(data), data))

        event(head + b'{"role":"assistant","content":""},"finish_reason":null}]}\n\n')
        for i in range(tokens):
            last = i == tokens - 1
            event(head + b'{"content":"tok "},"finish_reason":' + (b'"stop"' if last else b"null") + b"}]}\n\n")
        event(b'data: {"id":"chatcmpl-bench","object":"chat.completion.chunk","model":"' + MODEL.encode()
              + b'","choices":[],"usage":{"prompt_tokens":5,"completion_tokens":' + str(tokens).encode()
              + b',"total_tokens":' + str(5 + tokens).encode() + b"}}\n\n")
        event(b"data: [DONE]\n\n")
        write(b"0\r\n\r\n")


async def main() -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(Upstream, "127.0.0.1", 0, backlog=1024)
    port = server.sockets[0].getsockname()[1]
    print(f"http://127.0.0.1:{port}", flush=True)
    await loop.run_in_executor(None, sys.stdin.read)  # until the parent closes our stdin
    server.close()


if __name__ == "__main__":
    try:
        import uvloop

        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
