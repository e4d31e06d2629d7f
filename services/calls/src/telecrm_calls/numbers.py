"""The numbers registry: one list of our internal extensions and of the contacts' phone numbers.

No web or gRPC imports here: :mod:`telecrm_calls.numbers_api` and :mod:`telecrm_calls.numbers_grpc`
sit on :class:`NumbersRegistry`.

- *internal* numbers (extensions) are created, edited and deleted here: digits only (1 to 15), a
  label, and the responsible employee, who must be one crm told us about (``employees``) and has not
  deleted. An extension is registered once.
- *contact* numbers are copied from crm's contact events by :mod:`telecrm_calls.directory`; crm owns
  them, so they are read-only here (:class:`NumberReadOnly`).

The list is ordered by (kind, number, id) and paged with signed keyset cursors of their own domain.
"""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass, field

from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm_calls import numbers_repository as repo
from telecrm_calls.models import Number, utcnow
from telecrm_calls.numbers_repository import CONTACT, INTERNAL, KINDS, NumberFilters, NumberKey, NumberRow
from telecrm_calls.records import (
    DEFAULT_PAGE_SIZE,
    EPOCH,
    MAX_PAGE_SIZE,
    CallsError,
    InvalidCursor,
    InvalidQuery,
    decode_cursor,
    encode_cursor,
)
from telecrm_common.db import Database
from telecrm_common.telephony import digits

CURSOR_DOMAIN = b"telecrm.calls.numbers-cursor.v1|"
MAX_EXTENSION_DIGITS = 15  # E.164's maximum: nothing a PBX dials is longer
MAX_LABEL_LENGTH = 200
EXTENSION_FIELDS = frozenset({"number", "label", "employee_id"})

__all__ = [
    "CONTACT",
    "INTERNAL",
    "KINDS",
    "DuplicateNumber",
    "ExtensionChanges",
    "ExtensionInput",
    "InvalidField",
    "NumberConflict",
    "NumberNotFound",
    "NumberPage",
    "NumberQuery",
    "NumberReadOnly",
    "NumberRow",
    "NumbersRegistry",
    "VersionMismatch",
]


class NumberNotFound(CallsError):
    def __init__(self, number_id: str) -> None:
        super().__init__(f"number {number_id!r} not found")
        self.number_id = number_id


class InvalidField(CallsError):
    """A value of a number that cannot be stored; ``field`` names it (``number``, ``employee_id``...)."""

    def __init__(self, field: str, message: str) -> None:
        super().__init__(f"{field}: {message}")
        self.field = field
        self.message = message


class NumberConflict(CallsError):
    """The change cannot be made in the registry's current state (HTTP 409)."""


class DuplicateNumber(NumberConflict):
    def __init__(self, number: str) -> None:
        super().__init__(f"extension {number} is registered already")
        self.number = number


class NumberReadOnly(NumberConflict):
    def __init__(self, number_id: str) -> None:
        super().__init__(f"number {number_id!r} is a contact's number: it is edited in crm")
        self.number_id = number_id


class VersionMismatch(NumberConflict):
    def __init__(self, number_id: str, expected: int, actual: int) -> None:
        super().__init__(f"number {number_id!r} is at version {actual}, not {expected}: reload it")
        self.expected = expected
        self.actual = actual


@dataclass(frozen=True)
class NumberQuery:
    kind: str | None = None  # internal, contact; None: both
    employee_id: str | None = None
    contact_id: str | None = None
    number: str | None = None  # digits matched anywhere; punctuation is ignored
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None


@dataclass(frozen=True)
class NumberPage:
    items: list[NumberRow]
    next_cursor: str | None
    total: int


@dataclass(frozen=True)
class ExtensionInput:
    number: str
    label: str | None = None
    employee_id: str | None = None


@dataclass(frozen=True)
class ExtensionChanges:
    """A partial edit: only the names in ``fields`` are changed (an empty label or employee clears it)."""

    number: str | None = None
    label: str | None = None
    employee_id: str | None = None
    fields: frozenset[str] = field(default_factory=frozenset)
    expected_version: int | None = None  # None: no check


def _extension_number(value: str | None) -> str:
    number = (value or "").strip()
    if not number:
        raise InvalidField("number", "required")
    if not (number.isascii() and number.isdigit()):
        raise InvalidField("number", "an extension is digits only")
    if len(number) > MAX_EXTENSION_DIGITS:
        raise InvalidField("number", f"at most {MAX_EXTENSION_DIGITS} digits")
    return number


def _label(value: str | None) -> str | None:
    label = (value or "").strip()
    if len(label) > MAX_LABEL_LENGTH:
        raise InvalidField("label", f"at most {MAX_LABEL_LENGTH} characters")
    return label or None


def encode_key(secret: bytes, key: NumberKey) -> str:
    return encode_cursor(secret, EPOCH, json.dumps(list(key), separators=(",", ":")), domain=CURSOR_DOMAIN)


def decode_key(secret: bytes, token: str) -> NumberKey:
    at, payload = decode_cursor(secret, token, domain=CURSOR_DOMAIN)
    try:
        kind, number, number_id = json.loads(payload)
    except (ValueError, TypeError):
        raise InvalidCursor("page cursor is malformed") from None
    if at != EPOCH or not all(isinstance(v, str) for v in (kind, number, number_id)):
        raise InvalidCursor("page cursor is malformed")
    return kind, number, number_id


class NumbersRegistry:
    """The registry's list and the edits of internal extensions."""

    def __init__(self, db: Database, *, cursor_secret: str) -> None:
        self.db = db
        self._secret = cursor_secret.encode()

    async def list_numbers(self, query: NumberQuery) -> NumberPage:
        """One page of numbers by (kind, number, id) and how many match in all; raises InvalidQuery or
        InvalidCursor."""
        filters = self._filters(query)
        after = decode_key(self._secret, query.cursor) if query.cursor else None
        async with self.db.session() as session:
            rows = await repo.list_numbers(session, filters, after=after, limit=query.limit + 1)
            total = await repo.count_numbers(session, filters)
        items = rows[: query.limit]
        next_cursor = None
        if len(rows) > query.limit:
            last = items[-1].number
            next_cursor = encode_key(self._secret, (last.kind, last.number, last.id))
        return NumberPage(items=items, next_cursor=next_cursor, total=total)

    async def get_number(self, number_id: str) -> NumberRow:
        async with self.db.session() as session:
            row = await repo.get_entry(session, number_id)
        if row is None:
            raise NumberNotFound(number_id)
        return row

    async def create_extension(self, data: ExtensionInput) -> NumberRow:
        """Register an extension; raises InvalidField or DuplicateNumber."""
        number = _extension_number(data.number)
        label = _label(data.label)
        employee_id = (data.employee_id or "").strip() or None
        number_id = uuid.uuid4().hex
        try:
            async with self.db.session() as session:
                if employee_id is not None:
                    await self._check_employee(session, employee_id)
                if await repo.internal_number_taken(session, number):
                    raise DuplicateNumber(number)
                now = utcnow()
                session.add(
                    Number(
                        id=number_id,
                        kind=INTERNAL,
                        number=number,
                        e164=None,
                        digits=digits(number),
                        label=label,
                        employee_id=employee_id,
                        version=1,
                        created_at=now,
                        updated_at=now,
                    )
                )
        except IntegrityError:  # registered by someone else since the check
            raise DuplicateNumber(number) from None
        return await self.get_number(number_id)

    async def update_extension(self, number_id: str, changes: ExtensionChanges) -> NumberRow:
        """Change the fields named in ``changes.fields``; raises NumberNotFound, NumberReadOnly,
        VersionMismatch, InvalidField or DuplicateNumber."""
        unknown = sorted(changes.fields - EXTENSION_FIELDS)
        if unknown:
            raise InvalidField(unknown[0], "cannot be changed")
        values: dict[str, str | None] = {}
        if "number" in changes.fields:
            values["number"] = _extension_number(changes.number)
        if "label" in changes.fields:
            values["label"] = _label(changes.label)
        if "employee_id" in changes.fields:
            values["employee_id"] = (changes.employee_id or "").strip() or None
        try:
            async with self.db.session() as session:
                row = await self._editable(session, number_id, changes.expected_version)
                values = {name: value for name, value in values.items() if getattr(row, name) != value}
                if values.get("employee_id") is not None:
                    await self._check_employee(session, values["employee_id"] or "")
                new_number = values.get("number")
                if new_number is not None and await repo.internal_number_taken(
                    session, new_number, other_than=row.id
                ):
                    raise DuplicateNumber(new_number)
                if values:
                    for name, value in values.items():
                        setattr(row, name, value)
                    if new_number is not None:
                        row.digits = digits(new_number)
                    row.version += 1
                    row.updated_at = utcnow()
        except IntegrityError:
            raise DuplicateNumber(str(values.get("number"))) from None
        return await self.get_number(number_id)

    async def delete_extension(self, number_id: str, *, expected_version: int | None = None) -> None:
        """Remove an extension; raises NumberNotFound, NumberReadOnly or VersionMismatch."""
        async with self.db.session() as session:
            row = await self._editable(session, number_id, expected_version)
            await session.delete(row)

    @staticmethod
    async def _editable(session: AsyncSession, number_id: str, expected_version: int | None) -> Number:
        row = await repo.get_number(session, number_id)
        if row is None:
            raise NumberNotFound(number_id)
        if row.kind != INTERNAL:
            raise NumberReadOnly(number_id)
        if expected_version is not None and expected_version != row.version:
            raise VersionMismatch(number_id, expected_version, row.version)
        return row

    @staticmethod
    async def _check_employee(session: AsyncSession, employee_id: str) -> None:
        employee = await repo.get_employee(session, employee_id)
        if employee is None:
            raise InvalidField("employee_id", f"no employee {employee_id!r} is known from crm")
        if employee.deleted:
            raise InvalidField("employee_id", f"employee {employee_id!r} was deleted in crm")

    @staticmethod
    def _filters(query: NumberQuery) -> NumberFilters:
        if not 1 <= query.limit <= MAX_PAGE_SIZE:
            raise InvalidQuery("limit", f"must be between 1 and {MAX_PAGE_SIZE}")
        if query.kind is not None and query.kind not in KINDS:
            raise InvalidQuery("kind", f"unknown kind {query.kind} (internal or contact)")
        number = None
        if query.number is not None and query.number.strip():
            number = digits(query.number)
            if not number:
                raise InvalidQuery("number", "must contain digits")
        return NumberFilters(
            kind=query.kind,
            employee_id=query.employee_id or None,
            contact_id=query.contact_id or None,
            number=number,
        )
