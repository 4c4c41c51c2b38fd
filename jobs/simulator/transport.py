"""The simulator's HTTP plumbing: a threading server that hands each request to the simulator
and writes its answer back, or drops the connection when told to."""

from __future__ import annotations

import json
import sys
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import TYPE_CHECKING, Any

from jobs.simulator.records import DROP, JSON_API

if TYPE_CHECKING:
    from jobs.simulator.server import FlowrouteSimulator


class SimulatorServer(ThreadingHTTPServer):
    """Serves `simulator` on a local port, one thread per connection."""

    daemon_threads = True
    request_queue_size = 128

    def __init__(self, address: tuple[str, int], simulator: FlowrouteSimulator) -> None:
        super().__init__(address, _Handler)
        self.simulator = simulator

    def handle_error(self, request: Any, client_address: Any) -> None:
        """Clients hanging up (a timed-out client is normal here) are not worth a traceback."""
        if not isinstance(sys.exc_info()[1], ConnectionError):
            super().handle_error(request, client_address)


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    # Headers and body go out as two writes; with Nagle on, delayed ACKs add ~40 ms per answer.
    disable_nagle_algorithm = True
    server: SimulatorServer

    def log_message(self, format: str, *args: Any) -> None:
        """Stay silent: the tests and the demo own the terminal."""

    def do_GET(self) -> None:
        self._answer("GET")

    def do_POST(self) -> None:
        self._answer("POST")

    def do_PUT(self) -> None:
        self._answer("PUT")

    def do_PATCH(self) -> None:
        self._answer("PATCH")

    def do_DELETE(self) -> None:
        self._answer("DELETE")

    def _answer(self, method: str) -> None:
        length = self.headers.get("Content-Length", "0")
        raw = self.rfile.read(int(length)) if length.isdigit() else b""
        simulator = self.server.simulator
        status, document, delay = simulator._handle(
            method,
            self.path,
            self.headers.get("Authorization", ""),
            self.headers.get("Content-Type", ""),
            raw,
        )
        if status == DROP:
            self.close_connection = True
            return
        if delay > 0:
            simulator._stopping.wait(delay)
        payload = json.dumps(document).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", JSON_API)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)
        except ConnectionError:
            self.close_connection = True
