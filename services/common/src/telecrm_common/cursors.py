"""Opaque page cursors signed with HMAC-SHA256, so a client can hold them but not forge or edit them.

A cursor is ``base64url(payload).base64url(tag)``; ``domain`` tells lists apart, so a cursor of one
list is refused by another. Services put in the payload whatever their keyset order needs.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac


class InvalidCursor(ValueError):
    """A page cursor that this service did not sign for this list, or that was edited."""


def sign(secret: bytes, domain: str, payload: str) -> str:
    data = payload.encode()
    tag = hmac.new(secret, domain.encode() + b"|" + data, hashlib.sha256).digest()
    return f"{_b64encode(data)}.{_b64encode(tag)}"


def unsign(secret: bytes, domain: str, token: str) -> str:
    """The payload of ``token``; raises :class:`InvalidCursor` unless it was signed here for ``domain``."""
    try:
        data_part, tag_part = token.split(".")
        data, tag = _b64decode(data_part), _b64decode(tag_part)
    except (ValueError, binascii.Error):
        raise InvalidCursor("not a page cursor of this service") from None
    expected = hmac.new(secret, domain.encode() + b"|" + data, hashlib.sha256).digest()
    if not hmac.compare_digest(tag, expected):
        raise InvalidCursor("page cursor signature does not match")
    try:
        return data.decode()
    except UnicodeDecodeError:
        raise InvalidCursor("page cursor is malformed") from None


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode("ascii")


def _b64decode(text: str) -> bytes:
    if not text or not text.isascii():
        raise ValueError("empty or non-ASCII")
    return base64.b64decode(text + "=" * (-len(text) % 4), altchars=b"-_", validate=True)
