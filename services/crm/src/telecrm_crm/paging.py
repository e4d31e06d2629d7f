"""Consistent pagination for crm's lists: ``limit`` + an opaque signed ``cursor``, ``total`` on request.

Lists order by a key (e.g. ``(created_at, id)``) and hand out the last row's key as the next cursor;
the key is signed (:mod:`telecrm_common.cursors`) so a tampered cursor is a 400, never a wrong page.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Any, Generic, TypeVar

from pydantic import BaseModel

from telecrm_common.cursors import InvalidCursor, sign, unsign

T = TypeVar("T")
DEFAULT_LIMIT = 50
MAX_LIMIT = 500


class Page(BaseModel, Generic[T]):
    items: list[T]
    next_cursor: str | None = None
    total: int | None = None


def encode(secret: bytes, domain: str, key: Sequence[Any]) -> str:
    return sign(secret, domain, json.dumps(list(key), separators=(",", ":"), default=str))


def decode(secret: bytes, domain: str, token: str) -> list[Any]:
    """The key a cursor stands for; raises InvalidCursor (answer 400) when it was not signed here."""
    try:
        key = json.loads(unsign(secret, domain, token))
    except json.JSONDecodeError:
        raise InvalidCursor("page cursor is malformed") from None
    if not isinstance(key, list):
        raise InvalidCursor("page cursor is malformed")
    return key


__all__ = ["DEFAULT_LIMIT", "MAX_LIMIT", "InvalidCursor", "Page", "decode", "encode"]
