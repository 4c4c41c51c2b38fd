"""The connection to MongoDB: a database handle from the `[mongodb]` settings, and the
translation of pymongo's errors into the project's."""

from __future__ import annotations

import functools
import inspect
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any, ParamSpec, Protocol, TypeVar

from pydantic import SecretStr
from pymongo import MongoClient
from pymongo.database import Database
from pymongo.errors import ConnectionFailure, DuplicateKeyError, OperationFailure, PyMongoError

from jobs.errors import ConfigError, DuplicateKey, StoreError, StoreRefused, StoreUnavailable
from jobs.mongo import failures

Doc = dict[str, Any]
Db = Database[Doc]
P = ParamSpec("P")
R = TypeVar("R")
T = TypeVar("T")


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
    # A command the server never answers fails after this rather than blocking for good.
    reply_ms = int(getattr(target, "reply_timeout_seconds", 60.0) * 1000)
    try:
        client: MongoClient[Doc] = MongoClient(
            target.uri.get_secret_value(),
            tz_aware=True,
            serverSelectionTimeoutMS=timeout_ms,
            connectTimeoutMS=timeout_ms,
            socketTimeoutMS=reply_ms,
            appname="sms-outbox",
        )
        return client[target.database]
    except (PyMongoError, ValueError) as exc:  # a malformed URI raises a bare ValueError too
        failure = failures.explain(exc, [target.uri.get_secret_value()])
        assert failure is not None
        raise ConfigError(failure.line) from None


def ping(db: Database[Doc]) -> bool:
    """Ask the server for a ping: True if it answered, False if it cannot be reached. A refusal
    (wrong credentials, no such user) raises StoreRefused, so start-up can name the setting."""
    try:
        db.command("ping")
    except ConnectionFailure:
        return False
    except PyMongoError as exc:
        with translated():
            raise exc
    return True


@contextmanager
def translated() -> Iterator[None]:
    """Raise pymongo's errors as the project's own, so nothing outside `jobs.mongo` sees them."""
    try:
        yield
    except ConnectionFailure as exc:  # also server-selection and network timeouts
        raise StoreUnavailable(type(exc).__name__) from exc
    except DuplicateKeyError as exc:
        raise DuplicateKey(type(exc).__name__, exc.code, exc.details) from exc
    except OperationFailure as exc:
        raise StoreRefused(f"{type(exc).__name__}: {exc}", exc.code, exc.details) from exc
    except PyMongoError as exc:
        raise StoreError(f"{type(exc).__name__}: {exc}") from exc


def translating(func: Callable[P, R]) -> Callable[P, R]:
    """`func` with its pymongo errors translated (see `translated`)."""

    @functools.wraps(func)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        with translated():
            return func(*args, **kwargs)

    wrapper.__translating__ = True  # type: ignore[attr-defined]
    return wrapper


def adapter(cls: type[T]) -> type[T]:
    """Every public method of `cls`, its own or inherited, raises the project's errors instead
    of pymongo's."""
    for name in dir(cls):
        member = inspect.getattr_static(cls, name)
        translating_already = getattr(member, "__translating__", False)
        if not name.startswith("_") and inspect.isfunction(member) and not translating_already:
            setattr(cls, name, translating(member))
    return cls
