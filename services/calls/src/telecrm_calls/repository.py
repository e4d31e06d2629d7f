"""Every query of the call log, on PostgreSQL and SQLite alike."""

from __future__ import annotations

import dataclasses
from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import ColumnElement, Select, bindparam, exists, func, or_, select, text, tuple_
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from telecrm_calls.models import Call, CallEventRow, Recording, UTCDateTime, utcnow

Keyset = tuple[datetime, str]
"""A position in a newest-first list: (time, id) of the last row of the previous page."""

if TYPE_CHECKING:
    from telecrm_calls.service import CallRecord


@dataclass(frozen=True)
class CallFilters:
    """Validated filters (see :meth:`telecrm_calls.service.CallLogService.list_calls`)."""

    number: str | None = None  # digits only
    extension: str | None = None
    dispositions: tuple[str, ...] = ()
    direction: str | None = None
    started_from: datetime | None = None
    started_to: datetime | None = None


def _insert(session: AsyncSession) -> Any:
    """The dialect's INSERT construct (both have ``on_conflict_do_nothing/update``)."""
    return postgresql.insert if session.get_bind().dialect.name == "postgresql" else sqlite.insert


async def lock_calls(session: AsyncSession, call_ids: Collection[str]) -> None:
    """Serialize the writers of the same calls until the transaction ends.

    Replicas share the consumer, so two events of one call can be handled at the same time by two
    processes: without this, each would fold the call without the other's event and the last commit
    would win. PostgreSQL takes transaction-scoped advisory locks, in sorted order (no deadlocks);
    SQLite needs nothing, it has one writer at a time.
    """
    if session.get_bind().dialect.name != "postgresql" or not call_ids:
        return
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(hashtextextended(id, 0)) "
            "FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS t(id, n) ORDER BY n"
        ),
        {"ids": sorted(call_ids)},
    )


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert call events, skipping known event ids; returns the ids actually inserted."""
    if not rows:
        return set()
    now = utcnow()
    stmt = (
        _insert(session)(CallEventRow)
        .values([{**row, "received_at": now} for row in rows])
        .on_conflict_do_nothing(index_elements=[CallEventRow.event_id])
        .returning(CallEventRow.event_id)
    )
    return set((await session.scalars(stmt)).all())


async def load_events(session: AsyncSession, call_ids: Collection[str]) -> dict[str, list[bytes]]:
    """The stored payloads of every event of the given calls."""
    result: dict[str, list[bytes]] = defaultdict(list)
    stmt = select(CallEventRow.call_id, CallEventRow.payload).where(CallEventRow.call_id.in_(call_ids))
    for call_id, payload in await session.execute(stmt):
        result[call_id].append(payload)
    return result


async def upsert_calls(session: AsyncSession, records: Sequence[CallRecord]) -> None:
    """Insert or replace the call records (``created_at`` is kept on update)."""
    if not records:
        return
    now = utcnow()
    rows = [{**dataclasses.asdict(r), "created_at": now, "updated_at": now} for r in records]
    insert = _insert(session)(Call)
    keep = {"call_id", "created_at"}
    stmt = insert.on_conflict_do_update(
        index_elements=[Call.call_id],
        set_={name: insert.excluded[name] for name in rows[0] if name not in keep},
    )
    await session.execute(stmt, rows)


async def insert_recordings(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Insert recordings, skipping known recording ids; returns how many were new."""
    if not rows:
        return 0
    now = utcnow()
    stmt = (
        _insert(session)(Recording)
        .values([{**row, "created_at": now} for row in rows])
        .on_conflict_do_nothing(index_elements=[Recording.recording_id])
        .returning(Recording.recording_id)
    )
    return len((await session.scalars(stmt)).all())


def _has_recording() -> Any:
    return exists().where(Recording.call_id == Call.call_id).label("has_recording")


def _conditions(filters: CallFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.number:
        pattern = f"%{filters.number}%"  # digits only: nothing to escape
        conditions.append(
            or_(
                Call.caller_number.like(pattern),
                Call.caller_e164.like(pattern),
                Call.callee_number.like(pattern),
                Call.callee_e164.like(pattern),
            )
        )
    if filters.extension:
        conditions.append(Call.extension == filters.extension)
    if filters.dispositions:
        conditions.append(Call.disposition.in_(filters.dispositions))
    if filters.direction:
        conditions.append(Call.direction == filters.direction)
    if filters.started_from is not None:
        conditions.append(Call.started_at >= filters.started_from)
    if filters.started_to is not None:
        conditions.append(Call.started_at < filters.started_to)
    return conditions


def newest_first_page(
    stmt: Select[Any],
    at: InstrumentedAttribute[datetime],
    key: InstrumentedAttribute[str],
    *,
    after: Keyset | None,
    limit: int,
) -> Select[Any]:
    """Keyset pagination, newest first: order by (``at``, ``key``) descending, strictly after ``after``.

    Shared by every list of the call log (calls, missed-call items) so their cursors behave alike.
    """
    if after is not None:
        at_value, key_value = after
        stmt = stmt.where(
            tuple_(at, key)
            < tuple_(bindparam("after_at", at_value, type_=UTCDateTime()), bindparam("after_key", key_value))
        )
    return stmt.order_by(at.desc(), key.desc()).limit(limit)


async def list_calls(
    session: AsyncSession,
    filters: CallFilters,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[tuple[Call, bool]]:
    """Calls matching the filters, newest first (started_at, then call_id, both descending),
    strictly after the ``after`` position (keyset pagination)."""
    stmt = select(Call, _has_recording()).where(*_conditions(filters))
    stmt = newest_first_page(stmt, Call.started_at, Call.call_id, after=after, limit=limit)
    return [(call, bool(has)) for call, has in await session.execute(stmt)]


async def count_calls(session: AsyncSession, filters: CallFilters) -> int:
    """How many calls match the filters (on all pages): the WHERE clause of :func:`list_calls`."""
    stmt = select(func.count()).select_from(Call).where(*_conditions(filters))
    return int((await session.execute(stmt)).scalar_one())


async def get_call(session: AsyncSession, call_id: str) -> tuple[Call, bool] | None:
    row = (await session.execute(select(Call, _has_recording()).where(Call.call_id == call_id))).first()
    return None if row is None else (row[0], bool(row[1]))
