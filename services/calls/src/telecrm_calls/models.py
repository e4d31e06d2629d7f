"""Tables of the call log: call records, the call events they are folded from, recordings."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    JSON,
    BigInteger,
    Boolean,
    ForeignKey,
    Index,
    Integer,
    LargeBinary,
    MetaData,
    String,
    false,
    text,
)
from sqlalchemy.orm import Mapped, mapped_column

from telecrm_common.db import NAMING_CONVENTION, Base
from telecrm_common.db import UTCDateTime as UTCDateTime  # re-exported: the calls modules import it here
from telecrm_common.db import utcnow as utcnow


class CallsBase(Base):
    """Base of this service's models, with a metadata of its own (only the calls tables)."""

    __abstract__ = True
    metadata = MetaData(naming_convention=NAMING_CONVENTION)


class Call(CallsBase):
    """One call record, recomputed from the set of the call's events whenever a new one arrives."""

    __tablename__ = "calls"

    call_id: Mapped[str] = mapped_column(String, primary_key=True)
    direction: Mapped[str | None] = mapped_column(String(16))  # inbound, outbound, internal
    caller_number: Mapped[str | None] = mapped_column(String)
    caller_e164: Mapped[str | None] = mapped_column(String)
    caller_name: Mapped[str | None] = mapped_column(String)
    callee_number: Mapped[str | None] = mapped_column(String)
    callee_e164: Mapped[str | None] = mapped_column(String)
    callee_name: Mapped[str | None] = mapped_column(String)
    line: Mapped[str | None] = mapped_column(String)
    extension: Mapped[str | None] = mapped_column(String)
    employee_id: Mapped[str | None] = mapped_column(String)
    sip_call_id: Mapped[str | None] = mapped_column(String)
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    answered_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ended_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    ring_ms: Mapped[int | None] = mapped_column(BigInteger)
    talk_ms: Mapped[int | None] = mapped_column(BigInteger)
    disposition: Mapped[str | None] = mapped_column(String(16))  # telephony.DISPOSITION_NAMES
    sip_status: Mapped[int | None] = mapped_column(Integer)
    sip_reason: Mapped[str | None] = mapped_column(String)
    q850_cause: Mapped[int | None] = mapped_column(Integer)
    hangup_by: Mapped[str | None] = mapped_column(String(16))  # caller, callee, system
    state: Mapped[str] = mapped_column(String(16))  # ringing, answered, ended
    incomplete: Mapped[bool]
    context: Mapped[dict[str, Any]] = mapped_column(JSON)
    last_sequence: Mapped[int] = mapped_column(BigInteger)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)
    # --- from the call rules and the numbers registry (recomputed with the record) ---
    team_id: Mapped[str | None] = mapped_column(String)
    # A missed inbound call, or an outgoing external call that did not get through (missed outgoing).
    missed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    recorded: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # The digits of both parties' numbers ("<caller> <callee>", raw and E.164): the number search.
    party_digits: Mapped[str | None] = mapped_column(String)
    legs: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    transfers: Mapped[list[dict[str, Any]]] = mapped_column(JSON, default=list, server_default=text("'[]'"))
    # --- links: from the click-to-call context and the registry, until an agent edits them ---
    contact_id: Mapped[str | None] = mapped_column(String)
    task_id: Mapped[str | None] = mapped_column(String)
    ticket_id: Mapped[str | None] = mapped_column(String)
    links_edited: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    # --- notes: the call-registration form, edited only over the API ---
    reason: Mapped[str | None] = mapped_column(String)
    result: Mapped[str | None] = mapped_column(String)
    comment: Mapped[str | None] = mapped_column(String)
    notes_version: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))
    notes_updated_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    notes_updated_by: Mapped[str | None] = mapped_column(String)
    # Revision of the record as last published on calls.record.* (0: never published).
    published_revision: Mapped[int] = mapped_column(Integer, default=0, server_default=text("0"))

    __table_args__ = (
        # The list order is (started_at DESC, call_id DESC): a B-tree scanned backwards serves it.
        Index(None, "started_at", "call_id"),
        Index(None, "extension", "started_at"),
        Index(None, "disposition", "started_at"),
        Index(None, "caller_e164"),
        Index(None, "callee_e164"),
        Index(None, "caller_number"),
        Index(None, "callee_number"),
        Index(None, "contact_id", "started_at", "call_id"),
        Index(None, "missed", "started_at", "call_id"),
        # The number search is LIKE '%digits%': a trigram GIN index on PostgreSQL (pg_trgm), a plain
        # index on SQLite (where the search scans).
        Index(
            None,
            "party_digits",
            postgresql_using="gin",
            postgresql_ops={"party_digits": "gin_trgm_ops"},
        ),
    )


# What the employee and team indexes of call_parties carry besides their key (PostgreSQL INCLUDE):
# the party's role and the call's columns the filtered views and the reports read.
PARTY_CALL_COLUMNS = ("role", "direction", "disposition", "missed", "talk_ms")


class CallParty(CallsBase):
    """Who a call involved: one row per extension (the one that answered or placed it, every ring-group
    leg, every transfer target), with its employee and team at the time. The employee and team views
    of the call log and the reports select calls through it."""

    __tablename__ = "call_parties"

    call_id: Mapped[str] = mapped_column(String, primary_key=True)
    extension: Mapped[str] = mapped_column(String, primary_key=True)  # "" when only the employee is known
    employee_id: Mapped[str | None] = mapped_column(String)
    team_id: Mapped[str | None] = mapped_column(String)
    # answered, placed (outgoing), rang (a leg that did not answer), transferred (a transfer target)
    role: Mapped[str] = mapped_column(String(16))
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)  # the call's, for index-only period scans
    # The call's own, copied from its record: the parties are rewritten with every upsert of the record
    # (repository.replace_parties), the only place these change. With them in the employee and team
    # indexes, a filtered view counts and a report sums an employee's or a team's calls from the index
    # alone, without a random read of the calls heap per call.
    direction: Mapped[str | None] = mapped_column(String(16))
    disposition: Mapped[str | None] = mapped_column(String(16))
    missed: Mapped[bool] = mapped_column(Boolean, default=False, server_default=false())
    talk_ms: Mapped[int | None] = mapped_column(BigInteger)

    __table_args__ = (
        Index(None, "employee_id", "started_at", "call_id", postgresql_include=list(PARTY_CALL_COLUMNS)),
        Index(None, "team_id", "started_at", "call_id", postgresql_include=list(PARTY_CALL_COLUMNS)),
        Index(None, "extension", "started_at", "call_id"),
    )


class Employee(CallsBase):
    """Read model of crm's employees (``crm.employee.*``): names and teams for the log and reports."""

    __tablename__ = "employees"

    employee_id: Mapped[str] = mapped_column(String, primary_key=True)
    name: Mapped[str | None] = mapped_column(String)
    email: Mapped[str | None] = mapped_column(String)
    extension: Mapped[str | None] = mapped_column(String)  # crm's copy; the registry below decides
    team_id: Mapped[str | None] = mapped_column(String, index=True)
    team_name: Mapped[str | None] = mapped_column(String)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Contact(CallsBase):
    """Read model of crm's contacts (``crm.contact.*``); their phones are rows of :class:`Number`."""

    __tablename__ = "contacts"

    contact_id: Mapped[str] = mapped_column(String, primary_key=True)
    kind: Mapped[str | None] = mapped_column(String(16))  # person, company
    name: Mapped[str | None] = mapped_column(String)
    company_id: Mapped[str | None] = mapped_column(String)
    company_name: Mapped[str | None] = mapped_column(String)
    responsible_employee_id: Mapped[str | None] = mapped_column(String)
    merged_into: Mapped[str | None] = mapped_column(String)
    deleted: Mapped[bool] = mapped_column(Boolean, default=False)
    version: Mapped[int] = mapped_column(BigInteger)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)


class Number(CallsBase):
    """The numbers registry: one list of internal extensions (edited here) and contacts' numbers
    (copied from crm's contact events, edited only in crm)."""

    __tablename__ = "numbers"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    kind: Mapped[str] = mapped_column(String(16))  # internal, contact
    number: Mapped[str] = mapped_column(String)  # as entered: "101", "+7 (499) 369-04-39"
    e164: Mapped[str | None] = mapped_column(String)
    digits: Mapped[str] = mapped_column(String)  # digits of the number, for partial search
    label: Mapped[str | None] = mapped_column(String)  # "Reception", "mobile"...
    employee_id: Mapped[str | None] = mapped_column(String)  # internal: the responsible employee
    contact_id: Mapped[str | None] = mapped_column(String)  # contact: whose number it is
    phone_kind: Mapped[str | None] = mapped_column(String(16))  # contact: mobile, work, home, fax
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        # An extension is registered once; a contact lists a number once (two contacts may share one).
        Index(
            "uq_numbers_internal_number",
            "number",
            unique=True,
            postgresql_where=text("kind = 'internal'"),
            sqlite_where=text("kind = 'internal'"),
        ),
        Index(
            "uq_numbers_contact_digits",
            "contact_id",
            "digits",
            unique=True,
            postgresql_where=text("kind = 'contact'"),
            sqlite_where=text("kind = 'contact'"),
        ),
        Index(None, "kind", "number", "id"),
        Index(None, "e164"),
        Index(None, "digits"),
        Index(None, "employee_id"),
        Index(None, "contact_id"),
    )


class CallEventRow(CallsBase):
    """Every call event stored once (by event_id): the idempotency key and the input of the fold."""

    __tablename__ = "call_events"

    event_id: Mapped[str] = mapped_column(String, primary_key=True)
    call_id: Mapped[str] = mapped_column(String, index=True)
    sequence: Mapped[int] = mapped_column(BigInteger)
    kind: Mapped[str] = mapped_column(String(16))  # offered, ringing, answered, ... ended
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    payload: Mapped[bytes] = mapped_column(LargeBinary)  # the serialized telecrm.events.v1.CallEvent
    received_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Recording(CallsBase):
    """A recording of a call, from RecordingReady (the index only; the file lives at ``location``)."""

    __tablename__ = "call_recordings"

    recording_id: Mapped[str] = mapped_column(String, primary_key=True)
    call_id: Mapped[str] = mapped_column(String, index=True)
    event_id: Mapped[str] = mapped_column(String)
    location: Mapped[str] = mapped_column(String)
    content_type: Mapped[str | None] = mapped_column(String)
    size_bytes: Mapped[int | None] = mapped_column(BigInteger)
    duration_ms: Mapped[int | None] = mapped_column(BigInteger)
    started_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    occurred_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class MissedCall(CallsBase):
    """A missed-call item: the missed inbound calls from one number waiting for the same answer.

    Recomputed by :mod:`telecrm_calls.missed` from the calls of its number, in the ingest transaction.
    """

    __tablename__ = "missed_calls"

    id: Mapped[str] = mapped_column(String(32), primary_key=True)
    number_key: Mapped[str] = mapped_column(String)  # the E.164 number, else the raw one
    number: Mapped[str | None] = mapped_column(String)
    e164: Mapped[str | None] = mapped_column(String)
    caller_name: Mapped[str | None] = mapped_column(String)
    contact_id: Mapped[str | None] = mapped_column(String)  # set by a later crm read model
    state: Mapped[str] = mapped_column(String(16))  # open, resolved
    missed_count: Mapped[int] = mapped_column(Integer)
    first_missed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    last_missed_at: Mapped[datetime] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolving_call_id: Mapped[str | None] = mapped_column(String)
    resolving_direction: Mapped[str | None] = mapped_column(String(16))  # outbound (callback), inbound
    resolving_extension: Mapped[str | None] = mapped_column(String)
    resolving_employee_id: Mapped[str | None] = mapped_column(String)
    callback_ms: Mapped[int | None] = mapped_column(BigInteger)  # resolved_at - first_missed_at
    version: Mapped[int] = mapped_column(Integer)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow, onupdate=utcnow)

    __table_args__ = (
        Index(None, "number_key", "state"),  # the open item of a number
        Index(None, "state", "last_missed_at", "id"),  # the lists, newest first
        Index(None, "last_missed_at", "id"),
        Index(None, "resolving_call_id"),
        # The callback numbers of the reports: per contact, and the whole company, over a period.
        Index(None, "contact_id", "first_missed_at"),
        Index(None, "first_missed_at"),
    )


class MissedCallMember(CallsBase):
    """A missed call of an item, with what it rang (a call is in one item at most)."""

    __tablename__ = "missed_call_calls"

    call_id: Mapped[str] = mapped_column(String, primary_key=True)
    item_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("missed_calls.id", ondelete="CASCADE"), index=True
    )
    started_at: Mapped[datetime] = mapped_column(UTCDateTime)
    extensions: Mapped[list[str]] = mapped_column(JSON)
    employee_ids: Mapped[list[str]] = mapped_column(JSON)
    team_ids: Mapped[list[str]] = mapped_column(JSON, default=list, server_default=text("'[]'"))


class MissedCallTarget(CallsBase):
    """Who an item is for: one row per extension, employee (and, once crm feeds them, team)."""

    __tablename__ = "missed_call_targets"

    item_id: Mapped[str] = mapped_column(
        String(32), ForeignKey("missed_calls.id", ondelete="CASCADE"), primary_key=True
    )
    kind: Mapped[str] = mapped_column(String(16), primary_key=True)  # extension, employee, team
    value: Mapped[str] = mapped_column(String, primary_key=True)

    __table_args__ = (Index(None, "kind", "value", "item_id"),)


class OutboxMessage(CallsBase):
    """An event to publish, written in the transaction that made it (see :mod:`telecrm_calls.outbox`)."""

    __tablename__ = "outbox"

    seq: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    subject: Mapped[str] = mapped_column(String)
    msg_id: Mapped[str] = mapped_column(String)
    message_type: Mapped[str] = mapped_column(String)  # full protobuf name of the payload
    payload: Mapped[bytes] = mapped_column(LargeBinary)
    headers: Mapped[dict[str, str]] = mapped_column(JSON)  # trace context of the writer
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
