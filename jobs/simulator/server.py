"""A local stand-in for Flowroute Messaging API v2.1, used by the tests, the demo and the
`simulator` command: what it accepts, refuses and records."""

from __future__ import annotations

import base64
import random
import threading
import time
import uuid
from collections import deque
from collections.abc import Iterable
from datetime import UTC, datetime
from types import TracebackType
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

from jobs.simulator import callbacks
from jobs.simulator.records import (
    DEFAULT_PAGE_LIMIT,
    DROP,
    JSON_API,
    MESSAGES_PATH,
    OPTED_OUT_CODE,
    TITLES,
    Answer,
    Faults,
    Refusal,
    SimMessage,
    mdr_record,
    page_integer,
    parse_date,
    parse_send,
)
from jobs.simulator.transport import SimulatorServer

__all__ = ["FlowrouteSimulator", "SimMessage"]


class FlowrouteSimulator(callbacks.Callbacks):
    """A Flowroute Messaging API double on a local port, with hooks to force failures."""

    def __init__(
        self,
        access_key: str = "demo-access-key",
        secret_key: str = "demo-secret-key",
        *,
        rate_per_second: int | None = 5,
        owned_numbers: Iterable[str] | None = None,
        host: str = "127.0.0.1",
        port: int = 0,
        sms_callback: str | None = None,
    ) -> None:
        self._credentials = (access_key, secret_key)
        self._rate = rate_per_second
        self._owned = None if owned_numbers is None else {n.lstrip("+") for n in owned_numbers}
        self._lock = threading.Lock()
        self._stopping = threading.Event()
        self._messages: list[SimMessage] = []
        self._by_id: dict[str, SimMessage] = {}
        self._attempt_times: list[float] = []
        self._window: deque[float] = deque()
        self._failures: deque[Refusal] = deque()
        self._delays: deque[tuple[float, bool]] = deque()
        self._opt_outs: set[tuple[str, str]] = set()
        self._receipts: dict[str, list[dict[str, Any]]] = {}
        self._inbound: list[SimMessage] = []
        self._faults = Faults()
        self.sms_callback = sms_callback
        self._server = SimulatorServer((host, port), self)
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        """Base URL of the running server, without a trailing slash."""
        host, port = self._server.server_address[:2]
        return f"http://{host!s}:{port}"

    def start(self) -> FlowrouteSimulator:
        """Serve requests from a daemon thread until stop()."""
        self._thread = threading.Thread(
            target=self._server.serve_forever, args=(0.05,), name="flowroute-sim", daemon=True
        )
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop serving, wake any delayed answers and release the port."""
        self._stopping.set()
        if self._thread is not None:
            self._server.shutdown()
            self._thread.join()
            self._thread = None
        self._server.server_close()

    def __enter__(self) -> FlowrouteSimulator:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()

    def messages(self) -> list[SimMessage]:
        """Messages answered with 202, in the order they were accepted."""
        with self._lock:
            return list(self._messages)

    def attempts(self) -> int:
        """How many POST /v2.1/messages requests arrived, whatever their outcome."""
        with self._lock:
            return len(self._attempt_times)

    def attempt_times(self) -> list[float]:
        """time.monotonic() at the arrival of each send attempt."""
        with self._lock:
            return list(self._attempt_times)

    def fail_next(
        self, status: int, count: int = 1, *, code: int | None = None, detail: str | None = None
    ) -> None:
        """Answer the next `count` authenticated sends with `status`, accepting none of them."""
        text = detail or f"simulated {status} {TITLES.get(status, 'Error')}"
        with self._lock:
            self._failures.extend(Refusal(status, text, code) for _ in range(count))

    def delay_next(self, seconds: float, count: int = 1, *, accept: bool = True) -> None:
        """Answer the next `count` authenticated sends only after `seconds`.

        With accept=True a valid message is recorded before the wait (it reached Flowroute and
        the answer was lost); with accept=False nothing is recorded and the late answer is a 500.
        """
        with self._lock:
            self._delays.extend((seconds, accept) for _ in range(count))

    def opt_out(self, source: str, recipient: str) -> None:
        """Refuse later sends from `source` to `recipient` with 400 and error code 1110."""
        with self._lock:
            self._opt_outs.add((source.lstrip("+"), recipient.lstrip("+")))

    def set_faults(
        self,
        *,
        lose_answers: float = 0.0,
        drop_before: float = 0.0,
        drop_after: float = 0.0,
        lost_answer_seconds: float = 30.0,
        seed: int | None = None,
    ) -> None:
        """Misbehave at random on authenticated sends, at these rates (0 to 1, exclusive).

        `lose_answers`: accept the message, then answer only after `lost_answer_seconds` (the
        client has given up by then). `drop_before`: close the connection without accepting.
        `drop_after`: accept, then close the connection without answering.
        """
        if lose_answers + drop_before + drop_after > 1:
            raise ValueError("the fault rates add up to more than 1")
        with self._lock:
            self._faults = Faults(
                lose_answers, drop_before, drop_after, lost_answer_seconds, random.Random(seed)
            )

    def _handle(self, method: str, target: str, auth: str, content_type: str, raw: bytes) -> Answer:
        """Route one request to its answer: status, JSON document and delay before answering."""
        parts = urlsplit(target)
        path = parts.path.rstrip("/")
        try:
            if path == MESSAGES_PATH:
                if method == "POST":
                    return self._send(auth, content_type, raw)
                if method == "GET":
                    self._authorise(auth)
                    return 200, self._page(parse_qs(parts.query)), 0.0
            elif path.startswith(MESSAGES_PATH + "/") and path.count("/") == 3:
                if method == "GET":
                    self._authorise(auth)
                    message = self._lookup(path.rsplit("/", 1)[1])
                    return 200, {"data": self._record(message)}, 0.0
            else:
                raise Refusal(404, f"no resource at {parts.path}")
            raise Refusal(405, f"{method} is not allowed on {parts.path}")
        except Refusal as refusal:
            return refusal.answer()

    def _authorise(self, header: str) -> None:
        scheme, _, token = header.partition(" ")
        try:
            user, _, password = base64.b64decode(token, validate=True).decode().partition(":")
        except ValueError:
            user = password = ""
        if scheme.lower() != "basic" or (user, password) != self._credentials:
            raise Refusal(401, "missing or wrong API credentials")

    def _send(self, auth: str, content_type: str, raw: bytes) -> Answer:
        with self._lock:
            self._attempt_times.append(time.monotonic())
        try:
            self._authorise(auth)
        except Refusal as refusal:
            return refusal.answer()
        with self._lock:
            over_limit = self._count_in_window()
            forced = self._failures.popleft() if self._failures else None
            delay, accept = self._delays.popleft() if self._delays else (0.0, True)
            fault = self._faults.draw() if forced is None and not over_limit else None
        if fault == "drop_before":
            return DROP, {}, 0.0
        try:
            if forced is not None:
                raise forced
            if over_limit:
                raise Refusal(429, f"more than {self._rate} messages in one second")
            if not accept:
                raise Refusal(500, "simulated failure: the message was not accepted")
            message = self._accept(content_type, raw)
        except Refusal as refusal:
            return refusal.answer(delay)
        if fault == "drop_after":
            return DROP, {}, 0.0
        if fault == "lose_answer":
            delay = max(delay, self._faults.lost_answer_seconds)
        link = f"{self.url}{MESSAGES_PATH}/{message.id}"
        return 202, {"data": {"id": message.id, "type": "message", "links": {"self": link}}}, delay

    def _count_in_window(self) -> bool:
        """Count this attempt in the one-second window; True if the window was already full."""
        if self._rate is None:
            return False
        now = time.monotonic()
        while self._window and now - self._window[0] >= 1.0:
            self._window.popleft()
        self._window.append(now)
        return len(self._window) > self._rate

    def _accept(self, content_type: str, raw: bytes) -> SimMessage:
        media_type = content_type.split(";")[0].strip().lower()
        if media_type not in (JSON_API, "application/json"):
            raise Refusal(415, f"Content-Type must be {JSON_API} or application/json")
        to, from_, body, dlr_callback = parse_send(raw)
        if self._owned is not None and from_ not in self._owned:
            raise Refusal(403, f"the account does not own the 'from' number {from_}")
        with self._lock:
            if (from_, to) in self._opt_outs:
                detail = f"recipient {to} has opted out of messages from {from_}"
                raise Refusal(400, detail, OPTED_OUT_CODE)
            message = SimMessage(
                id=f"mdr2-{uuid.uuid4().hex}",
                to=to,
                from_=from_,
                body=body,
                dlr_callback=dlr_callback,
                timestamp=datetime.now(UTC),
                content_type=media_type,
            )
            self._messages.append(message)
            self._by_id[message.id] = message
        return message

    def _lookup(self, message_id: str) -> SimMessage:
        with self._lock:
            message = self._by_id.get(message_id)
        if message is None:
            raise Refusal(404, f"no message {message_id}")
        return message

    def _record(self, message: SimMessage) -> dict[str, Any]:
        with self._lock:
            receipts = list(self._receipts.get(message.id, []))
        return mdr_record(message, receipts)

    def _page(self, query: dict[str, list[str]]) -> dict[str, Any]:
        params = {name: values[-1] for name, values in query.items()}
        if "start_date" not in params:
            raise Refusal(400, "'start_date' is required")
        start = parse_date(params["start_date"], end=False)
        end = parse_date(params["end_date"], end=True) if "end_date" in params else None
        limit = page_integer(params, "limit", DEFAULT_PAGE_LIMIT, 1)
        offset = page_integer(params, "offset", 0, 0)
        with self._lock:
            found = [
                m
                for m in sorted([*self._messages, *self._inbound], key=lambda m: m.timestamp)
                if start <= m.timestamp and (end is None or m.timestamp <= end)
            ]
        page: dict[str, Any] = {"data": [self._record(m) for m in found[offset : offset + limit]]}
        page["links"] = {}
        if offset + limit < len(found):
            following = urlencode({**params, "limit": limit, "offset": offset + limit})
            page["links"]["next"] = f"{self.url}{MESSAGES_PATH}?{following}"
        return page
