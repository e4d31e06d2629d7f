"""datetime <-> google.protobuf.Timestamp, the way every service's messages carry time."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import overload

from google.protobuf.timestamp_pb2 import Timestamp


@overload
def timestamp_message(value: datetime) -> Timestamp: ...


@overload
def timestamp_message(value: None) -> None: ...


def timestamp_message(value: datetime | None) -> Timestamp | None:
    """A datetime as a protobuf Timestamp (None stays unset)."""
    if value is None:
        return None
    stamp = Timestamp()
    stamp.FromDatetime(value)
    return stamp


def timestamp_datetime(stamp: Timestamp) -> datetime | None:
    """A protobuf Timestamp as an aware UTC datetime; None when unset (zero)."""
    if not stamp.seconds and not stamp.nanos:
        return None
    return stamp.ToDatetime(tzinfo=UTC)
