"""crm's employees and contacts, kept as read models of the call log, and the contacts' links.

crm publishes ``crm.employee.{created,updated,deleted}`` (``EmployeeEvent``) and
``crm.contact.{created,updated,deleted}`` (``ContactEvent``), each with the whole entity and its
``version``. :class:`DirectoryReadModel` applies them to ``employees``, ``contacts`` and the contacts'
phones (``numbers`` rows of kind ``contact``):

- an event whose version is not above the stored one changes nothing (duplicates, late deliveries);
  a deletion leaves a tombstone, so a late ``created`` cannot bring the entity back;
- a contact's ``created`` / ``updated`` replaces its phone rows (a row keeps its id while the contact
  keeps the number): E.164 as crm gave it, else normalized here; ``digits`` for the number search;
- a number with exactly one live contact links that contact to the past calls with the number (the
  caller of an inbound call, the callee of an outbound one) that have no contact and whose links no
  agent edited, and to the open missed-call items of the number. A number two contacts share links
  nothing: the call log cannot tell whose call it was;
- a contact deleted with ``merged_into``: its calls and missed-call items move to the contact it was
  merged into (following merges of that one); deleted without: they lose it, except the calls whose
  links an agent edited. Its numbers go, and a number it shared may now link to the other contact.

Each missed-call item whose contact changed is published again (``calls.missed.updated`` through the
outbox, a new ``version``). One batch is one transaction; its events are applied in delivery order,
each one as if it came alone, so how events are batched changes nothing.

:class:`DirectoryEventsConsumer` feeds it from the bus (the ``CRM`` stream, one durable consumer that
every replica shares; undecodable payloads are dead-lettered by the bus).
"""

from __future__ import annotations

import asyncio
import logging
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from telecrm.calls.v1 import missed_calls_pb2 as missed_pb
from telecrm.crm.v1 import directory_events_pb2 as directory_pb
from telecrm_calls import missed_repository, outbox
from telecrm_calls import numbers_repository as repo
from telecrm_calls.missed import MissedCallEntry, missed_call_message
from telecrm_calls.models import Contact, Employee, MissedCall, Number, utcnow
from telecrm_common.bus import Bus, ConsumerSpec, Delivery
from telecrm_common.db import Database
from telecrm_common.events import MISSED_CALL_SUBJECTS, DirectoryEvent, directory_consumer
from telecrm_common.telephony import digits, normalize_number
from telecrm_common.timestamps import timestamp_message

log = logging.getLogger(__name__)

DEFAULT_DURABLE = "calls-directory"
MAX_MERGE_CHAIN = 32  # merged into a contact that was merged into another...: how far it is followed


@dataclass
class DirectoryResult:
    """What one batch did."""

    applied: int = 0  # events that changed the read models
    ignored: int = 0  # events at or below the stored version
    calls: set[str] = field(default_factory=set)  # calls whose contact changed
    missed_items: set[str] = field(default_factory=set)  # missed-call items whose contact changed


@dataclass(frozen=True)
class Phone:
    number: str
    e164: str | None
    digits: str
    kind: str | None


def phones_of(contact: directory_pb.Contact, default_region: str) -> list[Phone]:
    """The contact's phones as rows: one per distinct digits (the first wins), those without digits
    dropped."""
    phones: dict[str, Phone] = {}
    for phone in contact.phones:
        number = phone.number.strip() or phone.e164.strip()
        number_digits = digits(number)
        if not number_digits or number_digits in phones:
            continue
        e164 = phone.e164.strip() or normalize_number(number, default_region) or None
        phones[number_digits] = Phone(number, e164, number_digits, phone.kind.strip() or None)
    return list(phones.values())


def _key(event: DirectoryEvent) -> str:
    body = getattr(event, event.WhichOneof("kind") or "")
    if isinstance(event, directory_pb.EmployeeEvent):
        return f"employee:{body.employee_id}"
    return f"contact:{body.contact_id}"


class DirectoryReadModel:
    """Applies crm's employee and contact events (see the module's docstring)."""

    def __init__(
        self,
        db: Database,
        *,
        default_region: str = "US",
        on_outbox: Callable[[], None] | None = None,
    ) -> None:
        self.db = db
        self._region = default_region
        # Called after a batch that wrote missed-call events to the outbox committed (wakes its publisher).
        self._on_outbox = on_outbox

    async def apply(self, events: Sequence[DirectoryEvent]) -> DirectoryResult:
        """Apply a batch of events in one transaction, in their order."""
        result = DirectoryResult()
        usable = [event for event in events if event.WhichOneof("kind") is not None]
        result.ignored = len(events) - len(usable)
        if not usable:
            return result
        outbox_rows: list[dict[str, Any]] = []
        async with self.db.session() as session:
            await repo.lock_directory(session, {_key(event) for event in usable})
            contact_ids = {
                getattr(e, e.WhichOneof("kind") or "").contact_id
                for e in usable
                if isinstance(e, directory_pb.ContactEvent)
            }
            # Every number a contact of the batch has or gets: the links of those numbers may change.
            numbers = {row.e164 for row in await repo.contact_numbers(session, contact_ids) if row.e164}
            for event in usable:
                kind = event.WhichOneof("kind")
                if isinstance(event, directory_pb.ContactEvent) and kind in ("created", "updated"):
                    phones = phones_of(getattr(event, kind), self._region)
                    numbers.update(phone.e164 for phone in phones if phone.e164)
            # The lock of the missed-call items of these numbers, which ingestion takes too.
            await missed_repository.lock_numbers(session, numbers)
            for event in usable:
                if isinstance(event, directory_pb.EmployeeEvent):
                    applied = await self._employee(session, event)
                else:
                    applied = await self._contact(session, event, result, outbox_rows)
                await session.flush()
                result.applied += applied
                result.ignored += not applied
            await outbox.add(session, outbox_rows)
        if outbox_rows and self._on_outbox is not None:
            self._on_outbox()
        return result

    # --- employees -------------------------------------------------------------------------------

    @staticmethod
    async def _employee(session: AsyncSession, event: directory_pb.EmployeeEvent) -> bool:
        kind = event.WhichOneof("kind")
        employee_id = (
            event.deleted.employee_id if kind == "deleted" else getattr(event, kind or "").employee_id
        )
        row = await session.get(Employee, employee_id)
        if row is not None and event.version <= row.version:
            return False
        if row is None:
            row = Employee(employee_id=employee_id, active=False, deleted=False)
            session.add(row)
        row.version = event.version
        row.updated_at = utcnow()
        if kind == "deleted":
            row.deleted = True
            row.active = False
            return True
        body = event.updated if kind == "updated" else event.created
        row.name = body.name or None
        row.email = body.email or None
        row.extension = body.extension or None
        row.team_id = body.team_id or None
        row.team_name = body.team_name or None
        row.active = body.active
        row.deleted = False
        return True

    # --- contacts --------------------------------------------------------------------------------

    async def _contact(
        self,
        session: AsyncSession,
        event: directory_pb.ContactEvent,
        result: DirectoryResult,
        outbox_rows: list[dict[str, Any]],
    ) -> bool:
        kind = event.WhichOneof("kind")
        contact_id: str = getattr(event, kind or "").contact_id
        row = await session.get(Contact, contact_id)
        if row is not None and event.version <= row.version:
            return False
        if row is None:
            row = Contact(contact_id=contact_id, deleted=False)
            session.add(row)
        row.version = event.version
        row.updated_at = utcnow()
        if kind == "deleted":
            row.deleted = True
            row.merged_into = event.deleted.merged_into or None
            removed = await self._replace_phones(session, contact_id, [])
            await session.flush()
            survivor = await self._survivor(session, contact_id, row.merged_into)
            await self._move_links(session, contact_id, survivor, result, outbox_rows)
            await self._link(session, removed, result, outbox_rows)
            return True
        body = event.updated if kind == "updated" else event.created
        row.kind = body.kind or None
        row.name = body.name or None
        row.company_id = body.company_id or None
        row.company_name = body.company_name or None
        row.responsible_employee_id = body.responsible_employee_id or None
        row.deleted = False
        row.merged_into = None
        phones = phones_of(body, self._region)
        removed = await self._replace_phones(session, contact_id, phones)
        await session.flush()
        await self._link(session, removed | {p.e164 for p in phones if p.e164}, result, outbox_rows)
        return True

    @staticmethod
    async def _replace_phones(session: AsyncSession, contact_id: str, phones: Sequence[Phone]) -> set[str]:
        """Make ``phones`` the contact's number rows; returns the E.164 numbers of the rows removed."""
        existing = {row.digits: row for row in await repo.contact_numbers(session, [contact_id])}
        now = utcnow()
        for phone in phones:
            row = existing.pop(phone.digits, None)
            values = {"number": phone.number, "e164": phone.e164, "phone_kind": phone.kind}
            if row is None:
                session.add(
                    Number(
                        id=uuid.uuid4().hex,
                        kind=repo.CONTACT,
                        digits=phone.digits,
                        contact_id=contact_id,
                        version=1,
                        created_at=now,
                        updated_at=now,
                        **values,
                    )
                )
            elif any(getattr(row, name) != value for name, value in values.items()):
                for name, value in values.items():
                    setattr(row, name, value)
                row.version += 1
                row.updated_at = now
        await repo.delete_numbers(session, [row.id for row in existing.values()])
        return {row.e164 for row in existing.values() if row.e164}

    @staticmethod
    async def _survivor(session: AsyncSession, contact_id: str, merged_into: str | None) -> str | None:
        """Where a deleted contact's links go: the contact it was merged into, or the one that one was
        merged into in turn...; None when the chain ends in a deletion without merge (or loops)."""
        seen = {contact_id}
        target = merged_into
        while target is not None and target not in seen and len(seen) <= MAX_MERGE_CHAIN:
            seen.add(target)
            row = await session.get(Contact, target)
            if row is None or not row.deleted:
                return target
            target = row.merged_into
        return None

    async def _move_links(
        self,
        session: AsyncSession,
        contact_id: str,
        survivor: str | None,
        result: DirectoryResult,
        outbox_rows: list[dict[str, Any]],
    ) -> None:
        if survivor is not None:
            result.calls.update(await repo.move_calls(session, contact_id, survivor))
        else:
            result.calls.update(await repo.unlink_calls(session, contact_id))
        items = await repo.items_of_contact(session, contact_id)
        outbox_rows += await self._relink_items(session, items, survivor, result)

    async def _link(
        self,
        session: AsyncSession,
        numbers: Iterable[str],
        result: DirectoryResult,
        outbox_rows: list[dict[str, Any]],
    ) -> None:
        """Link the unlinked calls and open items of each number that exactly one live contact has."""
        for e164 in sorted(numbers):
            owners = await repo.live_owners(session, e164)
            if len(owners) != 1:
                continue
            result.calls.update(await repo.link_calls(session, e164, owners[0]))
            items = await repo.unlinked_open_items(session, e164)
            outbox_rows += await self._relink_items(session, items, owners[0], result)

    @staticmethod
    async def _relink_items(
        session: AsyncSession, items: Sequence[MissedCall], contact_id: str | None, result: DirectoryResult
    ) -> list[dict[str, Any]]:
        """Give the items this contact, each with a new version and its ``calls.missed.updated`` event."""
        items = [item for item in items if item.contact_id != contact_id]
        if not items:
            return []
        ids = [item.id for item in items]
        members = await missed_repository.members_of_items(session, ids)
        targets = await missed_repository.targets_of_items(session, ids)
        rows = []
        now = utcnow()
        for item in items:
            item.contact_id = contact_id
            item.version += 1
            item.updated_at = now
            result.missed_items.add(item.id)
            found = targets.get(item.id, {})
            entry = MissedCallEntry(
                item=item,
                call_ids=[member.call_id for member in members.get(item.id, [])],
                extensions=list(found.get("extension", [])),
                employee_ids=list(found.get("employee", [])),
                team_ids=list(found.get("team", [])),
            )
            event_id = f"{item.id}:updated:{item.state}:{item.missed_count}:{item.version}"
            event = missed_pb.MissedCallEvent(event_id=event_id, occurred_at=timestamp_message(now))
            event.updated.CopyFrom(missed_call_message(item, entry))
            rows.append(outbox.row(MISSED_CALL_SUBJECTS["updated"], event, event_id))
        await session.flush()
        return rows


# --- the consumer --------------------------------------------------------------------------------


def directory_consumer_spec(
    durable: str, read_model: DirectoryReadModel, **overrides: Any
) -> ConsumerSpec[DirectoryEvent]:
    """The durable consumer of ``crm.employee.*`` and ``crm.contact.*`` (held while the database is
    down, see :class:`telecrm_common.bus.ConsumerSpec`)."""
    return directory_consumer(durable, dependencies_ready=read_model.db.check, **overrides)


class DirectoryEventsConsumer:
    """Feeds crm's employee and contact events of the bus to :class:`DirectoryReadModel`."""

    def __init__(self, bus: Bus, read_model: DirectoryReadModel, spec: ConsumerSpec[DirectoryEvent]) -> None:
        self._bus = bus
        self._read_model = read_model
        self.spec = spec

    async def handle(self, deliveries: Sequence[Delivery[DirectoryEvent]]) -> None:
        result = await self._read_model.apply([delivery.message for delivery in deliveries])
        log.debug(
            "directory events applied",
            extra={
                "events": len(deliveries),
                "applied": result.applied,
                "ignored": result.ignored,
                "calls_relinked": len(result.calls),
                "missed_items_relinked": len(result.missed_items),
            },
        )

    async def consume_directory_events(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (a ServiceRunner background task)."""
        await self._bus.consume(self.spec, self.handle, stop)
