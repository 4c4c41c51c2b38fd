"""Opt-in rules: codes, their hashes and checks, sign-up limits, the terms shown, and the
daemon's own opt-in messages (code, YES prompt, welcome) and when each may be sent. Pure."""

from __future__ import annotations

import hashlib
import hmac
import secrets
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from enum import StrEnum
from typing import Any

import phonenumbers

from jobs.errors import InputError
from jobs.model import Problem, Reason
from jobs.rules import phone
from jobs.rules.policy import Decision, recipient_problem
from jobs.rules.replies import USER

CODE_DIGITS = 6
CODE_TTL = timedelta(minutes=10)
MAX_TRIES = 5
KEYWORD_WINDOW = timedelta(hours=24)
PREFIX = "optin:"
HASH_VERSION = "sms-outbox-optin-code-v1"
# The reply lane: the same priority as the replies to STOP and HELP (jobs/dispatch/inbound.py).
PRIORITY = 100


class Kind(StrEnum):
    """The daemon's opt-in messages."""

    CODE = "code"  # the 6-digit code asked for on /join: the one text that needs no consent
    PROMPT = "prompt"  # "Reply YES to confirm", answering a JOIN the person texted
    WELCOME = "welcome"  # after consent is confirmed: program, frequency, HELP/STOP, rates


class Refusal(StrEnum):
    """Why a sign-up step was refused; each has a sentence the page shows."""

    INVALID_NUMBER = "invalid_number"
    REGION = "region"
    NO_CONSENT = "no_consent"
    NUMBER_HOURLY = "number_hourly"
    NUMBER_DAILY = "number_daily"
    CLIENT_HOURLY = "client_hourly"
    PAUSED = "paused"
    WRONG_CODE = "wrong_code"
    EXPIRED = "expired"
    TOO_MANY_TRIES = "too_many_tries"


MESSAGES = {
    Refusal.INVALID_NUMBER: "That is not a valid phone number. Enter a 10-digit US or Canadian"
    " number.",
    Refusal.REGION: "Sign-up is open to US and Canadian mobile numbers only.",
    Refusal.NO_CONSENT: "Tick the box to agree to receive the messages described above.",
    Refusal.NUMBER_HOURLY: "Too many codes were requested for this number in the last hour."
    " Try again later.",
    Refusal.NUMBER_DAILY: "Too many codes were requested for this number today. Try again"
    " tomorrow.",
    Refusal.CLIENT_HOURLY: "Too many sign-up attempts from your network in the last hour. Try"
    " again later.",
    Refusal.PAUSED: "Sign-up by text is paused for a while. Please try again later.",
    Refusal.WRONG_CODE: "That code is not right. Check the text we sent and try again.",
    Refusal.EXPIRED: "That code has expired. Ask for a new one.",
    Refusal.TOO_MANY_TRIES: "Too many wrong codes. Ask for a new one.",
}


@dataclass(frozen=True)
class Limits:
    """Sign-up limits against SMS pumping: per number, per client address, and in all."""

    number_per_hour: int = 3
    number_per_day: int = 5
    client_per_hour: int = 10
    codes_per_hour: int = 200
    regions: tuple[str, ...] = ("US", "CA")


@dataclass(frozen=True)
class Window:
    """One sliding-window limit: at most `limit` uses of `key` per `span`."""

    key: str
    limit: int
    span: timedelta
    refusal: Refusal


def number_windows(number: str, limits: Limits) -> list[Window]:
    return [
        Window(f"number:{number}:hour", limits.number_per_hour, timedelta(hours=1),
               Refusal.NUMBER_HOURLY),
        Window(f"number:{number}:day", limits.number_per_day, timedelta(days=1),
               Refusal.NUMBER_DAILY),
    ]  # fmt: skip


def client_window(client: str, limits: Limits) -> Window:
    return Window(
        f"client:{client}:hour", limits.client_per_hour, timedelta(hours=1), Refusal.CLIENT_HOURLY
    )


def hour_bucket(now: datetime) -> datetime:
    """The start of the clock hour holding `now`: the global cap counts codes per such hour."""
    return now.replace(minute=0, second=0, microsecond=0)


def parse_number(raw: object, regions: Sequence[str]) -> tuple[str | None, Refusal | None]:
    """The 11-digit number typed on the page, or why it is refused: not a number, or outside
    the allowed regions (the rest of +1 includes the Caribbean, a favourite of SMS pumping)."""
    try:
        number = phone.normalize(raw)
    except InputError:
        return None, Refusal.INVALID_NUMBER
    region = phonenumbers.region_code_for_number(phonenumbers.parse("+" + number))
    if region not in regions:
        return None, Refusal.REGION
    return number, None


def new_code() -> str:
    """A fresh 6-digit code, from the system's secure random source."""
    return f"{secrets.randbelow(10**CODE_DIGITS):0{CODE_DIGITS}d}"


def new_request_id() -> str:
    return secrets.token_hex(16)


def code_hash(key: str, request_id: str, number: str, code: str) -> str:
    """The code as it is stored: an HMAC under the daemon's key, bound to its request and number,
    so a copy of the database alone gives no code away."""
    text = "\x1f".join((HASH_VERSION, request_id, number, code)).encode("utf-8")
    return hmac.new(key.encode("utf-8"), text, hashlib.sha256).hexdigest()


def clean_code(given: object) -> str:
    """What the person typed, without the spaces and dashes people put in codes."""
    if not isinstance(given, str):
        return ""
    return "".join(ch for ch in given if ch not in " -\t")[: CODE_DIGITS * 2]


def check_code(
    pending: Mapping[str, Any] | None, key: str, given: object, now: datetime
) -> Refusal | None:
    """None when `given` is the pending code's code; otherwise why not. A missing request and a
    wrong code read the same, so the page tells nobody which numbers have a code waiting."""
    if pending is None:
        return Refusal.WRONG_CODE
    tries = pending.get("tries")
    if not isinstance(tries, int) or tries > MAX_TRIES:
        return Refusal.TOO_MANY_TRIES
    expires = pending.get("expires_at")
    if not isinstance(expires, datetime) or now >= expires:
        return Refusal.EXPIRED
    expected = pending.get("code_hash")
    code = clean_code(given)
    if not isinstance(expected, str) or not code.isdigit() or len(code) != CODE_DIGITS:
        return Refusal.WRONG_CODE
    actual = code_hash(key, str(pending.get("_id")), str(pending.get("phone")), code)
    return None if hmac.compare_digest(actual, expected) else Refusal.WRONG_CODE


@dataclass(frozen=True)
class Program:
    """What the program is, as `[optin]` describes it; the terms shown are made from it."""

    name: str = "sms-outbox"
    description: str = "Alerts and updates"
    frequency: str = "Up to 4 msgs/month"
    rates: str = "Msg&data rates may apply."
    help_stop: str = "Reply HELP for help, STOP to cancel."
    terms_url: str | None = None
    privacy_url: str | None = None
    terms_version: str = "1"

    def terms(self) -> str:
        """The terms as the page shows them and as they are kept with each consent."""
        parts = [
            f"By entering your number and the code we text you, you agree to receive {self.name}"
            f" text messages: {self.description}.",
            f"{self.frequency}. {self.rates} {self.help_stop}",
            "Consent is not a condition of purchase.",
        ]
        if self.terms_url:
            parts.append(f"Terms: {self.terms_url}")
        if self.privacy_url:
            parts.append(f"Privacy: {self.privacy_url}")
        return "\n".join(parts)

    def terms_record(self) -> dict[str, str]:
        """The terms shown, with their version and sha256, as consent evidence keeps them."""
        text = self.terms()
        digest = hashlib.sha256(text.encode("utf-8")).hexdigest()
        return {"text": text, "version": self.terms_version, "sha256": digest}

    def code_text(self, code: str) -> str:
        return (
            f"{self.name}: your sign-up code is {code}. It expires in 10 minutes."
            " If you did not ask for it, ignore this text."
        )

    def prompt_text(self) -> str:
        return (
            f"{self.name}: Reply YES to confirm you want {self.description.lower()}."
            f" {self.frequency}. {self.rates} {self.help_stop}"
        )

    def welcome_text(self) -> str:
        return (
            f"{self.name}: you are subscribed to {self.description.lower()}. {self.frequency}."
            f" {self.help_stop} {self.rates}"
        )


def campaign(kind: Kind, ref: str) -> str:
    return f"{PREFIX}{kind.value}:{ref}"


def message_id(kind: Kind, ref: str, to: str) -> str:
    """One message per request (or per inbound JOIN): inserting it twice collides. Like a
    reply's, its id is its campaign and its number (see jobs/rules/replay)."""
    return f"{campaign(kind, ref)}:{to}"


def parse(value: Any) -> tuple[Kind, str] | None:
    """The kind and reference of an opt-in message's campaign, or None."""
    if not isinstance(value, str) or not value.startswith(PREFIX):
        return None
    kind, _, ref = value[len(PREFIX) :].partition(":")
    if kind not in {k.value for k in Kind} or not ref:
        return None
    return Kind(kind), ref


def is_optin(doc: Mapping[str, Any]) -> bool:
    return parse(doc.get("campaign")) is not None


def decide(
    doc: Mapping[str, Any], recipient: Mapping[str, Any] | None, source_is_ours: bool
) -> Decision:
    """May this opt-in message go out? From one of our numbers, signed by the daemon (checked
    before). The code is the one message that needs no consent, but never goes to a number
    that opted out (that person texts START or JOIN from the phone). The YES prompt answers a
    JOIN the person texted and Flowroute confirmed, so it may go to an opted-out number. The
    welcome needs the consent it announces."""
    parsed = parse(doc.get("campaign"))
    source = doc.get("from")
    if parsed is None or not isinstance(source, str) or doc.get("user") != USER:
        return Decision(problem=Problem(Reason.INVALID_DOCUMENT, "not a well-formed opt-in text"))
    if not source_is_ours:
        detail = f"{source} is not a number any sender was granted"
        return Decision(problem=Problem(Reason.SOURCE_NOT_GRANTED, detail))
    kind, _ = parsed
    opted_out = recipient.get("opted_out") if recipient is not None else None
    if kind is Kind.CODE and opted_out:
        return Decision(problem=Problem(Reason.OPTED_OUT, f"{doc.get('to')} has opted out"))
    if kind is Kind.WELCOME:
        problem = recipient_problem(str(doc.get("to")), recipient)
        if problem is not None:
            return Decision(problem=problem)
    return Decision(source=source)
