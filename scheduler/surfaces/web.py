"""Serving a WSGI application with waitress: on a thread of the daemon, or in the foreground."""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable, Iterable
from types import FrameType
from typing import Any

import structlog
from waitress.server import create_server

from scheduler.listeners import split_listen

StartResponse = Callable[..., Any]
WsgiApp = Callable[[dict[str, Any], StartResponse], Iterable[bytes]]


class Served:
    """A waitress server bound to its port; `url` says where, `close()` frees the port."""

    def __init__(self, app: WsgiApp, listen: str, *, threads: int = 2, **options: Any) -> None:
        host, port = split_listen(listen)
        self._server: Any = create_server(
            app,
            host=host,
            port=port,
            threads=threads,
            ident="sms-outbox",
            clear_untrusted_proxy_headers=True,
            **options,
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self._server.effective_port)

    @property
    def url(self) -> str:
        host, port = self._server.effective_host, self._server.effective_port
        host = f"[{host}]" if ":" in str(host) else host
        return f"http://{host}:{port}"

    def start(self, name: str) -> Served:
        """Serve on a daemon thread."""
        self._thread = threading.Thread(target=self._server.run, name=name, daemon=True)
        self._thread.start()
        return self

    def run(self) -> None:
        """Serve in the calling thread until a signal handler raises SystemExit there."""
        self._server.run()  # returns on SystemExit or KeyboardInterrupt
        self._close_all()

    def close(self) -> None:
        """Stop listening and drop open connections (from another thread than the server's)."""
        if self._thread is not None:
            # Sockets are closed by the serving thread itself, not under its select().
            self._server.trigger.pull_trigger(self._close_all)
            self._thread.join(timeout=5)
            self._thread = None
        self._server.task_dispatcher.shutdown(timeout=5)

    def _close_all(self) -> None:
        for channel in list(self._server._map.values()):
            channel.close()


def respond(
    start_response: StartResponse,
    status: str,
    body: str,
    content_type: str = "text/plain; charset=utf-8",
    headers: Iterable[tuple[str, str]] = (),
) -> list[bytes]:
    """Send a complete answer with the headers every response of ours carries."""
    payload = body.encode("utf-8")
    start_response(
        status,
        [
            ("Content-Type", content_type),
            ("Content-Length", str(len(payload))),
            ("Cache-Control", "no-store"),
            ("X-Content-Type-Options", "nosniff"),
            *headers,
        ],
    )
    return [payload]


def exit_on_signals(name: str) -> None:
    """SIGINT and SIGTERM end a server run in the main thread: logged as `<name>.stopping`,
    they raise SystemExit there, which ends waitress's loop."""

    def on_signal(signum: int, frame: FrameType | None) -> None:
        structlog.get_logger(f"sms_outbox.{name}").info(
            f"{name}.stopping", signal=signal.Signals(signum).name
        )
        raise SystemExit(0)

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
