"""A real HTTP server on 127.0.0.1 that misbehaves on purpose, per path, for download tests.

Each path has a script: a list of behaviours, one consumed per request, the last one repeating. So
``[Status(503, retry_after="1"), Serve(data)]`` answers 503 once and then serves the file. The server counts
requests per path and remembers the Range header of each, so tests can prove a re-run did not fetch a finished
file again and that a partial download was resumed.

    with FaultServer() as server:
        server.route("/a.mp4", Serve(data))
        url = server.url("/a.mp4")
"""

from __future__ import annotations

import re
import socket
import struct
import threading
import time
from collections import Counter
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path


@dataclass
class Serve:
    """Serve ``data``; honours ``Range: bytes=N-`` with a 206 unless ``ranges`` is "ignore" (full 200) or
    "wrong" (a 206 whose Content-Range starts at the wrong byte). ``pause`` seconds between the two halves of
    the body keep a download in flight (for kill and interrupt tests)."""

    data: bytes
    content_type: str = "video/mp4"
    ranges: str = "honour"
    pause: float = 0.0


@dataclass
class Status:
    """Answer ``code`` with a short body (HTML unless told), e.g. 404, 502, 503 with Retry-After."""

    code: int
    retry_after: str | None = None
    body: bytes = b"<html><body>error</body></html>"
    content_type: str = "text/html"


@dataclass
class Reset:
    """Send the headers of ``data`` (full Content-Length) and ``after`` bytes of it, then reset the connection."""

    data: bytes
    after: int


@dataclass
class Truncate:
    """Like Reset, but close the connection politely: the body is shorter than its Content-Length."""

    data: bytes
    after: int


@dataclass
class Drip:
    """Send ``data`` a ``chunk`` at a time with ``delay`` seconds between chunks, for at most ``seconds``."""

    data: bytes
    chunk: int = 1024
    delay: float = 0.5
    seconds: float = 1.5


@dataclass
class Script:
    steps: list
    served: int = 0
    ranges: list = field(default_factory=list)


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True
    max_handlers = 32  # bounded: a runaway client cannot make the test spawn unbounded threads

    def __init__(self, owner: "FaultServer"):
        self.owner = owner
        self.slots = threading.BoundedSemaphore(self.max_handlers)
        super().__init__(("127.0.0.1", 0), _Handler)

    def process_request(self, request, client_address):
        self.slots.acquire()
        super().process_request(request, client_address)

    def process_request_thread(self, request, client_address):
        try:
            super().process_request_thread(request, client_address)
        finally:
            self.slots.release()


class _Handler(BaseHTTPRequestHandler):
    server: _Server

    def log_message(self, format, *args):  # keep test output clean
        pass

    def do_GET(self):
        owner = self.server.owner
        path = self.path.split("?", 1)[0]
        with owner.lock:
            owner.counts[path] += 1
            script = owner.scripts.get(path)
            if script is not None:
                step = script.steps[min(script.served, len(script.steps) - 1)]
                script.served += 1
                script.ranges.append(self.headers.get("Range"))
        if script is None:
            return self._send_status(Status(404))
        handler = getattr(self, f"_send_{type(step).__name__.lower()}")
        try:
            handler(step)
        except (BrokenPipeError, ConnectionResetError):
            pass

    def _send_status(self, step: Status):
        self.send_response(step.code)
        if step.retry_after is not None:
            self.send_header("Retry-After", step.retry_after)
        self.send_header("Content-Type", step.content_type)
        self.send_header("Content-Length", str(len(step.body)))
        self.end_headers()
        self.wfile.write(step.body)

    def _send_serve(self, step: Serve):
        data, start = step.data, 0
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range") or "")
        if match and step.ranges != "ignore":
            start = int(match.group(1))
            if start >= len(data):
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(data)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            claimed = start + 7 if step.ranges == "wrong" else start
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {claimed}-{len(data) - 1}/{len(data)}")
        else:
            self.send_response(200)
        body = data[start:]
        self.send_header("Content-Type", step.content_type)
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        if step.pause:
            self.wfile.write(body[: len(body) // 2])
            self.wfile.flush()
            time.sleep(step.pause)
            body = body[len(body) // 2 :]
        self.wfile.write(body)

    def _partial_headers(self, data: bytes):
        self.send_response(200)
        self.send_header("Content-Type", "video/mp4")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()

    def _send_reset(self, step: Reset):
        self._partial_headers(step.data)
        self.wfile.write(step.data[: step.after])
        self.wfile.flush()
        time.sleep(0.05)
        # SO_LINGER with a zero timeout makes close() send RST instead of FIN.
        self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
        self.connection.close()

    def _send_truncate(self, step: Truncate):
        self._partial_headers(step.data)
        self.wfile.write(step.data[: step.after])
        self.wfile.flush()

    def _send_drip(self, step: Drip):
        self._partial_headers(step.data)
        started = time.monotonic()
        for offset in range(0, len(step.data), step.chunk):
            self.wfile.write(step.data[offset : offset + step.chunk])
            self.wfile.flush()
            time.sleep(step.delay)
            if time.monotonic() - started >= step.seconds:
                return  # give up dripping: the test only needs the client to time out


class FaultServer:
    def __init__(self):
        self.lock = threading.Lock()
        self.scripts: dict[str, Script] = {}
        self.counts: Counter = Counter()
        self._server: _Server | None = None
        self._thread: threading.Thread | None = None

    def route(self, path: str, *steps) -> str:
        """Script ``path`` with ``steps`` (the last repeats); returns its URL."""
        with self.lock:
            self.scripts[path] = Script(list(steps))
        return self.url(path)

    def serve_tree(self, root: str | Path, prefix: str = "/") -> None:
        """Serve every file under ``root`` unchanged (text/plain), e.g. a copy of a repository's files."""
        root = Path(root)
        for file in root.rglob("*"):
            if file.is_file():
                self.route(prefix + file.relative_to(root).as_posix(), Serve(file.read_bytes(), "text/plain"))

    def ranges(self, path: str) -> list:
        with self.lock:
            return list(self.scripts[path].ranges)

    def url(self, path: str = "/") -> str:
        assert self._server is not None, "start the server first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}{path}"

    def start(self) -> "FaultServer":
        self._server = _Server(self)
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._thread.join(timeout=5)
            self._server = None

    def __enter__(self) -> "FaultServer":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def per_path_counts(server: FaultServer) -> dict[str, int]:
    with server.lock:
        return dict(server.counts)


__all__ = ["Drip", "FaultServer", "Reset", "Serve", "Status", "Truncate", "per_path_counts"]
