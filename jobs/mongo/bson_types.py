"""BSON's order of types, as a range query on one field sees it: `{"$gt": value}` matches only
values of `value`'s type, so reading a field in order across types goes one type at a time."""

from __future__ import annotations

import datetime
import re
import uuid
from decimal import Decimal
from typing import Any

from bson import Binary, Decimal128, Int64, MaxKey, MinKey, ObjectId, Regex, Timestamp

_NUMBERS = (int, float, Int64, Decimal128, Decimal)

# The types an `_id` may have, in the order BSON compares them, each with the condition that
# matches every value of that type and, for a range, starts at its least value. Not read: an
# `_id` that is NaN (it sorts below -inf) or a BSON timestamp (the server's own replication
# type); MongoDB refuses arrays, regular expressions and `undefined` as `_id`s.
GROUPS: list[tuple[str, Any]] = [
    ("minKey", MinKey()),
    ("null", None),
    ("number", {"$gte": float("-inf")}),
    ("string", {"$gte": ""}),
    ("object", {"$gte": {}}),
    ("binData", {"$gte": Binary(b"", 0)}),
    ("objectId", {"$gte": ObjectId(b"\x00" * 12)}),
    ("bool", {"$gte": False}),
    ("date", {"$gte": datetime.datetime(1, 1, 1, tzinfo=datetime.UTC)}),
    ("maxKey", MaxKey()),
]


def alias(value: Any) -> str:
    """The name of the group `value` sorts in."""
    kinds: list[tuple[Any, str]] = [
        (MinKey, "minKey"), (type(None), "null"), (bool, "bool"), (_NUMBERS, "number"),
        (str, "string"), (dict, "object"), ((bytes, Binary, uuid.UUID), "binData"),
        (ObjectId, "objectId"), (datetime.datetime, "date"),
        ((Timestamp, Regex, re.Pattern), "date"), (MaxKey, "maxKey"),
    ]  # fmt: skip
    for kind, name in kinds:  # bool before number: True is an int to Python
        if isinstance(value, kind):
            return name
    return "maxKey"


def after(value: Any) -> list[Any]:
    """The conditions matching each type that sorts after `value`'s, in order."""
    names = [name for name, _ in GROUPS]
    return [condition for _, condition in GROUPS[names.index(alias(value)) + 1 :]]
