"""Wiring of opt-in: the `[optin]` settings as the sign-up service and the keyword handler."""

from __future__ import annotations

from jobs.clock import Clock, SystemClock
from jobs.keys import Signatures
from jobs.mongo.connection import Db
from jobs.mongo.directory import Directory
from jobs.mongo.optin import OptInStore
from jobs.mongo.store import OutboxStore
from jobs.optin.keywords import KeywordOptIn
from jobs.optin.service import OptInConfig, SignUp
from jobs.rules.optin import Limits, Program
from scheduler.settings import Settings, keyring


def optin_config(settings: Settings) -> OptInConfig:
    """The sign-up paths' view of `[optin]` (the program's name defaults to `replies.program`)."""
    o = settings.optin
    program = Program(
        name=o.program or settings.replies.program, description=o.description,
        frequency=o.frequency, rates=o.rates, help_stop=o.help_stop, terms_url=o.terms_url,
        privacy_url=o.privacy_url, terms_version=o.terms_version,
    )  # fmt: skip
    limits = Limits(
        number_per_hour=o.number_per_hour, number_per_day=o.number_per_day,
        client_per_hour=o.client_per_hour, codes_per_hour=o.codes_per_hour,
        regions=tuple(o.regions),
    )  # fmt: skip
    return OptInConfig(
        program=program, limits=limits, number=o.number, keywords=tuple(o.keywords),
        confirm_words=tuple(o.confirm_words), price_per_segment=o.price_per_segment,
    )  # fmt: skip


def build_signup(settings: Settings, db: Db, clock: Clock | None = None) -> SignUp:
    """The sign-up service on `db`; its texts are signed with the daemon's key."""
    clock = clock or SystemClock()
    store = OptInStore(db)
    keys = keyring(settings)
    # Its texts are queued already: sealed with the daemon's key, or the daemon sends none.
    sealer = Signatures(keys) if settings.security.require_signatures else None
    return SignUp(
        store, OutboxStore(db, clock, settings.mongodb.send_guard, sealer), Directory(db),
        keys, clock, optin_config(settings),
        sign=settings.security.require_signatures,
    )  # fmt: skip


def build_keywords(settings: Settings, db: Db, clock: Clock | None = None) -> KeywordOptIn:
    """The JOIN/YES handler of the daemon's inbound step."""
    return KeywordOptIn(build_signup(settings, db, clock))
