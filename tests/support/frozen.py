"""A TCP proxy in front of a Unix-socket PostgreSQL that can freeze: while frozen it keeps every
connection open and forwards nothing, which is what a hung server (or a network partition
without a reset) looks like to a client. `pg_ctl stop` is a server that went away; this is one
that is there and never answers, which no timeout of the server's own can end."""

from __future__ import annotations

import contextlib
import socket
import threading
from pathlib import Path


class FrozenProxy:
    def __init__(self, unix_socket: Path) -> None:
        self.target = str(unix_socket)
        self.thawed = threading.Event()
        self.thawed.set()
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self._sockets: list[socket.socket] = []
        self._stopped = False
        threading.Thread(target=self._accept, daemon=True).start()

    def url(self, db: str = "gpuctl") -> str:
        return f"postgresql://postgres@127.0.0.1:{self.port}/{db}"

    def freeze(self) -> None:
        self.thawed.clear()

    def thaw(self) -> None:
        self.thawed.set()

    def close(self) -> None:
        self._stopped = True
        self.thaw()
        for sock in [self._listener, *self._sockets]:
            with contextlib.suppress(OSError):
                sock.close()

    def _accept(self) -> None:
        while not self._stopped:
            try:
                client, _ = self._listener.accept()
            except OSError:
                return
            upstream = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                upstream.connect(self.target)
            except OSError:  # the server is down, not hung: refuse as it would
                upstream.close()
                client.close()
                continue
            self._sockets += [client, upstream]
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
        while True:
            try:
                data = src.recv(65536)
            except OSError:
                data = b""
            self.thawed.wait()  # frozen: hold what came, send nothing, close nothing
            if not data:
                with contextlib.suppress(OSError):
                    dst.shutdown(socket.SHUT_WR)
                return
            try:
                dst.sendall(data)
            except OSError:
                return
