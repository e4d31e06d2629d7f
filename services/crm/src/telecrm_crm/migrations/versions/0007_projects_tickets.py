"""Projects and service tickets

Revision ID: 0007
Revises: 0006
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0007"
down_revision: str | None = "0006"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "projects",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("start_date", sa.Date(), nullable=True),
        sa.Column("end_date", sa.Date(), nullable=True),
        sa.Column("manager_id", sa.String(length=64), nullable=True),
        sa.Column("controller_id", sa.String(length=64), nullable=True),
        sa.Column("customer_id", sa.String(length=64), nullable=True),
        sa.Column("default_event_type", sa.String(length=64), nullable=True),
        sa.Column("team_id", sa.String(length=64), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        _when("closed_at", nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_projects")),
    )
    op.create_index("ix_projects_created_at_id", "projects", ["created_at", "id"])
    op.create_index("ix_projects_manager_id", "projects", ["manager_id"])
    op.create_index("ix_projects_controller_id", "projects", ["controller_id"])
    op.create_index("ix_projects_customer_id", "projects", ["customer_id"])
    op.create_index("ix_projects_team_id", "projects", ["team_id"])
    op.create_index("ix_projects_status", "projects", ["status"])

    op.create_table(
        "project_members",
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("employee_id", sa.String(length=64), nullable=False),
        _when("added_at"),
        sa.Column("added_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_members_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("project_id", "employee_id", name=op.f("pk_project_members")),
    )
    op.create_index("ix_project_members_employee_id", "project_members", ["employee_id"])

    op.create_table(
        "project_comments",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("project_id", sa.String(length=36), nullable=False),
        sa.Column("author_subject", sa.String(length=100), nullable=False),
        sa.Column("author_employee_id", sa.String(length=64), nullable=True),
        sa.Column("author_name", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        _when("created_at"),
        sa.ForeignKeyConstraint(
            ["project_id"],
            ["projects.id"],
            name=op.f("fk_project_comments_project_id_projects"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_project_comments")),
    )
    op.create_index(
        "ix_project_comments_project_id_created_at", "project_comments", ["project_id", "created_at"]
    )

    op.create_table(
        "ticket_series",
        sa.Column("code", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("last_number", sa.BigInteger(), nullable=False),
        sa.Column("is_default", sa.Boolean(), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_ticket_series")),
    )
    op.create_table(
        "ticket_types",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_ticket_types")),
    )
    op.create_table(
        "tickets",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("series", sa.String(length=16), nullable=False),
        sa.Column("number", sa.BigInteger(), nullable=False),
        sa.Column("ticket_date", sa.Date(), nullable=False),
        sa.Column("client_id", sa.String(length=64), nullable=False),
        sa.Column("contact_person_id", sa.String(length=64), nullable=True),
        sa.Column("type_code", sa.String(length=32), nullable=True),
        sa.Column("product", sa.String(length=300), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("priority", sa.String(length=8), nullable=False),
        sa.Column("taken_by_id", sa.String(length=64), nullable=True),
        sa.Column("checker_id", sa.String(length=64), nullable=True),
        sa.Column("team_id", sa.String(length=64), nullable=True),
        _when("scheduled_start", nullable=True),
        _when("scheduled_end", nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        _when("status_changed_at"),
        sa.Column("notify_customer", sa.Boolean(), nullable=False),
        sa.Column("customer_email", sa.String(length=320), nullable=True),
        _when("allocation_email_requested_at", nullable=True),
        _when("finalization_email_requested_at", nullable=True),
        sa.Column("request_key", sa.String(length=64), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.ForeignKeyConstraint(
            ["series"], ["ticket_series.code"], name=op.f("fk_tickets_series_ticket_series")
        ),
        sa.ForeignKeyConstraint(
            ["type_code"], ["ticket_types.code"], name=op.f("fk_tickets_type_code_ticket_types")
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tickets")),
        sa.UniqueConstraint("series", "number", name=op.f("uq_tickets_series_number")),
        sa.UniqueConstraint("request_key", name=op.f("uq_tickets_request_key")),
    )
    op.create_index("ix_tickets_created_at_id", "tickets", ["created_at", "id"])
    op.create_index("ix_tickets_client_id_created_at", "tickets", ["client_id", "created_at"])
    op.create_index("ix_tickets_contact_person_id", "tickets", ["contact_person_id"])
    op.create_index("ix_tickets_status", "tickets", ["status"])
    op.create_index("ix_tickets_ticket_date", "tickets", ["ticket_date"])
    op.create_index("ix_tickets_taken_by_id", "tickets", ["taken_by_id"])
    op.create_index("ix_tickets_checker_id", "tickets", ["checker_id"])
    op.create_index("ix_tickets_team_id_scheduled_start", "tickets", ["team_id", "scheduled_start"])
    op.create_index("ix_tickets_scheduled_start", "tickets", ["scheduled_start"])
    op.create_index("ix_tickets_type_code", "tickets", ["type_code"])

    op.create_table(
        "ticket_status_changes",
        sa.Column("id", sa.BigInteger().with_variant(sa.Integer(), "sqlite"), nullable=False),
        sa.Column("ticket_id", sa.String(length=36), nullable=False),
        sa.Column("from_status", sa.String(length=16), nullable=True),
        sa.Column("to_status", sa.String(length=16), nullable=False),
        _when("at"),
        sa.Column("actor_subject", sa.String(length=100), nullable=False),
        sa.Column("actor_employee_id", sa.String(length=64), nullable=True),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_status_changes_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_status_changes")),
    )
    op.create_index("ix_ticket_status_changes_ticket_id_at", "ticket_status_changes", ["ticket_id", "at"])

    op.create_table(
        "ticket_notes",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("ticket_id", sa.String(length=36), nullable=False),
        sa.Column("author_subject", sa.String(length=100), nullable=False),
        sa.Column("author_employee_id", sa.String(length=64), nullable=True),
        sa.Column("author_name", sa.String(length=200), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("attachment_id", sa.String(length=36), nullable=True),
        _when("created_at"),
        sa.ForeignKeyConstraint(
            ["ticket_id"],
            ["tickets.id"],
            name=op.f("fk_ticket_notes_ticket_id_tickets"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_ticket_notes")),
    )
    op.create_index("ix_ticket_notes_ticket_id_created_at", "ticket_notes", ["ticket_id", "created_at"])


def downgrade() -> None:
    op.drop_table("ticket_notes")
    op.drop_table("ticket_status_changes")
    op.drop_table("tickets")
    op.drop_table("ticket_types")
    op.drop_table("ticket_series")
    op.drop_table("project_comments")
    op.drop_table("project_members")
    op.drop_table("projects")
