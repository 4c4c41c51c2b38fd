"""The connection to MongoDB: a database handle from the `[mongodb]` settings."""

from __future__ import annotations

from typing import Any, Protocol

from pydantic import SecretStr
from pymongo import MongoClient
from pymongo.database import Database

Doc = dict[str, Any]


class MongoTarget(Protocol):
    """The `[mongodb]` settings a connection needs."""

    @property
    def uri(self) -> SecretStr: ...

    @property
    def database(self) -> str: ...

    @property
    def timeout_seconds(self) -> float: ...


def connect(target: MongoTarget) -> Database[Doc]:
    """A pymongo database handle; BSON dates come back timezone-aware UTC."""
    timeout_ms = int(target.timeout_seconds * 1000)
    client: MongoClient[Doc] = MongoClient(
        target.uri.get_secret_value(),
        tz_aware=True,
        serverSelectionTimeoutMS=timeout_ms,
        connectTimeoutMS=timeout_ms,
        appname="sms-outbox",
    )
    return client[target.database]
