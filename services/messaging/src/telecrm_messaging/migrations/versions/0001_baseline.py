"""Baseline: the messaging service's database exists and is under Alembic.

Revision ID: 0001
Revises:
Create Date: 2026-11-24
"""

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    pass


def downgrade() -> None:
    pass
