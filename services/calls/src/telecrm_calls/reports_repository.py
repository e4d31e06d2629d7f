"""The queries of the call reports: aggregates computed by the database, on PostgreSQL and SQLite alike.

No call row is loaded into Python: each report is one query over the calls (grouped by time bucket, or
by employee for the ranking) and one over the missed-call items. The calls of an employee or a team
are summed from ``call_parties`` alone (its ``(employee_id | team_id, started_at, call_id)`` indexes
carry the role and the call's copied columns), those of a contact through
``calls (contact_id, started_at, call_id)``, all calls through ``calls (started_at, call_id)``. The
meaning of each number is in :mod:`telecrm_calls.reports`.
"""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

from sqlalchemy import (
    BigInteger,
    ColumnElement,
    Integer,
    and_,
    case,
    cast,
    false,
    func,
    select,
    text,
    true,
)
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm_calls.models import Call, CallParty, Contact, Employee, MissedCall, MissedCallTarget

# A party that talked on the call: it answered an inbound or internal call, or placed an outgoing one.
TAKING_ROLES = ("answered", "placed")
EMPLOYEE: Final = "employee"
TEAM: Final = "team"
CONTACT: Final = "contact"
COMPANY: Final = "company"


@dataclass(frozen=True)
class CallTotals:
    """The call numbers of one group (a time bucket, an employee), as the database sums them."""

    calls: int = 0
    inbound: int = 0
    outbound: int = 0
    internal: int = 0
    answered: int = 0
    answered_inbound: int = 0
    answered_outbound: int = 0
    answered_internal: int = 0
    answered_by_others: int = 0
    missed: int = 0
    missed_outgoing: int = 0
    talk_ms: int = 0
    talked: int = 0  # answered calls with a known talk time: the divisor of the mean

    def __add__(self, other: CallTotals) -> CallTotals:
        return CallTotals(*(a + b for a, b in zip(_values(self), _values(other), strict=True)))


@dataclass(frozen=True)
class ItemTotals:
    """The missed-call items of one group, as the database sums them."""

    items: int = 0
    resolved: int = 0
    called_back: int = 0
    open: int = 0
    callback_ms: int = 0  # summed over the resolved items with a callback time
    callbacks: int = 0  # how many those are: the divisor of the mean


def _values(totals: CallTotals) -> tuple[int, ...]:
    return tuple(getattr(totals, name) for name in totals.__dataclass_fields__)


def _count(condition: ColumnElement[bool]) -> ColumnElement[Any]:
    return func.coalesce(func.sum(case((condition, 1), else_=0)), 0)


def _call_aggregates(took: ColumnElement[bool], calls: Any) -> list[ColumnElement[Any]]:
    """The columns of :class:`CallTotals`, in order; ``took``: the subject talked on the call;
    ``calls``: where the call's direction, disposition, missed and talk_ms columns are (the calls
    table, or the parties' copies of them)."""
    inbound, outbound = calls.direction == "inbound", calls.direction == "outbound"
    internal = calls.direction == "internal"
    answered = and_(took, calls.disposition == "answered")
    missed = calls.missed == true()
    return [
        func.count(),
        _count(inbound),
        _count(outbound),
        _count(internal),
        _count(answered),
        _count(and_(answered, inbound)),
        _count(and_(answered, outbound)),
        _count(and_(answered, internal)),
        _count(and_(~took, calls.disposition == "answered", inbound)),
        _count(and_(missed, inbound)),
        _count(and_(missed, outbound)),
        func.coalesce(func.sum(case((answered, calls.talk_ms))), 0),
        func.count(case((answered, calls.talk_ms))),
    ]


def _totals(row: Sequence[Any]) -> CallTotals:
    return CallTotals(*(int(value or 0) for value in row))


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def _bucket(session: AsyncSession, column: Any, seconds: int) -> ColumnElement[int]:
    """The UTC time bucket of a timestamp: seconds since the epoch // ``seconds``."""
    if _dialect(session) == "postgresql":
        # date_part is float8 arithmetic; EXTRACT returns numeric (PostgreSQL 14+), several times slower
        # over a month of the whole company's calls. Microseconds survive float8 at today's epochs.
        return cast(func.floor(func.date_part("epoch", column) / seconds), BigInteger)
    # SQLite stores naive UTC text ("2025-03-14 09:26:53.589000"); strftime('%s') reads it as UTC.
    return cast(func.strftime("%s", column), Integer) // seconds


async def prepare(session: AsyncSession) -> None:
    """Set up a report's transaction: no JIT on PostgreSQL (``SET LOCAL``, this transaction only).

    The report queries are aggregates over thousands to a million rows: their estimated cost is above
    ``jit_above_cost``, so PostgreSQL would compile them first, which takes longer (0.3-2 s measured on
    10M calls) than running them.
    """
    if _dialect(session) == "postgresql":
        await session.execute(text("SET LOCAL jit = off"))


def _in_period(column: Any, start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    return [column >= start, column < end]


def _party_calls(*conditions: ColumnElement[bool], by_employee: bool = False) -> Any:
    """The calls of the parties matching ``conditions``, one row per call (per employee and call with
    ``by_employee``), with the call's columns the totals read: from call_parties alone (its employee
    and team indexes carry them), never a read of the calls heap. ``took``: 1 when the subject
    talked on the call, whichever of their parties did."""
    keys = [CallParty.employee_id] if by_employee else []
    copied = [CallParty.started_at, CallParty.direction, CallParty.disposition, CallParty.missed]
    return (
        select(
            *keys,
            CallParty.call_id,
            *copied,
            CallParty.talk_ms,
            func.max(case((CallParty.role.in_(TAKING_ROLES), 1), else_=0)).label("took"),
        )
        .where(*conditions)
        .group_by(*keys, CallParty.call_id, *copied, CallParty.talk_ms)
        .subquery("subject_calls")
    )


async def call_totals_by_bucket(
    session: AsyncSession,
    kind: str,
    subject_id: str | None,
    start: datetime,
    end: datetime,
    *,
    bucket_seconds: int,
) -> list[tuple[int, CallTotals]]:
    """The subject's calls started in [start, end), summed per UTC time bucket (epoch // bucket)."""
    if kind in (EMPLOYEE, TEAM):
        column = CallParty.employee_id if kind == EMPLOYEE else CallParty.team_id
        source: Any = _party_calls(column == subject_id, *_in_period(CallParty.started_at, start, end))
        calls: Any = source.c
        took: ColumnElement[bool] = calls.took == 1
        conditions: list[ColumnElement[bool]] = []
    else:
        source = calls = Call
        took = true()
        conditions = _in_period(Call.started_at, start, end)
        if kind == CONTACT:
            conditions.append(Call.contact_id == subject_id)
    bucket = _bucket(session, calls.started_at, bucket_seconds).label("bucket")
    stmt = (
        select(bucket, *_call_aggregates(took, calls))
        .select_from(source)
        .where(*conditions)
        .group_by(bucket)
        .order_by(bucket)
    )
    return [(int(row[0]), _totals(row[1:])) for row in await session.execute(stmt)]


async def call_totals_by_employee(
    session: AsyncSession, start: datetime, end: datetime, *, team_id: str | None
) -> dict[str, CallTotals]:
    """Per employee: the calls started in [start, end) that involved them (with the team when given:
    the calls they had as a member of it)."""
    conditions = [CallParty.employee_id.is_not(None), *_in_period(CallParty.started_at, start, end)]
    if team_id is not None:
        conditions.append(CallParty.team_id == team_id)
    calls = _party_calls(*conditions, by_employee=True)
    stmt = select(calls.c.employee_id, *_call_aggregates(calls.c.took == 1, calls.c)).group_by(
        calls.c.employee_id
    )
    return {row[0]: _totals(row[1:]) for row in await session.execute(stmt)}


def _item_aggregates() -> list[ColumnElement[Any]]:
    resolved = MissedCall.state == "resolved"
    return [
        func.count(),
        _count(resolved),
        _count(and_(resolved, MissedCall.resolving_direction == "outbound")),
        _count(MissedCall.state == "open"),
        func.coalesce(func.sum(case((resolved, MissedCall.callback_ms))), 0),
        func.count(case((resolved, MissedCall.callback_ms))),
    ]


def _items_in_period(start: datetime, end: datetime) -> list[ColumnElement[bool]]:
    # first <= last, so ``last_missed_at >= start`` holds too: it lets the (last_missed_at, id) index
    # bound the scan when nothing narrower applies.
    return [*_in_period(MissedCall.first_missed_at, start, end), MissedCall.last_missed_at >= start]


async def item_totals(
    session: AsyncSession, kind: str, subject_id: str | None, start: datetime, end: datetime
) -> ItemTotals:
    """The subject's missed-call items whose first missed call started in [start, end)."""
    stmt = select(*_item_aggregates()).where(*_items_in_period(start, end))
    if kind in (EMPLOYEE, TEAM):
        stmt = stmt.join(
            MissedCallTarget,
            and_(
                MissedCallTarget.item_id == MissedCall.id,
                MissedCallTarget.kind == kind,
                MissedCallTarget.value == subject_id,
            ),
        )
    elif kind == CONTACT:
        stmt = stmt.where(MissedCall.contact_id == subject_id)
    else:
        stmt = stmt.select_from(MissedCall)
    row = (await session.execute(stmt)).one()
    return ItemTotals(*(int(value or 0) for value in row))


async def item_totals_by_employee(
    session: AsyncSession, start: datetime, end: datetime, *, employee_ids: Collection[str] | None
) -> dict[str, ItemTotals]:
    """Per employee (of ``employee_ids``, or everyone): their items whose first missed call started in
    [start, end)."""
    conditions = [MissedCallTarget.kind == EMPLOYEE, *_items_in_period(start, end)]
    if employee_ids is not None:
        if not employee_ids:
            return {}
        conditions.append(MissedCallTarget.value.in_(sorted(employee_ids)))
    stmt = (
        select(MissedCallTarget.value, *_item_aggregates())
        .select_from(MissedCall)
        .join(MissedCallTarget, MissedCallTarget.item_id == MissedCall.id)
        .where(*conditions)
        .group_by(MissedCallTarget.value)
    )
    rows = await session.execute(stmt)
    return {row[0]: ItemTotals(*(int(value or 0) for value in row[1:])) for row in rows}


# --- names, from the crm read models -------------------------------------------------------------


@dataclass(frozen=True)
class EmployeeName:
    employee_id: str
    name: str | None
    team_id: str | None


async def employee_names(session: AsyncSession, employee_ids: Collection[str]) -> dict[str, EmployeeName]:
    if not employee_ids:
        return {}
    stmt = select(Employee.employee_id, Employee.name, Employee.team_id).where(
        Employee.employee_id.in_(sorted(employee_ids))
    )
    return {row[0]: EmployeeName(*row) for row in await session.execute(stmt)}


async def listed_employees(session: AsyncSession, team_id: str | None) -> dict[str, EmployeeName]:
    """The active employees the read model knows (of the team, when given): listed even without calls."""
    stmt = select(Employee.employee_id, Employee.name, Employee.team_id).where(
        Employee.deleted == false(), Employee.active == true()
    )
    if team_id is not None:
        stmt = stmt.where(Employee.team_id == team_id)
    return {row[0]: EmployeeName(*row) for row in await session.execute(stmt)}


async def subject_name(session: AsyncSession, kind: str, subject_id: str | None) -> str | None:
    """The employee's, team's or contact's name, when the read models know it."""
    if kind == EMPLOYEE:
        return await session.scalar(select(Employee.name).where(Employee.employee_id == subject_id))
    if kind == TEAM:
        stmt = (
            select(Employee.team_name)
            .where(Employee.team_id == subject_id, Employee.team_name.is_not(None))
            .order_by(Employee.deleted, Employee.updated_at.desc())
            .limit(1)
        )
        return await session.scalar(stmt)
    if kind == CONTACT:
        row = (
            await session.execute(
                select(Contact.name, Contact.company_name).where(Contact.contact_id == subject_id)
            )
        ).first()
        if row is None:
            return None
        name, company = row
        if name and company and company != name:
            return f"{name} ({company})"
        return name or company
    return None
