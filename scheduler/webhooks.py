"""Serving the webhook receiver on waitress: alone (`sms-outbox webhooks`) or in the daemon."""

from __future__ import annotations

from urllib.parse import urlsplit

import structlog

from jobs.clock import SystemClock
from jobs.errors import ConfigError
from jobs.mongo.connection import Db
from jobs.mongo.inbox import Inbox
from jobs.web.receiver import Receiver
from scheduler.settings import Settings
from scheduler.web import Served

log = structlog.get_logger("sms_outbox.webhooks")
THREADS = 4


def build_receiver(settings: Settings, db: Db) -> Receiver:
    """The receiver for the configured public URL, writing to `db`'s inbox."""
    url = settings.webhooks.public_url
    if url is None:
        raise ConfigError("setting webhooks.public_url is missing; the receiver serves its path")
    base = urlsplit(url.get_secret_value()).path
    return Receiver(Inbox(db), base, SystemClock(), settings.webhooks.max_body_bytes)


class WebhookServer(Served):
    """The receiver on waitress; `start()` serves it from a thread, `close()` stops it."""

    def __init__(self, receiver: Receiver, listen: str) -> None:
        super().__init__(
            receiver, listen, threads=THREADS, max_request_body_size=receiver.max_bytes
        )

    def start(self, name: str = "webhooks") -> WebhookServer:
        super().start(name)
        log.info("webhooks.listening", port=self.port)
        return self

    def close(self) -> None:
        super().close()
        log.info("webhooks.stopped")
