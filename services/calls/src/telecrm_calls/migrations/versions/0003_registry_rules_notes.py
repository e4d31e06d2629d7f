"""Numbers registry, crm read models, call parties, call rules' columns, notes and links

Revision ID: 0003
Revises: 0002
Create Date: 2026-11-24 12:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0003"
down_revision: str | None = "0002"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _utc() -> sa.DateTime:
    # models.UTCDateTime stores through this type.
    return sa.DateTime(timezone=True)


def _call_columns() -> tuple[sa.Column[object], ...]:
    return (
        sa.Column("team_id", sa.String(), nullable=True),
        sa.Column("missed", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("recorded", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("party_digits", sa.String(), nullable=True),
        sa.Column("legs", sa.JSON(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("transfers", sa.JSON(), server_default=sa.text("'[]'"), nullable=False),
        sa.Column("contact_id", sa.String(), nullable=True),
        sa.Column("task_id", sa.String(), nullable=True),
        sa.Column("ticket_id", sa.String(), nullable=True),
        sa.Column("links_edited", sa.Boolean(), server_default=sa.false(), nullable=False),
        sa.Column("reason", sa.String(), nullable=True),
        sa.Column("result", sa.String(), nullable=True),
        sa.Column("comment", sa.String(), nullable=True),
        sa.Column("notes_version", sa.Integer(), server_default=sa.text("0"), nullable=False),
        sa.Column("notes_updated_at", _utc(), nullable=True),
        sa.Column("notes_updated_by", sa.String(), nullable=True),
        sa.Column("published_revision", sa.Integer(), server_default=sa.text("0"), nullable=False),
    )


def upgrade() -> None:
    postgresql = op.get_bind().dialect.name == "postgresql"
    with op.batch_alter_table("calls") as batch:
        for column in _call_columns():
            batch.add_column(column)
    op.create_index(
        op.f("ix_missed_calls_contact_id_first_missed_at"), "missed_calls", ["contact_id", "first_missed_at"]
    )
    op.create_index(op.f("ix_missed_calls_first_missed_at"), "missed_calls", ["first_missed_at"])
    with op.batch_alter_table("missed_call_calls") as batch:
        batch.add_column(sa.Column("team_ids", sa.JSON(), server_default=sa.text("'[]'"), nullable=False))
    op.create_index(
        op.f("ix_calls_contact_id_started_at_call_id"), "calls", ["contact_id", "started_at", "call_id"]
    )
    op.create_index(op.f("ix_calls_missed_started_at_call_id"), "calls", ["missed", "started_at", "call_id"])
    if postgresql:
        # pg_trgm is a trusted extension (PostgreSQL 13+): the database owner may create it.
        op.execute("CREATE EXTENSION IF NOT EXISTS pg_trgm")
    op.create_index(
        op.f("ix_calls_party_digits"),
        "calls",
        ["party_digits"],
        postgresql_using="gin",
        postgresql_ops={"party_digits": "gin_trgm_ops"},
    )
    # Calls stored before this revision: their digits for the number search, their recordings.
    calls = sa.table(
        "calls",
        *(sa.column(name) for name in ("call_id", "caller_number", "caller_e164", "callee_number")),
        sa.column("callee_e164"),
        sa.column("party_digits"),
        sa.column("recorded", sa.Boolean()),
    )
    parts = [sa.func.coalesce(calls.c[name], "") for name in ("caller_number", "caller_e164")]
    parts += [sa.func.coalesce(calls.c[name], "") for name in ("callee_number", "callee_e164")]
    joined = parts[0] + " " + parts[1] + " " + parts[2] + " " + parts[3]
    op.execute(calls.update().values(party_digits=_only_digits(joined, postgresql)))
    recordings = sa.table("call_recordings", sa.column("call_id"))
    op.execute(
        calls.update().where(calls.c.call_id.in_(sa.select(recordings.c.call_id))).values(recorded=True)
    )

    op.create_table(
        "call_parties",
        sa.Column("call_id", sa.String(), nullable=False),
        sa.Column("extension", sa.String(), nullable=False),
        sa.Column("employee_id", sa.String(), nullable=True),
        sa.Column("team_id", sa.String(), nullable=True),
        sa.Column("role", sa.String(length=16), nullable=False),
        sa.Column("started_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("call_id", "extension", name=op.f("pk_call_parties")),
    )
    for column in ("employee_id", "team_id", "extension"):
        op.create_index(
            op.f(f"ix_call_parties_{column}_started_at_call_id"),
            "call_parties",
            [column, "started_at", "call_id"],
        )
    # Every call stored before this revision involved its extension.
    op.execute(
        "INSERT INTO call_parties (call_id, extension, employee_id, team_id, role, started_at) "
        "SELECT call_id, extension, employee_id, NULL, "
        "CASE WHEN direction = 'outbound' THEN 'placed' "
        "WHEN answered_at IS NOT NULL THEN 'answered' ELSE 'rang' END, started_at "
        "FROM calls WHERE extension IS NOT NULL AND extension <> ''"
    )

    op.create_table(
        "employees",
        sa.Column("employee_id", sa.String(), nullable=False),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("email", sa.String(), nullable=True),
        sa.Column("extension", sa.String(), nullable=True),
        sa.Column("team_id", sa.String(), nullable=True),
        sa.Column("team_name", sa.String(), nullable=True),
        sa.Column("active", sa.Boolean(), nullable=False),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("employee_id", name=op.f("pk_employees")),
    )
    op.create_index(op.f("ix_employees_team_id"), "employees", ["team_id"])

    op.create_table(
        "contacts",
        sa.Column("contact_id", sa.String(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=True),
        sa.Column("name", sa.String(), nullable=True),
        sa.Column("company_id", sa.String(), nullable=True),
        sa.Column("company_name", sa.String(), nullable=True),
        sa.Column("responsible_employee_id", sa.String(), nullable=True),
        sa.Column("merged_into", sa.String(), nullable=True),
        sa.Column("deleted", sa.Boolean(), nullable=False),
        sa.Column("version", sa.BigInteger(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("contact_id", name=op.f("pk_contacts")),
    )

    op.create_table(
        "numbers",
        sa.Column("id", sa.String(length=32), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("number", sa.String(), nullable=False),
        sa.Column("e164", sa.String(), nullable=True),
        sa.Column("digits", sa.String(), nullable=False),
        sa.Column("label", sa.String(), nullable=True),
        sa.Column("employee_id", sa.String(), nullable=True),
        sa.Column("contact_id", sa.String(), nullable=True),
        sa.Column("phone_kind", sa.String(length=16), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _utc(), nullable=False),
        sa.Column("updated_at", _utc(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_numbers")),
    )
    op.create_index(
        "uq_numbers_internal_number",
        "numbers",
        ["number"],
        unique=True,
        postgresql_where=sa.text("kind = 'internal'"),
        sqlite_where=sa.text("kind = 'internal'"),
    )
    op.create_index(
        "uq_numbers_contact_digits",
        "numbers",
        ["contact_id", "digits"],
        unique=True,
        postgresql_where=sa.text("kind = 'contact'"),
        sqlite_where=sa.text("kind = 'contact'"),
    )
    op.create_index(op.f("ix_numbers_kind_number_id"), "numbers", ["kind", "number", "id"])
    for column in ("e164", "digits", "employee_id", "contact_id"):
        op.create_index(op.f(f"ix_numbers_{column}"), "numbers", [column])


def _only_digits(expression: sa.ColumnElement[str], postgresql: bool) -> sa.ColumnElement[str]:
    """SQL keeping only the digits (and spaces) of a text expression."""
    if postgresql:
        return sa.func.regexp_replace(expression, "[^0-9 ]", "", "g")
    # SQLite has no regexp_replace: strip the characters phone numbers are written with.
    for char in ("+", "-", "(", ")", ".", "/", ":", "@", "*", "#"):
        expression = sa.func.replace(expression, char, "")
    return expression


def downgrade() -> None:
    op.drop_table("numbers")
    op.drop_table("contacts")
    op.drop_table("employees")
    op.drop_table("call_parties")
    op.drop_index(op.f("ix_calls_party_digits"), table_name="calls")
    op.drop_index(op.f("ix_calls_missed_started_at_call_id"), table_name="calls")
    op.drop_index(op.f("ix_calls_contact_id_started_at_call_id"), table_name="calls")
    op.drop_index(op.f("ix_missed_calls_first_missed_at"), table_name="missed_calls")
    op.drop_index(op.f("ix_missed_calls_contact_id_first_missed_at"), table_name="missed_calls")
    with op.batch_alter_table("missed_call_calls") as batch:
        batch.drop_column("team_ids")
    with op.batch_alter_table("calls") as batch:
        for column in reversed(_call_columns()):
            batch.drop_column(column.name)
