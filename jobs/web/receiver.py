"""The webhook receiver: a WSGI application that validates Flowroute's callbacks and only
inserts them into the inbox, answering at once; the daemon applies them later."""

from __future__ import annotations

import hmac
import json
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import structlog

from jobs.clock import Clock
from jobs.errors import InputError, StoreError
from jobs.rules import callbacks

log = structlog.get_logger("sms_outbox.webhooks")

StartResponse = Callable[[str, list[tuple[str, str]]], Any]
Environ = dict[str, Any]
REASONS = {
    200: "OK", 400: "Bad Request", 404: "Not Found", 405: "Method Not Allowed",
    411: "Length Required", 413: "Content Too Large", 503: "Service Unavailable",
}  # fmt: skip


class InboxWriter(Protocol):
    """Where validated callbacks go: an insert and nothing else."""

    def add(self, kind: str, fields: dict[str, Any], now: Any) -> None: ...


class Receiver:
    """Answers POST `<base>/dlr` and `<base>/inbound`; every other path is 404 and writes nothing.

    `base` is the path of the public URL, whose secret token is never logged.
    """

    def __init__(self, inbox: InboxWriter, base_path: str, clock: Clock, max_bytes: int) -> None:
        base = "/" + base_path.strip("/") if base_path.strip("/") else ""
        self.routes = {base + "/dlr": callbacks.DLR, base + "/inbound": callbacks.INBOUND}
        self.inbox = inbox
        self.clock = clock
        self.max_bytes = max_bytes

    def __call__(self, environ: Environ, start_response: StartResponse) -> Iterable[bytes]:
        try:
            status, document = self._handle(environ)
        except Exception:
            # Never a traceback to the caller, never a dead receiver; the bug is logged.
            log.exception("webhook.crashed")
            status, document = 503, {"error": "try again later"}
        payload = json.dumps(document).encode()
        start_response(
            f"{status} {REASONS.get(status, 'Error')}",
            [("Content-Type", "application/json"), ("Content-Length", str(len(payload)))],
        )
        return [payload]

    def _route(self, path: str) -> str | None:
        for route, kind in self.routes.items():
            # Constant time, so the secret path cannot be guessed a character at a time.
            if hmac.compare_digest(path.encode("utf-8", "surrogateescape"), route.encode()):
                return kind
        return None

    def _handle(self, environ: Environ) -> tuple[int, dict[str, Any]]:
        kind = self._route(str(environ.get("PATH_INFO", "")).rstrip("/"))
        if kind is None:
            log.info("webhook.not_found", method=environ.get("REQUEST_METHOD"))
            return 404, {"error": "not found"}
        if environ.get("REQUEST_METHOD") != "POST":
            return 405, {"error": "POST only"}
        length_text = str(environ.get("CONTENT_LENGTH") or "")
        if not length_text.isdigit():
            return 411, {"error": "Content-Length is required"}
        length = int(length_text)
        if length > self.max_bytes:
            log.warning("webhook.too_large", kind=kind, bytes=length, limit=self.max_bytes)
            return 413, {"error": f"bodies are limited to {self.max_bytes} bytes"}
        raw = environ["wsgi.input"].read(length)
        try:
            fields = callbacks.parse(kind, raw)
        except InputError as exc:
            log.warning("webhook.malformed", kind=kind, reason=str(exc)[:200])
            return 400, {"error": str(exc)[:200]}
        try:
            self.inbox.add(kind, fields, self.clock.now())
        except StoreError as exc:
            # Not 200: Flowroute resends what it was not thanked for (inbound, at least).
            log.error("webhook.store_failed", kind=kind, error=type(exc).__name__)
            return 503, {"error": "try again later"}
        log.info("webhook.received", kind=kind)
        return 200, {"ok": True}
