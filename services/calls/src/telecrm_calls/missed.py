"""Missed calls and callbacks: the items to call back, kept up to date by ingestion, and their lists.

No web or gRPC imports here: :mod:`telecrm_calls.missed_api` and :mod:`telecrm_calls.grpc` sit on
:class:`MissedCallLog`; :meth:`telecrm_calls.service.CallLogService.ingest` calls :func:`track` in the
transaction that stores the events.

The rules (:func:`fold_items`, a pure function of the calls of one number):

- a *missed call* is an ended inbound call with disposition ``missed``; the number it belongs to is the
  caller's, by its E.164 form, else as signalled (numbers without digits, such as ``anonymous``, cannot
  be called back and open nothing);
- a *resolving call* is an ended, answered call with that number: inbound from it (the customer called
  again and was answered) or outbound to it (the callback). Internal calls and unanswered outbound
  calls resolve nothing;
- each missed call belongs to the first resolving call of its number that started after it, or to the
  number's open item when none did. So the missed calls between two answered calls are one item, and a
  number has one open item at most, whatever the order the events arrived in: a missed call that
  started before an already answered later call is created resolved; a late answered call splits the
  item it falls into;
- time to callback = the resolving call's answer time - the item's *first* missed call's start: how long
  the customer has been waiting since they first called (as Planfix measures from the missed call).

Ingestion refolds a number when one of its calls changed, from the last resolving call before the
change (older items cannot change), and keeps the ids of the items it finds again (an item keeps its id
as long as it keeps its earliest call). Every change is written to the outbox in the same transaction,
as ``calls.missed.created`` / ``updated`` / ``resolved`` with the whole item; the Nats-Msg-Id (and
event id) is ``<item id>:<kind>:<state>:<count>:<version>``, so a republished row is stored once.

An item is attached to the contact of its number (the last contact the call rules linked to one of its
calls; see :mod:`telecrm_calls.rules`) and targets the extensions, employees and teams its calls rang.
"""

from __future__ import annotations

import bisect
import uuid
from collections import defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from telecrm.calls.v1 import missed_calls_pb2 as missed_pb
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls import missed_repository as repo
from telecrm_calls import outbox
from telecrm_calls.missed_repository import MISSED_DISPOSITIONS, MissedCallFilters
from telecrm_calls.models import Call, MissedCall, MissedCallMember, utcnow
from telecrm_calls.records import (
    DEFAULT_PAGE_SIZE,
    MAX_PAGE_SIZE,
    Audience,
    CallEntry,
    CallRecord,
    CallsError,
    InvalidQuery,
    decode_cursor,
    encode_cursor,
)
from telecrm_common.db import Database
from telecrm_common.events import MISSED_CALL_SUBJECTS
from telecrm_common.telephony import DIRECTION_BY_NAME, digits
from telecrm_common.timestamps import timestamp_message

OPEN = "open"
RESOLVED = "resolved"
STATES = (OPEN, RESOLVED)
STATE_VALUES = {
    OPEN: missed_pb.MISSED_CALL_STATE_OPEN,
    RESOLVED: missed_pb.MISSED_CALL_STATE_RESOLVED,
}
STATE_NAMES = {value: name for name, value in STATE_VALUES.items()}
DISCARDED = "discarded"
CURSOR_DOMAIN = b"telecrm.calls.missed-cursor.v1|"


class MissedCallNotFound(CallsError):
    def __init__(self, item_id: str) -> None:
        super().__init__(f"missed call {item_id!r} not found")
        self.item_id = item_id


# --- the rules -----------------------------------------------------------------------------------


def number_key(number: str | None, e164: str | None) -> str | None:
    """What identifies a number: its E.164 form, else the number as signalled; None without digits."""
    if e164:
        return e164
    if number and digits(number):
        return number
    return None


def customer_key(call: CallRecord | Call) -> str | None:
    """The outside party's number key: the caller of an inbound call, the callee of an outbound one."""
    if call.direction == "inbound":
        return number_key(call.caller_number, call.caller_e164)
    if call.direction == "outbound":
        return number_key(call.callee_number, call.callee_e164)
    return None


def is_missed(call: CallRecord | Call) -> bool:
    return call.state == "ended" and call.direction == "inbound" and call.disposition in MISSED_DISPOSITIONS


def is_resolving(call: CallRecord | Call) -> bool:
    return (
        call.state == "ended" and call.disposition == "answered" and call.direction in ("inbound", "outbound")
    )


@dataclass(frozen=True)
class Rang:
    """Who a missed call rang: every extension offered or ringing, the employees and teams behind them."""

    extensions: tuple[str, ...] = ()
    employee_ids: tuple[str, ...] = ()
    team_ids: tuple[str, ...] = ()


def rang(events: Iterable[ev.CallEvent]) -> Rang:
    """Who the events of a call say it rang (when the call rules have not said better)."""
    extensions: set[str] = set()
    employees: set[str] = set()
    for event in events:
        extensions.update(x for x in (event.extension, event.ringing.extension) if x)
        if event.employee_id:
            employees.add(event.employee_id)
    return Rang(tuple(sorted(extensions)), tuple(sorted(employees)))


def rang_of(record: CallRecord) -> Rang:
    """Who a call rang, from its parties as the call rules completed them (every role but placed)."""
    parties = [party for party in record.parties if party.role != "placed"]
    return Rang(
        tuple(sorted({p.extension for p in parties if p.extension})),
        tuple(sorted({p.employee_id for p in parties if p.employee_id})),
        tuple(sorted({p.team_id for p in parties if p.team_id})),
    )


@dataclass(frozen=True)
class MissedInput:
    call_id: str
    started_at: datetime
    number: str | None
    e164: str | None
    caller_name: str | None
    rang: Rang
    contact_id: str | None = None


@dataclass(frozen=True)
class ResolvingInput:
    call_id: str
    started_at: datetime
    answered_at: datetime | None
    direction: str
    extension: str | None
    employee_id: str | None


@dataclass(frozen=True)
class ItemState:
    """The values of one item, as the rules compute them from its number's calls."""

    number_key: str
    number: str | None
    e164: str | None
    caller_name: str | None
    state: str
    calls: tuple[tuple[str, datetime, Rang], ...]  # id, start and who it rang, of each missed call
    first_missed_at: datetime
    last_missed_at: datetime
    extensions: tuple[str, ...]
    employee_ids: tuple[str, ...]
    team_ids: tuple[str, ...] = ()
    contact_id: str | None = None
    resolved_at: datetime | None = None
    resolving_call_id: str | None = None
    resolving_direction: str | None = None
    resolving_extension: str | None = None
    resolving_employee_id: str | None = None
    callback_ms: int | None = None

    @property
    def call_ids(self) -> tuple[str, ...]:
        return tuple(call_id for call_id, _, _ in self.calls)

    @property
    def missed_count(self) -> int:
        return len(self.calls)


def fold_items(
    key: str, missed: Iterable[MissedInput], resolving: Iterable[ResolvingInput]
) -> list[ItemState]:
    """The items of one number from its missed and resolving calls, oldest first (see the rules above).

    Depends only on the sets: duplicates and order make no difference.
    """
    answers = sorted({r.call_id: r for r in resolving}.values(), key=lambda r: (r.started_at, r.call_id))
    starts = [r.started_at for r in answers]
    groups: dict[ResolvingInput | None, list[MissedInput]] = defaultdict(list)
    for call in sorted({m.call_id: m for m in missed}.values(), key=lambda m: (m.started_at, m.call_id)):
        index = bisect.bisect_right(starts, call.started_at)  # the first answer that started later
        groups[answers[index] if index < len(answers) else None].append(call)
    items = [_item(key, calls, answer) for answer, calls in groups.items()]
    return sorted(items, key=lambda item: (item.first_missed_at, item.call_ids[0]))


def _item(key: str, calls: list[MissedInput], answer: ResolvingInput | None) -> ItemState:
    first, last = calls[0], calls[-1]
    item = ItemState(
        number_key=key,
        number=last.number,
        e164=_last(c.e164 for c in calls),
        caller_name=_last(c.caller_name for c in calls),
        state=OPEN,
        calls=tuple((c.call_id, c.started_at, c.rang) for c in calls),
        first_missed_at=first.started_at,
        last_missed_at=last.started_at,
        extensions=tuple(sorted({x for c in calls for x in c.rang.extensions})),
        employee_ids=tuple(sorted({x for c in calls for x in c.rang.employee_ids})),
        team_ids=tuple(sorted({x for c in calls for x in c.rang.team_ids})),
        contact_id=_last(c.contact_id for c in calls),
    )
    if answer is None:
        return item
    resolved_at = answer.answered_at or answer.started_at
    return replace(
        item,
        state=RESOLVED,
        resolved_at=resolved_at,
        resolving_call_id=answer.call_id,
        resolving_direction=answer.direction,
        resolving_extension=answer.extension,
        resolving_employee_id=answer.employee_id,
        callback_ms=max((resolved_at - first.started_at) // timedelta(milliseconds=1), 0),
    )


def _last(values: Iterable[str | None]) -> str | None:
    found = None
    for value in values:
        if value:
            found = value
    return found


# --- ingestion -----------------------------------------------------------------------------------


async def track(
    session: AsyncSession,
    records: Sequence[CallRecord],
    rang_by_call: Mapping[str, Rang] | None = None,
) -> int:
    """Bring the items of the numbers of these (just upserted) call records up to date, and write their
    changes to the outbox, in the caller's transaction. Returns how many events were written.

    ``rang_by_call``: who each call rang; by default what its parties say (:func:`rang_of`).
    """
    touched = {record.call_id: record for record in records}
    if not touched:
        return 0
    old_members = await repo.members_of_calls(session, touched)
    resolved_by_touched = await repo.items_resolved_by(session, touched)

    # Where each number may have changed: from the earliest of the touched calls, at their new and old
    # places (a call that stopped being missed, or whose number changed, leaves its old item).
    since: dict[str, datetime] = {}

    def note(key: str, when: datetime) -> None:
        since[key] = min(since.get(key, when), when)

    now_missed: dict[str, Rang] = {}
    answered_keys: dict[str, datetime] = {}
    for record in records:
        key = customer_key(record)
        if key is None:
            continue
        if is_missed(record):
            now_missed[record.call_id] = (
                rang_by_call[record.call_id]
                if rang_by_call is not None and record.call_id in rang_by_call
                else rang_of(record)
            )
            note(key, record.started_at)
        elif is_resolving(record):
            answered_keys[key] = min(answered_keys.get(key, record.started_at), record.started_at)
    for member, key in old_members:
        note(key, member.started_at)
    for item in resolved_by_touched:
        note(item.number_key, item.first_missed_at)
    if not since and not answered_keys:
        return 0

    # Locked before anything of the numbers is read, so a missed call and its answer handled at the
    # same time by two replicas are folded together by whichever of them takes the lock second.
    await repo.lock_numbers(session, since.keys() | answered_keys.keys())
    # An answered call matters only to numbers with items (every missed call is in one).
    with_items = await repo.keys_with_items(session, since.keys() | answered_keys.keys())
    for key, when in answered_keys.items():
        if key in since or key in with_items:
            note(key, when)
    # A number without items has no missed calls but this batch's (every missed call is in an item):
    # its items are new, folded from these calls and the answers after them, for all such numbers at
    # once. The others are refolded one by one from their stored calls.
    fresh = {key for key in since if key not in with_items}
    rows: list[dict[str, Any]] = []
    changed: list[tuple[MissedCall, ItemState]] = []
    if fresh:
        rows += await _fold_fresh(session, fresh, records, now_missed, since, changed)
    for key in sorted(since.keys() - fresh):
        rows += await _refold(session, key, since[key], now_missed)
    if changed:
        await session.flush()
        await _replace_members(session, changed)
    await outbox.add(session, rows)
    return len(rows)


async def _fold_fresh(
    session: AsyncSession,
    keys: set[str],
    records: Sequence[CallRecord],
    now_missed: Mapping[str, Rang],
    since: Mapping[str, datetime],
    changed: list[tuple[MissedCall, ItemState]],
) -> list[dict[str, Any]]:
    """Create the items of numbers that had none (see :func:`track`); appends them to ``changed``."""
    missed: dict[str, list[MissedInput]] = defaultdict(list)
    for record in records:
        key = customer_key(record)
        if key in keys and record.call_id in now_missed:
            missed[key].append(
                MissedInput(
                    call_id=record.call_id,
                    started_at=record.started_at,
                    number=record.caller_number,
                    e164=record.caller_e164,
                    caller_name=record.caller_name,
                    rang=now_missed[record.call_id],
                    contact_id=record.contact_id,
                )
            )
    resolving: dict[str, list[ResolvingInput]] = defaultdict(list)
    for call in await repo.resolving_calls_of_keys(session, keys, min(since[key] for key in keys)):
        key = customer_key(call)
        if key in keys and call.started_at >= since[key]:
            resolving[key].append(
                ResolvingInput(
                    call_id=call.call_id,
                    started_at=call.started_at,
                    answered_at=call.answered_at,
                    direction=call.direction or "",
                    extension=call.extension,
                    employee_id=call.employee_id,
                )
            )
    rows: list[dict[str, Any]] = []
    for key in sorted(keys):
        for state in fold_items(key, missed[key], resolving[key]):
            item = MissedCall(id=uuid.uuid4().hex, version=1, created_at=utcnow())
            _apply(item, state)
            session.add(item)
            changed.append((item, state))
            kinds = ["created", "resolved"] if state.state == RESOLVED else ["created"]
            rows += [_outbox_row(kind, item, state) for kind in kinds]
    return rows


async def _refold(
    session: AsyncSession, key: str, changed_at: datetime, now_missed: Mapping[str, Rang]
) -> list[dict[str, Any]]:
    """Recompute the items of a number from the last resolving call before ``changed_at``."""
    window = await repo.last_resolving_start(session, key, changed_at)
    items = await repo.items_of(session, key, window)
    members = await repo.members_of_items(session, [item.id for item in items])
    stored = {m.call_id: m for ms in members.values() for m in ms}
    missed = [
        MissedInput(
            call_id=call.call_id,
            started_at=call.started_at,
            number=call.caller_number,
            e164=call.caller_e164,
            caller_name=call.caller_name,
            rang=now_missed.get(call.call_id) or _stored_rang(stored.get(call.call_id), call),
            contact_id=call.contact_id,
        )
        for call in await repo.missed_calls_of(session, key, window)
    ]
    resolving = [
        ResolvingInput(
            call_id=call.call_id,
            started_at=call.started_at,
            answered_at=call.answered_at,
            direction=call.direction or "",
            extension=call.extension,
            employee_id=call.employee_id,
        )
        for call in await repo.resolving_calls_of(session, key, window)
    ]
    new_states = fold_items(key, missed, resolving)

    # Find the items again: each new state takes the earliest old item that holds one of its calls.
    old = {item.id: item for item in items}
    old_calls = {item.id: {m.call_id for m in members.get(item.id, [])} for item in items}
    taken: set[str] = set()
    rows: list[dict[str, Any]] = []
    changed: list[tuple[MissedCall, ItemState]] = []
    for state in new_states:
        calls = set(state.call_ids)
        candidates = [i for i in old if i not in taken and old_calls[i] & calls]
        if candidates:
            item_id = min(candidates, key=lambda i: (old[i].first_missed_at, i))
            taken.add(item_id)
            item = old[item_id]
            before = _state_of(item, members.get(item_id, []))
            if before == state:
                continue
            was_open = item.state == OPEN
            _apply(item, state)
            item.version += 1
            kinds = ["resolved"] if was_open and state.state == RESOLVED else ["updated"]
        else:
            item = MissedCall(id=uuid.uuid4().hex, version=1, created_at=utcnow())
            _apply(item, state)
            session.add(item)
            kinds = ["created", "resolved"] if state.state == RESOLVED else ["created"]
        changed.append((item, state))
        rows += [_outbox_row(kind, item, state) for kind in kinds]

    gone = [old[i] for i in old if i not in taken]
    for item in gone:
        item.version += 1
        before = _state_of(item, members.get(item.id, []))
        rows.append(_outbox_row("updated", item, before, state_name=DISCARDED))
    await session.flush()
    await repo.delete_items(session, [item.id for item in gone])
    await _replace_members(session, changed)
    return rows


async def _replace_members(session: AsyncSession, changed: Sequence[tuple[MissedCall, ItemState]]) -> None:
    """Write the calls and targets of these items as their states say."""
    await repo.replace_members(
        session,
        [item.id for item, _ in changed],
        [
            {
                "call_id": call_id,
                "item_id": item.id,
                "started_at": started_at,
                "extensions": list(who.extensions),
                "employee_ids": list(who.employee_ids),
                "team_ids": list(who.team_ids),
            }
            for item, state in changed
            for call_id, started_at, who in state.calls
        ],
        [
            {"item_id": item.id, "kind": kind, "value": value}
            for item, state in changed
            for kind, values in (
                ("extension", state.extensions),
                ("employee", state.employee_ids),
                ("team", state.team_ids),
            )
            for value in values
        ],
    )


def _stored_rang(member: MissedCallMember | None, call: Call) -> Rang:
    if member is not None:
        return Rang(tuple(member.extensions), tuple(member.employee_ids), tuple(member.team_ids or ()))
    # A missed call from before missed calls were tracked: what its record says.
    return Rang(
        tuple(x for x in (call.extension,) if x),
        tuple(x for x in (call.employee_id,) if x),
        tuple(x for x in (call.team_id,) if x),
    )


def _state_of(item: MissedCall, members: Sequence[MissedCallMember]) -> ItemState:
    """The values of a stored item, comparable with what :func:`fold_items` computes."""
    return ItemState(
        number_key=item.number_key,
        number=item.number,
        e164=item.e164,
        caller_name=item.caller_name,
        state=item.state,
        calls=tuple(
            (
                m.call_id,
                m.started_at,
                Rang(tuple(m.extensions), tuple(m.employee_ids), tuple(m.team_ids or ())),
            )
            for m in members
        ),
        first_missed_at=item.first_missed_at,
        last_missed_at=item.last_missed_at,
        extensions=tuple(sorted({x for m in members for x in m.extensions})),
        employee_ids=tuple(sorted({x for m in members for x in m.employee_ids})),
        team_ids=tuple(sorted({x for m in members for x in m.team_ids or ()})),
        contact_id=item.contact_id,
        resolved_at=item.resolved_at,
        resolving_call_id=item.resolving_call_id,
        resolving_direction=item.resolving_direction,
        resolving_extension=item.resolving_extension,
        resolving_employee_id=item.resolving_employee_id,
        callback_ms=item.callback_ms,
    )


def _apply(item: MissedCall, state: ItemState) -> None:
    item.number_key = state.number_key
    item.number = state.number
    item.e164 = state.e164
    item.caller_name = state.caller_name
    item.contact_id = state.contact_id
    item.state = state.state
    item.missed_count = state.missed_count
    item.first_missed_at = state.first_missed_at
    item.last_missed_at = state.last_missed_at
    item.resolved_at = state.resolved_at
    item.resolving_call_id = state.resolving_call_id
    item.resolving_direction = state.resolving_direction
    item.resolving_extension = state.resolving_extension
    item.resolving_employee_id = state.resolving_employee_id
    item.callback_ms = state.callback_ms
    item.updated_at = utcnow()


def _outbox_row(
    kind: str, item: MissedCall, state: ItemState, *, state_name: str | None = None
) -> dict[str, Any]:
    name = state_name or state.state
    event_id = f"{item.id}:{kind}:{name}:{state.missed_count}:{item.version}"
    message = missed_call_message(
        item,
        MissedCallEntry(
            item=item,
            call_ids=list(state.call_ids),
            extensions=list(state.extensions),
            employee_ids=list(state.employee_ids),
            team_ids=list(state.team_ids),
        ),
    )
    if name == DISCARDED:
        message.state = missed_pb.MISSED_CALL_STATE_DISCARDED
    event = missed_pb.MissedCallEvent(event_id=event_id, occurred_at=timestamp_message(utcnow()))
    getattr(event, kind).CopyFrom(message)
    return outbox.row(MISSED_CALL_SUBJECTS[kind], event, event_id)


# --- the messages --------------------------------------------------------------------------------


@dataclass(frozen=True)
class MissedCallEntry:
    """An item with its calls (ids, oldest first) and targets."""

    item: MissedCall
    call_ids: list[str]
    extensions: list[str]
    employee_ids: list[str]
    team_ids: list[str] = field(default_factory=list)


def missed_call_message(item: MissedCall, entry: MissedCallEntry) -> missed_pb.MissedCall:
    """The protobuf of an item (events and gRPC)."""
    return missed_pb.MissedCall(
        id=item.id,
        number=item.number or "",
        e164=item.e164 or "",
        caller_name=item.caller_name or "",
        extensions=entry.extensions,
        employee_ids=entry.employee_ids,
        contact_id=item.contact_id or "",
        team_ids=entry.team_ids,
        missed_count=item.missed_count,
        call_ids=entry.call_ids,
        first_missed_at=timestamp_message(item.first_missed_at),
        last_missed_at=timestamp_message(item.last_missed_at),
        state=STATE_VALUES.get(item.state, missed_pb.MISSED_CALL_STATE_UNSPECIFIED),
        resolved_at=timestamp_message(item.resolved_at),
        resolving_call_id=item.resolving_call_id or "",
        resolving_direction=DIRECTION_BY_NAME.get(item.resolving_direction or "", ev.DIRECTION_UNSPECIFIED),
        resolving_extension=item.resolving_extension or "",
        resolving_employee_id=item.resolving_employee_id or "",
        time_to_callback_seconds=(item.callback_ms or 0) / 1000,
        version=item.version,
        updated_at=timestamp_message(item.updated_at),
    )


# --- queries -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class MissedCallQuery:
    """Filters of the missed-call list."""

    states: tuple[str, ...] = (OPEN,)
    extension: str | None = None
    employee_id: str | None = None
    team_id: str | None = None
    number: str | None = None
    last_missed_from: datetime | None = None  # inclusive
    last_missed_to: datetime | None = None  # exclusive
    limit: int = DEFAULT_PAGE_SIZE
    cursor: str | None = None
    audience: Audience | None = None  # only the items this user may see; None: all


@dataclass(frozen=True)
class MissedCallPage:
    items: list[MissedCallEntry]
    next_cursor: str | None
    total: int


@dataclass(frozen=True)
class MissedCallDetail:
    entry: MissedCallEntry
    calls: list[CallEntry]  # the missed calls, oldest first
    resolving_call: CallEntry | None


def _rang(entry: MissedCallEntry, audience: Audience) -> bool:
    """Whether the item's calls rang the user or anyone of the teams they see."""
    if audience.employee_id is not None and audience.employee_id in entry.employee_ids:
        return True
    return not audience.team_ids.isdisjoint(entry.team_ids)


class MissedCallLog:
    """The lists of missed calls to call back, per employee, extension and number."""

    def __init__(self, db: Database, *, cursor_secret: str) -> None:
        self.db = db
        self._secret = cursor_secret.encode()

    async def list_missed_calls(self, query: MissedCallQuery) -> MissedCallPage:
        """One page of items, the latest missed call first, and how many match in all; raises
        InvalidQuery or InvalidCursor."""
        filters = self._filters(query)
        after = decode_cursor(self._secret, query.cursor, domain=CURSOR_DOMAIN) if query.cursor else None
        async with self.db.session() as session:
            rows = await repo.list_items(session, filters, after=after, limit=query.limit + 1)
            total = await repo.count_items(session, filters)
            entries = await self._entries(session, rows[: query.limit])
        next_cursor = None
        if len(rows) > query.limit:
            last = entries[-1].item
            next_cursor = encode_cursor(self._secret, last.last_missed_at, last.id, domain=CURSOR_DOMAIN)
        return MissedCallPage(items=entries, next_cursor=next_cursor, total=total)

    async def get_missed_call(self, item_id: str, audience: Audience | None = None) -> MissedCallDetail:
        """An item with its calls; raises MissedCallNotFound (also when ``audience`` may not see it)."""
        async with self.db.session() as session:
            item = await repo.get_item(session, item_id)
            if item is None:
                raise MissedCallNotFound(item_id)
            (entry,) = await self._entries(session, [item])
            if audience is not None and not _rang(entry, audience):
                raise MissedCallNotFound(item_id)
            ids = [*entry.call_ids, *([item.resolving_call_id] if item.resolving_call_id else [])]
            calls = await repo.calls_by_id(session, ids)
        resolving = calls.get(item.resolving_call_id) if item.resolving_call_id else None
        return MissedCallDetail(
            entry=entry,
            calls=[CallEntry(*calls[call_id]) for call_id in entry.call_ids if call_id in calls],
            resolving_call=CallEntry(*resolving) if resolving else None,
        )

    @staticmethod
    async def _entries(session: AsyncSession, items: Sequence[MissedCall]) -> list[MissedCallEntry]:
        ids = [item.id for item in items]
        members = await repo.members_of_items(session, ids)
        targets = await repo.targets_of_items(session, ids)
        return [
            MissedCallEntry(
                item=item,
                call_ids=[m.call_id for m in members.get(item.id, [])],
                extensions=list(targets[item.id]["extension"]) if item.id in targets else [],
                employee_ids=list(targets[item.id]["employee"]) if item.id in targets else [],
                team_ids=list(targets[item.id]["team"]) if item.id in targets else [],
            )
            for item in items
        ]

    @staticmethod
    def _filters(query: MissedCallQuery) -> MissedCallFilters:
        if not 1 <= query.limit <= MAX_PAGE_SIZE:
            raise InvalidQuery("limit", f"must be between 1 and {MAX_PAGE_SIZE}")
        unknown = sorted(set(query.states) - set(STATES))
        if unknown or not query.states:
            raise InvalidQuery("states", f"unknown state {', '.join(unknown)}" if unknown else "required")
        number = None
        if query.number is not None and query.number.strip():
            number = digits(query.number)
            if not number:
                raise InvalidQuery("number", "must contain digits")
        for name in ("last_missed_from", "last_missed_to"):
            value = getattr(query, name)
            if value is not None and value.tzinfo is None:
                raise InvalidQuery(name, "needs a timezone")
        if query.last_missed_from and query.last_missed_to and query.last_missed_from >= query.last_missed_to:
            raise InvalidQuery("last_missed_to", "must be later than last_missed_from")
        return MissedCallFilters(
            states=tuple(sorted(set(query.states))),
            extension=query.extension or None,
            employee_id=query.employee_id or None,
            team_id=query.team_id or None,
            number=number,
            last_missed_from=query.last_missed_from,
            last_missed_to=query.last_missed_to,
            audience=query.audience,
        )
