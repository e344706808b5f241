"""The access log never stalls the gateway: a pipe nobody reads fills, and requests go on
being logged (up to a bound, then dropped and said once); what was queued is written when the
reader comes back, and at close."""

from __future__ import annotations

import json
import os
import threading

from gpuctl.serve.accesslog import AccessLog


def test_a_pipe_nobody_reads_never_blocks_a_write_and_the_lines_come_when_it_is_read() -> None:
    read_fd, write_fd = os.pipe()
    stream = os.fdopen(write_fd, "w")
    log = AccessLog(stream)
    log.MAX_QUEUED = 2_000
    n = 5_000  # ~1 MB of lines: far past the pipe's 64 kB buffer
    done = threading.Event()

    def requests() -> None:  # the event loop's side: each request writes one line
        for i in range(n):
            log.write({"path": "/v1/chat/completions", "i": i, "pad": "x" * 150})
            log.flush()
        done.set()

    writer = threading.Thread(target=requests, daemon=True)
    writer.start()
    # A write that blocked on the full pipe would hold this thread forever.
    assert done.wait(20), "writing to the access log blocked on a reader that does not read"
    assert log.dropped > 0  # past the bound, dropped (and counted), never waited for
    with os.fdopen(read_fd, "rb") as reader:
        def close() -> None:
            log.close()
            stream.close()  # the end of the pipe: the reader's read() returns

        closer = threading.Thread(target=close, daemon=True)
        closer.start()
        lines = reader.read().splitlines()  # the reader comes back: queued lines arrive
        closer.join(10)
    got = [json.loads(line)["i"] for line in lines]
    assert got == sorted(got) and got[0] == 0 and len(got) + log.dropped == n


def test_a_stream_without_a_descriptor_is_written_at_once() -> None:
    import io

    stream = io.StringIO()
    log = AccessLog(stream)
    log.write({"path": "/health", "status": 200})
    assert json.loads(stream.getvalue())["status"] == 200
    log.close()
