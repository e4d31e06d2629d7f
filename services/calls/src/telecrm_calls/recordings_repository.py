"""Queries of the recordings index (``call_recordings``), on PostgreSQL and SQLite alike.

Rows are inserted by ingestion (:func:`telecrm_calls.repository.insert_recordings`); these are the reads
and deletions of :mod:`telecrm_calls.recordings`.
"""

from __future__ import annotations

from collections.abc import Collection
from datetime import datetime
from typing import Any

from sqlalchemy import bindparam, delete, exists, func, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm_calls.models import Call, Recording, UTCDateTime


def recorded_at() -> Any:
    """When a recording was made: its start, else when it was reported, else when it was indexed."""
    return func.coalesce(Recording.started_at, Recording.occurred_at, Recording.created_at)


async def list_for_call(session: AsyncSession, call_id: str) -> list[Recording]:
    """The recordings of a call, oldest first."""
    stmt = (
        select(Recording).where(Recording.call_id == call_id).order_by(recorded_at(), Recording.recording_id)
    )
    return list((await session.scalars(stmt)).all())


async def call_exists(session: AsyncSession, call_id: str) -> bool:
    return bool(await session.scalar(select(exists().where(Call.call_id == call_id))))


async def get(session: AsyncSession, recording_id: str) -> tuple[Recording, Call | None] | None:
    """A recording and its call (None while the call's events have not been seen)."""
    stmt = (
        select(Recording, Call)
        .outerjoin(Call, Call.call_id == Recording.call_id)
        .where(Recording.recording_id == recording_id)
    )
    row = (await session.execute(stmt)).first()
    return None if row is None else (row[0], row[1])


async def delete_ids(session: AsyncSession, recording_ids: Collection[str]) -> int:
    """Delete index rows; returns how many existed. Calls left without a recording stop being
    ``recorded`` (the "recorded" filter of the call log)."""
    if not recording_ids:
        return 0
    result = await session.execute(
        delete(Recording)
        .where(Recording.recording_id.in_(list(recording_ids)))
        .returning(Recording.recording_id, Recording.call_id)
    )
    rows = result.all()
    call_ids = sorted({call_id for _, call_id in rows})
    if call_ids:
        still = select(Recording.call_id).where(Recording.call_id == Call.call_id).exists()
        await session.execute(update(Call).where(Call.call_id.in_(call_ids), ~still).values(recorded=False))
    return len(rows)


async def expired(
    session: AsyncSession, *, before: datetime, after_id: str | None, limit: int
) -> list[tuple[str, str]]:
    """(recording_id, location) of recordings made before ``before``, by recording id after ``after_id``."""
    stmt = select(Recording.recording_id, Recording.location).where(
        recorded_at() < bindparam("before", before, type_=UTCDateTime())
    )
    if after_id is not None:
        stmt = stmt.where(Recording.recording_id > after_id)
    stmt = stmt.order_by(Recording.recording_id).limit(limit)
    return [(recording_id, location) for recording_id, location in await session.execute(stmt)]
