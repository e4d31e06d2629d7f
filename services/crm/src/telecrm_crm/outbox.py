"""crm's transactional outbox: :mod:`telecrm_common.outbox` over the crm ``outbox`` table.

Every create/update/delete of a crm document adds its event here in the same transaction; the
publisher (a background task) puts them on the ``CRM`` stream (``crm.>``) in order.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm_common import outbox as common_outbox
from telecrm_common.bus import Bus
from telecrm_common.db import Database
from telecrm_common.outbox import row
from telecrm_crm.models import OutboxMessage

__all__ = ["TABLE", "OutboxPublisher", "add", "row", "size"]

TABLE: Table = OutboxMessage.__table__  # type: ignore[assignment]
CRM_PUBLISHER_LOCK_KEY = 1  # calls uses 0: the two may share one PostgreSQL database


async def add(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Write rows (made with :func:`row`) to the outbox, in this order, inside the caller's transaction."""
    await common_outbox.add(session, TABLE, rows)


async def size(session: AsyncSession) -> int:
    return await common_outbox.size(session, TABLE)


class OutboxPublisher(common_outbox.OutboxPublisher):
    """Publishes crm's outbox."""

    def __init__(self, db: Database, bus: Bus, **options: Any) -> None:
        super().__init__(db, bus, TABLE, lock_key=CRM_PUBLISHER_LOCK_KEY, **options)
