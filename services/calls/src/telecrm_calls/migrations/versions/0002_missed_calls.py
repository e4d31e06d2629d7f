"""Missed calls and callbacks: missed_calls, missed_call_calls, missed_call_targets, outbox

Revision ID: 0002
Revises: 0001
Create Date: 2026-11-27 10:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0002"
down_revision: str | None = "0001"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    # models.UTCDateTime stores through this type.
    return sa.DateTime(timezone=True)


def upgrade() -> None:
    op.create_table(
        "missed_calls",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("number_key", sa.String(), nullable=False),
        sa.Column("number", sa.String(), nullable=True),
        sa.Column("e164", sa.String(), nullable=True),
        sa.Column("caller_name", sa.String(), nullable=True),
        sa.Column("contact_id", sa.String(), nullable=True),
        sa.Column("state", sa.String(length=16), nullable=False),
        sa.Column("missed_count", sa.Integer(), nullable=False),
        sa.Column("first_missed_at", _utc(), nullable=False),
        sa.Column("last_missed_at", _utc(), nullable=False),
        sa.Column("resolved_at", _utc(), nullable=True),
        sa.Column("resolving_call_id", sa.String(), nullable=True),
        sa.Column("resolving_direction", sa.String(length=16), nullable=True),
        sa.Column("resolving_extension", sa.String(), nullable=True),
        sa.Column("resolving_employee_id", sa.String(), nullable=True),
        sa.Column("callback_ms", sa.BigInteger(), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_missed_calls")),
    )
    op.create_index(op.f("ix_missed_calls_number_key_state"), "missed_calls", ["number_key", "state"])
    op.create_index(
        op.f("ix_missed_calls_state_last_missed_at_id"), "missed_calls", ["state", "last_missed_at", "id"]
    )
    op.create_index(op.f("ix_missed_calls_last_missed_at_id"), "missed_calls", ["last_missed_at", "id"])
    op.create_index(op.f("ix_missed_calls_resolving_call_id"), "missed_calls", ["resolving_call_id"])

    op.create_table(
        "missed_call_calls",
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.Column("extensions", sa.JSON(), nullable=False),
        sa.Column("employee_ids", sa.JSON(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["missed_calls.id"],
            name=op.f("fk_missed_call_calls_item_id_missed_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_missed_call_calls")),
    )
    op.create_index(op.f("ix_missed_call_calls_item_id"), "missed_call_calls", ["item_id"])

    op.create_table(
        "missed_call_targets",
        sa.Column("item_id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("value", sa.String(), nullable=False),
        sa.ForeignKeyConstraint(
            ["item_id"],
            ["missed_calls.id"],
            name=op.f("fk_missed_call_targets_item_id_missed_calls"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("item_id", "kind", "value", name=op.f("pk_missed_call_targets")),
    )
    op.create_index(
        op.f("ix_missed_call_targets_kind_value_item_id"), "missed_call_targets", ["kind", "value", "item_id"]
    )

    op.create_table(
        "outbox",
        sa.Column(
            "seq", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), autoincrement=True, nullable=False
        ),
        sa.Column("subject", sa.String(), nullable=False),
        sa.Column("msg_id", sa.String(), nullable=False),
        sa.Column("message_type", sa.String(), nullable=False),
        sa.Column("payload", sa.LargeBinary(), nullable=False),
        sa.Column("headers", sa.JSON(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("seq", name=op.f("pk_outbox")),
    )


def downgrade() -> None:
    op.drop_table("outbox")
    op.drop_table("missed_call_targets")
    op.drop_table("missed_call_calls")
    op.drop_table("missed_calls")
