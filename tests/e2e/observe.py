"""Helpers for the tests that watch a running process from outside: free ports, HTTP polls and a
proxy that signs Chromium in to the dashboard."""

from __future__ import annotations

import threading
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any, TypeVar

from tests.servers import ports

T = TypeVar("T")


def free_port() -> int:
    """A port for a server a test starts (see tests/servers/ports.py)."""
    return ports.free_port()


def get(url: str, headers: dict[str, str] | None = None, method: str = "GET") -> tuple[int, str]:
    """Status and body of one request; HTTP errors are answers, not exceptions."""
    request = urllib.request.Request(url, headers=headers or {}, method=method)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.read().decode()
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read().decode()


def wait_for(check: Callable[[], T | None], what: str, timeout: float = 60.0) -> T:
    """Poll `check` until it returns something other than None (or False), with a deadline."""
    deadline = time.monotonic() + timeout
    last: Exception | None = None
    while time.monotonic() < deadline:
        try:
            value = check()
        except (OSError, urllib.error.URLError) as exc:
            last, value = exc, None
        if value is not None and value is not False:
            return value
        time.sleep(0.1)
    raise AssertionError(f"timed out waiting for {what} (last error: {last!r})")


def metric(text: str, name: str) -> float | None:
    """The value of the sample `name` (with its labels, as Prometheus prints them)."""
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.rsplit(" ", 1)[1])
    return None


@contextmanager
def token_proxy(token: str) -> Iterator[list[str]]:
    """An HTTP proxy that adds the dashboard token as a header, as a reverse proxy in front of
    the dashboard would; yields the Chromium flags that send every request through it, so no
    URL carries the token."""
    opener = urllib.request.build_opener(urllib.request.ProxyHandler({}))

    class Forward(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            request = urllib.request.Request(
                self.path, headers={"Authorization": f"Bearer {token}"}
            )
            try:
                with opener.open(request, timeout=30) as answer:
                    status, body, kind = answer.status, answer.read(), answer.headers
            except urllib.error.HTTPError as refused:
                status, body, kind = refused.code, refused.read(), refused.headers
            self.send_response(status)
            self.send_header("Content-Type", kind.get("Content-Type", "text/plain"))
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:
            """Quiet."""

    server = ThreadingHTTPServer(("127.0.0.1", 0), Forward)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        port = server.server_address[1]
        yield [f"--proxy-server=http://127.0.0.1:{port}", "--proxy-bypass-list=<-loopback>"]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)
