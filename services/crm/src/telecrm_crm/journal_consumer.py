"""The journal's bus consumer: the call log's record and missed-call events become journal events.

One durable consumer (``crm-journal``) on the ``CALLS`` stream reads both ``calls.record.*`` and
``calls.missed.*``, so the two arrive in the order the call log published them; every replica of crm
binds to it, so each event is handled once. Each subject is decoded by its contract in
:mod:`telecrm_common.events`; a payload that does not decode is dead-lettered by the bus at once and
the rest of the batch goes on. A batch is one transaction (:meth:`JournalService.apply_call_log_events`),
held while the database is down rather than retried into the dead-letter subject.

Subject -> handler:

====================================  ==========================================================
``calls.record.{created,updated}``    one journal event per call, at the highest record revision
``calls.missed.{created,updated,      links the item's missed calls, marks them resolved, types
resolved}``                           the resolving call as a callback / answer to a missed call
====================================  ==========================================================
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from typing import Any

from telecrm.calls.v1 import call_log_events_pb2 as record_pb
from telecrm.calls.v1 import missed_calls_pb2 as missed_pb
from telecrm_common.bus import Bus, ConsumerSpec, Delivery, InvalidMessage
from telecrm_common.events import (
    CALL_RECORD_SUBJECT_PREFIX,
    CALLS_STREAM,
    MISSED_CALL_SUBJECT_PREFIX,
    decode_call_record_event,
    decode_missed_call_event,
)
from telecrm_crm.journal import JournalService

log = logging.getLogger(__name__)

DEFAULT_DURABLE = "crm-journal"
CallLogEvent = record_pb.CallRecordEvent | missed_pb.MissedCallEvent
SUBJECTS: tuple[str, ...] = (f"{CALL_RECORD_SUBJECT_PREFIX}.>", f"{MISSED_CALL_SUBJECT_PREFIX}.>")


def decode_call_log_event(subject: str, data: bytes) -> CallLogEvent:
    """A call-record or missed-call event, by its subject; InvalidMessage for anything else."""
    if subject.startswith(CALL_RECORD_SUBJECT_PREFIX + "."):
        return decode_call_record_event(subject, data)
    if subject.startswith(MISSED_CALL_SUBJECT_PREFIX + "."):
        return decode_missed_call_event(subject, data)
    raise InvalidMessage(f"the journal does not handle {subject}")


def journal_consumer_spec(
    service: JournalService, durable: str = DEFAULT_DURABLE, **overrides: Any
) -> ConsumerSpec[CallLogEvent]:
    """The durable consumer of the call log's events for the journal (batch size, backoff... may be
    overridden, e.g. ``batch_size=settings.consumer_batch_size``)."""
    return ConsumerSpec(
        stream=CALLS_STREAM.name,
        durable=durable,
        filter_subjects=SUBJECTS,
        decode=decode_call_log_event,
        dependencies_ready=service.db.check,
        **overrides,
    )


class JournalConsumer:
    """Feeds the call log's events to :class:`JournalService`."""

    def __init__(
        self, bus: Bus, service: JournalService, spec: ConsumerSpec[CallLogEvent] | None = None
    ) -> None:
        self._bus = bus
        self._service = service
        self.spec = spec or journal_consumer_spec(service)

    async def handle(self, deliveries: Sequence[Delivery[CallLogEvent]]) -> None:
        result = await self._service.apply_call_log_events([delivery.message for delivery in deliveries])
        log.debug(
            "call-log events applied to the journal",
            extra={
                "events": len(deliveries),
                "created": result.created,
                "updated": result.updated,
                "ignored": result.ignored,
            },
        )

    async def run(self, stop: asyncio.Event) -> None:
        """Consume until ``stop`` is set (a background task of the service)."""
        await self._bus.consume(self.spec, self.handle, stop)


__all__ = ["DEFAULT_DURABLE", "JournalConsumer", "decode_call_log_event", "journal_consumer_spec"]
