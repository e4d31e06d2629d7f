"""Call log: calls, call_events, call_recordings

Revision ID: 0001
Revises:
Create Date: 2026-11-24 05:30:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0001"
down_revision: str | None = None
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    # models.UTCDateTime stores through this type.
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "calls",
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=True),
        sa.Column("caller_number", sa.String(), nullable=True),
        sa.Column("caller_e164", sa.String(), nullable=True),
        sa.Column("caller_name", sa.String(), nullable=True),
        sa.Column("callee_number", sa.String(), nullable=True),
        sa.Column("callee_e164", sa.String(), nullable=True),
        sa.Column("callee_name", sa.String(), nullable=True),
        sa.Column("line", sa.String(), nullable=True),
        sa.Column("extension", sa.String(), nullable=True),
        sa.Column("employee_id", sa.String(), nullable=True),
        sa.Column("sip_call_id", sa.String(), nullable=True),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("answered_at", _utc(), nullable=True),
        sa.Column("ended_at", _utc(), nullable=True),
        sa.Column("ring_ms", sa.BigInteger(), nullable=True),
        sa.Column("talk_ms", sa.BigInteger(), nullable=True),
        sa.Column("disposition", sa.String(length=16), nullable=True),
        sa.Column("sip_status", sa.Integer(), nullable=True),
        sa.Column("sip_reason", sa.String(), nullable=True),
        sa.Column("q850_cause", sa.Integer(), nullable=True),
        sa.Column("hangup_by", sa.String(length=16), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("incomplete", sa.Boolean(), nullable=False),
        sa.Column("context", sa.JSON(), nullable=False),
        sa.Column("last_sequence", sa.BigInteger(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_calls")),
    )
    op.create_index(op.f("ix_calls_started_at_call_id"), "calls", ["started_at", "call_id"])
    op.create_index(op.f("ix_calls_extension_started_at"), "calls", ["extension", "started_at"])
    op.create_index(op.f("ix_calls_disposition_started_at"), "calls", ["disposition", "started_at"])
    op.create_index(op.f("ix_calls_caller_e164"), "calls", ["caller_e164"])
    op.create_index(op.f("ix_calls_callee_e164"), "calls", ["callee_e164"])
    op.create_index(op.f("ix_calls_caller_number"), "calls", ["caller_number"])
    op.create_index(op.f("ix_calls_callee_number"), "calls", ["callee_number"])

    op.create_table(
        "call_events",
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("sequence", sa.BigInteger(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("occurred_at", _utc(), nullable=True),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("received_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("event_id", name=op.f("pk_call_events")),
    )
    op.create_index(op.f("ix_call_events_call_id"), "call_events", ["call_id"])

    op.create_table(
        "call_recordings",
        sa.Column("recording_id", sa.String(), nullable=False),
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("event_id", sa.String(), nullable=False),
        sa.Column("location", sa.String(), nullable=False),
        sa.Column("content_type", sa.String(), nullable=True),
        sa.Column("size_bytes", sa.BigInteger(), nullable=True),
        sa.Column("duration_ms", sa.BigInteger(), nullable=True),
        sa.Column("started_at", _utc(), nullable=True),
        sa.Column("occurred_at", _utc(), nullable=True),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("recording_id", name=op.f("pk_call_recordings")),
    )
    op.create_index(op.f("ix_call_recordings_call_id"), "call_recordings", ["call_id"])


def downgrade() -> None:
    op.drop_table("call_recordings")
    op.drop_table("call_events")
    op.drop_table("calls")
