"""A real `pmv serve` process on 127.0.0.1 (a free port) and a small standard-library HTTP client for the tests."""

from __future__ import annotations

import http.client
import json
import os
import socket
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pmv

SRC = str(Path(pmv.__file__).resolve().parents[1])


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServerProcess:
    def __init__(self, args: list[str], log_path: Path):
        self.port = free_port()
        env = {**os.environ, "PYTHONPATH": SRC + os.pathsep + os.environ.get("PYTHONPATH", "")}
        self.log_path = log_path
        self._log = open(log_path, "wb")
        self.process = subprocess.Popen([sys.executable, "-m", "pmv", "serve", "--port", str(self.port), *args],
                                        stdout=self._log, stderr=subprocess.STDOUT, env=env)

    def wait_ready(self, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"pmv serve exited ({self.process.returncode}): {self.log()}")
            try:
                status, _, _ = self.request("GET", "/v1/health", timeout=2)
                if status == 200:
                    return
            except OSError:
                pass
            time.sleep(0.2)
        raise RuntimeError(f"pmv serve did not answer within {timeout} s: {self.log()}")

    def log(self) -> str:
        self._log.flush()
        return self.log_path.read_text(errors="replace")[-3000:]

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=15)
        self._log.close()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def request(self, method: str, path: str, body: bytes | None = None, headers: dict | None = None,
                timeout: float = 60.0):
        """(status, headers with lower-case names, body bytes)."""
        connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
        try:
            connection.request(method, path, body=body, headers=headers or {})
            response = connection.getresponse()
            return response.status, {k.lower(): v for k, v in response.getheaders()}, response.read()
        finally:
            connection.close()

    def get_json(self, path: str):
        status, _, body = self.request("GET", path)
        return status, json.loads(body)

    def upload(self, data: bytes, filename: str = "video.mp4", fields: dict | None = None, query: str = "",
               chunked: bool = False, timeout: float = 120.0):
        """POST /v1/predict with ``data`` in the multipart field ``file``: (status, headers, parsed JSON)."""
        body, content_type = multipart({"file": (filename, data)}, fields or {})
        headers = {"Content-Type": content_type}
        if chunked:  # no Content-Length: the server must count the bytes as they arrive
            pieces = [body[i:i + 65536] for i in range(0, len(body), 65536)]
            headers["Transfer-Encoding"] = "chunked"
            body = b"".join(b"%x\r\n%s\r\n" % (len(p), p) for p in pieces) + b"0\r\n\r\n"
            connection = http.client.HTTPConnection("127.0.0.1", self.port, timeout=timeout)
            try:
                connection.putrequest("POST", "/v1/predict" + query)
                for key, value in headers.items():
                    connection.putheader(key, value)
                connection.endheaders()
                try:
                    connection.send(body)
                except OSError:  # the server may answer 413 and close before reading everything
                    pass
                response = connection.getresponse()
                return response.status, {k.lower(): v for k, v in response.getheaders()}, json.loads(response.read())
            finally:
                connection.close()
        status, response_headers, raw = self.request("POST", "/v1/predict" + query, body=body, headers=headers,
                                                     timeout=timeout)
        return status, response_headers, json.loads(raw)


def multipart(files: dict, fields: dict) -> tuple[bytes, str]:
    boundary = uuid.uuid4().hex
    parts = []
    for name, value in fields.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"\r\n\r\n{value}\r\n'.encode())
    for name, (filename, data) in files.items():
        parts.append(f'--{boundary}\r\nContent-Disposition: form-data; name="{name}"; filename="{filename}"\r\n'
                     f"Content-Type: application/octet-stream\r\n\r\n".encode() + data + b"\r\n")
    parts.append(f"--{boundary}--\r\n".encode())
    return b"".join(parts), f"multipart/form-data; boundary={boundary}"
