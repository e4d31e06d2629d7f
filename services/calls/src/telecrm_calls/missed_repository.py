"""Queries of the missed calls (``missed_calls``, ``missed_call_calls``, ``missed_call_targets``), on
PostgreSQL and SQLite alike.

The calls of a number are found by its key: the E.164 form when the call has one, else the number as
signalled (the same rule as :func:`telecrm_calls.missed.number_key`).
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import ColumnElement, and_, bindparam, delete, exists, false, func, or_, select, text
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from telecrm_calls.models import (
    Call,
    MissedCall,
    MissedCallMember,
    MissedCallTarget,
    Recording,
    UTCDateTime,
)
from telecrm_calls.records import Audience
from telecrm_calls.repository import locks_to_take, newest_first_page
from telecrm_common.db import one_of

# The class id of the advisory locks on numbers (two-int4 keys: a key space apart from the call locks).
NUMBER_LOCK_CLASS = 0x6D63  # "mc"

MISSED_DISPOSITIONS = ("missed",)


@dataclass(frozen=True)
class MissedCallFilters:
    """Validated filters (see :meth:`telecrm_calls.missed.MissedCallLog.list_missed_calls`)."""

    states: tuple[str, ...] = ("open",)
    extension: str | None = None
    employee_id: str | None = None
    team_id: str | None = None
    number: str | None = None  # digits only
    last_missed_from: datetime | None = None
    last_missed_to: datetime | None = None
    audience: Audience | None = None


async def lock_numbers(session: AsyncSession, keys: Collection[str]) -> None:
    """Serialize the writers of the same numbers' items until the transaction ends (PostgreSQL).

    Taken after the call locks (:func:`telecrm_calls.repository.lock_calls`), in sorted order, so two
    transactions never wait for each other in a cycle. SQLite has one writer at a time already.
    """
    if session.get_bind().dialect.name != "postgresql" or not keys:
        return
    wanted = locks_to_take(session, "numbers_locked", keys)
    if not wanted:
        return
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(:class_id, hashtext(k)) "
            "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS t(k, n) ORDER BY n"
        ),
        {"class_id": NUMBER_LOCK_CLASS, "keys": wanted},
    )


def _party_is(
    number: InstrumentedAttribute[str | None], e164: InstrumentedAttribute[str | None], key: str
) -> Any:
    return or_(e164 == key, and_(e164.is_(None), number == key))


def _missed_of(key: str) -> ColumnElement[bool]:
    return and_(
        Call.state == "ended",
        Call.direction == "inbound",
        Call.disposition.in_(MISSED_DISPOSITIONS),
        _party_is(Call.caller_number, Call.caller_e164, key),
    )


def _resolving_of(key: str) -> ColumnElement[bool]:
    return and_(
        Call.state == "ended",
        Call.disposition == "answered",
        or_(
            and_(Call.direction == "inbound", _party_is(Call.caller_number, Call.caller_e164, key)),
            and_(Call.direction == "outbound", _party_is(Call.callee_number, Call.callee_e164, key)),
        ),
    )


def _since(column: Any, since: datetime | None) -> list[ColumnElement[bool]]:
    if since is None:
        return []
    return [column >= bindparam(None, since, type_=UTCDateTime())]


async def last_resolving_start(session: AsyncSession, key: str, before: datetime) -> datetime | None:
    """When the last call that resolves the number's missed calls started, strictly before ``before``."""
    stmt = select(func.max(Call.started_at)).where(
        _resolving_of(key), Call.started_at < bindparam(None, before, type_=UTCDateTime())
    )
    value: datetime | None = await session.scalar(stmt)
    if value is not None and value.tzinfo is None:  # func.max loses the column type on SQLite
        value = UTCDateTime().process_result_value(value, session.get_bind().dialect)
    return value


async def missed_calls_of(session: AsyncSession, key: str, since: datetime | None) -> list[Call]:
    """The missed inbound calls from the number that started at or after ``since`` (all when None)."""
    stmt = select(Call).where(_missed_of(key), *_since(Call.started_at, since))
    return list((await session.scalars(stmt)).all())


async def resolving_calls_of(session: AsyncSession, key: str, since: datetime | None) -> list[Call]:
    """The answered calls with the number (from it, or to it) that started at or after ``since``."""
    stmt = select(Call).where(_resolving_of(key), *_since(Call.started_at, since))
    return list((await session.scalars(stmt)).all())


async def resolving_calls_of_keys(
    session: AsyncSession, keys: Collection[str], since: datetime
) -> list[Call]:
    """The answered calls with any of the numbers (from it, or to it) that started at or after ``since``
    (one query for a batch of numbers; group them with :func:`telecrm_calls.missed.customer_key`)."""
    if not keys:
        return []
    wanted = sorted(keys)

    def party_in(number: InstrumentedAttribute[str | None], e164: InstrumentedAttribute[str | None]) -> Any:
        return or_(e164.in_(wanted), and_(e164.is_(None), number.in_(wanted)))

    stmt = select(Call).where(
        Call.state == "ended",
        Call.disposition == "answered",
        or_(
            and_(Call.direction == "inbound", party_in(Call.caller_number, Call.caller_e164)),
            and_(Call.direction == "outbound", party_in(Call.callee_number, Call.callee_e164)),
        ),
        *_since(Call.started_at, since),
    )
    return list((await session.scalars(stmt)).all())


async def items_of(session: AsyncSession, key: str, since: datetime | None) -> list[MissedCall]:
    """The number's items whose first missed call started at or after ``since`` (all when None)."""
    stmt = select(MissedCall).where(MissedCall.number_key == key, *_since(MissedCall.first_missed_at, since))
    return list((await session.scalars(stmt)).all())


async def keys_with_items(session: AsyncSession, keys: Collection[str]) -> set[str]:
    """Those of the number keys that have items (open or resolved)."""
    if not keys:
        return set()
    dialect = session.get_bind().dialect.name
    stmt = select(MissedCall.number_key).where(one_of(MissedCall.number_key, keys, dialect)).distinct()
    return set((await session.scalars(stmt)).all())


async def members_of_calls(
    session: AsyncSession, call_ids: Collection[str]
) -> list[tuple[MissedCallMember, str]]:
    """The item memberships of these calls, with the number key of each item."""
    if not call_ids:
        return []
    stmt = (
        select(MissedCallMember, MissedCall.number_key)
        .join(MissedCall, MissedCall.id == MissedCallMember.item_id)
        .where(one_of(MissedCallMember.call_id, call_ids, session.get_bind().dialect.name))
    )
    return [(member, key) for member, key in await session.execute(stmt)]


async def items_resolved_by(session: AsyncSession, call_ids: Collection[str]) -> list[MissedCall]:
    if not call_ids:
        return []
    dialect = session.get_bind().dialect.name
    stmt = select(MissedCall).where(one_of(MissedCall.resolving_call_id, call_ids, dialect))
    return list((await session.scalars(stmt)).all())


async def members_of_items(
    session: AsyncSession, item_ids: Collection[str]
) -> dict[str, list[MissedCallMember]]:
    """The missed calls of each item, oldest first."""
    result: dict[str, list[MissedCallMember]] = defaultdict(list)
    if not item_ids:
        return result
    stmt = (
        select(MissedCallMember)
        .where(MissedCallMember.item_id.in_(item_ids))
        .order_by(MissedCallMember.started_at, MissedCallMember.call_id)
    )
    for member in await session.scalars(stmt):
        result[member.item_id].append(member)
    return result


async def targets_of_items(
    session: AsyncSession, item_ids: Collection[str]
) -> dict[str, dict[str, list[str]]]:
    """item id -> kind (extension, employee, team) -> sorted values."""
    result: dict[str, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    if not item_ids:
        return result
    stmt = (
        select(MissedCallTarget.item_id, MissedCallTarget.kind, MissedCallTarget.value)
        .where(MissedCallTarget.item_id.in_(item_ids))
        .order_by(MissedCallTarget.item_id, MissedCallTarget.kind, MissedCallTarget.value)
    )
    for item_id, kind, value in await session.execute(stmt):
        result[item_id][kind].append(value)
    return result


async def replace_members(
    session: AsyncSession,
    item_ids: Collection[str],
    members: Sequence[dict[str, Any]],
    targets: Sequence[dict[str, Any]],
) -> None:
    """Make ``members`` and ``targets`` the calls and targets of these items (and move the calls)."""
    call_ids = [member["call_id"] for member in members]
    if item_ids or call_ids:
        await session.execute(
            delete(MissedCallMember).where(
                or_(MissedCallMember.item_id.in_(item_ids), MissedCallMember.call_id.in_(call_ids))
            )
        )
    if item_ids:
        await session.execute(delete(MissedCallTarget).where(MissedCallTarget.item_id.in_(item_ids)))
    if members:
        await session.execute(MissedCallMember.__table__.insert(), list(members))  # type: ignore[attr-defined]
    if targets:
        await session.execute(MissedCallTarget.__table__.insert(), list(targets))  # type: ignore[attr-defined]


async def delete_items(session: AsyncSession, item_ids: Collection[str]) -> None:
    if item_ids:
        await session.execute(delete(MissedCallMember).where(MissedCallMember.item_id.in_(item_ids)))
        await session.execute(delete(MissedCallTarget).where(MissedCallTarget.item_id.in_(item_ids)))
        await session.execute(delete(MissedCall).where(MissedCall.id.in_(item_ids)))


# --- the lists ------------------------------------------------------------------------------------


def _conditions(filters: MissedCallFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = [MissedCall.state.in_(filters.states)]
    for kind, value in (
        ("extension", filters.extension),
        ("employee", filters.employee_id),
        ("team", filters.team_id),
    ):
        if value:
            conditions.append(
                MissedCall.id.in_(
                    select(MissedCallTarget.item_id).where(
                        MissedCallTarget.kind == kind, MissedCallTarget.value == value
                    )
                )
            )
    audience = filters.audience
    if audience is not None and not audience.covers(filters.employee_id, filters.team_id):
        rang: list[ColumnElement[bool]] = []
        if audience.employee_id is not None:
            rang.append(
                and_(MissedCallTarget.kind == "employee", MissedCallTarget.value == audience.employee_id)
            )
        if audience.team_ids:
            rang.append(
                and_(MissedCallTarget.kind == "team", MissedCallTarget.value.in_(sorted(audience.team_ids)))
            )
        visible = select(MissedCallTarget.item_id).where(or_(*rang)) if rang else None
        conditions.append(MissedCall.id.in_(visible) if visible is not None else false())
    if filters.number:
        pattern = f"%{filters.number}%"  # digits only: nothing to escape
        conditions.append(or_(MissedCall.number_key.like(pattern), MissedCall.number.like(pattern)))
    if filters.last_missed_from is not None:
        conditions.append(MissedCall.last_missed_at >= filters.last_missed_from)
    if filters.last_missed_to is not None:
        conditions.append(MissedCall.last_missed_at < filters.last_missed_to)
    return conditions


async def list_items(
    session: AsyncSession,
    filters: MissedCallFilters,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
) -> list[MissedCall]:
    """Items matching the filters, the latest missed call first (last_missed_at, then id, descending),
    strictly after the ``after`` position (keyset pagination)."""
    stmt = select(MissedCall).where(*_conditions(filters))
    stmt = newest_first_page(stmt, MissedCall.last_missed_at, MissedCall.id, after=after, limit=limit)
    return list((await session.scalars(stmt)).all())


async def count_items(session: AsyncSession, filters: MissedCallFilters) -> int:
    stmt = select(func.count()).select_from(MissedCall).where(*_conditions(filters))
    return int(await session.scalar(stmt) or 0)


async def get_item(session: AsyncSession, item_id: str) -> MissedCall | None:
    return await session.get(MissedCall, item_id)


async def calls_by_id(session: AsyncSession, call_ids: Collection[str]) -> dict[str, tuple[Call, bool]]:
    """The records of these calls, each with whether it has a recording."""
    if not call_ids:
        return {}
    has_recording = exists().where(Recording.call_id == Call.call_id).label("has_recording")
    stmt = select(Call, has_recording).where(Call.call_id.in_(call_ids))
    return {call.call_id: (call, bool(has)) for call, has in await session.execute(stmt)}
