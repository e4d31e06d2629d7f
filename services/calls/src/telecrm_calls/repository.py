"""Every query of the call log, on PostgreSQL and SQLite alike."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Collection, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from sqlalchemy import (
    ColumnElement,
    Row,
    Select,
    bindparam,
    case,
    delete,
    false,
    func,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlalchemy.orm import InstrumentedAttribute

from telecrm_calls.models import Call, CallEventRow, CallParty, Employee, Recording, UTCDateTime, utcnow
from telecrm_calls.records import LINK_COLUMNS, RECORD_COLUMNS, Audience
from telecrm_common.db import insert_unnest, one_of

Keyset = tuple[datetime, str]
"""A position in a newest-first list: (time, id) of the last row of the previous page."""

if TYPE_CHECKING:
    from telecrm_calls.service import CallRecord


@dataclass(frozen=True)
class CallFilters:
    """Validated filters (see :meth:`telecrm_calls.service.CallLogService.list_calls`)."""

    number: str | None = None  # digits only
    extension: str | None = None
    dispositions: tuple[str, ...] = ()
    direction: str | None = None
    started_from: datetime | None = None
    started_to: datetime | None = None
    employee_id: str | None = None
    team_id: str | None = None
    contact_id: str | None = None
    states: tuple[str, ...] = ()
    recorded: bool | None = None
    missed: bool | None = None
    audience: Audience | None = None  # only the calls this user may see; None: all


def _insert(session: AsyncSession) -> Any:
    """The dialect's INSERT construct (both have ``on_conflict_do_nothing/update``)."""
    return postgresql.insert if _is_postgresql(session) else sqlite.insert


def _is_postgresql(session: AsyncSession) -> bool:
    return session.get_bind().dialect.name == "postgresql"


def _dialect(session: AsyncSession) -> str:
    return session.get_bind().dialect.name


def locks_to_take(session: AsyncSession, kind: str, keys: Collection[str]) -> list[str]:
    """Those of ``keys`` whose ``kind`` of lock this transaction does not hold yet, sorted; they are
    then counted as held (the caller takes them). Ingestion locks a batch's numbers up front and
    missed-call tracking asks again for them: a statement saved when it holds them all."""
    transaction = session.get_transaction()
    memo = session.info.get(kind)
    if memo is None or memo[0] is not transaction:  # a new transaction: its locks start from none
        memo = session.info[kind] = (transaction, set())
    held: set[str] = memo[1]
    wanted = sorted(set(keys) - held)
    held.update(wanted)
    return wanted


async def lock_calls(session: AsyncSession, call_ids: Collection[str]) -> None:
    """Serialize the writers of the same calls until the transaction ends.

    Replicas share the consumer, so two events of one call can be handled at the same time by two
    processes: without this, each would fold the call without the other's event and the last commit
    would win. PostgreSQL takes transaction-scoped advisory locks, in sorted order (no deadlocks);
    SQLite needs nothing, it has one writer at a time.
    """
    if session.get_bind().dialect.name != "postgresql" or not call_ids:
        return
    wanted = locks_to_take(session, "calls_locked", call_ids)
    if not wanted:
        return
    await session.execute(
        text(
            "SELECT pg_advisory_xact_lock(hashtextextended(id, 0)) "
            "FROM unnest(CAST(:ids AS text[])) WITH ORDINALITY AS t(id, n) ORDER BY n"
        ),
        {"ids": wanted},
    )


async def insert_events(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> set[str]:
    """Insert call events, skipping known event ids; returns the ids actually inserted."""
    if not rows:
        return set()
    now = utcnow()
    table = CallEventRow.__table__
    if _is_postgresql(session):
        # One statement with a column per array, the same text whatever the batch size.
        inserted = await insert_unnest(
            session,
            table,  # type: ignore[arg-type]
            rows,
            computed={"received_at": ":now"},
            params={"now": now},
            suffix="ON CONFLICT (event_id) DO NOTHING RETURNING event_id",
        )
        return set(inserted.scalars().all())
    # Parameters as a list (executemany with RETURNING, "insertmanyvalues"): one cached statement
    # whatever the batch size, where .values([...]) compiles anew for every size.
    # The Core table, not the entity: the ORM's bulk insert processed every row in Python again.
    stmt = (
        _insert(session)(table)
        .on_conflict_do_nothing(index_elements=[table.c.event_id])
        .returning(table.c.event_id)
    )
    result = await session.execute(stmt, [{**row, "received_at": now} for row in rows])
    return set(result.scalars().all())


async def store_events(
    session: AsyncSession, rows: Sequence[dict[str, Any]]
) -> tuple[set[str], dict[str, list[bytes]]]:
    """Insert call events, skipping known event ids; returns the ids inserted and, by call id, the
    payloads of the events the calls already had (stored by earlier transactions).

    The caller holds the calls' locks (:func:`lock_calls`). On PostgreSQL the earlier events are read
    first: the index then finds only them (nothing for a call seen for the first time), where a read
    after the insert visited every row just written to leave it out again. SQLite reads after the
    insert: its write lock is taken by the first write, and a transaction that read first could not
    take it while another one had read too ("database is locked").
    """
    if not rows:
        return set(), {}
    call_ids = {row["call_id"] for row in rows}
    if _is_postgresql(session):
        earlier = await load_events(session, call_ids)
        return await insert_events(session, rows), earlier
    new = await insert_events(session, rows)
    return new, await load_events(session, call_ids, skip=new)


async def load_events(
    session: AsyncSession, call_ids: Collection[str], *, skip: Collection[str] = ()
) -> dict[str, list[bytes]]:
    """The stored payloads of every event of the given calls but those of the ``skip`` event ids."""
    result: dict[str, list[bytes]] = defaultdict(list)
    if not call_ids:
        return result
    dialect = _dialect(session)
    stmt = select(CallEventRow.call_id, CallEventRow.payload).where(
        one_of(CallEventRow.call_id, call_ids, dialect)
    )
    if skip:
        stmt = stmt.where(~one_of(CallEventRow.event_id, skip, dialect))
    for call_id, payload in await session.execute(stmt):
        result[call_id].append(payload)
    return result


async def previous_states(session: AsyncSession, call_ids: Collection[str]) -> dict[str, str]:
    """The stored state (ringing, answered, ended) of those of the calls that have a record."""
    if not call_ids:
        return {}
    stmt = select(Call.call_id, Call.state).where(one_of(Call.call_id, call_ids, _dialect(session)))
    return {call_id: state for call_id, state in await session.execute(stmt)}


# What an upsert returns of each call: what the fold does not compute (the revision to publish, the
# recording flag, the links and notes an agent may have edited). With the record, the whole row.
UPSERT_RETURNS = (
    "call_id", "published_revision", "recorded", "contact_id", "task_id", "ticket_id", "reason",
    "result", "comment", "notes_version", "notes_updated_at", "notes_updated_by", "created_at",
    "updated_at",
)  # fmt: skip


def created_by_upsert(row: Row[Any]) -> bool:
    """Whether the upsert that returned ``row`` created the call's row (it existed before otherwise):
    an insert sets both times to the statement's instant, an update keeps ``created_at``."""
    return bool(row.created_at == row.updated_at)


def _upsert_set_sql() -> str:
    """The ``ON CONFLICT`` clause of the PostgreSQL upsert (the rules of :func:`upsert_calls`)."""
    assigned = [
        f"{name} = excluded.{name}" for name in RECORD_COLUMNS if name not in ("call_id", *LINK_COLUMNS)
    ]
    assigned += [
        f"{name} = CASE WHEN calls.links_edited THEN calls.{name} "
        f"ELSE coalesce(excluded.{name}, calls.{name}) END"
        for name in LINK_COLUMNS
    ]
    assigned += [
        "updated_at = excluded.updated_at",
        "recorded = calls.recorded OR excluded.recorded",
        "published_revision = CASE WHEN excluded.state = 'ended' "
        "THEN coalesce(calls.published_revision, 0) + 1 ELSE calls.published_revision END",
    ]
    return f"ON CONFLICT (call_id) DO UPDATE SET {', '.join(assigned)} RETURNING {', '.join(UPSERT_RETURNS)}"


_UPSERT_SET_SQL = _upsert_set_sql()
_UPSERT_COMPUTED = {
    # A recording may have arrived before the record.
    "recorded": "EXISTS (SELECT 1 FROM call_recordings r WHERE r.call_id = t.call_id)",
    "published_revision": "CASE WHEN t.state = 'ended' THEN 1 ELSE 0 END",
    "created_at": ":now",
    "updated_at": ":now",
}


async def upsert_calls(session: AsyncSession, records: Sequence[CallRecord]) -> dict[str, Row[Any]]:
    """Insert or replace the call records; returns, by call id, the :data:`UPSERT_RETURNS` columns of
    the rows as they now are.

    Only the columns the fold computes are written (``created_at`` and the notes are kept), the links
    (contact, task, ticket) only until an agent edited them. ``recorded`` is set when a recording is
    known (it may have arrived before the record). An ended call's ``published_revision`` goes up by
    one: the caller publishes that revision of the record (``calls.record.*``).
    """
    if not records:
        return {}
    now = utcnow()
    table = Call.__table__
    if _is_postgresql(session):
        upserted = await insert_unnest(
            session,
            table,  # type: ignore[arg-type]
            [r.row() for r in records],
            computed=_UPSERT_COMPUTED,
            params={"now": now},
            suffix=_UPSERT_SET_SQL,
        )
        return {row.call_id: row for row in upserted}
    call_ids = [r.call_id for r in records]
    has_recording = set(
        (await session.scalars(select(Recording.call_id).where(Recording.call_id.in_(call_ids)))).all()
    )
    rows = [
        {
            **r.row(),
            "recorded": r.call_id in has_recording,
            "published_revision": 1 if r.state == "ended" else 0,
            "created_at": now,
            "updated_at": now,
        }
        for r in records
    ]
    # The Core table, not the ORM entity: an executemany without the ORM's bulk-persistence overhead.
    insert = _insert(session)(table)
    keep = {"call_id", "created_at"}
    set_: dict[str, Any] = {name: insert.excluded[name] for name in rows[0] if name not in keep}
    for name in LINK_COLUMNS:
        # An agent's links stay; a link the directory made stays when the registry no longer finds one.
        kept = table.c[name]
        set_[name] = case((table.c.links_edited, kept), else_=func.coalesce(insert.excluded[name], kept))
    set_["recorded"] = or_(table.c.recorded, insert.excluded.recorded)
    set_["published_revision"] = case(
        (insert.excluded.state == "ended", func.coalesce(table.c.published_revision, 0) + 1),
        else_=table.c.published_revision,
    )
    stmt = insert.on_conflict_do_update(index_elements=[table.c.call_id], set_=set_).returning(
        *(table.c[name] for name in UPSERT_RETURNS)
    )
    return {row.call_id: row for row in await session.execute(stmt, rows)}


async def delete_calls(session: AsyncSession, call_ids: Collection[str]) -> None:
    """Remove the records (and parties) of calls the call rules no longer log."""
    if call_ids:
        dialect = _dialect(session)
        await session.execute(delete(CallParty).where(one_of(CallParty.call_id, call_ids, dialect)))
        await session.execute(delete(Call).where(one_of(Call.call_id, call_ids, dialect)))


async def replace_parties(
    session: AsyncSession, records: Sequence[CallRecord], *, new_calls: Collection[str] = ()
) -> None:
    """Write who each call involved (call_parties), replacing what was there. ``new_calls``: calls
    whose row was just created (:func:`created_by_upsert`), which have no parties to remove yet."""
    if not records:
        return
    dialect = _dialect(session)
    known = [r.call_id for r in records if r.call_id not in new_calls]
    if known:
        await session.execute(delete(CallParty).where(one_of(CallParty.call_id, known, dialect)))
    rows = [
        {
            "call_id": record.call_id,
            "extension": party.extension,
            "employee_id": party.employee_id,
            "team_id": party.team_id,
            "role": party.role,
            "started_at": record.started_at,
            "direction": record.direction,
            "disposition": record.disposition,
            "missed": record.missed,
            "talk_ms": record.talk_ms,
        }
        for record in records
        for party in record.parties
    ]
    if not rows:
        return
    if dialect == "postgresql":
        await insert_unnest(session, CallParty.__table__, rows)  # type: ignore[arg-type]
    else:
        await session.execute(CallParty.__table__.insert(), rows)  # type: ignore[attr-defined]


async def mark_recorded(session: AsyncSession, call_ids: Collection[str]) -> None:
    """Set ``recorded`` on the calls that have a recording (it may have arrived before the record)."""
    if call_ids:
        has = select(Recording.call_id).where(Recording.call_id == Call.call_id).exists()
        await session.execute(
            update(Call)
            .where(Call.call_id.in_(sorted(call_ids)), Call.recorded.is_(False), has)
            .values(recorded=True)
        )


async def insert_recordings(session: AsyncSession, rows: Sequence[dict[str, Any]]) -> int:
    """Insert recordings, skipping known recording ids; returns how many were new."""
    if not rows:
        return 0
    now = utcnow()
    stmt = (
        _insert(session)(Recording)
        .values([{**row, "created_at": now} for row in rows])
        .on_conflict_do_nothing(index_elements=[Recording.recording_id])
        .returning(Recording.recording_id)
    )
    inserted = len((await session.scalars(stmt)).all())
    await mark_recorded(session, {row["call_id"] for row in rows})
    return inserted


def _party_conditions(filters: CallFilters) -> list[ColumnElement[bool]]:
    """The whose-calls filters that can drive the query, most selective first: an employee, an
    extension (one party row per call at most; a team has several, so it stays a semi-join)."""
    found: list[ColumnElement[bool]] = []
    if filters.employee_id:
        found.append(CallParty.employee_id == filters.employee_id)
    if filters.extension:
        found.append(CallParty.extension == filters.extension)
    return found


def _calls(filters: CallFilters, *columns: Any, join_calls: bool = True) -> tuple[Select[Any], Any, Any]:
    """SELECT ``columns`` of the calls matching the filters, and the (time, id) columns to order by.

    A whose-calls filter drives the query from call_parties: its (who, started_at, call_id) index
    gives that person's calls newest first, so a page reads about as many rows as it shows (the
    rules name an employee on one party of a call, see :mod:`telecrm_calls.rules`). The call's
    direction, disposition and missed flag are filtered on the party's copies there (the employee and
    team indexes carry them), so only the rows of the page are read from ``calls``. Without
    ``join_calls`` (a count) and with no filter on the calls' other columns, ``calls`` is not joined
    at all. Without a whose-calls filter, the calls' own (started_at, call_id) index drives.
    """
    party = _party_conditions(filters)
    own = _own_conditions(filters)
    if not party:
        conditions = [
            *own,
            *_copied_conditions(filters, Call),
            *_period(filters, Call.started_at),
            *_whose(filters, Call.call_id),
        ]
        return select(*columns).select_from(Call).where(*conditions), Call.started_at, Call.call_id
    driver, others = party[0], party[1:]
    stmt = select(*columns).select_from(CallParty)
    if join_calls or own:
        stmt = stmt.join(Call, Call.call_id == CallParty.call_id)
    stmt = stmt.where(
        driver,
        *_copied_conditions(filters, CallParty),
        *_period(filters, CallParty.started_at),
        *own,
        *(_involving(condition, filters, CallParty.call_id) for condition in others),
        *_whose(filters, CallParty.call_id),
    )
    return stmt, CallParty.started_at, CallParty.call_id


def _own_conditions(filters: CallFilters) -> list[ColumnElement[bool]]:
    """The conditions only the calls' own columns answer."""
    conditions: list[ColumnElement[bool]] = []
    if filters.number:
        # Digits only: nothing to escape. A trigram index serves it on PostgreSQL.
        conditions.append(Call.party_digits.like(f"%{filters.number}%"))
    if filters.contact_id:
        conditions.append(Call.contact_id == filters.contact_id)
    if filters.states:
        conditions.append(Call.state.in_(filters.states))
    if filters.recorded is not None:
        conditions.append(Call.recorded.is_(filters.recorded))
    return conditions


def _copied_conditions(
    filters: CallFilters, source: type[Call] | type[CallParty]
) -> list[ColumnElement[bool]]:
    """The conditions on the columns a party copies from its call (:class:`models.CallParty`), on the
    calls or on the parties."""
    conditions: list[ColumnElement[bool]] = []
    if filters.missed is not None:
        conditions.append(source.missed.is_(filters.missed))
    if filters.dispositions:
        conditions.append(source.disposition.in_(filters.dispositions))
    if filters.direction:
        conditions.append(source.direction == filters.direction)
    return conditions


def _period(filters: CallFilters, column: Any) -> list[ColumnElement[bool]]:
    conditions: list[ColumnElement[bool]] = []
    if filters.started_from is not None:
        conditions.append(column >= filters.started_from)
    if filters.started_to is not None:
        conditions.append(column < filters.started_to)
    return conditions


def _whose(filters: CallFilters, call_id: InstrumentedAttribute[str]) -> list[ColumnElement[bool]]:
    """The team filter and what the user may see, as semi-joins on call_parties (a team names
    several parties of a call)."""
    conditions: list[ColumnElement[bool]] = []
    if filters.team_id:
        conditions.append(_involving(CallParty.team_id == filters.team_id, filters, call_id))
    audience = filters.audience
    if audience is not None and not audience.covers(filters.employee_id, filters.team_id):
        conditions.append(_involving(_audience_condition(audience), filters, call_id))
    return conditions


def _audience_condition(audience: Audience) -> ColumnElement[bool]:
    """Parties of the user or of the teams they see (false when neither: a user with no employee)."""
    clauses: list[ColumnElement[bool]] = []
    if audience.employee_id is not None:
        clauses.append(CallParty.employee_id == audience.employee_id)
    if audience.team_ids:
        clauses.append(CallParty.team_id.in_(sorted(audience.team_ids)))
    return or_(*clauses) if clauses else false()


async def call_visible(session: AsyncSession, call_id: str, audience: Audience) -> bool:
    """Whether the call involved the user or anyone of the teams they see."""
    stmt = select(CallParty.call_id).where(CallParty.call_id == call_id, _audience_condition(audience))
    return (await session.scalar(stmt.limit(1))) is not None


def _involving(
    condition: ColumnElement[bool], filters: CallFilters, call_id: InstrumentedAttribute[str]
) -> ColumnElement[bool]:
    """Calls (``call_id``: the column naming them) with a party matching ``condition`` (an extension,
    employee or team), its period repeated on call_parties so that its (who, started_at) indexes bound
    the scan."""
    parties = select(CallParty.call_id).where(condition, *_period(filters, CallParty.started_at))
    # Never correlated: the outer query may read call_parties too (a semi-join on the same table).
    return call_id.in_(parties.correlate(None))


def newest_first_page(
    stmt: Select[Any],
    at: InstrumentedAttribute[datetime],
    key: InstrumentedAttribute[str],
    *,
    after: Keyset | None,
    limit: int,
    oldest_first: bool = False,
) -> Select[Any]:
    """Keyset pagination, newest first: order by (``at``, ``key``) descending, strictly after ``after``
    (ascending with ``oldest_first``).

    Shared by every list of the call log (calls, missed-call items) so their cursors behave alike.
    """
    if after is not None:
        at_value, key_value = after
        position = tuple_(at, key)
        bound = tuple_(
            bindparam("after_at", at_value, type_=UTCDateTime()), bindparam("after_key", key_value)
        )
        stmt = stmt.where(position > bound if oldest_first else position < bound)
    if oldest_first:
        return stmt.order_by(at.asc(), key.asc()).limit(limit)
    return stmt.order_by(at.desc(), key.desc()).limit(limit)


async def list_calls(
    session: AsyncSession,
    filters: CallFilters,
    *,
    after: tuple[datetime, str] | None,
    limit: int,
    oldest_first: bool = False,
) -> list[tuple[Call, bool]]:
    """Calls matching the filters, newest first (started_at, then call_id, both descending; ascending
    with ``oldest_first``), strictly after the ``after`` position (keyset pagination)."""
    stmt, at, key = _calls(filters, Call)
    stmt = newest_first_page(stmt, at, key, after=after, limit=limit, oldest_first=oldest_first)
    return [(call, call.recorded) for call in (await session.scalars(stmt)).all()]


async def count_calls(session: AsyncSession, filters: CallFilters) -> int:
    """How many calls match the filters (on all pages): the WHERE clause of :func:`list_calls`."""
    stmt, _, _ = _calls(filters, func.count(), join_calls=False)
    return int((await session.execute(stmt)).scalar_one())


async def ended_calls(session: AsyncSession, call_ids: Collection[str]) -> list[Call]:
    """The ended calls among these, as they are now (reloaded: the upserts went around the session)."""
    if not call_ids:
        return []
    stmt = (
        select(Call)
        .where(Call.call_id.in_(sorted(call_ids)), Call.state == "ended")
        .order_by(Call.call_id)
        .execution_options(populate_existing=True)
    )
    return list((await session.scalars(stmt)).all())


async def team_of(session: AsyncSession, employee_id: str) -> str | None:
    stmt = select(Employee.team_id).where(Employee.employee_id == employee_id, Employee.deleted.is_(False))
    return (await session.execute(stmt)).scalar_one_or_none()


async def get_call(session: AsyncSession, call_id: str) -> tuple[Call, bool] | None:
    call = await session.get(Call, call_id)
    return None if call is None else (call, call.recorded)
