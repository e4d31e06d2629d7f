"""The call's direction, disposition, missed flag and talk time on its parties, in the who-indexes

The employee and team views of the call log and the reports find a person's calls through
call_parties, then read these four columns of each call from the calls heap: one random read per call,
about 2,800 for an employee's month. Copied onto the parties and carried by the (employee_id |
team_id, started_at, call_id) indexes (PostgreSQL INCLUDE), they are read from the index alone.

The backfill rewrites every party row: on a large log, run it in a quiet hour (15.5 minutes for 10
million calls, 11.5 million parties, on a 2-core machine: see the calls README, "Capacity"). The two
indexes are dropped first and built again after it, which is faster than updating them row by row.

Revision ID: 0004
Revises: 0003
Create Date: 2026-11-25 09:00:00
"""

from collections.abc import Sequence

import sqlalchemy as sa
from alembic import op

revision: str = "0004"
down_revision: str | None = "0003"
branch_labels: str | Sequence[str] | None = None
depends_on: str | Sequence[str] | None = None

COPIED = ("direction", "disposition", "missed", "talk_ms")
INCLUDED = ["role", *COPIED]
WHO = ("employee_id", "team_id")


def _index(column: str) -> str:
    return op.f(f"ix_call_parties_{column}_started_at_call_id")


def upgrade() -> None:
    for column in WHO:
        op.drop_index(_index(column), table_name="call_parties")
    with op.batch_alter_table("call_parties") as batch:
        batch.add_column(sa.Column("direction", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("disposition", sa.String(length=16), nullable=True))
        batch.add_column(sa.Column("missed", sa.Boolean(), server_default=sa.false(), nullable=False))
        batch.add_column(sa.Column("talk_ms", sa.BigInteger(), nullable=True))
    if op.get_bind().dialect.name == "postgresql":
        op.execute(
            "UPDATE call_parties AS p SET direction = c.direction, disposition = c.disposition, "
            "missed = c.missed, talk_ms = c.talk_ms FROM calls AS c WHERE c.call_id = p.call_id"
        )
    else:  # SQLite
        op.execute(
            "UPDATE call_parties SET (direction, disposition, missed, talk_ms) = "
            "(SELECT direction, disposition, missed, talk_ms FROM calls "
            "WHERE calls.call_id = call_parties.call_id) "
            "WHERE EXISTS (SELECT 1 FROM calls WHERE calls.call_id = call_parties.call_id)"
        )
    for column in WHO:
        op.create_index(
            _index(column), "call_parties", [column, "started_at", "call_id"], postgresql_include=INCLUDED
        )


def downgrade() -> None:
    for column in WHO:
        op.drop_index(_index(column), table_name="call_parties")
    with op.batch_alter_table("call_parties") as batch:
        for name in reversed(COPIED):
            batch.drop_column(name)
    for column in WHO:
        op.create_index(_index(column), "call_parties", [column, "started_at", "call_id"])
