"""Opt-in by keyword: a JOIN texted to a program number gets "Reply YES to confirm"; a YES within
24 hours verifies the number, with both inbound ids as evidence. The inbound step hands over
only texts Flowroute's records confirmed (jobs/dispatch/inbound.py), so both are the phone's."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Any

import structlog

from jobs import metrics
from jobs.optin import messages
from jobs.optin.service import SignUp
from jobs.rules import identity, keywords, optin
from jobs.rules.optin import Kind

log = structlog.get_logger("sms_outbox.optin")


@dataclass(frozen=True)
class Handled:
    """What came of an opt-in keyword, as the inbound log records it."""

    keyword: str
    outcome: str
    replied: bool = False


class KeywordOptIn:
    """Handles JOIN texts, and YES texts that answer a JOIN; any other text is not its business
    (None): a YES without a JOIN is a START, which only gives back consent a number had."""

    def __init__(self, signup: SignUp) -> None:
        self.signup = signup
        self._indexed = False

    def __call__(self, fields: Mapping[str, Any]) -> Handled | None:
        word = keywords.normalize(fields["body"])
        config = self.signup.config
        if word not in config.keywords and word not in config.confirm_words:
            return None
        if not self._indexed:  # the web app makes them too; a daemon alone needs them here
            self.signup.store.ensure_indexes()
            self._indexed = True
        if word in config.keywords:
            return self._join(fields)
        return self._yes(fields)

    def _join(self, fields: Mapping[str, Any]) -> Handled:
        now = self.signup.clock.now()
        store, number = self.signup.store, fields["from"]
        view = identity.view(number, store.consent_of(number))
        if view is not None and view.get("verified") and not view.get("opted_out"):
            return Handled("join", "already_opted_in")
        refusal = self.signup.take_number_slots(number, now)
        if refusal is not None:
            log.info("optin.refused", reason=refusal.value, via="keyword")
            return Handled("join", f"join_{refusal.value}")
        expires = now + optin.KEYWORD_WINDOW
        join = {"_id": fields["inbound_id"], "phone": number, "to": fields["to"],
                "text": fields["body"][:160], "at": now, "expires_at": expires}  # fmt: skip
        store.add_join(join)
        prompt = messages.message(
            Kind.PROMPT, fields["inbound_id"], number, fields["to"],
            self.signup.config.program.prompt_text(), now, self.signup.signatures,
        )  # fmt: skip
        messages.queue(self.signup.outbox, prompt)
        store.record_event(number, "join_prompted", now, inbound_id=fields["inbound_id"],
                           message_id=prompt["_id"])  # fmt: skip
        metrics.optin("join_prompted")
        return Handled("join", "join_prompted", replied=True)

    def _yes(self, fields: Mapping[str, Any]) -> Handled | None:
        now = self.signup.clock.now()
        store, number = self.signup.store, fields["from"]
        join = store.open_join(number, now)
        if join is None:
            return None  # YES alone enrols nobody: it is a START
        if not store.use_join(join["_id"], fields["inbound_id"], now):
            return Handled("yes", "already_opted_in")
        prompt_id = optin.message_id(Kind.PROMPT, str(join["_id"]), number)
        evidence = self._evidence(join, fields, now, prompt_id)
        store.verify(number, evidence, now)
        store.record_event(number, "verified", now, via="keyword", inbound_id=fields["inbound_id"])
        log.info("optin.verified", via="keyword", inbound_id=fields["inbound_id"])
        metrics.optin("verified")
        welcome = messages.message(
            Kind.WELCOME, fields["inbound_id"], number, fields["to"],
            self.signup.config.program.welcome_text(), now, self.signup.signatures,
        )  # fmt: skip
        messages.queue(self.signup.outbox, welcome)
        return Handled("yes", "opted_in", replied=True)

    def _evidence(
        self, join: Mapping[str, Any], fields: Mapping[str, Any], now: datetime, prompt_id: str
    ) -> dict[str, Any]:
        return {
            "at": now, "source": "keyword", "method": "join_yes",
            "join_inbound_id": join["_id"], "join_text": join.get("text"),
            "join_at": join.get("at"), "yes_inbound_id": fields["inbound_id"],
            "yes_text": fields["body"][:160], "texted": fields["to"],
            "terms": self.signup.config.program.terms_record(), "prompt_message_id": prompt_id,
            "prompt_provider_id": self.signup.store.provider_id(prompt_id),
            "confirmed_with": "flowroute_records",
        }  # fmt: skip
