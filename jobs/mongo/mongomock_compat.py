"""mongomock made to accept the bulk operations pymongo 4.20 hands it (the demo and the unit
tests run the real stores on mongomock)."""

from __future__ import annotations

from typing import Any

import mongomock
import mongomock.collection


def accept_sort_keyword() -> None:
    """pymongo 4.20's UpdateOne hands bulk builders a `sort` keyword that mongomock 4.3 does
    not know; an update of one document by `_id` has nothing to sort, so it is dropped."""
    builder = mongomock.collection.BulkOperationBuilder
    if getattr(builder.add_update, "accepts_sort", False):
        return
    original: Any = builder.add_update

    def add_update(self: Any, *args: Any, sort: Any = None, **kwargs: Any) -> Any:
        return original(self, *args, **kwargs)

    add_update.accepts_sort = True  # type: ignore[attr-defined]
    setattr(builder, "add_update", add_update)  # noqa: B010 (mypy: a method is not assignable)
