"""`sms-outbox simulator`: the local Flowroute stand-in as a foreground tool, with faults,
delivery receipts for what it accepts, and inbound texts posted on request."""

from __future__ import annotations

import argparse
import json
import random
import signal
import sys
import threading
from collections.abc import Iterable
from types import FrameType
from typing import Any
from urllib.parse import urlsplit

from jobs.errors import InputError
from jobs.rules import phone
from jobs.simulator.records import Answer, Refusal, SimMessage, parse_send
from jobs.simulator.server import FlowrouteSimulator

INBOUND_PATH = "/simulator/inbound"
UNDELIVERED = ("delivery failure", 1201, "Message could not be delivered to the handset")


class FaultySimulator(FlowrouteSimulator):
    """The simulator, deciding each send's fate at random: accepted after `latency`, refused
    with 500, accepted with the answer held back (`hang`), or not accepted and held (`drop`).

    Each accepted message gets its level-1 and level-2 receipts `receipt_delay` seconds later,
    posted to `receipts_to`, or else to the message's own dlr_callback (or kept for its record
    only when it has none); recipients in `undelivered` get a final "delivery failure".
    `POST /simulator/inbound {"from", "to", "body"}` posts a text to `inbound_to` as Flowroute
    posts one to the SMS callback."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        rates: tuple[float, float, float],
        latency: float,
        hang_seconds: float,
        opted_out: Iterable[str],
        receipts_to: str | None = None,
        receipt_delay: float = 0.5,
        undelivered: Iterable[str] = (),
        inbound_to: str | None = None,
        rng: random.Random | None = None,
        rate_per_second: int | None = 5,
        host: str = "127.0.0.1",
        port: int = 0,
    ) -> None:
        super().__init__(
            access_key, secret_key, rate_per_second=rate_per_second, host=host, port=port
        )
        self.fail_rate, self.hang_rate, self.drop_rate = rates
        self.latency = latency
        self.hang_seconds = hang_seconds
        self.opted_out_numbers = set(opted_out)
        self.receipts_to = receipts_to
        self.receipt_delay = receipt_delay
        self.undelivered_numbers = set(undelivered)
        self.sms_callback = inbound_to
        self.rng = rng or random.Random()
        # Keeps each request's injected fault paired with that request.
        self._fate_lock = threading.Lock()

    def _send(self, auth: str, content_type: str, raw: bytes) -> Answer:
        with self._fate_lock:
            try:
                self._authorise(auth)
                to, source, _, _ = parse_send(raw)
            except Refusal:
                return super()._send(auth, content_type, raw)
            if to in self.opted_out_numbers:
                self.opt_out(source, to)
            roll = self.rng.random()
            if roll < self.fail_rate:
                self.fail_next(500)
                self.delay_next(self.latency)
            elif roll < self.fail_rate + self.hang_rate:
                self.delay_next(self.hang_seconds, accept=True)
            elif roll < self.fail_rate + self.hang_rate + self.drop_rate:
                self.delay_next(self.hang_seconds, accept=False)
            elif self.latency > 0:
                self.delay_next(self.latency)
            before = len(self.messages())
            answer = super()._send(auth, content_type, raw)
            accepted = self.messages()[before:]
        status = answer[0]
        print(f"POST /v2.1/messages to {to} from {source}: {status}", flush=True)
        for message in accepted:  # accepted, whatever became of the answer
            timer = threading.Timer(self.receipt_delay, self._post_receipts, args=(message,))
            timer.daemon = True
            timer.start()
        return answer

    def _post_receipts(self, message: SimMessage) -> None:
        if self._stopping.is_set():
            return
        final: dict[str, Any] = {}
        if message.to in self.undelivered_numbers:
            status, code, description = UNDELIVERED
            final = {"final_status": status, "final_code": code, "description": description}
        posted = self.post_receipts([message.id], url=self.receipts_to, **final)
        state = final.get("final_status", "delivered")
        where = f"posted {' '.join(map(str, posted))}" if posted else "kept for its record"
        print(f"receipts for the message to {message.to}: {state}, {where}", flush=True)

    def _handle(self, method: str, target: str, auth: str, content_type: str, raw: bytes) -> Answer:
        if urlsplit(target).path.rstrip("/") != INBOUND_PATH:
            return super()._handle(method, target, auth, content_type, raw)
        try:
            if method != "POST":
                raise Refusal(405, f"{method} is not allowed on {INBOUND_PATH}")
            self._authorise(auth)
            from_, to, body = _inbound_fields(raw)
            if self.sms_callback is None:
                raise Refusal(409, "no SMS callback: start the simulator with --inbound-to URL")
            posted, message_id = self.send_inbound(from_, to, body)
        except Refusal as refusal:
            return refusal.answer()
        print(f"inbound text from {from_} to {to}: posted {posted}", flush=True)
        if not 200 <= posted < 300:
            return Refusal(502, f"the SMS callback answered {posted or 'nothing'}").answer()
        return 200, {"data": {"id": message_id, "type": "message", "callback_status": posted}}, 0.0


def _inbound_fields(raw: bytes) -> tuple[str, str, str]:
    """`{"from", "to", "body"}` from a request to post an inbound text; Refusal if not that."""
    try:
        document = json.loads(raw)
    except ValueError:
        raise Refusal(400, 'the body must be JSON: {"from", "to", "body"}') from None
    if not isinstance(document, dict) or not isinstance(document.get("body"), str):
        raise Refusal(400, 'the body must be JSON: {"from", "to", "body"}')
    try:
        return (
            phone.normalize(document.get("from")),
            phone.normalize(document.get("to")),
            (document["body"]),
        )
    except InputError as exc:
        raise Refusal(400, str(exc)) from None


def _share(value: float, name: str) -> float:
    if not 0.0 <= value <= 1.0:
        raise InputError(f"{name} must be between 0 and 1, not {value:g}")
    return value


def run_simulator(args: argparse.Namespace) -> int:
    """Serve until SIGINT or SIGTERM; print where it listens and the keys to configure."""
    try:
        rates = (
            _share(args.fail_rate, "--fail-rate"),
            _share(args.hang_rate, "--hang-rate"),
            _share(args.drop_rate, "--drop-rate"),
        )
        if sum(rates) > 1.0:
            raise InputError("--fail-rate, --hang-rate and --drop-rate add up to more than 1")
        opted_out = [phone.normalize(number) for number in args.opted_out]
        undelivered = [phone.normalize(number) for number in args.undelivered]
        for option, url in (("--receipts-to", args.receipts_to), ("--inbound-to", args.inbound_to)):
            parts = urlsplit(url or "http://x")
            if parts.scheme not in ("http", "https") or not parts.netloc:
                raise InputError(f"{option} must be an http:// or https:// URL")
        sim = FaultySimulator(
            args.access_key,
            args.secret_key,
            rates=rates,
            latency=max(args.latency_ms, 0.0) / 1000,
            hang_seconds=args.hang_seconds,
            opted_out=opted_out,
            receipts_to=args.receipts_to,
            receipt_delay=max(args.receipt_delay, 0.0),
            undelivered=undelivered,
            inbound_to=args.inbound_to,
            rate_per_second=args.rate or None,
            host=args.host,
            port=args.port,
        )
    except InputError as exc:
        print(f"sms-outbox: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:
        print(
            f"sms-outbox: cannot listen on {args.host}:{args.port}: {exc.strerror}", file=sys.stderr
        )
        return 69
    stopping = threading.Event()

    def on_signal(signum: int, frame: FrameType | None) -> None:
        stopping.set()

    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, on_signal)
    with sim:
        print(_banner(sim.url, args.access_key, args.secret_key, args.rate), flush=True)
        while not stopping.wait(0.5):
            pass
        accepted, attempts = len(sim.messages()), sim.attempts()
    print(f"simulator stopped: {attempts} requests, {accepted} messages accepted", flush=True)
    return 0


def _banner(url: str, access: str, secret: str, rate: int) -> str:
    limit = f"{rate} per second" if rate else "no rate limit"
    return f"""\
Flowroute simulator listening on {url} ({limit}); nothing reaches a phone.
Point sms-outbox at it with these settings:
  SMS_OUTBOX_FLOWROUTE__BASE_URL={url}
  SMS_OUTBOX_FLOWROUTE__ACCESS_KEY={access}
  SMS_OUTBOX_FLOWROUTE__SECRET_KEY={secret}
or in the config file:
  [flowroute]
  base_url = "{url}"
  access_key = "{access}"
  secret_key = "{secret}"
Message records: GET {url}/v2.1/messages?start_date=YYYY-MM-DD and {url}/v2.1/messages/ID
A text from a recipient (with the keys as HTTP Basic credentials, and --inbound-to):
  POST {url}{INBOUND_PATH} {{"from": "...", "to": "...", "body": "STOP"}}
Stop with Ctrl-C."""
