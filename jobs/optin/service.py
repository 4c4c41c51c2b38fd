"""Sign-up by code: ask for a code (limits checked, the code texted) and confirm it (the number
verified with its evidence, then welcomed). What the /join page calls; no web code here."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import structlog

from jobs import metrics
from jobs.clock import Clock
from jobs.keys import KeyRing, Signatures
from jobs.mongo.directory import Directory
from jobs.mongo.optin import OptInStore
from jobs.mongo.store import Doc
from jobs.optin import messages
from jobs.rules import identity, optin
from jobs.rules.optin import Limits, Program, Refusal, Window

log = structlog.get_logger("sms_outbox.optin")
MAX_AGENT_CHARS = 300


@dataclass(frozen=True)
class OptInConfig:
    """The `[optin]` settings the sign-up paths need."""

    program: Program = field(default_factory=Program)
    limits: Limits = field(default_factory=Limits)
    number: str | None = None  # the program number; the first granted number when unset
    keywords: tuple[str, ...] = ("join",)
    confirm_words: tuple[str, ...] = ("yes",)
    price_per_segment: float = 0.0


@dataclass(frozen=True)
class Answer:
    """What the page shows next: the code form for `request_id`, or why not (nothing sent)."""

    request_id: str | None = None
    number: str | None = None
    refusal: Refusal | None = None

    @property
    def message(self) -> str | None:
        return optin.MESSAGES[self.refusal] if self.refusal is not None else None


class SignUp:
    """Requests and confirmations of codes, with the limits against SMS pumping."""

    def __init__(
        self,
        store: OptInStore,
        outbox: messages.Outbox,
        directory: Directory,
        keys: KeyRing,
        clock: Clock,
        config: OptInConfig,
        *,
        sign: bool = True,
    ) -> None:
        self.store = store
        self.outbox = outbox
        self.directory = directory
        self.keys = keys
        self.clock = clock
        self.config = config
        self.signatures = Signatures(keys) if sign else None

    def program_number(self) -> str | None:
        """The number opt-in texts come from: the configured one, else the first granted."""
        if self.config.number is not None:
            if self.directory.is_source(self.config.number):
                return self.config.number
            log.error("optin.no_number", detail="optin.number is not granted to any sender")
            return None
        grants = self.directory.senders()
        if not grants:
            log.error("optin.no_number", detail="no number is granted to any sender")
        return str(grants[0]["source"]) if grants else None

    def request(self, raw: object, consent: bool, client: str, user_agent: str) -> Answer:
        """Ask for a code for the number typed. A number that is verified already, or opted
        out, gets the same answer as any other and no code, so nobody learns who subscribed."""
        now = self.clock.now()
        limits = self.config.limits
        number, refusal = optin.parse_number(raw, limits.regions)
        if refusal is None and not consent:
            refusal = Refusal.NO_CONSENT
        if refusal is not None or number is None:
            return self._refused(refusal or Refusal.INVALID_NUMBER, None, client)
        hour = optin.hour_bucket(now)
        if self.store.codes_in_hour(hour) >= limits.codes_per_hour:
            return self._paused(number, client)
        windows = [optin.client_window(client, limits), *optin.number_windows(number, limits)]
        taken = self._take(windows, now)
        if isinstance(taken, Refusal):
            return self._refused(taken, number, client)
        request_id = optin.new_request_id()
        view = identity.view(number, self.store.consent_of(number))
        if view is not None and (view.get("opted_out") or view.get("verified")):
            log.info("optin.code_skipped", number=_masked(number), client=client)
            return Answer(request_id=request_id, number=number)
        source = self.program_number()
        if source is None:  # logged as optin.no_number: codes wait for a granted number
            self._give_back(taken)
            return self._refused(Refusal.PAUSED, number, client)
        if self.store.count_code(hour, limits.codes_per_hour) is None:
            self._give_back(taken)
            return self._paused(number, client)
        self._send_code(request_id, number, source, client, user_agent, now)
        return Answer(request_id=request_id, number=number)

    def confirm(
        self, request_id: object, raw: object, code: object, client: str, user_agent: str
    ) -> Answer:
        """Check the code typed; when it is right, verify the number with its evidence and
        queue the welcome text. Each try counts, right or wrong: the sixth is refused."""
        now = self.clock.now()
        number, _ = optin.parse_number(raw, self.config.limits.regions)
        pending = None
        if number is not None and isinstance(request_id, str) and 0 < len(request_id) <= 64:
            pending = self.store.try_code(request_id, number)
        refusal = optin.check_code(pending, self.keys.daemon_key(), code, now)
        if refusal is None and pending is not None and not self.store.use_code(pending["_id"], now):
            refusal = Refusal.WRONG_CODE  # used by a concurrent request a moment ago
        if refusal is not None or pending is None or number is None:
            return self._refused(refusal or Refusal.WRONG_CODE, number, client)
        message_id = str(pending.get("message_id"))
        evidence: Doc = {
            "at": now, "source": "web", "method": "code", "client": client,
            "user_agent": user_agent[:MAX_AGENT_CHARS], "request_id": pending["_id"],
            "requested_at": pending.get("created_at"), "requested_from": pending.get("client"),
            "requested_user_agent": pending.get("user_agent"), "terms": pending.get("terms"),
            "program_number": pending.get("from"), "code_message_id": message_id,
            "code_provider_id": self.store.provider_id(message_id),
        }  # fmt: skip
        self.store.verify(number, evidence, now)
        self.store.record_event(number, "verified", now, via="web", request_id=pending["_id"],
                                client=client)  # fmt: skip
        log.info("optin.verified", number=_masked(number), via="web")
        metrics.optin("verified")
        source = str(pending.get("from"))
        welcome = messages.message(
            optin.Kind.WELCOME, str(pending["_id"]), number, source,
            self.config.program.welcome_text(), now, self.signatures,
        )  # fmt: skip
        messages.queue(self.outbox, welcome)
        return Answer(request_id=str(pending["_id"]), number=number)

    def take_number_slots(self, number: str, now: datetime) -> Refusal | None:
        """The per-number and global limits, for a JOIN that would be answered; None when a
        prompt may go (the slots and one code of the hour are then counted)."""
        limits = self.config.limits
        taken = self._take(optin.number_windows(number, limits), now)
        if isinstance(taken, Refusal):
            return taken
        if self.store.count_code(optin.hour_bucket(now), limits.codes_per_hour) is None:
            self._give_back(taken)
            self._paused(number, "keyword")
            return Refusal.PAUSED
        return None

    def _send_code(
        self, request_id: str, number: str, source: str, client: str, user_agent: str,
        now: datetime,
    ) -> None:  # fmt: skip
        code = optin.new_code()
        key = self.keys.daemon_key()
        doc = messages.message(
            optin.Kind.CODE, request_id, number, source, self.config.program.code_text(code),
            now, self.signatures,
        )  # fmt: skip
        self.store.add_code({
            "_id": request_id, "phone": number, "code_hash": optin.code_hash(
                key, request_id, number, code),
            "created_at": now, "expires_at": now + optin.CODE_TTL, "client": client,
            "user_agent": user_agent[:MAX_AGENT_CHARS], "terms": self.config.program.terms_record(),
            "from": source, "message_id": doc["_id"],
        })  # fmt: skip
        messages.queue(self.outbox, doc)
        self.store.record_event(number, "code_sent", now, request_id=request_id, client=client,
                                message_id=doc["_id"])  # fmt: skip
        log.info("optin.code_sent", number=_masked(number), client=client)
        metrics.optin("code_sent")

    def _take(self, windows: list[Window], now: datetime) -> list[tuple[Window, Any]] | Refusal:
        taken: list[tuple[Window, Any]] = []
        for window in windows:
            previous = self.store.take(window, now)
            if previous is None:
                self._give_back(taken)
                return window.refusal
            taken.append((window, (now + window.span, previous)))
        return taken

    def _give_back(self, taken: list[tuple[Window, Any]]) -> None:
        for window, (until, previous) in taken:
            self.store.give_back(window, until, previous)

    def _paused(self, number: str, client: str) -> Answer:
        limits = self.config.limits
        spend = limits.codes_per_hour * self.config.price_per_segment
        log.warning("optin.paused", codes_per_hour=limits.codes_per_hour,
                    spend_per_hour=round(spend, 4), client=client)  # fmt: skip
        metrics.optin("paused")
        self.store.note_capped(optin.hour_bucket(self.clock.now()))
        return Answer(number=number, refusal=Refusal.PAUSED)

    def _refused(self, refusal: Refusal, number: str | None, client: str) -> Answer:
        log.info("optin.refused", reason=refusal.value, client=client,
                 number=_masked(number) if number else None)  # fmt: skip
        if refusal is not Refusal.PAUSED:
            metrics.optin(refusal.value)
        return Answer(number=number, refusal=refusal)


def _masked(number: str) -> str:
    return "•" * (len(number) - 4) + number[-4:]
