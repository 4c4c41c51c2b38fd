"""The store and cycle fixtures of the unit tests, here on the real server's `db`."""

from __future__ import annotations

from tests.unit.fixtures import (  # noqa: F401 (fixtures)
    clock,
    directory,
    dispatcher,
    make_dispatcher,
    pacer,
    provider,
    store,
)
