"""Serving the webhook receiver on waitress: alone (`sms-outbox webhooks`) or in the daemon."""

from __future__ import annotations

import contextlib
import threading
from typing import Any
from urllib.parse import urlsplit

import structlog
import waitress

from jobs.clock import SystemClock
from jobs.errors import ConfigError
from jobs.mongo.connection import Db
from jobs.mongo.inbox import Inbox
from jobs.web.receiver import Receiver
from scheduler.settings import Settings

log = structlog.get_logger("sms_outbox.webhooks")
THREADS = 4


def listen_address(listen: str) -> tuple[str, int]:
    """HOST:PORT (IPv6 hosts in brackets) as a host and a port."""
    host, _, port = listen.rpartition(":")
    if not host or not port.isdigit() or int(port) > 65535:
        raise ConfigError(f"setting webhooks.listen must be HOST:PORT, not {listen!r}")
    return host.strip("[]"), int(port)


def build_receiver(settings: Settings, db: Db) -> Receiver:
    """The receiver for the configured public URL, writing to `db`'s inbox."""
    url = settings.webhooks.public_url
    if url is None:
        raise ConfigError("setting webhooks.public_url is missing; the receiver serves its path")
    base = urlsplit(url.get_secret_value()).path
    return Receiver(Inbox(db), base, SystemClock(), settings.webhooks.max_body_bytes)


class WebhookServer:
    """A waitress server for the receiver; `start()` serves from a thread, `run()` blocks."""

    def __init__(self, receiver: Receiver, listen: str) -> None:
        host, port = listen_address(listen)
        self.server: Any = waitress.create_server(
            receiver,
            host=host,
            port=port,
            threads=THREADS,
            max_request_body_size=receiver.max_bytes,
            ident="sms-outbox",
            clear_untrusted_proxy_headers=True,
        )
        self._thread: threading.Thread | None = None

    @property
    def port(self) -> int:
        return int(self.server.socket.getsockname()[1])

    def run(self) -> None:
        log.info("webhooks.listening", port=self.port)
        self.server.run()

    def start(self) -> WebhookServer:
        self._thread = threading.Thread(target=self._serve, name="webhooks", daemon=True)
        self._thread.start()
        return self

    def _serve(self) -> None:
        # close() shuts the sockets under the running loop, which may then raise OSError.
        with contextlib.suppress(OSError):
            self.run()

    def close(self) -> None:
        self.server.close()
        if self._thread is not None:
            self._thread.join(timeout=10)
        log.info("webhooks.stopped")
