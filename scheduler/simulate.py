"""`sms-outbox simulator`: the local Flowroute stand-in as a foreground tool, with faults."""

from __future__ import annotations

import argparse
import random
import signal
import sys
import threading
from collections.abc import Iterable
from types import FrameType

from jobs.doubles.simulator import FlowrouteSimulator
from jobs.doubles.simulator_records import Answer, Refusal, parse_send
from jobs.errors import InputError
from jobs.rules import phone


class FaultySimulator(FlowrouteSimulator):
    """The simulator, deciding each send's fate at random: accepted after `latency`, refused
    with 500, accepted with the answer held back (`hang`), or not accepted and held (`drop`)."""

    def __init__(
        self,
        access_key: str,
        secret_key: str,
        *,
        rates: tuple[float, float, float],
        latency: float,
        hang_seconds: float,
        opted_out: Iterable[str],
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
            answer = super()._send(auth, content_type, raw)
        status = answer[0]
        print(f"POST /v2.1/messages to {to} from {source}: {status}", flush=True)
        return answer


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
        sim = FaultySimulator(
            args.access_key,
            args.secret_key,
            rates=rates,
            latency=max(args.latency_ms, 0.0) / 1000,
            hang_seconds=args.hang_seconds,
            opted_out=opted_out,
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
Stop with Ctrl-C."""
