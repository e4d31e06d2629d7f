"""Page cursors: opaque, signed, and refused when tampered with."""

from __future__ import annotations

import base64
from datetime import UTC, datetime

import pytest

from telecrm_calls.service import InvalidCursor, decode_cursor, encode_cursor

SECRET = b"k" * 32
WHEN = datetime(2025, 3, 14, 9, 26, 53, 589793, tzinfo=UTC)


@pytest.mark.parametrize("call_id", ["c-1", "id|with|bars", "звонок-1", "x" * 200])
def test_round_trip(call_id: str) -> None:
    token = encode_cursor(SECRET, WHEN, call_id)
    assert decode_cursor(SECRET, token) == (WHEN, call_id)
    assert call_id not in token  # opaque, URL-safe
    assert all(ch.isalnum() or ch in "-_." for ch in token)


def test_times_before_1970_and_far_ahead_round_trip() -> None:
    for when in (datetime(1969, 12, 31, 23, 59, 59, 1, tzinfo=UTC), datetime(2300, 1, 1, tzinfo=UTC)):
        assert decode_cursor(SECRET, encode_cursor(SECRET, when, "c"))[0] == when


def _tamper_payload(token: str) -> str:
    payload, tag = token.split(".")
    raw = base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4))
    forged = raw.replace(b"|c-1", b"|c-2")
    return base64.urlsafe_b64encode(forged).rstrip(b"=").decode() + "." + tag


@pytest.mark.parametrize(
    "mangle",
    [
        _tamper_payload,
        lambda t: t[:-2] + ("AA" if not t.endswith("AA") else "BB"),  # tag changed
        lambda t: t.split(".")[0],  # tag dropped
        lambda t: t + ".x",
        lambda t: "garbage",
        lambda t: "",
        lambda t: "!!!.???",
        lambda t: "é.é",
    ],
)
def test_tampered_or_garbage_cursor_is_refused(mangle: object) -> None:
    token = encode_cursor(SECRET, WHEN, "c-1")
    with pytest.raises(InvalidCursor):
        decode_cursor(SECRET, mangle(token))  # type: ignore[operator]


def test_cursor_of_another_secret_is_refused() -> None:
    with pytest.raises(InvalidCursor):
        decode_cursor(b"other", encode_cursor(SECRET, WHEN, "c-1"))
