"""What the call log consumes from the bus, and what it does with it.

One durable pull consumer (``CallsSettings.consumer_durable``, shared by every replica so each event is
handled once) on the TEL stream:

=========================  ===================  =================================================
subject                    message              handler
=========================  ===================  =================================================
``tel.call.*``             ``CallEvent``        stored once by event id; the call record refolded
``tel.recording.ready``    ``RecordingReady``   added to the call's recordings
=========================  ===================  =================================================

Both go through :meth:`CallLogService.ingest`, one transaction per fetched batch. Payloads that do not
decode are dead-lettered by the bus (``dlq.<durable>.<subject>``) with the reason; a batch that fails is
retried message by message, with backoff, then dead-lettered. While the database is down the batch in
hand is held by the bus (``dependencies_ready``, kept from redelivery) until it answers again, so an
outage does not use up the deliveries of good events and send them to the dead-letter subject.

Published, on the CALLS stream: ``calls.missed.created``, ``calls.missed.updated`` and
``calls.missed.resolved`` (``MissedCallEvent``), written to the outbox by :mod:`telecrm_calls.missed` in
the ingest transaction and published by :class:`telecrm_calls.outbox.OutboxPublisher`.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence

from telecrm_calls.records import TelEvent
from telecrm_calls.service import CallLogService
from telecrm_calls.settings import CallsSettings
from telecrm_common.bus import Bus, ConsumerSpec, Delivery
from telecrm_common.events import tel_consumer

log = logging.getLogger(__name__)


def consumer_spec(settings: CallsSettings, service: CallLogService) -> ConsumerSpec[TelEvent]:
    concurrency = 1 if service.db.dialect == "sqlite" else settings.consumer_concurrency
    return tel_consumer(
        settings.consumer_durable,
        batch_size=settings.consumer_batch_size,
        concurrency=concurrency,
        dependencies_ready=service.db.check,
    )


class TelEventsConsumer:
    """Feeds the telephony events of the bus to the call log."""

    def __init__(self, bus: Bus, service: CallLogService, spec: ConsumerSpec[TelEvent]) -> None:
        self._bus = bus
        self._service = service
        self.spec = spec

    async def handle(self, deliveries: Sequence[Delivery[TelEvent]]) -> None:
        result = await self._service.ingest([delivery.message for delivery in deliveries])
        log.debug(
            "events ingested",
            extra={
                "events": len(deliveries),
                "stored": result.stored,
                "duplicates": result.duplicates,
                "calls": len(result.calls),
                "recordings": result.recordings,
            },
        )

    async def consume_tel_events(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set (a ServiceRunner background task)."""
        await self._bus.consume(self.spec, self.handle, stop)
