"""The transactional outbox: events a service publishes, written in the transaction that made them.

Each service has its own outbox table (seq, subject, msg_id, message_type, payload, headers,
created_at). The service layer adds a row (:func:`add`) in the same transaction as the change it reports, so a
change is never committed without its event, nor an event published for a change that rolled back.
:class:`OutboxPublisher` (a background task of every replica) publishes the rows in the order they were
written and deletes them once JetStream has acknowledged them. A crash between the two publishes a row
again on the next round: its ``Nats-Msg-Id`` is the same, so the stream stores it once (within the
stream's duplicate window), and consumers can drop it by its event id after that.

On PostgreSQL one replica at a time publishes (a session-level advisory lock, tried, never waited
for), which keeps the rows in order on the stream; the others skip the round.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from typing import Any

from google.protobuf.message import Message
from sqlalchemy import Table, delete, func, select, text
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession

from telecrm_common import telemetry
from telecrm_common.bus import Bus, BusError, SerializedMessage
from telecrm_common.db import Database, insert_unnest, one_of, utcnow

log = logging.getLogger(__name__)

# The two-int4 key of the publisher's advisory lock ("ob", lock_key), a key space apart from other locks;
# services sharing one database give their publishers different lock keys.
PUBLISHER_LOCK = {"class_id": 0x6F62, "object_id": 0}


def row(subject: str, message: Message, msg_id: str) -> dict[str, Any]:
    """An outbox row for ``message`` on ``subject``, with the writer's trace context."""
    return {
        "subject": subject,
        "msg_id": msg_id,
        "message_type": message.DESCRIPTOR.full_name,
        "payload": message.SerializeToString(deterministic=True),
        "headers": dict(telemetry.inject({})),
    }


async def add(session: AsyncSession, table: Table, rows: Sequence[dict[str, Any]]) -> None:
    """Write rows to the outbox ``table``, in this order, inside the caller's transaction."""
    if not rows:
        return
    now = utcnow()
    if session.get_bind().dialect.name == "postgresql":
        # One statement whatever the count (a batch of call records stages hundreds at once).
        await insert_unnest(session, table, rows, computed={"created_at": ":now"}, params={"now": now})
    else:
        await session.execute(table.insert(), [{**r, "created_at": now} for r in rows])


async def size(session: AsyncSession, table: Table) -> int:
    return int(await session.scalar(select(func.count()).select_from(table)) or 0)


class OutboxPublisher:
    """Publishes the outbox: when woken (after a commit that wrote to it) and every ``interval`` s."""

    def __init__(
        self,
        db: Database,
        bus: Bus,
        table: Table,
        *,
        lock_key: int = 0,
        batch_size: int = 500,
        interval: float = 1.0,
        publish_timeout: float = 5.0,
    ) -> None:
        self._db = db
        self._bus = bus
        self._table = table
        self._lock_params = {**PUBLISHER_LOCK, "object_id": lock_key}
        self._batch_size = batch_size
        self._interval = interval
        self._publish_timeout = publish_timeout
        self._wake = asyncio.Event()

    def wake(self) -> None:
        """Publish soon (called after a transaction that wrote to the outbox committed)."""
        self._wake.set()

    async def run(self, stop: asyncio.Event) -> None:
        """Publish until ``stop`` is set (a ServiceRunner background task); failures are retried."""
        delay = self._interval
        while not stop.is_set():
            self._wake.clear()  # before reading: a commit while publishing wakes the next round
            try:
                await self.publish_pending(stop)
            except Exception as exc:
                delay = min(delay * 2, 30.0)
                log.warning("publishing the outbox failed (%s); retrying in %.0fs", exc, delay)
            else:
                delay = self._interval
            waiters = [asyncio.ensure_future(stop.wait()), asyncio.ensure_future(self._wake.wait())]
            try:
                await asyncio.wait(waiters, timeout=delay, return_when=asyncio.FIRST_COMPLETED)
            finally:
                for waiter in waiters:
                    waiter.cancel()

    async def publish_pending(self, stop: asyncio.Event | None = None) -> int:
        """Publish the rows of the outbox in order until it is empty, a publish fails or ``stop`` is set.

        Returns how many were published (0 when another replica holds the publisher lock). A failing
        publish raises (BusError) after the rows published before it have been removed.
        """
        total = 0
        async with self._db.engine.connect() as conn:
            if not await self._lock(conn):
                return 0
            try:
                while True:
                    rows = (
                        await conn.execute(
                            select(self._table).order_by(self._table.c.seq).limit(self._batch_size)
                        )
                    ).all()
                    await conn.commit()
                    if not rows or (stop is not None and stop.is_set()):
                        return total
                    messages = [
                        SerializedMessage(
                            subject=r.subject,
                            payload=r.payload,
                            msg_id=r.msg_id,
                            message_type=r.message_type,
                            headers=r.headers or {},
                        )
                        for r in rows
                    ]
                    acknowledged = await self._bus.publish_serialized(messages, timeout=self._publish_timeout)
                    if acknowledged:
                        done = [r.seq for r in rows[:acknowledged]]
                        await conn.execute(
                            delete(self._table).where(one_of(self._table.c.seq, done, conn.dialect.name))
                        )
                        await conn.commit()
                        total += acknowledged
                    if acknowledged < len(rows):
                        raise BusError(f"{len(rows) - acknowledged} outbox messages were not acknowledged")
            finally:
                await self._unlock(conn)

    async def _lock(self, conn: AsyncConnection) -> bool:
        if conn.dialect.name != "postgresql":
            return True
        locked = await conn.scalar(
            text("SELECT pg_try_advisory_lock(:class_id, :object_id)"), self._lock_params
        )
        await conn.commit()
        return bool(locked)

    async def _unlock(self, conn: AsyncConnection) -> None:
        if conn.dialect.name != "postgresql":
            return
        with contextlib.suppress(Exception):  # a broken connection is closed, which releases it too
            await conn.rollback()
            await conn.execute(text("SELECT pg_advisory_unlock(:class_id, :object_id)"), self._lock_params)
            await conn.commit()
