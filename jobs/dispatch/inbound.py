"""Inbound messages, once Flowroute confirms them: STOP opts out everywhere, HELP gets the
program's help, START gives back consent an opt-out ended; each keyword gets one reply through
the outbox. Other texts are kept for operators."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, replace
from datetime import datetime, timedelta
from typing import Any

import structlog

from jobs import metrics
from jobs.clock import Clock
from jobs.dispatch.confirm import Fate, Found, Lookups, Step, tries_of
from jobs.errors import InputError
from jobs.keys import Signatures
from jobs.ports import Consents, Doc, InboundLog, KeywordOptIn, Outbox
from jobs.rules import confirm, keywords, made, replies, seal
from jobs.rules.confirm import ConfirmConfig
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
    """Applies one inbound inbox entry once Flowroute's record confirms it, and says what became
    of it. A STOP is honoured at once, confirmed or not (an opt-out is the safe side); its reply,
    and everything any other text does, waits for the confirmation."""

    def __init__(
        self,
        store: Outbox,
        directory: Consents,
        inbound: InboundLog,
        clock: Clock,
        texts: ReplyTexts,
        signatures: Signatures | None,
        *,
        config: ConfirmConfig | None = None,
        optin: KeywordOptIn | None = None,
    ) -> None:
        self.store = store
        self.directory = directory
        self.inbound = inbound
        self.clock = clock
        self.texts = texts
        self.signatures = signatures
        self.config = config or ConfirmConfig()
        self.optin = optin

    def __call__(self, entry: Mapping[str, Any], lookups: Lookups) -> Step:
        fields = stored_inbound(entry.get("fields"))
        now = self.clock.now()
        keyword = keywords.classify(fields["body"])
        if not self.directory.is_source(fields["to"]):
            return Step("not_our_number")
        honoured = self._honour_stop(fields, now) if keyword is Keyword.STOP else None
        unconfirmed = self._confirmation(entry, fields, lookups, now)
        if unconfirmed is not None:
            if honoured is not None and unconfirmed.fate is Fate.UNVERIFIED:
                return replace(unconfirmed, outcome=honoured + "_unconfirmed")
            return unconfirmed
        if not self.inbound.record(fields, now):
            return Step("duplicate")
        # Opt-in by keyword (JOIN, then YES within a day), for texts Flowroute confirmed.
        handled = self.optin(fields) if self.optin is not None else None
        if handled is not None:
            self.inbound.settle(
                fields["inbound_id"], handled.keyword, handled.outcome, handled.replied
            )
            log.info("inbound.applied", inbound_id=fields["inbound_id"],
                     keyword=handled.keyword, outcome=handled.outcome)  # fmt: skip
            return Step(handled.outcome)
        if keyword is None:
            outcome = "stored"
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
        log.info("inbound.applied", inbound_id=fields["inbound_id"], keyword=keyword,
                 outcome=outcome)  # fmt: skip
        return Step(outcome)

    def _confirmation(
        self, entry: Mapping[str, Any], fields: Mapping[str, Any], lookups: Lookups, now: datetime
    ) -> Step | None:
        """None when Flowroute's record is this very text; else what to do with the entry."""
        inbound_id = fields["inbound_id"]
        if not confirm.has_message_id(inbound_id):
            return Step(None, Fate.UNVERIFIED, "the callback carried no message id")
        found = lookups.get(inbound_id)
        if found.found is Found.DEFERRED:
            return Step(None, Fate.DEFERRED)
        if found.found is Found.UNAVAILABLE:
            return Step(None, Fate.UNVERIFIED, found.detail)
        if found.record is not None:
            why = confirm.inbound_mismatch(fields, found.record)
            return None if why is None else Step(None, Fate.UNVERIFIED, why)
        absent = found.found is Found.ABSENT
        if self.config.given_up(entry.get("received_at"), now, absent=absent):
            return Step(None, Fate.UNVERIFIED, found.detail)
        count = tries_of(entry)
        return Step(None, Fate.WAITING, found.detail, self.config.delay(count))

    def _evidence(self, fields: Mapping[str, Any], now: datetime) -> Doc:
        return {"inbound_id": fields["inbound_id"], "text": fields["body"][:160],
                "number": fields["from"], "texted": fields["to"],
                "sent_at": fields.get("timestamp") or now}  # fmt: skip

    def _honour_stop(self, fields: Mapping[str, Any], now: datetime) -> str:
        """Opt the number out before any lookup, recorded as unconfirmed; a number already
        opted out keeps the opt-out it has."""
        recipient = self.directory.recipient(fields["from"])
        if recipient is not None and recipient.get("opted_out"):
            return "already_opted_out"
        evidence = {**self._evidence(fields, now), "confirmed": False}
        self.directory.opt_out(fields["from"], now=now, reason="texted STOP", evidence=evidence)
        metrics.opted_out("stop")
        return "opted_out"

    def _stop(self, fields: Mapping[str, Any], now: datetime) -> str:
        """A confirmed STOP: its opt-out is marked confirmed and gets its one reply."""
        recipient = self.directory.recipient(fields["from"])
        opted_out = recipient.get("opted_out") if recipient is not None else None
        inbound_id = fields["inbound_id"]
        if isinstance(opted_out, Mapping) and opted_out.get("inbound_id") == inbound_id:
            self.directory.confirm_opt_out(fields["from"], inbound_id, now=now)
        elif not opted_out:
            return "opted_out_superseded"  # consent was given again since it was honoured
        elif not isinstance(opted_out, Mapping) or opted_out.get("confirmed") is not False:
            return "already_opted_out"  # confirmed once already: nothing more goes to them
        else:
            # The opt-out in force is an unconfirmed one (maybe forged): this confirmed STOP
            # becomes the evidence, and is answered.
            evidence = {**self._evidence(fields, now), "confirmed": True, "confirmed_at": now}
            self.directory.opt_out(fields["from"], now=now, reason="texted STOP",
                                   evidence=evidence)  # fmt: skip
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
        """A confirmed START gives back the consent the number had before it opted out; it
        never makes anyone a recipient, nor verifies one who was not."""
        recipient = self.directory.recipient(fields["from"])
        if recipient is None:
            return "not_a_recipient"
        again = recipient.get("opted_in_again")
        if isinstance(again, Mapping) and again.get("inbound_id") == fields["inbound_id"]:
            return self._reply(Keyword.START, fields, now, "opted_in")  # recorded, not answered
        if recipient.get("verified") is not True:
            return "not_verified"
        if not recipient.get("opted_out"):
            return "already_opted_in"  # the consent on record stands, with its evidence
        evidence = {"at": now, "source": "inbound", **self._evidence(fields, now)}
        self.directory.end_opt_out(fields["from"], evidence)
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
        doc = made.message(
            replies.message_id(keyword, fields["inbound_id"], fields["from"]),
            fields["from"], fields["to"], self.texts.text(keyword),
            replies.campaign(keyword, fields["inbound_id"]), REPLY_PRIORITY, now,
            reply_to=fields["inbound_id"],
        )  # fmt: skip
        if self.signatures is not None:
            doc["signature"] = self.signatures.sign_child(doc)
        if self.store.sealer is not None:
            doc["seal"] = self.store.sealer.seal(doc, seal.MADE)
        self.store.add_children([doc])  # a second try of the same inbound collides, harmlessly
        return outcome
