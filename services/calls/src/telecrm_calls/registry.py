"""What ingestion reads from the numbers registry and crm's read models, one batch at a time.

The registry itself (editing extensions, applying crm's events) lives in :mod:`telecrm_calls.numbers`
and :mod:`telecrm_calls.directory`; this module only looks up, for a batch of call records, which
numbers are registered extensions and whose, the teams of those employees, and the contacts of the
outside parties' numbers. Three indexed queries per batch, whatever its size.
"""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from sqlalchemy import or_, select
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm_calls.models import Contact, Employee, Number
from telecrm_calls.records import CallRecord
from telecrm_common.db import one_of
from telecrm_common.telephony import digits


@dataclass(frozen=True)
class RegistryView:
    """The registry as a batch of calls needs it."""

    # Registered internal numbers -> the responsible employee (None when the number has nobody).
    extensions: dict[str, str | None] = field(default_factory=dict)
    # Employees -> their team (crm's read model; None when they have none).
    teams: dict[str, str | None] = field(default_factory=dict)
    # An outside number (E.164, else its digits) -> the contact that has it, when exactly one does.
    contacts: dict[str, str] = field(default_factory=dict)

    def registered(self, extension: str | None) -> bool:
        return bool(extension) and extension in self.extensions

    def employee_of(self, extension: str | None) -> str | None:
        return self.extensions.get(extension) if extension else None

    def team_of(self, employee_id: str | None) -> str | None:
        return self.teams.get(employee_id) if employee_id else None

    def contact_of(self, number: str | None, e164: str | None) -> str | None:
        if e164 and e164 in self.contacts:
            return self.contacts[e164]
        key = digits(number or "")
        return self.contacts.get(key) if key else None


async def load_view(session: AsyncSession, records: Sequence[CallRecord]) -> RegistryView:
    """The registry entries that concern these records."""
    extensions: set[str] = set()
    employee_ids: set[str] = set()
    e164s: set[str] = set()
    number_digits: set[str] = set()
    for record in records:
        extensions.update(_present(record.extension, record.caller_extension))
        extensions.update(party.extension for party in record.parties if party.extension)
        # Short numbers may be registered extensions signalled as plain numbers (internal calls).
        extensions.update(_present(record.caller_number, record.callee_number))
        employee_ids.update(_present(record.employee_id))
        employee_ids.update(party.employee_id for party in record.parties if party.employee_id)
        e164s.update(_present(record.caller_e164, record.callee_e164))
        number_digits.update(
            d for d in (digits(record.caller_number or ""), digits(record.callee_number or "")) if d
        )

    dialect = session.get_bind().dialect.name  # arrays on PostgreSQL: one prepared statement per query
    registered: dict[str, str | None] = {}
    if extensions:
        stmt = select(Number.number, Number.employee_id).where(
            Number.kind == "internal", one_of(Number.number, extensions, dialect)
        )
        registered = {number: employee for number, employee in await session.execute(stmt)}
    employee_ids.update(e for e in registered.values() if e)

    teams: dict[str, str | None] = {}
    if employee_ids:
        stmt_teams = select(Employee.employee_id, Employee.team_id).where(
            one_of(Employee.employee_id, employee_ids, dialect), Employee.deleted.is_(False)
        )
        teams = {employee: team for employee, team in await session.execute(stmt_teams)}

    contacts: dict[str, str] = {}
    if e164s or number_digits:
        stmt_contacts = (
            select(Number.e164, Number.digits, Number.contact_id)
            .join(Contact, Contact.contact_id == Number.contact_id)
            .where(
                Number.kind == "contact",
                Contact.deleted.is_(False),
                or_(one_of(Number.e164, e164s, dialect), one_of(Number.digits, number_digits, dialect)),
            )
        )
        owners: dict[str, set[str]] = defaultdict(set)
        for e164, number, contact_id in await session.execute(stmt_contacts):
            for key in _present(e164, number):
                if contact_id:
                    owners[key].add(contact_id)
        # A number several contacts share (a switchboard, a family phone) links to none of them.
        contacts = {key: next(iter(ids)) for key, ids in owners.items() if len(ids) == 1}
    return RegistryView(extensions=registered, teams=teams, contacts=contacts)


def _present(*values: str | None) -> Iterable[str]:
    return (value for value in values if value)
