"""The call log's logic: ingestion (records and missed calls in one transaction) and queries.

No web or gRPC imports here: :mod:`telecrm_calls.api` and :mod:`telecrm_calls.grpc` both sit on
:class:`CallLogService`. The record itself, its fold (:func:`build_record`) and page cursors live in
:mod:`telecrm_calls.records`, re-exported here; every new event makes the record be recomputed from
all the events stored for the call.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable, Collection, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls import missed, missed_repository, outbox, record_events, registry, repository, rules
from telecrm_calls.records import (  # the record and paging, re-exported for the API layers
    DEFAULT_PAGE_SIZE,
    EPOCH,
    EXPORT_CHUNK_SIZE,
    MAX_PAGE_SIZE,
    STATES,
    Audience,
    CallEntry,
    CallNotFound,
    CallPage,
    CallQuery,
    CallRecord,
    CallsError,
    InvalidCursor,
    InvalidQuery,
    TelEvent,
    build_record,
    decode_cursor,
    encode_cursor,
    timestamp,
)
from telecrm_common.db import Database
from telecrm_common.telephony import (
    DIRECTION_NAMES,
    DISPOSITION_NAMES,
    digits,
)


def _number_keys(events: Iterable[ev.CallEvent], call_rules: rules.CallRules) -> set[str]:
    """The number keys (see :func:`telecrm_calls.missed.number_key`) of the parties of the events that
    may be a customer, whose missed-call items the batch may change.

    Our own extensions (the event says so, or the number is short: the call rules make it internal
    whatever the registry says) are left out: every call of an extension would otherwise take the
    same lock, and batches that share nothing but an agent would wait for each other.
    """
    keys = set()
    for event in events:
        for party in (event.caller, event.callee):
            if party.extension or rules.is_short_number(party.number, call_rules):
                continue
            key = missed.number_key(party.number, party.e164)
            if key:
                keys.add(key)
    return keys


# Page cursors of the newest-first and oldest-first orders are not interchangeable.
_CURSOR_DOMAINS = {
    "newest": b"telecrm.calls.cursor.v1|",
    "oldest": b"telecrm.calls.cursor.v1|oldest|",
}
# Fewer digits than this match most of the log: refused rather than scanned.
MIN_NUMBER_DIGITS = 3


@dataclass
class IngestResult:
    """What one batch did: events stored, duplicates skipped, call records written, recordings."""

    stored: int = 0
    duplicates: int = 0
    calls: list[str] = field(default_factory=list)
    recordings: int = 0
    missed_events: int = 0  # missed-call events written to the outbox
    record_events: int = 0  # calls.record.* events written to the outbox


def event_row(event: ev.CallEvent) -> dict[str, Any]:
    return {
        "event_id": event.event_id,
        "call_id": event.call_id,
        "sequence": event.sequence,
        "kind": event.WhichOneof("kind") or "",
        "occurred_at": timestamp(event.occurred_at),
        "payload": event.SerializeToString(deterministic=True),
    }


def recording_row(event: ev.RecordingReady) -> dict[str, Any]:
    return {
        "recording_id": event.recording_id or event.event_id,
        "call_id": event.call_id,
        "event_id": event.event_id,
        "location": event.location,
        "content_type": event.content_type or None,
        "size_bytes": event.size_bytes or None,
        "duration_ms": event.duration_ms or None,
        "started_at": timestamp(event.started_at),
        "occurred_at": timestamp(event.occurred_at),
    }


class CallLogService:
    """The call log over one database: ingestion from the bus and the queries of both APIs."""

    def __init__(
        self,
        db: Database,
        *,
        cursor_secret: str,
        on_missed_events: Callable[[], None] | None = None,
        call_rules: rules.CallRules | None = None,
    ) -> None:
        self.db = db
        self._secret = cursor_secret.encode()
        self.rules = call_rules or rules.CallRules()
        # Called after a batch that wrote events to the outbox committed (wakes its publisher).
        self._on_missed_events = on_missed_events

    async def ingest(self, events: Sequence[TelEvent]) -> IngestResult:
        """Store a batch of events and recompute the touched call records, in one transaction.

        Known event ids (earlier batches, or twice in this one) are skipped; the records of the calls
        that got a new event are recomputed from all their stored events, put through the call rules
        with the registry (:mod:`telecrm_calls.rules`), and upserted together with who they involved
        (call_parties). A call the rules do not log keeps its events but has no record. The missed-call
        items of their numbers follow in the same transaction (:func:`telecrm_calls.missed.track`),
        with their events written to the outbox.
        """
        calls: dict[str, ev.CallEvent] = {}
        recordings: dict[str, ev.RecordingReady] = {}
        for event in events:
            if isinstance(event, ev.CallEvent):
                calls.setdefault(event.event_id, event)
            else:
                recordings.setdefault(event.recording_id or event.event_id, event)
        result = IngestResult(duplicates=len(events) - len(calls) - len(recordings))
        if not calls and not recordings:
            return result
        async with self.db.session() as session:
            # Every call of the batch is locked up front, in one sorted pass (no deadlocks), the calls
            # of recordings too: a recording's "recorded" mark and a concurrent batch's upsert of its
            # call must not miss each other (each would otherwise see the other's row uncommitted).
            await repository.lock_calls(
                session,
                {event.call_id for event in calls.values()} | {r.call_id for r in recordings.values()},
            )
            if calls:
                # The numbers' locks too, before anything is read: the directory (contact changes) and
                # missed-call tracking take them, always after the call locks.
                await missed_repository.lock_numbers(session, _number_keys(calls.values(), self.rules))
                # The new events in, and what earlier batches stored of their calls.
                new, stored = await repository.store_events(session, [event_row(e) for e in calls.values()])
                result.stored = len(new)
                result.duplicates += len(calls) - len(new)
                fresh: dict[str, list[ev.CallEvent]] = {}
                for event_id in new:
                    event = calls[event_id]
                    fresh.setdefault(event.call_id, []).append(event)
                touched = sorted(fresh)
                if touched:
                    folded = [
                        build_record(
                            [*fresh[call_id], *map(ev.CallEvent.FromString, stored.get(call_id, ()))]
                        )
                        for call_id in touched
                    ]
                    view = await registry.load_view(session, folded)
                    ruled = [(record, rules.apply(record, view, self.rules)) for record in folded]
                    records = [record for _, record in ruled if record is not None]
                    await repository.delete_calls(session, [f.call_id for f, r in ruled if r is None])
                    upserted = await repository.upsert_calls(session, records)
                    new_calls = {c for c, row in upserted.items() if repository.created_by_upsert(row)}
                    await repository.replace_parties(session, records, new_calls=new_calls)
                    result.missed_events = await missed.track(session, records)
                    result.calls = [record.call_id for record in records]
                    # Ended calls publish their record, the revision the upsert gave them.
                    staged = [
                        record_events.record_event_of_upsert(
                            r,
                            upserted[r.call_id],
                            changed=["record"],
                            employee_ids=sorted({p.employee_id for p in r.parties if p.employee_id}),
                        )
                        for r in records
                        if r.state == "ended"
                    ]
                    await outbox.add(session, staged)
                    result.record_events = len(staged)
            if recordings:
                rows = [recording_row(e) for e in recordings.values()]
                result.recordings = await repository.insert_recordings(session, rows)
                if result.recordings:
                    result.record_events += await self._publish_recorded(
                        session, {row["call_id"] for row in rows}
                    )
        if (result.missed_events or result.record_events) and self._on_missed_events is not None:
            self._on_missed_events()
        return result

    @staticmethod
    async def _publish_recorded(session: AsyncSession, call_ids: Collection[str]) -> int:
        """Stage ``calls.record.*`` (changed: recording) for the ended calls among these; returns how
        many events were staged. Live calls publish their record when they end."""
        rows = [
            row
            for call in await repository.ended_calls(session, call_ids)
            if (row := record_events.record_event_row(call, changed=["recording"])) is not None
        ]
        await outbox.add(session, rows)  # one statement for the batch
        return len(rows)

    async def list_calls(self, query: CallQuery) -> CallPage:
        """One page of calls, newest first; raises InvalidQuery or InvalidCursor."""
        filters = self._filters(query)
        oldest = query.sort == "oldest"
        domain = _CURSOR_DOMAINS[query.sort]
        after = decode_cursor(self._secret, query.cursor, domain=domain) if query.cursor else None
        async with self.db.session() as session:
            rows = await repository.list_calls(
                session, filters, after=after, limit=query.limit + 1, oldest_first=oldest
            )
            total = await repository.count_calls(session, filters) if query.include_total else None
        items = [CallEntry(call, has_recording) for call, has_recording in rows[: query.limit]]
        next_cursor = None
        if len(rows) > query.limit:
            last = items[-1].call
            next_cursor = encode_cursor(self._secret, last.started_at, last.call_id, domain=domain)
        return CallPage(items=items, next_cursor=next_cursor, total=total)

    def export_calls(
        self, query: CallQuery, *, chunk_size: int = EXPORT_CHUNK_SIZE
    ) -> AsyncIterator[list[CallEntry]]:
        """Every call matching the filters, newest first, in chunks of at most ``chunk_size``.

        The filters are checked now (raises InvalidQuery before anything is read); ``limit`` and
        ``cursor`` are ignored. Each chunk is one keyset query in a short session of its own, so memory
        stays bounded by the chunk and no connection is held while the caller writes the chunk out.
        """
        if chunk_size < 1:
            raise ValueError("chunk_size must be positive")
        filters = self._filters(query)
        return self._export(filters, chunk_size, oldest=query.sort == "oldest")

    async def _export(
        self, filters: repository.CallFilters, chunk_size: int, *, oldest: bool
    ) -> AsyncIterator[list[CallEntry]]:
        after: tuple[datetime, str] | None = None
        while True:
            async with self.db.session() as session:
                rows = await repository.list_calls(
                    session, filters, after=after, limit=chunk_size, oldest_first=oldest
                )
            if not rows:
                return
            yield [CallEntry(call, has_recording) for call, has_recording in rows]
            if len(rows) < chunk_size:
                return
            last = rows[-1][0]
            after = (last.started_at, last.call_id)

    async def team_of(self, employee_id: str) -> str | None:
        """The team of an employee (crm's read model), None when unknown or without one."""
        async with self.db.session() as session:
            return await repository.team_of(session, employee_id)

    async def get_call(self, call_id: str, audience: Audience | None = None) -> CallEntry:
        """The call; CallNotFound also when ``audience`` may not see it (its existence is not told)."""
        async with self.db.session() as session:
            row = await repository.get_call(session, call_id)
            visible = audience is None or await repository.call_visible(session, call_id, audience)
            if not visible:
                row = None
        if row is None:
            raise CallNotFound(call_id)
        return CallEntry(*row)

    async def ensure_visible(self, call_id: str, audience: Audience | None) -> None:
        """Raises CallNotFound unless the call exists and ``audience`` may see it."""
        if audience is None:
            return
        async with self.db.session() as session:
            if not await repository.call_visible(session, call_id, audience):
                raise CallNotFound(call_id)

    @staticmethod
    def _filters(query: CallQuery) -> repository.CallFilters:
        if not 1 <= query.limit <= MAX_PAGE_SIZE:
            raise InvalidQuery("limit", f"must be between 1 and {MAX_PAGE_SIZE}")
        if query.sort not in _CURSOR_DOMAINS:
            raise InvalidQuery("sort", f"must be one of {', '.join(_CURSOR_DOMAINS)}")
        number = None
        if query.number is not None and query.number.strip():
            number = digits(query.number)
            if not number:
                raise InvalidQuery("number", "must contain digits")
            if len(number) < MIN_NUMBER_DIGITS:
                raise InvalidQuery("number", f"give at least {MIN_NUMBER_DIGITS} digits")
        unknown_states = sorted(set(query.states) - set(STATES))
        if unknown_states:
            raise InvalidQuery("states", f"unknown state {', '.join(unknown_states)}")
        unknown = sorted(set(query.dispositions) - set(DISPOSITION_NAMES.values()))
        if unknown:
            raise InvalidQuery("dispositions", f"unknown disposition {', '.join(unknown)}")
        if query.direction is not None and query.direction not in DIRECTION_NAMES.values():
            raise InvalidQuery("direction", f"unknown direction {query.direction}")
        for name, value in (("started_from", query.started_from), ("started_to", query.started_to)):
            if value is not None and value.tzinfo is None:
                raise InvalidQuery(name, "needs a timezone")
        if query.started_from and query.started_to and query.started_from >= query.started_to:
            raise InvalidQuery("started_to", "must be later than started_from")
        return repository.CallFilters(
            number=number,
            extension=query.extension or None,
            dispositions=tuple(sorted(set(query.dispositions))),
            direction=query.direction,
            started_from=query.started_from,
            started_to=query.started_to,
            employee_id=query.employee_id or None,
            team_id=query.team_id or None,
            contact_id=query.contact_id or None,
            states=tuple(sorted(set(query.states))),
            recorded=query.recorded,
            missed=query.missed,
            audience=query.audience,
        )


__all__ = [
    "DEFAULT_PAGE_SIZE",
    "EPOCH",
    "EXPORT_CHUNK_SIZE",
    "MAX_PAGE_SIZE",
    "STATES",
    "Audience",
    "CallEntry",
    "CallLogService",
    "CallNotFound",
    "CallPage",
    "CallQuery",
    "CallRecord",
    "CallsError",
    "IngestResult",
    "InvalidCursor",
    "InvalidQuery",
    "TelEvent",
    "build_record",
    "decode_cursor",
    "encode_cursor",
    "event_row",
    "recording_row",
    "timestamp",
]
