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
from scheduler.surfaces.web import Served

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
    """The receiver on waitress; `start()` serves it from a thread, `close()` stops it.

    Anyone who knows the host may open connections and send nothing: waitress keeps them
    without a thread each, so the limit is set high (poll(), not select(), which stops at 1024
    descriptors), and an idle one is closed after `channel_timeout` seconds, checked every
    second or two rather than every 30 s."""

    def __init__(
        self,
        receiver: Receiver,
        listen: str,
        *,
        connection_limit: int = 1000,
        channel_timeout: float = 10.0,
    ) -> None:
        super().__init__(
            receiver,
            listen,
            threads=THREADS,
            max_request_body_size=receiver.max_bytes,
            connection_limit=connection_limit,
            channel_timeout=channel_timeout,
            cleanup_interval=max(1.0, min(channel_timeout / 2, 30.0)),
            asyncore_use_poll=True,
        )

    @classmethod
    def configured(cls, receiver: Receiver, settings: Settings) -> WebhookServer:
        """The server as `[webhooks]` sets it up."""
        hooks = settings.webhooks
        if hooks.listen is None:
            raise ConfigError("setting webhooks.listen is missing")
        return cls(
            receiver,
            hooks.listen,
            connection_limit=hooks.connection_limit,
            channel_timeout=hooks.channel_timeout_seconds,
        )

    def start(self, name: str = "webhooks") -> WebhookServer:
        super().start(name)
        log.info("webhooks.listening", port=self.port)
        return self

    def close(self) -> None:
        super().close()
        log.info("webhooks.stopped")
