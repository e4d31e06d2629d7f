"""Contacts (companies, persons, phones, e-mails, custom fields)

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-24
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None


def _time() -> sa.DateTime:
    return sa.DateTime(timezone=True)


def _reversed_digits() -> sa.types.TypeEngine[str]:
    # Byte order on PostgreSQL, so that "ends with these digits" is a range on the index.
    return sa.String(length=32).with_variant(sa.String(length=32, collation="C"), "postgresql")


def upgrade() -> None:
    op.create_table(
        "contacts",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=300), nullable=False),
        sa.Column("name_key", sa.String(length=300), nullable=False),
        sa.Column("job_title", sa.String(length=200), nullable=True),
        sa.Column("tax_id", sa.String(length=64), nullable=True),
        sa.Column("company_id", sa.String(length=36), nullable=True),
        sa.Column("address", sa.Text(), nullable=True),
        sa.Column("notes", sa.Text(), nullable=True),
        sa.Column("responsible_employee_id", sa.String(length=64), nullable=True),
        sa.Column("owner_employee_id", sa.String(length=64), nullable=True),
        sa.Column("owner_team_id", sa.String(length=64), nullable=True),
        sa.Column("custom_fields", sa.JSON(), nullable=False),
        sa.Column("request_id", sa.String(length=100), nullable=True),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.Column("created_by", sa.String(length=64), nullable=True),
        sa.Column("deleted_at", _time(), nullable=True),
        sa.Column("merged_into", sa.String(length=36), nullable=True),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contacts")),
        sa.ForeignKeyConstraint(
            ["company_id"], ["contacts.id"], name=op.f("fk_contacts_company_id_contacts")
        ),
        sa.UniqueConstraint("request_id", name=op.f("uq_contacts_request_id")),
    )
    op.create_index("ix_contacts_name_key_id", "contacts", ["name_key", "id"])
    op.create_index("ix_contacts_updated_at_id", "contacts", ["updated_at", "id"])
    op.create_index(op.f("ix_contacts_company_id"), "contacts", ["company_id"])
    op.create_index(op.f("ix_contacts_responsible_employee_id"), "contacts", ["responsible_employee_id"])
    op.create_index(op.f("ix_contacts_owner_employee_id"), "contacts", ["owner_employee_id"])
    op.create_index(op.f("ix_contacts_owner_team_id"), "contacts", ["owner_team_id"])

    op.create_table(
        "contact_phones",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("contact_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("raw", sa.String(length=64), nullable=False),
        sa.Column("e164", sa.String(length=20), nullable=True),
        sa.Column("extension", sa.String(length=16), nullable=True),
        sa.Column("valid", sa.Boolean(), nullable=False),
        sa.Column("rdigits", _reversed_digits(), nullable=True),
        sa.Column("created_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_phones")),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_contact_phones_contact_id_contacts"),
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_contact_phones_e164", "contact_phones", ["e164"])
    op.create_index("ix_contact_phones_rdigits", "contact_phones", ["rdigits"])
    op.create_index("ix_contact_phones_contact_id_position", "contact_phones", ["contact_id", "position"])

    op.create_table(
        "contact_emails",
        sa.Column("id", sa.String(length=36), nullable=False),
        sa.Column("contact_id", sa.String(length=36), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("email", sa.String(length=320), nullable=False),
        sa.Column("email_key", sa.String(length=320), nullable=False),
        sa.PrimaryKeyConstraint("id", name=op.f("pk_contact_emails")),
        sa.ForeignKeyConstraint(
            ["contact_id"],
            ["contacts.id"],
            name=op.f("fk_contact_emails_contact_id_contacts"),
            ondelete="CASCADE",
        ),
    )
    op.create_index("ix_contact_emails_email_key", "contact_emails", ["email_key"])
    op.create_index("ix_contact_emails_contact_id_position", "contact_emails", ["contact_id", "position"])

    op.create_table(
        "contact_field_definitions",
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("label", sa.String(length=200), nullable=False),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("choices", sa.JSON(), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("version", sa.Integer(), nullable=False),
        sa.Column("created_at", _time(), nullable=False),
        sa.Column("updated_at", _time(), nullable=False),
        sa.PrimaryKeyConstraint("name", name=op.f("pk_contact_field_definitions")),
    )


def downgrade() -> None:
    op.drop_table("contact_field_definitions")
    op.drop_table("contact_emails")
    op.drop_table("contact_phones")
    op.drop_index(op.f("ix_contacts_owner_team_id"), table_name="contacts")
    op.drop_index(op.f("ix_contacts_owner_employee_id"), table_name="contacts")
    op.drop_index(op.f("ix_contacts_responsible_employee_id"), table_name="contacts")
    op.drop_index(op.f("ix_contacts_company_id"), table_name="contacts")
    op.drop_index("ix_contacts_updated_at_id", table_name="contacts")
    op.drop_index("ix_contacts_name_key_id", table_name="contacts")
    op.drop_table("contacts")
