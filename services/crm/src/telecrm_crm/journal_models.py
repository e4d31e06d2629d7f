"""Tables of crm's events journal, and its vocabulary: the system event types and their stable codes.

The journal is the register of everything that happened with a customer (ISpro's "Події"): calls,
missed calls, letters, e-mails, SMS, faxes, visits, queue tickets... Each event has a type; the system
types below are seeded by the migration and cannot be deleted, an admin may add custom ones.

Calls and missed calls reach the journal from the call log's bus events, so two small tables keep what
the call log said about its missed-call items (which calls each holds, which call resolved it): the
events of those calls are linked whatever order the call and item events arrive in.

Ids of other parts' documents (employees, teams, contacts, projects, calls) are plain indexed strings:
those tables belong to other parts of the service, or to other services.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import JSON, Boolean, ForeignKey, Index, Integer, String, Text
from sqlalchemy.orm import Mapped, mapped_column

from telecrm_common.db import UTCDateTime, utcnow
from telecrm_crm.models import CRMBase

INBOUND, OUTBOUND, INTERNAL = "inbound", "outbound", "internal"
DIRECTIONS: tuple[str, ...] = (INBOUND, OUTBOUND, INTERNAL)

# Where an event came from.
SOURCE_MANUAL = "manual"  # typed in by a user (REST)
SOURCE_CALLS = "calls"  # made from the call log's events
SOURCE_API = "api"  # created by another service over gRPC
SOURCES: tuple[str, ...] = (SOURCE_MANUAL, SOURCE_CALLS, SOURCE_API)

# --- the system event types -----------------------------------------------------------------------

INCOMING_CALL = "incoming_call"
OUTGOING_CALL = "outgoing_call"
MISSED_INCOMING_CALL = "missed_incoming_call"
MISSED_OUTGOING_CALL = "missed_outgoing_call"
MISSED_CALL_ANSWER = "missed_call_answer"  # the customer called again and was answered
CALLBACK = "callback"  # we called back a missed caller
CALL_FORWARD = "call_forward"


@dataclass(frozen=True)
class SystemType:
    code: str
    name: str
    channel: str  # call, letter, email, sms, fax, survey, visit, queue, phone
    direction: str | None  # the direction an event of this type has unless told otherwise


SYSTEM_TYPES: tuple[SystemType, ...] = (
    SystemType(INCOMING_CALL, "Incoming call", "call", INBOUND),
    SystemType(OUTGOING_CALL, "Outgoing call", "call", OUTBOUND),
    SystemType(MISSED_INCOMING_CALL, "Missed incoming call", "call", INBOUND),
    SystemType(MISSED_OUTGOING_CALL, "Missed outgoing call", "call", OUTBOUND),
    SystemType(MISSED_CALL_ANSWER, "Answer to a missed call", "call", INBOUND),
    SystemType(CALLBACK, "Callback", "call", OUTBOUND),
    SystemType(CALL_FORWARD, "Call forward", "call", None),
    SystemType("letter_in", "Incoming letter", "letter", INBOUND),
    SystemType("letter_out", "Outgoing letter", "letter", OUTBOUND),
    SystemType("email_in", "Incoming e-mail", "email", INBOUND),
    SystemType("email_out", "Outgoing e-mail", "email", OUTBOUND),
    SystemType("sms", "SMS", "sms", None),
    SystemType("fax", "Fax", "fax", None),
    SystemType("survey", "Survey", "survey", None),
    SystemType("visit", "Visit", "visit", None),
    SystemType("queue", "Queue", "queue", None),
    SystemType("electronic_queue", "Electronic queue", "queue", None),
    SystemType("phone_on", "Phone switched on", "phone", None),
    SystemType("phone_off", "Phone switched off", "phone", None),
)
SYSTEM_TYPE_CODES = frozenset(t.code for t in SYSTEM_TYPES)
CHANNELS: tuple[str, ...] = (
    "call",
    "letter",
    "email",
    "sms",
    "fax",
    "survey",
    "visit",
    "queue",
    "phone",
    "other",
)
# "Accepted calls": inbound calls someone answered.
ACCEPTED_CALL_TYPES: tuple[str, ...] = (INCOMING_CALL, MISSED_CALL_ANSWER)


def system_type_rows(now: datetime) -> list[dict[str, Any]]:
    """The rows the migration seeds (and tests re-seed after emptying the tables)."""
    return [
        {
            "code": item.code,
            "name": item.name,
            "system": True,
            "channel": item.channel,
            "direction": item.direction,
            "active": True,
            "position": position,
            "version": 1,
            "created_at": now,
            "updated_at": now,
        }
        for position, item in enumerate(SYSTEM_TYPES, start=1)
    ]


# --- tables ---------------------------------------------------------------------------------------


class JournalEventType(CRMBase):
    """A type of event: a system one (seeded, fixed) or one an admin added."""

    __tablename__ = "journal_event_types"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    system: Mapped[bool] = mapped_column(Boolean, default=False)
    channel: Mapped[str] = mapped_column(String(16), default="other")
    direction: Mapped[str | None] = mapped_column(String(8))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    position: Mapped[int] = mapped_column(Integer, default=1000)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JournalEvent(CRMBase):
    """One event of the journal."""

    __tablename__ = "journal_events"
    __table_args__ = (
        Index("ix_journal_events_start_at_id", "start_at", "id"),
        Index("ix_journal_events_end_at", "end_at"),
        Index("ix_journal_events_type_code_start_at", "type_code", "start_at"),
        Index("ix_journal_events_responsible_employee_id", "responsible_employee_id"),
        Index("ix_journal_events_team_id", "team_id"),
        Index("ix_journal_events_contact_id_start_at", "contact_id", "start_at"),
        Index("ix_journal_events_contact_person_id", "contact_person_id"),
        Index("ix_journal_events_project_id_start_at", "project_id", "start_at"),
        Index("ix_journal_events_phone_e164", "phone_e164"),
        Index("ix_journal_events_phone_digits", "phone_digits"),
        Index("ix_journal_events_missed_item_id", "missed_item_id"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    type_code: Mapped[str] = mapped_column(String(32), ForeignKey("journal_event_types.code"))
    start_at: Mapped[datetime] = mapped_column(UTCDateTime)
    end_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    responsible_employee_id: Mapped[str | None] = mapped_column(String(100))
    team_id: Mapped[str | None] = mapped_column(String(100))
    contact_id: Mapped[str | None] = mapped_column(String(100))
    contact_person_id: Mapped[str | None] = mapped_column(String(100))
    project_id: Mapped[str | None] = mapped_column(String(100))
    phone: Mapped[str | None] = mapped_column(String(64))  # as given
    phone_e164: Mapped[str | None] = mapped_column(String(20))  # None when it could not be normalized
    phone_digits: Mapped[str | None] = mapped_column(String(32))  # digits, for partial matches
    email: Mapped[str | None] = mapped_column(String(254))
    direction: Mapped[str | None] = mapped_column(String(8))
    subject: Mapped[str | None] = mapped_column(String(255))
    content: Mapped[str | None] = mapped_column(Text)
    # The call this event records: at most one event per call.
    call_id: Mapped[str | None] = mapped_column(String(100), unique=True)
    disposition: Mapped[str | None] = mapped_column(String(16))
    missed_item_id: Mapped[str | None] = mapped_column(String(100))
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolving_call_id: Mapped[str | None] = mapped_column(String(100))
    answers_missed_item_id: Mapped[str | None] = mapped_column(String(100))
    source: Mapped[str] = mapped_column(String(8), default=SOURCE_MANUAL)
    # The revision of the call record last applied (0: made from a missed-call item before its record).
    source_revision: Mapped[int | None] = mapped_column(Integer)
    # Fields a user changed by hand: the call log's later updates leave them alone.
    locked_fields: Mapped[list[str]] = mapped_column(JSON, default=list)
    request_id: Mapped[str | None] = mapped_column(String(200), unique=True)  # idempotency key of a create
    created_by: Mapped[str | None] = mapped_column(String(100))
    archived: Mapped[bool] = mapped_column(Boolean, default=False)
    archived_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # Deleted events stay as tombstones, so a late call-log event cannot bring them back.
    deleted_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JournalMissedItem(CRMBase):
    """The latest state of one of the call log's missed-call items, as its events told it."""

    __tablename__ = "journal_missed_items"
    __table_args__ = (Index("ix_journal_missed_items_resolving_call_id", "resolving_call_id"),)

    id: Mapped[str] = mapped_column(String(100), primary_key=True)
    version: Mapped[int] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16))  # open, resolved, discarded
    number: Mapped[str | None] = mapped_column(String(64))
    e164: Mapped[str | None] = mapped_column(String(20))
    missed_count: Mapped[int] = mapped_column(Integer, default=0)
    call_ids: Mapped[list[str]] = mapped_column(JSON, default=list)
    first_missed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    last_missed_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolved_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    resolving_call_id: Mapped[str | None] = mapped_column(String(100))
    resolving_direction: Mapped[str | None] = mapped_column(String(8))
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class JournalMissedCall(CRMBase):
    """A missed call and the item that holds it (so a call's event finds its item in one look-up)."""

    __tablename__ = "journal_missed_calls"
    __table_args__ = (Index("ix_journal_missed_calls_item_id", "item_id"),)

    call_id: Mapped[str] = mapped_column(String(100), primary_key=True)
    item_id: Mapped[str] = mapped_column(
        String(100), ForeignKey("journal_missed_items.id", ondelete="CASCADE")
    )
