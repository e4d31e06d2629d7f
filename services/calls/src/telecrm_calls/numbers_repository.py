"""Queries of the numbers registry (``numbers``) and of crm's read models (``employees``, ``contacts``),
with the links of calls and missed-call items to contacts, on PostgreSQL and SQLite alike."""

from __future__ import annotations

from collections.abc import Collection, Sequence
from dataclasses import dataclass
from typing import Any

from sqlalchemy import ColumnElement, Select, and_, bindparam, delete, func, or_, select, text, tuple_, update
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm_calls.models import Call, Contact, Employee, MissedCall, Number, utcnow

INTERNAL = "internal"
CONTACT = "contact"
KINDS = (INTERNAL, CONTACT)

# The class id of the advisory locks on crm's entities (two-int4 keys, a key space of its own).
DIRECTORY_LOCK_CLASS = 0x6463  # "dc"

NumberKey = tuple[str, str, str]
"""A position in the list: (kind, number, id) of the last row of the previous page."""


@dataclass(frozen=True)
class NumberFilters:
    """Validated filters (see :meth:`telecrm_calls.numbers.NumbersRegistry.list_numbers`)."""

    kind: str | None = None
    employee_id: str | None = None
    contact_id: str | None = None
    number: str | None = None  # digits only


@dataclass(frozen=True)
class NumberRow:
    """A number with what the read models say about its employee or contact."""

    number: Number
    employee_name: str | None
    team_id: str | None
    team_name: str | None
    employee_active: bool | None  # None: no employee, or one crm never told us about
    contact_name: str | None
    company_name: str | None


# --- the list ------------------------------------------------------------------------------------


EntrySelect = Select[Number, str | None, str | None, str | None, bool, bool, str | None, str | None]


def _entries() -> EntrySelect:
    return (
        select(
            Number,
            Employee.name,
            Employee.team_id,
            Employee.team_name,
            Employee.active,
            Employee.deleted,
            Contact.name,
            Contact.company_name,
        )
        .outerjoin(Employee, Employee.employee_id == Number.employee_id)
        .outerjoin(Contact, Contact.contact_id == Number.contact_id)
    )


def _row(values: Sequence[Any]) -> NumberRow:
    number, employee_name, team_id, team_name, active, deleted, contact_name, company_name = values
    return NumberRow(
        number=number,
        employee_name=employee_name,
        team_id=team_id,
        team_name=team_name,
        employee_active=None if active is None else bool(active) and not deleted,
        contact_name=contact_name,
        company_name=company_name,
    )


def _conditions(filters: NumberFilters) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.kind:
        conditions.append(Number.kind == filters.kind)
    if filters.employee_id:
        conditions.append(Number.employee_id == filters.employee_id)
    if filters.contact_id:
        conditions.append(Number.contact_id == filters.contact_id)
    if filters.number:
        pattern = f"%{filters.number}%"  # digits only: nothing to escape
        conditions.append(or_(Number.digits.like(pattern), Number.e164.like(pattern)))
    return conditions


async def list_numbers(
    session: AsyncSession, filters: NumberFilters, *, after: NumberKey | None, limit: int
) -> list[NumberRow]:
    """Numbers matching the filters in (kind, number, id) order, strictly after ``after`` (keyset)."""
    stmt = _entries().where(*_conditions(filters))
    if after is not None:
        kind, number, number_id = after
        stmt = stmt.where(
            tuple_(Number.kind, Number.number, Number.id)
            > tuple_(
                bindparam("after_kind", kind),
                bindparam("after_number", number),
                bindparam("after_id", number_id),
            )
        )
    stmt = stmt.order_by(Number.kind, Number.number, Number.id).limit(limit)
    return [_row(values) for values in await session.execute(stmt)]


async def count_numbers(session: AsyncSession, filters: NumberFilters) -> int:
    stmt = select(func.count()).select_from(Number).where(*_conditions(filters))
    return int(await session.scalar(stmt) or 0)


async def get_entry(session: AsyncSession, number_id: str) -> NumberRow | None:
    values = (await session.execute(_entries().where(Number.id == number_id))).first()
    return None if values is None else _row(values)


async def get_number(session: AsyncSession, number_id: str) -> Number | None:
    """The row, locked for update until the transaction ends (PostgreSQL)."""
    stmt = select(Number).where(Number.id == number_id).with_for_update()
    return (await session.scalars(stmt)).first()


async def internal_number_taken(session: AsyncSession, number: str, *, other_than: str | None = None) -> bool:
    stmt = select(Number.id).where(Number.kind == INTERNAL, Number.number == number)
    if other_than is not None:
        stmt = stmt.where(Number.id != other_than)
    return (await session.scalar(stmt.limit(1))) is not None


async def get_employee(session: AsyncSession, employee_id: str) -> Employee | None:
    return await session.get(Employee, employee_id)


# --- crm's read models ---------------------------------------------------------------------------


async def lock_directory(session: AsyncSession, keys: Collection[str]) -> None:
    """Serialize the writers of the same employees and contacts (``contact:<id>``...) until the
    transaction ends (PostgreSQL), in sorted order. SQLite has one writer at a time already."""
    if session.get_bind().dialect.name != "postgresql" or not keys:
        return
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(:class_id, hashtext(k)) "
            "FROM unnest(CAST(:keys AS text[])) WITH ORDINALITY AS t(k, n) ORDER BY n"
        ),
        {"class_id": DIRECTORY_LOCK_CLASS, "keys": sorted(keys)},
    )


async def contact_numbers(session: AsyncSession, contact_ids: Collection[str]) -> list[Number]:
    """The phone rows of these contacts."""
    if not contact_ids:
        return []
    stmt = select(Number).where(Number.kind == CONTACT, Number.contact_id.in_(contact_ids))
    return list((await session.scalars(stmt)).all())


async def live_owners(session: AsyncSession, e164: str) -> list[str]:
    """The contacts (not deleted) that list this number, sorted."""
    stmt = (
        select(Number.contact_id)
        .join(Contact, Contact.contact_id == Number.contact_id)
        .where(Number.kind == CONTACT, Number.e164 == e164, Contact.deleted.is_(False))
        .distinct()
    )
    return sorted(value for value in (await session.scalars(stmt)).all() if value)


def _customer_is(e164: str) -> ColumnElement[bool]:
    """The outside party of the call has this number: the caller of an inbound call, the callee of an
    outbound one (internal calls have no customer; our own line on the other side is no match)."""
    return or_(
        and_(Call.direction == "inbound", Call.caller_e164 == e164),
        and_(Call.direction == "outbound", Call.callee_e164 == e164),
    )


async def link_calls(session: AsyncSession, e164: str, contact_id: str) -> list[str]:
    """Link the calls with this customer number that have no contact (and whose links no agent
    edited) to the contact; returns their ids."""
    stmt = (
        update(Call)
        .where(_customer_is(e164), Call.contact_id.is_(None), Call.links_edited.is_(False))
        .values(contact_id=contact_id, updated_at=utcnow())
        .returning(Call.call_id)
        .execution_options(synchronize_session=False)
    )
    return sorted((await session.scalars(stmt)).all())


async def move_calls(session: AsyncSession, contact_id: str, survivor: str) -> list[str]:
    """Every call linked to a merged contact now belongs to the one it was merged into."""
    stmt = (
        update(Call)
        .where(Call.contact_id == contact_id)
        .values(contact_id=survivor, updated_at=utcnow())
        .returning(Call.call_id)
        .execution_options(synchronize_session=False)
    )
    return sorted((await session.scalars(stmt)).all())


async def unlink_calls(session: AsyncSession, contact_id: str) -> list[str]:
    """Clear a deleted contact from its calls, except those whose links an agent edited."""
    stmt = (
        update(Call)
        .where(Call.contact_id == contact_id, Call.links_edited.is_(False))
        .values(contact_id=None, updated_at=utcnow())
        .returning(Call.call_id)
        .execution_options(synchronize_session=False)
    )
    return sorted((await session.scalars(stmt)).all())


async def unlinked_open_items(session: AsyncSession, e164: str) -> list[MissedCall]:
    stmt = select(MissedCall).where(
        MissedCall.e164 == e164, MissedCall.state == "open", MissedCall.contact_id.is_(None)
    )
    return list((await session.scalars(stmt.order_by(MissedCall.id))).all())


async def items_of_contact(session: AsyncSession, contact_id: str) -> list[MissedCall]:
    stmt = select(MissedCall).where(MissedCall.contact_id == contact_id).order_by(MissedCall.id)
    return list((await session.scalars(stmt)).all())


async def delete_numbers(session: AsyncSession, number_ids: Collection[str]) -> None:
    if number_ids:
        await session.execute(delete(Number).where(Number.id.in_(number_ids)))
