"""The lean http:// transport under httpx: keep-alive reuse, a server closing an idle
connection, chunked and large bodies, answers not read to the end, httpx's own errors and
timeouts; https and GPUCTL_HTTP_LEAN=0 stay on httpcore."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable

import httpx
import pytest

from gpuctl.http import lean
from gpuctl.http.client import Timeouts, build_async_client
from tests.fakes.vllm_server import FakeVLLM
from tests.support import closed_port_url, wait_for

Handler = Callable[[asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


async def _serve(handler: Handler) -> tuple[asyncio.AbstractServer, str]:
    server = await asyncio.start_server(handler, "127.0.0.1", 0)
    return server, f"http://127.0.0.1:{server.sockets[0].getsockname()[1]}"


async def _read_request(reader: asyncio.StreamReader) -> bytes:
    head = await reader.readuntil(b"\r\n\r\n")
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":")[1])
    return head + await reader.readexactly(length)


def _client(url: str, **kw) -> httpx.AsyncClient:  # type: ignore[no-untyped-def]
    return build_async_client(base_url=url, retries=0, timeouts=Timeouts(connect=2, first_byte=2, read=2), **kw)


def _lean(client: httpx.AsyncClient) -> lean.LeanTransport:
    inner = client._transport._inner  # type: ignore[attr-defined]
    assert isinstance(inner, lean.LeanTransport)
    return inner


def test_answers_reuse_one_connection(fake_vllm: FakeVLLM) -> None:
    async def main() -> None:
        async with _client(fake_vllm.url) as client:
            for _ in range(3):
                response = await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})
                assert response.status_code == 200 and response.json()["choices"][0]["message"]["content"]
            assert sum(len(p) for p in _lean(client).idle.values()) == 1

    asyncio.run(main())
    ports = {r.client_port for r in fake_vllm.requests}
    assert len(ports) == 1  # one kept-alive connection


def test_a_connection_the_server_closed_while_idle_is_not_used() -> None:
    async def main() -> None:
        async def once(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            writer.close()  # closes right after, keep-alive or not

        server, url = await _serve(once)
        async with server, _client(url) as client:
            first = await client.get("/a")
            await asyncio.sleep(0.05)  # the close arrives
            second = await client.get("/b")
        assert first.text == second.text == "ok"

    asyncio.run(main())


def test_a_streamed_chunked_body_arrives_in_pieces(fake_vllm: FakeVLLM) -> None:
    fake_vllm.answer = " ".join(f"w{i}" for i in range(200))

    async def main() -> list[bytes]:
        async with _client(fake_vllm.url) as client, client.stream(
                "POST", "/v1/chat/completions",
                json={"messages": [{"role": "user", "content": "hi"}], "stream": True}) as response:
            return [chunk async for chunk in response.aiter_raw()]

    chunks = asyncio.run(main())
    body = b"".join(chunks)
    assert len(chunks) > 10 and body.endswith(b"data: [DONE]\n\n") and b'"w199"' in body.replace(b" w", b"w")


def test_a_large_body_is_read_whole_through_flow_control() -> None:
    payload = b"x" * (3 * lean.HIGH_WATER)

    async def main() -> bytes:
        async def big(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n" % len(payload) + payload)
            await writer.drain()
            writer.close()

        server, url = await _serve(big)
        async with server, _client(url) as client, client.stream("GET", "/") as response:
            parts = []
            async for chunk in response.aiter_raw():
                parts.append(chunk)
                await asyncio.sleep(0)  # a slow reader: the transport pauses and resumes
            return b"".join(parts)

    assert asyncio.run(main()) == payload


def test_an_answer_not_read_to_its_end_closes_its_connection(fake_vllm: FakeVLLM) -> None:
    fake_vllm.answer, fake_vllm.chunk_delay = " ".join(f"w{i}" for i in range(50)), 0.01

    async def main() -> None:
        async with _client(fake_vllm.url) as client:
            async with client.stream("POST", "/v1/chat/completions",
                                     json={"messages": [{"role": "user", "content": "hi"}], "stream": True}) as r:
                async for _ in r.aiter_raw():
                    break  # the caller stops early
            assert not any(_lean(client).idle.values())
            again = await client.get("/health")
            assert again.status_code == 200

    asyncio.run(main())
    wait_for(lambda: fake_vllm.cancelled == 1, what="the server to see the connection go")


def test_errors_are_httpx_errors(fake_vllm: FakeVLLM) -> None:
    async def main() -> None:
        async with _client(closed_port_url()) as client:
            with pytest.raises(httpx.ConnectError):
                await client.get("/health")
        fake_vllm.slow(5)
        async with build_async_client(base_url=fake_vllm.url, retries=0,
                                      timeouts=Timeouts(connect=2, first_byte=0.2, read=0.2)) as client:
            with pytest.raises(httpx.ReadTimeout):
                await client.get("/health")
        fake_vllm.reset_faults()
        fake_vllm.cut_after = 1
        async with _client(fake_vllm.url) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post("/v1/chat/completions", json={"messages": [{"role": "user", "content": "hi"}]})

        async def garbage(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b"NOT HTTP AT ALL\r\n\r\n")
            await writer.drain()
            writer.close()

        server, url = await _serve(garbage)
        async with server, _client(url) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.get("/")

    asyncio.run(main())


def test_https_and_the_switch_stay_on_httpcore(monkeypatch: pytest.MonkeyPatch) -> None:
    async def main() -> None:
        async with _client("https://example.invalid") as tls:
            assert not isinstance(tls._transport._inner, lean.LeanTransport)  # type: ignore[attr-defined]
        monkeypatch.setenv("GPUCTL_HTTP_LEAN", "0")
        async with _client("http://127.0.0.1:9") as off:
            assert not isinstance(off._transport._inner, lean.LeanTransport)  # type: ignore[attr-defined]

    asyncio.run(main())


def test_a_streamed_request_body_is_sent_with_its_length() -> None:
    async def main() -> bytes:
        seen: list[bytes] = []

        async def echo(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(await _read_request(reader))
            writer.write(b"HTTP/1.1 204 No Content\r\n\r\n")
            await writer.drain()
            writer.close()

        async def parts():  # type: ignore[no-untyped-def]
            yield b"hello "
            yield b"world"

        server, url = await _serve(echo)
        async with server, _client(url) as client:
            response = await client.post("/", content=parts())
        assert response.status_code == 204
        return seen[0]

    request = asyncio.run(main())
    assert request.endswith(b"\r\n\r\nhello world") and b"content-length: 11" in request.lower()
    assert b"transfer-encoding" not in request.lower()


def test_a_body_that_ends_when_the_server_closes_is_read_whole() -> None:
    async def main() -> None:
        async def http10(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b"HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n")
            writer.write(b'{"ok": true}')
            await writer.drain()
            writer.close()  # no length, no chunks: the close ends the body

        server, url = await _serve(http10)
        async with server, _client(url) as client:
            for _ in range(2):
                response = await client.post("/v1/chat/completions", json={})
                assert response.status_code == 200 and response.json() == {"ok": True}
            assert not _lean(client).idle.get(("127.0.0.1", server.sockets[0].getsockname()[1]))

    asyncio.run(main())


def test_a_kept_alive_connection_closed_by_the_server_is_never_used_again() -> None:
    async def main() -> None:
        seen: list[bytes] = []

        async def close_after_each(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            seen.append(await _read_request(reader))
            # Keep-alive announced, then the server drops the connection without a word, as an
            # idle timeout does: the client's next request meets a dead socket.
            writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            await writer.drain()
            writer.transport.abort()

        server, url = await _serve(close_after_each)
        async with server, _client(url) as client:
            for i in range(4):
                response = await client.post(f"/r{i}", content=b"x")
                assert response.text == "ok"
                await asyncio.sleep(0.01)  # the reset arrives while the connection is idle
        assert [r.split(b" ")[1] for r in seen] == [b"/r0", b"/r1", b"/r2", b"/r3"]  # each sent once

    asyncio.run(main())


def test_a_post_the_server_took_and_then_dropped_is_never_sent_again() -> None:
    """Nothing came back is not "it never arrived": a chat the server started (and bills) must
    not run twice. A GET is sent once more on a new connection."""
    async def main() -> None:
        seen: list[bytes] = []

        async def takes_then_drops(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                first = await _read_request(reader)
                seen.append(first)
                writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
                await writer.drain()
                seen.append(await _read_request(reader))  # the second request arrives...
                await asyncio.sleep(0.05)  # ...is worked on...
            except asyncio.IncompleteReadError:
                pass
            finally:
                writer.transport.abort()  # ...and the server dies without an answer

        server, url = await _serve(takes_then_drops)
        async with server, _client(url) as client:
            assert (await client.post("/a", content=b"1")).text == "ok"
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post("/b", content=b"2")
            paths = [r.split(b" ")[1] for r in seen]
            assert paths == [b"/a", b"/b"]  # /b reached the server once, and was not sent again
            assert (await client.get("/c")).text == "ok"  # a new connection for what follows

    asyncio.run(main())


def test_an_interim_1xx_is_not_taken_for_the_answer_nor_left_for_the_next_request() -> None:
    async def main() -> None:
        async def early_hints(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            try:
                for n in (1, 2):
                    await _read_request(reader)
                    writer.write(b"HTTP/1.1 103 Early Hints\r\nlink: </x>\r\n\r\n")
                    await writer.drain()
                    await asyncio.sleep(0.01)  # the interim answer arrives on its own
                    body = b"answer %d" % n
                    writer.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(body), body))
                    await writer.drain()
            finally:
                writer.close()

        server, url = await _serve(early_hints)
        async with server, _client(url) as client:
            first = await client.post("/a", content=b"1")
            second = await client.post("/b", content=b"2")
        assert (first.status_code, first.text) == (200, "answer 1")
        assert (second.status_code, second.text) == (200, "answer 2")
        assert "link" not in first.headers

    asyncio.run(main())


def test_a_body_that_ends_in_a_reset_is_an_error_not_an_answer() -> None:
    async def main() -> None:
        async def reset(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            await _read_request(reader)
            writer.write(b'HTTP/1.0 200 OK\r\ncontent-type: application/json\r\n\r\n{"choices": [{"text": "hel')
            await writer.drain()
            await asyncio.sleep(0.02)  # the bytes arrive first
            import socket
            import struct

            # SO_LINGER 0: the close is a reset (RST), what a crashed server or a proxy cutting
            # a connection sends.
            writer.get_extra_info("socket").setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            writer.transport.abort()

        server, url = await _serve(reset)
        async with server, _client(url) as client:
            with pytest.raises(httpx.RemoteProtocolError):
                await client.post("/v1/chat/completions", json={})

    asyncio.run(main())


def test_an_idle_connection_on_a_descriptor_past_1023_is_still_reused(fake_vllm: FakeVLLM) -> None:
    """select() refuses descriptors past 1023; a busy gateway has many: keep-alive must hold."""
    import resource

    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = 1200
    if soft < want:
        resource.setrlimit(resource.RLIMIT_NOFILE, (min(want, hard), hard))
    if resource.getrlimit(resource.RLIMIT_NOFILE)[0] < want:
        pytest.skip(f"this machine allows {hard} open files, fewer than {want}")
    import os

    held = []
    try:
        while True:  # take the low descriptors, so the client's socket gets a high one
            fd = os.open(os.devnull, os.O_RDONLY)
            held.append(fd)
            if fd >= 1100:
                break

        async def main() -> None:
            async with _client(fake_vllm.url) as client:
                for _ in range(3):
                    assert (await client.get("/v1/models")).status_code == 200

        asyncio.run(main())
    finally:
        for fd in held:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert len({r.client_port for r in fake_vllm.requests}) == 1  # one kept-alive connection
