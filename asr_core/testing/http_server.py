"""A small file server on 127.0.0.1 for download tests: Range support and fault injection.

    with FileServer(root, faults=[Fault.cut(after=1000)]) as srv:
        download_file(srv.url("12/dev-clean.tar.gz"), dest)
    assert srv.requests[1].range == "bytes=1000-"

``faults`` are applied to GET requests in order, one each (``None`` = serve normally);
``default_fault`` applies to every GET after the list is used up (e.g. a server that
keeps failing). Every request is recorded in ``requests`` (thread-safe to read after
the ``with`` block, or between client calls).
"""

from __future__ import annotations

import contextlib
import email.utils
import hashlib
import os
import re
import socket
import struct
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class Fault:
    """What goes wrong with one response.

    kind "cut": send ``after`` body bytes, then close the connection cleanly (a short read);
    "reset": the same but close with a TCP reset; "stall": send ``after`` bytes, then
    go silent for ``seconds`` (the client's read timeout fires) and close;
    "status": answer HTTP ``status`` with a small text body.
    """

    kind: str = "cut"
    after: int = 0
    seconds: float = 0.0
    status: int = 503

    @classmethod
    def cut(cls, after: int = 0) -> Fault:
        return cls("cut", after=after)

    @classmethod
    def reset(cls, after: int = 0) -> Fault:
        return cls("reset", after=after)

    @classmethod
    def stall(cls, after: int = 0, seconds: float = 5.0) -> Fault:
        return cls("stall", after=after, seconds=seconds)

    @classmethod
    def http_status(cls, status: int = 503) -> Fault:
        return cls("status", status=status)


@dataclass(frozen=True)
class Request:
    method: str
    path: str
    range: str | None  # the Range header as sent
    status: int
    sent: int  # body bytes written
    fault: Fault | None


class FileServer:
    """Serve the files under ``root`` on ``http://127.0.0.1:<free port>/`` in a background thread."""

    def __init__(
        self,
        root: str | os.PathLike,
        faults: Sequence[Fault | None] = (),
        default_fault: Fault | None = None,
        ignore_range: bool = False,
    ):
        self.root = Path(root).resolve()
        self.ignore_range = ignore_range
        self.default_fault = default_fault
        self.requests: list[Request] = []
        self._faults = list(faults)
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    # -- lifecycle --
    def __enter__(self) -> FileServer:
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _make_handler(self))
        self._server.daemon_threads = True
        self._thread = threading.Thread(
            target=self._server.serve_forever, kwargs={"poll_interval": 0.05}, name="FileServer", daemon=True
        )
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()  # wakes stalled handlers
        assert self._server is not None and self._thread is not None
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(timeout=10)

    @property
    def port(self) -> int:
        assert self._server is not None, "use FileServer as a context manager"
        return self._server.server_address[1]

    def url(self, path: str = "") -> str:
        return f"http://127.0.0.1:{self.port}/{path.lstrip('/')}"

    # -- observations --
    @property
    def get_requests(self) -> list[Request]:
        with self._lock:
            return [r for r in self.requests if r.method == "GET"]

    @property
    def range_requests(self) -> list[Request]:
        return [r for r in self.get_requests if r.range is not None]

    # -- used by the handler --
    def _next_fault(self) -> Fault | None:
        with self._lock:
            return self._faults.pop(0) if self._faults else self.default_fault

    def _record(self, req: Request) -> None:
        with self._lock:
            self.requests.append(req)


def _make_handler(server: FileServer) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: object) -> None:  # keep test output quiet
            pass

        def do_HEAD(self) -> None:
            self._serve(body=False)

        def do_GET(self) -> None:
            self._serve(body=True)

        def _serve(self, body: bool) -> None:
            method = "GET" if body else "HEAD"
            rng = self.headers.get("Range")
            fault = server._next_fault() if body else None
            path = self._file()
            if fault is not None and fault.kind == "status":
                return self._error(method, rng, fault.status, fault)
            if path is None:
                return self._error(method, rng, 404, fault)
            size = path.stat().st_size
            start, end, status = 0, size - 1, 200
            if rng is not None and not server.ignore_range:
                parsed = _parse_range(rng, size)
                if parsed is None:
                    self.send_response(416)
                    self.send_header("Content-Range", f"bytes */{size}")
                    self.send_header("Content-Length", "0")
                    self.send_header("Connection", "close")
                    self.end_headers()
                    return server._record(Request(method, self.path, rng, 416, 0, fault))
                start, end, status = *parsed, 206
            length = max(end - start + 1, 0)
            self.send_response(status)
            self.send_header("Content-Type", "application/octet-stream")
            self.send_header("Content-Length", str(length))
            self.send_header("Accept-Ranges", "bytes")
            self.send_header("Last-Modified", email.utils.formatdate(path.stat().st_mtime, usegmt=True))
            self.send_header("ETag", '"' + hashlib.md5(f"{path}:{size}".encode()).hexdigest() + '"')
            if status == 206:
                self.send_header("Content-Range", f"bytes {start}-{end}/{size}")
            self.send_header("Connection", "close")
            self.end_headers()
            sent = 0
            limit = length if fault is None else min(length, fault.after)
            if body:
                with open(path, "rb") as f:
                    f.seek(start)
                    while sent < limit:
                        chunk = f.read(min(1 << 16, limit - sent))
                        if not chunk:
                            break
                        self.wfile.write(chunk)
                        sent += len(chunk)
            self.wfile.flush()
            server._record(Request(method, self.path, rng, status, sent, fault))
            if fault is not None:
                self._break(fault)

        def _break(self, fault: Fault) -> None:
            self.close_connection = True
            if fault.kind == "stall":
                server._stop.wait(fault.seconds)
            if fault.kind == "reset":  # SO_LINGER 0: close() sends RST instead of FIN
                self.connection.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
                self.connection.close()  # now, before socketserver's shutdown(SHUT_WR) can send a FIN
            else:
                with contextlib.suppress(OSError):
                    self.connection.shutdown(socket.SHUT_RDWR)

        def _error(self, method: str, rng: str | None, status: int, fault: Fault | None) -> None:
            payload = f"{status} from the test server\n".encode()
            self.send_response(status)
            self.send_header("Content-Type", "text/plain")
            self.send_header("Content-Length", str(len(payload)))
            self.send_header("Connection", "close")
            self.end_headers()
            if method == "GET":
                self.wfile.write(payload)
            server._record(Request(method, self.path, rng, status, 0, fault))

        def _file(self) -> Path | None:
            rel = unquote(urlsplit(self.path).path).lstrip("/")
            path = (server.root / rel).resolve()
            if not path.is_relative_to(server.root) or not path.is_file():
                return None
            return path

    return Handler


def _parse_range(value: str, size: int) -> tuple[int, int] | None:
    """One ``bytes=`` range -> (first, last) inclusive; None if unsatisfiable or not understood."""
    m = re.fullmatch(r"\s*bytes=(\d*)-(\d*)\s*", value)
    if not m or (not m.group(1) and not m.group(2)):
        return None
    if not m.group(1):  # suffix range: the last N bytes
        n = int(m.group(2))
        return (max(size - n, 0), size - 1) if n > 0 and size > 0 else None
    first = int(m.group(1))
    last = int(m.group(2)) if m.group(2) else size - 1
    if first >= size or last < first:
        return None
    return first, min(last, size - 1)
