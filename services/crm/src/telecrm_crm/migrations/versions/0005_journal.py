"""Events journal (event types, events)

Revision ID: 0005
Revises: 0004
Create Date: 2026-11-24
"""

from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from alembic import op

revision: str = "0005"
down_revision: str | None = "0004"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

# The system types as they were when this migration was written (codes are stable; never renamed).
SYSTEM_TYPES: tuple[tuple[str, str, str, str | None], ...] = (
    ("incoming_call", "Incoming call", "call", "inbound"),
    ("outgoing_call", "Outgoing call", "call", "outbound"),
    ("missed_incoming_call", "Missed incoming call", "call", "inbound"),
    ("missed_outgoing_call", "Missed outgoing call", "call", "outbound"),
    ("missed_call_answer", "Answer to a missed call", "call", "inbound"),
    ("callback", "Callback", "call", "outbound"),
    ("call_forward", "Call forward", "call", None),
    ("letter_in", "Incoming letter", "letter", "inbound"),
    ("letter_out", "Outgoing letter", "letter", "outbound"),
    ("email_in", "Incoming e-mail", "email", "inbound"),
    ("email_out", "Outgoing e-mail", "email", "outbound"),
    ("sms", "SMS", "sms", None),
    ("fax", "Fax", "fax", None),
    ("survey", "Survey", "survey", None),
    ("visit", "Visit", "visit", None),
    ("queue", "Queue", "queue", None),
    ("electronic_queue", "Electronic queue", "queue", None),
    ("phone_on", "Phone switched on", "phone", None),
    ("phone_off", "Phone switched off", "phone", None),
)


def _when(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _id(name: str, length: int = 100, nullable: bool = True) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.String(length=length), nullable=nullable)


def upgrade() -> None:
    types = op.create_table(
        "journal_event_types",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("system", sa.Boolean(), nullable=False),
        sa.Column("channel", sa.String(length=16), nullable=False),
        sa.Column("direction", sa.String(length=8), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_journal_event_types")),
    )
    now = datetime.now(UTC)
    if op.get_bind().dialect.name == "sqlite":
        now = now.replace(tzinfo=None)  # UTCDateTime's form on SQLite: naive UTC
    op.bulk_insert(
        types,
        [
            {
                "code": code,
                "name": name,
                "system": True,
                "channel": channel,
                "direction": direction,
                "active": True,
                "position": position,
                "version": 1,
                "created_at": now,
                "updated_at": now,
            }
            for position, (code, name, channel, direction) in enumerate(SYSTEM_TYPES, start=1)
        ],
    )
    op.create_table(
        "journal_events",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("type_code", sa.String(length=32), nullable=False),
        _when("start_at"),
        _when("end_at", nullable=True),
        _id("responsible_employee_id"),
        _id("team_id"),
        _id("contact_id"),
        _id("contact_person_id"),
        _id("project_id"),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("phone_e164", sa.String(length=20), nullable=True),
        sa.Column("phone_digits", sa.String(length=32), nullable=True),
        sa.Column("email", sa.String(length=254), nullable=True),
        sa.Column("direction", sa.String(length=8), nullable=True),
        sa.Column("subject", sa.String(length=255), nullable=True),
        sa.Column("content", sa.Text(), nullable=True),
        _id("call_id"),
        sa.Column("disposition", sa.String(length=16), nullable=True),
        _id("missed_item_id"),
        _when("resolved_at", nullable=True),
        _id("resolving_call_id"),
        _id("answers_missed_item_id"),
        sa.Column("source", sa.String(length=8), nullable=False),
        sa.Column("source_revision", sa.Integer(), nullable=True),
        sa.Column("locked_fields", sa.JSON(), nullable=False),
        _id("request_id", 200),
        _id("created_by"),
        sa.Column("archived", sa.Boolean(), nullable=False),
        _when("archived_at", nullable=True),
        _when("deleted_at", nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.ForeignKeyConstraint(
            ["type_code"],
            ["journal_event_types.code"],
            name=op.f("fk_journal_events_type_code_journal_event_types"),
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_events")),
        sa.UniqueConstraint("call_id", name=op.f("uq_journal_events_call_id")),
        sa.UniqueConstraint("request_id", name=op.f("uq_journal_events_request_id")),
    )
    for name, columns in (
        ("ix_journal_events_start_at_id", ["start_at", "id"]),
        ("ix_journal_events_end_at", ["end_at"]),
        ("ix_journal_events_type_code_start_at", ["type_code", "start_at"]),
        ("ix_journal_events_responsible_employee_id", ["responsible_employee_id"]),
        ("ix_journal_events_team_id", ["team_id"]),
        ("ix_journal_events_contact_id_start_at", ["contact_id", "start_at"]),
        ("ix_journal_events_contact_person_id", ["contact_person_id"]),
        ("ix_journal_events_project_id_start_at", ["project_id", "start_at"]),
        ("ix_journal_events_phone_e164", ["phone_e164"]),
        ("ix_journal_events_phone_digits", ["phone_digits"]),
        ("ix_journal_events_missed_item_id", ["missed_item_id"]),
    ):
        op.create_index(name, "journal_events", columns)
    op.create_table(
        "journal_missed_items",
        _id("id", nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(length=64), nullable=True),
        sa.Column("e164", sa.String(length=20), nullable=True),
        sa.Column("missed_count", sa.Integer(), nullable=False),
        sa.Column("call_ids", sa.JSON(), nullable=False),
        _when("first_missed_at", nullable=True),
        _when("last_missed_at", nullable=True),
        _when("resolved_at", nullable=True),
        _id("resolving_call_id"),
        sa.Column("resolving_direction", sa.String(length=8), nullable=True),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_journal_missed_items")),
    )
    op.create_index(
        "ix_journal_missed_items_resolving_call_id", "journal_missed_items", ["resolving_call_id"]
    )
    op.create_table(
        "journal_missed_calls",
        _id("call_id", nullable=False),
        _id("item_id", nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["journal_missed_items.id"],
            name=op.f("fk_journal_missed_calls_item_id_journal_missed_items"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_journal_missed_calls")),
    )
    op.create_index("ix_journal_missed_calls_item_id", "journal_missed_calls", ["item_id"])


def downgrade() -> None:
    op.drop_table("journal_missed_calls")
    op.drop_table("journal_missed_items")
    op.drop_table("journal_events")
    op.drop_table("journal_event_types")
