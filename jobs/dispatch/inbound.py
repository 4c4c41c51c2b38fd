"""Inbound messages: STOP opts out everywhere, HELP gets the program's help, START opts in again;
each keyword gets one reply through the outbox. Other texts are kept for operators."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

import structlog

from jobs import metrics
from jobs.clock import Clock
from jobs.errors import InputError
from jobs.keys import Signatures
from jobs.model import State
from jobs.mongo.directory import Directory
from jobs.mongo.inbound import InboundLog
from jobs.mongo.store import Doc, OutboxStore
from jobs.optin.keywords import KeywordOptIn
from jobs.rules import keywords, replies, segments
from jobs.rules.keywords import Keyword

log = structlog.get_logger("sms_outbox.inbound")
REPLY_PRIORITY = 100
MAX_REPLIES_PER_DAY = 5
REPLIED = frozenset({"opted_out", "replied", "opted_in"})
DEFAULT_HELP = (
    "{program}: for help, contact the sender of our messages. Reply STOP to opt out."
    " Msg&data rates may apply."
)
DEFAULT_STOP = (
    "{program}: you are unsubscribed and will get no more messages. Reply START to subscribe again."
)
DEFAULT_START = "{program}: you are subscribed again. Reply HELP for help, STOP to opt out."


@dataclass(frozen=True)
class ReplyTexts:
    """The `[replies]` settings: what each keyword is answered with."""

    program: str = "sms-outbox"
    help_text: str = DEFAULT_HELP
    stop_text: str = DEFAULT_STOP
    start_text: str = DEFAULT_START
    help_interval: timedelta = timedelta(hours=24)

    def text(self, keyword: Keyword) -> str:
        template = {Keyword.STOP: self.stop_text, Keyword.HELP: self.help_text,
                    Keyword.START: self.start_text}[keyword]  # fmt: skip
        return template.replace("{program}", self.program)


def stored_inbound(fields: Any) -> dict[str, Any]:
    """An inbound message as the receiver stored it, checked again (the inbox is writable)."""
    if not isinstance(fields, Mapping):
        raise InputError("the inbound entry has no fields")
    for name in ("inbound_id", "from", "to", "body"):
        if not isinstance(fields.get(name), str):
            raise InputError(f"the inbound entry has no {name}")
    return dict(fields)


class InboundHandler:
    """Applies one inbound inbox entry; returns what was done, which the inbox records."""

    def __init__(
        self,
        store: OutboxStore,
        directory: Directory,
        inbound: InboundLog,
        clock: Clock,
        texts: ReplyTexts,
        signatures: Signatures | None,
        optin: KeywordOptIn | None = None,
    ) -> None:
        self.store = store
        self.directory = directory
        self.inbound = inbound
        self.clock = clock
        self.texts = texts
        self.signatures = signatures
        self.optin = optin

    def __call__(self, entry: Mapping[str, Any]) -> str:
        fields = stored_inbound(entry.get("fields"))
        now = self.clock.now()
        if not self.inbound.record(fields, now):
            return "duplicate"
        # Opt-in by keyword (JOIN, then YES), each confirmed with Flowroute first.
        if self.optin is not None and self.directory.is_source(fields["to"]):
            handled = self.optin(fields, entry.get("received_at"))
            if handled is not None:
                self.inbound.settle(
                    fields["inbound_id"], handled.keyword, handled.outcome, handled.replied
                )
                log.info("inbound.applied", inbound_id=fields["inbound_id"],
                         keyword=handled.keyword, outcome=handled.outcome)  # fmt: skip
                return handled.outcome
        keyword = keywords.classify(fields["body"])
        ours = fields["to"]
        bound = log.bind(inbound_id=fields["inbound_id"], keyword=keyword)
        if keyword is None:
            outcome = "stored"
        elif not self.directory.is_source(ours):
            outcome = "not_our_number"
        elif keyword is Keyword.STOP:
            outcome = self._stop(fields, now)
        elif keyword is Keyword.HELP:
            outcome = self._help(fields, now)
        else:
            outcome = self._start(fields, now)
        replied = outcome in REPLIED
        self.inbound.settle(
            fields["inbound_id"], keyword.value if keyword else None, outcome, replied
        )
        bound.info("inbound.applied", outcome=outcome)
        return outcome

    def _evidence(self, fields: Mapping[str, Any], now: datetime) -> Doc:
        return {"inbound_id": fields["inbound_id"], "text": fields["body"][:160],
                "number": fields["from"], "texted": fields["to"],
                "sent_at": fields.get("timestamp") or now}  # fmt: skip

    def _stop(self, fields: Mapping[str, Any], now: datetime) -> str:
        recipient = self.directory.recipient(fields["from"])
        opted_out = recipient.get("opted_out") if recipient is not None else None
        if opted_out:
            if not isinstance(opted_out, Mapping) or (
                opted_out.get("inbound_id") != fields["inbound_id"]
            ):
                return "already_opted_out"  # confirmed once already: nothing more goes to them
            # This very STOP was recorded before the daemon stopped: finish with its reply.
        else:
            self.directory.opt_out(
                fields["from"], now=now, reason="texted STOP", evidence=self._evidence(fields, now)
            )
            metrics.opted_out("stop")
        return self._reply(Keyword.STOP, fields, now, "opted_out")

    def _help(self, fields: Mapping[str, Any], now: datetime) -> str:
        recipient = self.directory.recipient(fields["from"])
        if recipient is not None and recipient.get("opted_out"):
            return "opted_out"
        since = now - self.texts.help_interval
        if self.inbound.answered_since(fields["from"], Keyword.HELP.value, since):
            return "help_already_sent"
        return self._reply(Keyword.HELP, fields, now, "replied")

    def _start(self, fields: Mapping[str, Any], now: datetime) -> str:
        recipient = self.directory.recipient(fields["from"])
        again = (
            recipient is None or bool(recipient.get("opted_out")) or not recipient.get("verified")
        )
        consent = recipient.get("consent") if recipient is not None else None
        if isinstance(consent, Mapping) and consent.get("inbound_id") == fields["inbound_id"]:
            return self._reply(Keyword.START, fields, now, "opted_in")  # recorded, not answered
        if not again:
            return "already_opted_in"  # the consent on record stands, with its evidence
        self.directory.opt_in(fields["from"], now=now, evidence=self._evidence(fields, now))
        return self._reply(Keyword.START, fields, now, "opted_in")

    def _reply(
        self, keyword: Keyword, fields: Mapping[str, Any], now: datetime, outcome: str
    ) -> str:
        """Queue the one reply to this inbound message, signed by the daemon; a number that
        already got `MAX_REPLIES_PER_DAY` replies gets no more today (the inbox is writable,
        and forged STOP/START pairs must not become a way to text someone without end)."""
        if self.inbound.replies_since(fields["from"], now - timedelta(days=1)) >= (
            MAX_REPLIES_PER_DAY
        ):
            log.warning("reply.limited", inbound_id=fields["inbound_id"], keyword=keyword)
            return outcome + "_unanswered"
        body = segments.normalize_text(self.texts.text(keyword))
        size = segments.measure(body)
        doc: Doc = {
            "_id": replies.message_id(keyword, fields["inbound_id"], fields["from"]),
            "kind": "message", "user": replies.USER, "to": fields["from"], "from": fields["to"],
            "body": body, "campaign": replies.campaign(keyword, fields["inbound_id"]),
            "reply_to": fields["inbound_id"], "segments": size.segments,
            "encoding": size.encoding, "priority": REPLY_PRIORITY, "due_at": now,
            "state": State.QUEUED.value, "attempts": 0, "rev": 1, "synced": False,
            "created_at": now, "updated_at": now,
        }  # fmt: skip
        if self.signatures is not None:
            doc["signature"] = self.signatures.sign_child(doc)
        self.store.add_children([doc])  # a second try of the same inbound collides, harmlessly
        return outcome
