"""The daemon's metrics and health endpoints: /metrics (Prometheus), /healthz and /readyz."""

from __future__ import annotations

import threading
import urllib.error
import urllib.request
from collections.abc import Callable, Iterable, Iterator
from datetime import datetime
from typing import Any

import structlog
from prometheus_client import CollectorRegistry, Counter, Histogram, make_wsgi_app
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.process_collector import ProcessCollector

from jobs import health, metrics
from jobs.clock import Clock
from jobs.errors import ConfigError, StoreError
from jobs.health import AccountStatus, Heartbeat
from jobs.mongo import account as account_hold
from jobs.mongo import reports
from jobs.mongo.connection import Db
from jobs.mongo.optin import OptInStore
from jobs.rules.optin import hour_bucket
from scheduler.listeners import split_listen
from scheduler.surfaces.web import Served, StartResponse, WsgiApp, respond

log = structlog.get_logger("sms_outbox.metrics")
PREFIX = "sms_outbox"
CACHE_SECONDS = 5.0
LATENCY_BUCKETS = (0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0)
WAIT_BUCKETS = (0.01, 0.05, 0.1, 0.25, 0.5, 1.0, 2.0, 5.0)


class PrometheusSink:
    """The events of `jobs.metrics` as Prometheus counters and histograms."""

    def __init__(self, registry: CollectorRegistry) -> None:
        def counter(name: str, doc: str, *labels: str) -> Counter:
            return Counter(f"{PREFIX}_{name}", doc, labels, registry=registry)

        self._counters: dict[str, Counter] = {
            "sends": counter("sends", "Requests to Flowroute by outcome", "outcome"),
            "pacing_waits": counter("pacing_waits", "Sends held back to keep the rate"),
            "claim_losses": counter("claim_losses", "Claims another worker took over"),
            "database_outages": counter(
                "database_outages", "Times the database became unreachable", "during"
            ),
            "opt_outs": counter("opt_outs", "Recipients who opted out, by how", "via"),
            "receipts": counter("receipts", "Delivery receipts by final state", "state"),
            "optin": counter("optin", "Sign-up steps: codes sent, verified, refusals", "step"),
        }
        self._histograms: dict[str, Histogram] = {
            "send_seconds": Histogram(
                f"{PREFIX}_send_seconds",
                "Latency of requests to Flowroute",
                ["outcome"],
                buckets=LATENCY_BUCKETS,
                registry=registry,
            ),
            "pacing_wait_seconds": Histogram(
                f"{PREFIX}_pacing_wait_seconds",
                "Time a send waited for the rate limit",
                buckets=WAIT_BUCKETS,
                registry=registry,
            ),
        }
        # Zero series exist from the start, so rates and alerts work before the first event.
        for outcome in ("202", "4xx", "429", "5xx", "timeout", "connect_error"):
            self._counters["sends"].labels(outcome=outcome)
        for state in ("delivered", "undelivered", "expired"):
            self._counters["receipts"].labels(state=state)

    def count(self, event: str, amount: float = 1.0, **labels: str) -> None:
        counter = self._counters.get(event)
        if counter is None:
            log.warning("metrics.unknown_event", metric=event)
            return
        bounded = {k: reports.label(v) or "none" for k, v in labels.items()}
        (counter.labels(**bounded) if bounded else counter).inc(amount)

    def observe(self, event: str, value: float, **labels: str) -> None:
        histogram = self._histograms.get(event)
        if histogram is None:
            log.warning("metrics.unknown_event", metric=event)
            return
        bounded = {k: reports.label(v) or "none" for k, v in labels.items()}
        (histogram.labels(**bounded) if bounded else histogram).observe(value)


class StoredAccount:
    """The account's state as the daemons share it in the database (`jobs.mongo.account`)."""

    def __init__(self, db: Db) -> None:
        self.db = db

    def state(self) -> str:
        return health.HELD if account_hold.is_held(self.db) else health.ACTIVE


class OutboxCollector:
    """Gauges read from the database at scrape time, at most once every CACHE_SECONDS.

    Messages are counted by whatever states and reasons `message_status` holds, so states
    added later appear without a change here (bounded by `reports.label`).
    """

    def __init__(self, db: Db, clock: Clock, account: AccountStatus, cache_seconds: float) -> None:
        self.db = db
        self.clock = clock
        self.account = account
        self.cache_seconds = cache_seconds
        self._lock = threading.Lock()
        self._at: float | None = None
        self._cached: list[Metric] = []

    def describe(self) -> list[Metric]:
        return []  # created at scrape time: registering must not query the database

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            now = self.clock.monotonic()
            if self._at is None or now - self._at >= self.cache_seconds:
                self._cached = self._read()
                self._at = now
            cached = list(self._cached)
        yield from cached
        yield from self._account()

    def _read(self) -> list[Metric]:
        up = GaugeMetricFamily(f"{PREFIX}_database_up", "1 when the last read succeeded")
        try:
            counts = reports.states_and_reasons(self.db)
            queue = reports.queue(self.db, self.clock.now())
        except StoreError as exc:
            log.warning("metrics.read_failed", error=type(exc).__name__)
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        by_state = GaugeMetricFamily(
            f"{PREFIX}_messages", "Messages and broadcast requests by state", labels=["state"]
        )
        by_reason = GaugeMetricFamily(
            f"{PREFIX}_messages_by_reason",
            "Messages by state and reason code",
            labels=["state", "reason"],
        )
        states: dict[str, int] = {}
        for (state, reason), n in counts.items():
            states[state] = states.get(state, 0) + n
            if reason:
                by_reason.add_metric([state, reason], n)
        for state, n in sorted(states.items()):
            by_state.add_metric([state], n)
        depth = GaugeMetricFamily(f"{PREFIX}_queue_depth", "Queued messages that are due")
        depth.add_metric([], queue.depth)
        age = GaugeMetricFamily(
            f"{PREFIX}_oldest_due_age_seconds", "How long the oldest due message has waited"
        )
        age.add_metric([], _age(queue.oldest_due, self.clock.now()))
        return [up, by_state, by_reason, depth, age, *self._signups()]

    def _signups(self) -> list[Metric]:
        """This hour's opt-in codes, and requests the global cap refused (codes paused), as
        every process serving /join counts them in the database."""
        try:
            sent, refused = OptInStore(self.db).hour_counts(hour_bucket(self.clock.now()))
        except StoreError:
            return []
        codes = GaugeMetricFamily(f"{PREFIX}_optin_codes_this_hour", "Opt-in codes sent")
        codes.add_metric([], sent)
        capped = GaugeMetricFamily(
            f"{PREFIX}_optin_capped_this_hour", "Code requests refused by optin.codes_per_hour"
        )
        capped.add_metric([], refused)
        return [codes, capped]

    def _account(self) -> Iterator[Metric]:
        try:
            state = self.account.state()
        except StoreError:
            return  # the database is away: database_up says so
        for name, value in (("held", health.HELD), ("paused", health.PAUSED)):
            gauge = GaugeMetricFamily(f"{PREFIX}_account_{name}", f"1 when the account is {name}")
            gauge.add_metric([], 1 if state == value else 0)
            yield gauge


def _age(oldest: datetime | None, now: datetime) -> float:
    return max((now - oldest).total_seconds(), 0.0) if oldest else 0.0


def health_app(
    metrics_app: WsgiApp,
    alive: Callable[[], health.Verdict],
    ready: Callable[[], health.Verdict],
) -> WsgiApp:
    """/metrics, /healthz and /readyz; everything else is 404."""

    def app(environ: dict[str, Any], start_response: StartResponse) -> Iterable[bytes]:
        path = environ.get("PATH_INFO", "")
        if environ.get("REQUEST_METHOD") not in ("GET", "HEAD"):
            return respond(start_response, "405 Method Not Allowed", "GET only\n",
                           headers=[("Allow", "GET, HEAD")])  # fmt: skip
        if path == "/metrics":
            return metrics_app(environ, start_response)
        if path in ("/healthz", "/readyz"):
            verdict = alive() if path == "/healthz" else ready()
            status = "200 OK" if verdict.ok else "503 Service Unavailable"
            return respond(start_response, status, ("ok: " if verdict.ok else "failing: ")
                           + verdict.detail + "\n")  # fmt: skip
        return respond(start_response, "404 Not Found", "not found\n")

    return app


def start(
    listen: str,
    db: Db,
    clock: Clock,
    heartbeat: Heartbeat,
    timing: tuple[float, float],
    account: AccountStatus | None = None,
    limits: health.Limits | None = None,
) -> Served:
    """Install the Prometheus sink and serve the endpoints on a thread; `timing` is
    (poll seconds, lease seconds), `limits` when failing cycles make /healthz fail."""
    account = account or StoredAccount(db)
    registry = CollectorRegistry()
    ProcessCollector(registry=registry)
    metrics.install(PrometheusSink(registry))
    registry.register(OutboxCollector(db, clock, account, CACHE_SECONDS))
    poll, lease = timing

    def alive() -> health.Verdict:
        return health.liveness(heartbeat, clock.monotonic(), poll, lease, limits)

    def ready() -> health.Verdict:
        return health.readiness(lambda: db.command("ping"), account)

    try:
        served = Served(health_app(make_wsgi_app(registry), alive, ready), listen)
    except OSError as exc:
        metrics.install(None)
        raise ConfigError(f"metrics.listen: cannot listen on {listen} ({exc.strerror})") from None
    served.start("metrics")
    log.info("metrics.listening", url=served.url)
    return served


def health_check(listen: str, timeout: float = 4.0) -> tuple[bool, str]:
    """Ask a running daemon's /healthz at `listen` (a wildcard host means this machine)."""
    host, port = split_listen(listen)
    host = {"0.0.0.0": "127.0.0.1", "::": "::1"}.get(host, host)
    url = f"http://{f'[{host}]' if ':' in host else host}:{port}/healthz"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as answer:
            return True, f"{url}: {answer.read().decode().strip()}"
    except urllib.error.HTTPError as exc:
        return False, f"sms-outbox: {url}: {exc.read().decode().strip()}"
    except OSError as exc:
        return False, f"sms-outbox: no daemon answered at {url} ({exc})"
