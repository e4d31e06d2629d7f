"""The call log's transactional outbox: :mod:`telecrm_common.outbox` over the calls ``outbox`` table."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from sqlalchemy import Table
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm_calls.models import OutboxMessage
from telecrm_common import outbox as common_outbox
from telecrm_common.bus import Bus
from telecrm_common.db import Database
from telecrm_common.outbox import row

__all__ = ["OutboxPublisher", "add", "row", "size"]

TABLE: Table = OutboxMessage.__table__  # type: ignore[assignment]


async def add(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> None:
    """Write rows to the outbox, in this order, inside the caller's transaction."""
    await common_outbox.add(session, TABLE, rows)


async def size(session: AsyncSession) -> int:
    return await common_outbox.size(session, TABLE)


class OutboxPublisher(common_outbox.OutboxPublisher):
    """Publishes the call log's outbox."""

    def __init__(self, db: Database, bus: Bus, **options: Any) -> None:
        super().__init__(db, bus, TABLE, lock_key=0, **options)
