"""Tasks (statuses, executors, dependencies, history, comments, reminders, templates)

Revision ID: 0006
Revises: 0005
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0006"
down_revision: str | None = "0005"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _when(name: str, nullable: bool = False) -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.DateTime(timezone=True), nullable=nullable)


def _task_fk(name: str = "task_id") -> sa.Column:  # type: ignore[type-arg]
    return sa.Column(name, sa.String(length=36), nullable=False)


def upgrade() -> None:
    op.create_table(
        "task_statuses",
        sa.Column("code", sa.String(length=32), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("status_group", sa.String(length=16), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.PrimaryKeyConstraint("code", name=op.f("pk_task_statuses")),
    )
    op.create_table(
        "task_templates",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=200), nullable=False),
        sa.Column("fields", sa.JSON(), nullable=False),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        _when("created_at"),
        _when("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_templates")),
    )
    op.create_table(
        "tasks",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("name", sa.String(length=500), nullable=False),
        sa.Column("description", sa.Text(), nullable=False),
        sa.Column("status", sa.String(length=32), nullable=False),
        sa.Column("status_group", sa.String(length=16), nullable=False),
        sa.Column("status_before_overdue", sa.String(length=32), nullable=True),
        _when("overdue_marked_at", nullable=True),
        sa.Column("priority", sa.String(length=8), nullable=False),
        _when("start_at", nullable=True),
        _when("end_at", nullable=True),
        sa.Column("author_id", sa.String(length=100), nullable=True),
        sa.Column("author_subject", sa.String(length=100), nullable=False),
        sa.Column("controller_id", sa.String(length=100), nullable=True),
        sa.Column("contact_id", sa.String(length=100), nullable=True),
        sa.Column("phone", sa.String(length=64), nullable=True),
        sa.Column("project_id", sa.String(length=100), nullable=True),
        sa.Column("call_id", sa.String(length=100), nullable=True),
        sa.Column("event_id", sa.String(length=100), nullable=True),
        sa.Column("owner_employee_id", sa.String(length=100), nullable=True),
        sa.Column("owner_team_id", sa.String(length=100), nullable=True),
        sa.Column("template_id", sa.String(length=36), nullable=True),
        sa.Column("recurrence", sa.JSON(), nullable=True),
        sa.Column("series_id", sa.String(length=36), nullable=True),
        sa.Column("series_index", sa.Integer(), nullable=False),
        sa.Column("next_occurrence_id", sa.String(length=36), nullable=True),
        sa.Column("request_id", sa.String(length=200), nullable=True),
        _when("done_at", nullable=True),
        _when("accepted_at", nullable=True),
        _when("created_at"),
        _when("updated_at"),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.ForeignKeyConstraint(
            ["template_id"],
            ["task_templates.id"],
            name=op.f("fk_tasks_template_id_task_templates"),
            ondelete="SET NULL",
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_tasks")),
        sa.UniqueConstraint("request_id", name=op.f("uq_tasks_request_id")),
    )
    for name, columns in (
        ("ix_tasks_status_group_end_at", ["status_group", "end_at"]),
        ("ix_tasks_contact_id_created_at", ["contact_id", "created_at"]),
        ("ix_tasks_created_at_id", ["created_at", "id"]),
        ("ix_tasks_owner_employee_id", ["owner_employee_id"]),
        ("ix_tasks_owner_team_id", ["owner_team_id"]),
        ("ix_tasks_author_id", ["author_id"]),
        ("ix_tasks_controller_id", ["controller_id"]),
        ("ix_tasks_project_id", ["project_id"]),
        ("ix_tasks_call_id", ["call_id"]),
        ("ix_tasks_event_id", ["event_id"]),
        ("ix_tasks_series_id", ["series_id"]),
    ):
        op.create_index(name, "tasks", columns)
    op.create_table(
        "task_executors",
        _task_fk(),
        sa.Column("employee_id", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("planned_minutes", sa.Integer(), nullable=True),
        sa.Column("time_spent_minutes", sa.Integer(), nullable=False),
        _when("updated_at"),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_executors_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("task_id", "employee_id", name=op.f("pk_task_executors")),
    )
    op.create_index("ix_task_executors_employee_id", "task_executors", ["employee_id"])
    op.create_table(
        "task_dependencies",
        _task_fk(),
        _task_fk("depends_on_id"),
        _when("created_at"),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_dependencies_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.ForeignKeyConstraint(
            ["depends_on_id"],
            ["tasks.id"],
            name=op.f("fk_task_dependencies_depends_on_id_tasks"),
            ondelete="CASCADE",
        ),
        sa.PrimaryKeyConstraint("task_id", "depends_on_id", name=op.f("pk_task_dependencies")),
    )
    op.create_index("ix_task_dependencies_depends_on_id", "task_dependencies", ["depends_on_id"])
    op.create_table(
        "task_comments",
        sa.Column("id", sa.String(length=36), nullable=False),
        _task_fk(),
        sa.Column("author_subject", sa.String(length=100), nullable=False),
        sa.Column("author_employee_id", sa.String(length=100), nullable=True),
        sa.Column("author_name", sa.String(length=200), nullable=False),
        sa.Column("body", sa.Text(), nullable=False),
        _when("created_at"),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_comments_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_comments")),
    )
    op.create_index("ix_task_comments_task_id_created_at", "task_comments", ["task_id", "created_at"])
    op.create_table(
        "task_reminders",
        sa.Column("id", sa.String(length=36), nullable=False),
        _task_fk(),
        sa.Column("employee_id", sa.String(length=100), nullable=False),
        _when("remind_at"),
        sa.Column("offset_minutes", sa.Integer(), nullable=True),
        sa.Column("email", sa.Boolean(), nullable=False),
        _when("emailed_at", nullable=True),
        _when("dismissed_at", nullable=True),
        _when("created_at"),
        sa.Column("created_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_reminders_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_task_reminders")),
    )
    op.create_index("ix_task_reminders_employee_id_remind_at", "task_reminders", ["employee_id", "remind_at"])
    op.create_index("ix_task_reminders_remind_at", "task_reminders", ["remind_at"])
    op.create_index("ix_task_reminders_task_id", "task_reminders", ["task_id"])
    op.create_table(
        "task_calls",
        _task_fk(),
        sa.Column("call_id", sa.String(length=100), nullable=False),
        sa.Column("source", sa.String(length=32), nullable=False),
        sa.Column("direction", sa.String(length=16), nullable=True),
        sa.Column("number", sa.String(length=64), nullable=True),
        _when("started_at", nullable=True),
        sa.Column("talk_seconds", sa.Integer(), nullable=True),
        sa.Column("disposition", sa.String(length=16), nullable=True),
        _when("linked_at"),
        sa.Column("linked_by", sa.String(length=100), nullable=False),
        sa.ForeignKeyConstraint(
            ["task_id"], ["tasks.id"], name=op.f("fk_task_calls_task_id_tasks"), ondelete="CASCADE"
        ),
        sa.PrimaryKeyConstraint("task_id", "call_id", name=op.f("pk_task_calls")),
    )
    op.create_index("ix_task_calls_call_id", "task_calls", ["call_id"])
    op.create_table(
        "task_call_automation",
        sa.Column("call_id", sa.String(length=100), nullable=False),
        sa.Column("outcome", sa.String(length=32), nullable=False),
        sa.Column("task_id", sa.String(length=36), nullable=True),
        _when("applied_at"),
        sa.PrimaryKeyConstraint("call_id", name=op.f("pk_task_call_automation")),
    )


def downgrade() -> None:
    op.drop_table("task_call_automation")
    op.drop_table("task_calls")
    op.drop_table("task_reminders")
    op.drop_table("task_comments")
    op.drop_table("task_dependencies")
    op.drop_table("task_executors")
    op.drop_table("tasks")
    op.drop_table("task_templates")
    op.drop_table("task_statuses")
