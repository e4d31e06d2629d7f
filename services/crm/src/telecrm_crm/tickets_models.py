"""Tables of crm's service tickets (the call centre's "sesizari") and the vocabulary of their workflow.

A ticket is numbered within its series (the booklet it is written in): ``ticket_series.last_number`` is
the series' counter, raised by one ``UPDATE ... RETURNING`` in the transaction that inserts the ticket,
so concurrent creations in one series queue on that row and get consecutive numbers, and a creation that
rolls back gives its number back. Each status a ticket enters is a row of ``ticket_status_changes``
(the evolution report: who moved it, when, how long it stayed), kept whatever the operation log's
level. Ids of employees, teams and contacts are plain indexed strings: those tables belong to other
parts of the service.
"""

from __future__ import annotations

from datetime import date, datetime

from sqlalchemy import BigInteger, Boolean, Date, ForeignKey, Index, Integer, String, Text, UniqueConstraint
from sqlalchemy.orm import Mapped, mapped_column

from telecrm_common.db import UTCDateTime, utcnow
from telecrm_crm.models import CRMBase

# --- the workflow ---------------------------------------------------------------------------------

TAKEN, ALLOCATED, CONFIRMED, FINALIZED, CANCELLED = (
    "taken",
    "allocated",
    "confirmed",
    "finalized",
    "cancelled",
)
STATUSES: tuple[str, ...] = (TAKEN, ALLOCATED, CONFIRMED, FINALIZED, CANCELLED)
# Status -> the statuses a ticket may move to. Taken: written down from the customer's call; allocated:
# dates and a team given; confirmed: the team confirmed it can do the work; finalized: done.
TRANSITIONS: dict[str, tuple[str, ...]] = {
    TAKEN: (ALLOCATED, CANCELLED),
    ALLOCATED: (CONFIRMED, CANCELLED),
    CONFIRMED: (FINALIZED, CANCELLED),
    FINALIZED: (),
    CANCELLED: (),
}
OPEN_STATUSES = frozenset({TAKEN, ALLOCATED, CONFIRMED})
# A ticket in these statuses needs its scheduled start and end and its team.
SCHEDULED_STATUSES = frozenset({ALLOCATED, CONFIRMED, FINALIZED})
SCHEDULE_FIELDS: tuple[str, ...] = ("scheduled_start", "scheduled_end", "team_id")
# Statuses whose entry e-mails the customer when the ticket asks for it.
EMAIL_STATUSES = frozenset({ALLOCATED, FINALIZED})
PRIORITIES: tuple[str, ...] = ("low", "medium", "high")


# --- tables ---------------------------------------------------------------------------------------


class TicketSeries(CRMBase):
    """A series (booklet) of tickets with its own numbering."""

    __tablename__ = "ticket_series"

    code: Mapped[str] = mapped_column(String(16), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    last_number: Mapped[int] = mapped_column(BigInteger, default=0)
    is_default: Mapped[bool] = mapped_column(Boolean, default=False)
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TicketType(CRMBase):
    """A kind of ticket (repair, installation, complaint...), managed by admins."""

    __tablename__ = "ticket_types"

    code: Mapped[str] = mapped_column(String(32), primary_key=True)
    name: Mapped[str] = mapped_column(String(100))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class Ticket(CRMBase):
    __tablename__ = "tickets"
    __table_args__ = (
        UniqueConstraint("series", "number"),
        UniqueConstraint("request_key"),
        Index("ix_tickets_created_at_id", "created_at", "id"),
        Index("ix_tickets_client_id_created_at", "client_id", "created_at"),
        Index("ix_tickets_contact_person_id", "contact_person_id"),
        Index("ix_tickets_status", "status"),
        Index("ix_tickets_ticket_date", "ticket_date"),
        Index("ix_tickets_taken_by_id", "taken_by_id"),
        Index("ix_tickets_checker_id", "checker_id"),
        Index("ix_tickets_team_id_scheduled_start", "team_id", "scheduled_start"),
        Index("ix_tickets_scheduled_start", "scheduled_start"),
        Index("ix_tickets_type_code", "type_code"),
    )

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    series: Mapped[str] = mapped_column(String(16), ForeignKey("ticket_series.code"))
    number: Mapped[int] = mapped_column(BigInteger)
    ticket_date: Mapped[date] = mapped_column(Date)
    client_id: Mapped[str] = mapped_column(String(64))
    contact_person_id: Mapped[str | None] = mapped_column(String(64))
    type_code: Mapped[str | None] = mapped_column(String(32), ForeignKey("ticket_types.code"))
    product: Mapped[str] = mapped_column(String(300), default="")
    description: Mapped[str] = mapped_column(Text, default="")
    priority: Mapped[str] = mapped_column(String(8), default="medium")
    taken_by_id: Mapped[str | None] = mapped_column(String(64))
    checker_id: Mapped[str | None] = mapped_column(String(64))
    team_id: Mapped[str | None] = mapped_column(String(64))
    scheduled_start: Mapped[datetime | None] = mapped_column(UTCDateTime)
    scheduled_end: Mapped[datetime | None] = mapped_column(UTCDateTime)
    status: Mapped[str] = mapped_column(String(16), default=TAKEN)
    status_changed_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    notify_customer: Mapped[bool] = mapped_column(Boolean, default=False)
    customer_email: Mapped[str | None] = mapped_column(String(320))
    allocation_email_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    finalization_email_requested_at: Mapped[datetime | None] = mapped_column(UTCDateTime)
    # SHA-256 of the caller and their idempotency key (gRPC request_id, REST Idempotency-Key): a retry
    # by the same caller finds this ticket.
    request_key: Mapped[str | None] = mapped_column(String(64))
    version: Mapped[int] = mapped_column(Integer, default=1)
    created_by: Mapped[str] = mapped_column(String(100))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    updated_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)


class TicketStatusChange(CRMBase):
    """A status the ticket entered, when and by whom (the first row is its creation, as taken)."""

    __tablename__ = "ticket_status_changes"
    __table_args__ = (Index("ix_ticket_status_changes_ticket_id_at", "ticket_id", "at"),)

    id: Mapped[int] = mapped_column(
        BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True
    )
    ticket_id: Mapped[str] = mapped_column(String(36), ForeignKey("tickets.id", ondelete="CASCADE"))
    from_status: Mapped[str | None] = mapped_column(String(16))
    to_status: Mapped[str] = mapped_column(String(16))
    at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
    actor_subject: Mapped[str] = mapped_column(String(100))
    actor_employee_id: Mapped[str | None] = mapped_column(String(64))


class TicketNote(CRMBase):
    """A line of the ticket's notes timeline: who, when, what, and a file when one was attached."""

    __tablename__ = "ticket_notes"
    __table_args__ = (Index("ix_ticket_notes_ticket_id_created_at", "ticket_id", "created_at"),)

    id: Mapped[str] = mapped_column(String(36), primary_key=True)
    ticket_id: Mapped[str] = mapped_column(String(36), ForeignKey("tickets.id", ondelete="CASCADE"))
    author_subject: Mapped[str] = mapped_column(String(100))
    author_employee_id: Mapped[str | None] = mapped_column(String(64))
    author_name: Mapped[str] = mapped_column(String(200), default="")
    text: Mapped[str] = mapped_column(Text, default="")
    attachment_id: Mapped[str | None] = mapped_column(String(36))
    created_at: Mapped[datetime] = mapped_column(UTCDateTime, default=utcnow)
