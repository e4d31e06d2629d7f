"""Call reports: what an employee, a team, a contact or the whole company did on the phone over a period.

No web or gRPC imports here: :mod:`telecrm_calls.reports_api` (REST, JSON and SVG) and
:mod:`telecrm_calls.reports_grpc` sit on :class:`CallReportService`; the charts are drawn by
:mod:`telecrm_calls.reports_svg`. Every number is an aggregate computed by the database
(:mod:`telecrm_calls.reports_repository`): a report is three small queries (the calls per time bucket,
the missed-call items, the subject's name) whatever the number of calls; no call row reaches Python.

The period is [start, end): the calls that *started* in it (``calls.started_at``), at most 366 days
(counted in local days). Its time zone (an IANA name, UTC by default) decides the hours and weekdays.

Which calls are the subject's:

- employee: the calls that involved the employee, found through ``call_parties`` (any of their
  extensions, in any role: answered, placed, rang, transferred to), counted once each;
- team: the calls that involved anyone of the team *at the time of the call* (the party's team),
  counted once each, however many members they rang;
- contact: the calls linked to the contact (``calls.contact_id``);
- company: every call.

The numbers (:class:`CallCounts`):

- ``calls``: the subject's calls; ``inbound``, ``outbound``, ``internal``: of them, by direction (a call
  whose direction is not known yet is counted in ``calls`` only);
- ``answered``: calls with disposition ``answered`` on which the subject talked: for an employee or a
  team, one of its parties answered the call (inbound, internal) or placed it (outbound, internal) -
  an outbound call is answered when the other side picked up. For a contact or the company: every
  answered call. ``answered_inbound`` / ``_outbound`` / ``_internal`` split it by direction;
- ``answered_by_others``: inbound calls that rang the employee or team and that someone else answered
  (a ring group); always 0 for a contact or the company. So ``inbound`` = ``answered_inbound`` +
  ``answered_by_others`` + ``missed`` + the rest (busy, failed, still ringing...);
- ``missed``: missed inbound calls (``calls.missed`` and direction inbound) that rang the subject (an
  internal call nobody answered is counted in ``internal`` only; a call still ringing or talking has
  no disposition yet and is counted in ``calls`` and its direction only);
- ``missed_outgoing``: outgoing external calls of the subject that did not get through (``calls.missed``
  and direction outbound: busy, no answer, failed...);
- ``talk_ms``: talk time (answer to end, ``calls.talk_ms``) summed over the ``answered`` calls;
  ``mean_talk_ms``: its mean over those of them whose talk time is known. A call handed on by a
  transfer counts its whole talk time for the party that answered it; a transfer target does not count
  the call as answered (its role is ``transferred``).

The callbacks (:class:`CallbackStats`), over the missed-call items (:mod:`telecrm_calls.missed`) of the
subject whose *first* missed call started in the period - an item groups the missed calls from one
number until an answered call with it:

- employee / team: the items that name it in ``missed_call_targets`` (the missed calls rang it);
  contact: the items of its number (``missed_calls.contact_id``); company: every item;
- ``missed_items``: those items; ``resolved``: of them, resolved since (as of now) by an answered call
  with the number; ``called_back``: resolved by our outgoing call (the rest of ``resolved``: the
  customer called again and was answered); ``open``: still waiting;
- ``mean_callback_ms``: the mean of ``callback_ms`` (resolving call answered - first missed call
  started, how long the customer waited) over the resolved items.

Busiest hours and weekdays (:class:`HourCount`, :class:`WeekdayCount`): the subject's calls (with the
answered and missed ones among them) per hour of the day 0..23 and per ISO weekday, in local time of
the report's time zone. The database groups the calls by UTC time bucket (an hour, or a quarter of an
hour for zones whose offsets are not whole hours: India, Nepal...); each bucket is then placed in
local time here, so daylight saving time is right on both databases. ``busiest_hour`` is the hour
with most calls (the earliest on a tie), ``None`` without calls.

The ranking (:meth:`CallReportService.employee_ranking`) is the same :class:`CallCounts` and
:class:`CallbackStats` per employee, for a team (the calls each member had as a member of it, and the
members the crm read model lists, with zeros when they had no call) or for everyone, sorted by one of
:data:`SORT_KEYS`. Its callbacks are each employee's items, whatever team they were in at the time.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, time, timedelta
from typing import Literal
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from telecrm_calls import reports_repository as repo
from telecrm_calls.records import InvalidQuery
from telecrm_calls.reports_repository import COMPANY, CONTACT, EMPLOYEE, TEAM, CallTotals, ItemTotals
from telecrm_common.db import Database

SubjectKind = Literal["employee", "team", "contact", "company"]
SUBJECT_KINDS: tuple[SubjectKind, ...] = (EMPLOYEE, TEAM, CONTACT, COMPANY)

MAX_PERIOD_DAYS = 366
EARLIEST = datetime(1970, 1, 1, tzinfo=UTC)
LATEST = datetime(9000, 1, 1, tzinfo=UTC)
DEFAULT_RANKING_LIMIT = 100
MAX_RANKING_LIMIT = 1000
WEEKDAY_NAMES = ("Mon", "Tue", "Wed", "Thu", "Fri", "Sat", "Sun")

# Ranking keys: what a supervisor sorts the employees by.
SORT_KEYS = (
    "calls",
    "inbound",
    "outbound",
    "internal",
    "answered",
    "answered_inbound",
    "answered_outbound",
    "missed",
    "missed_outgoing",
    "talk",
    "mean_talk",
    "missed_items",
    "resolved",
    "called_back",
    "open",
    "mean_callback",
    "name",
)


# --- the period ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Period:
    """[start, end) in UTC, and the time zone of the report's hours and weekdays."""

    start: datetime
    end: datetime
    tz: ZoneInfo

    @property
    def tz_name(self) -> str:
        return self.tz.key

    def local(self, value: datetime) -> datetime:
        return value.astimezone(self.tz)

    @property
    def whole_days(self) -> bool:
        """Both ends are local midnights: the period reads as dates."""
        return all(self.local(v).time() == time(0) for v in (self.start, self.end))


def time_zone(name: str | None) -> ZoneInfo:
    """The IANA time zone of that name (UTC when empty); raises InvalidQuery("tz")."""
    if not name:
        return ZoneInfo("UTC")
    if len(name) > 64:
        raise InvalidQuery("tz", "is not a time zone (too long)")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise InvalidQuery("tz", f"unknown time zone {name!r} (an IANA name such as Europe/Berlin)") from None


def period(start: datetime, end: datetime, tz: str | None = None) -> Period:
    """A validated period: aware ``start`` < ``end``, at most 366 local days, a known time zone.

    Raises InvalidQuery naming ``start``, ``end`` or ``tz``.
    """
    zone = time_zone(tz)
    for name, value in (("start", start), ("end", end)):
        if value.tzinfo is None:
            raise InvalidQuery(name, "needs a timezone")
        if not EARLIEST <= value <= LATEST:
            raise InvalidQuery(name, f"must be between {EARLIEST:%Y-%m-%d} and {LATEST:%Y-%m-%d}")
    if start >= end:
        raise InvalidQuery("end", "must be later than start")
    local_start = start.astimezone(zone).replace(tzinfo=None)
    local_end = end.astimezone(zone).replace(tzinfo=None)
    if local_end - local_start > timedelta(days=MAX_PERIOD_DAYS):
        raise InvalidQuery("end", f"the period is longer than {MAX_PERIOD_DAYS} days")
    return Period(start.astimezone(UTC), end.astimezone(UTC), zone)


def parse_bound(name: str, text: str, zone: ZoneInfo) -> datetime:
    """An ISO 8601 date (local midnight) or datetime (local when it has no offset); raises InvalidQuery."""
    try:
        value = datetime.fromisoformat(text.strip())  # a date alone is its midnight
    except ValueError:
        raise InvalidQuery(
            name, "must be an ISO 8601 date or date and time (2025-03-01, 2025-03-01T08:00)"
        ) from None
    if value.tzinfo is None:
        value = value.replace(tzinfo=zone)
    try:
        return value.astimezone(UTC)
    except (OverflowError, ValueError):
        raise InvalidQuery(name, "is out of range") from None


def parse_period(start: str, end: str, tz: str | None = None) -> Period:
    """A period from text, the way people write it: ``2025-03-01`` .. ``2025-04-01`` is March (the end
    is exclusive), in ``tz``; raises InvalidQuery naming ``start``, ``end`` or ``tz``."""
    zone = time_zone(tz)
    return period(parse_bound("start", start, zone), parse_bound("end", end, zone), zone.key)


def _bucket_seconds(window: Period) -> int:
    """The widest UTC bucket that falls within one local hour all over the period: 3600 unless the zone
    has offsets that are not whole hours (India, Nepal, Newfoundland...)."""
    offsets = set()
    day = window.start
    while day <= window.end:
        offsets.add(_offset_seconds(window, day))
        day += timedelta(days=1)
    offsets.add(_offset_seconds(window, window.end))
    if all(offset % 3600 == 0 for offset in offsets):
        return 3600
    if all(offset % 900 == 0 for offset in offsets):
        return 900
    return 60


def _offset_seconds(window: Period, when: datetime) -> int:
    offset = when.astimezone(window.tz).utcoffset()
    return int(offset.total_seconds()) if offset is not None else 0


# --- the report ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Subject:
    kind: SubjectKind
    id: str | None = None  # None for the company
    name: str | None = None  # from the crm read models, when known

    @property
    def label(self) -> str:
        """How people call it: the name, else the id."""
        if self.kind == COMPANY:
            return "Whole company"
        return self.name or self.id or ""


@dataclass(frozen=True)
class CallCounts:
    """The call numbers of a subject over a period (see the module docstring)."""

    calls: int = 0
    inbound: int = 0
    outbound: int = 0
    internal: int = 0
    answered: int = 0
    answered_inbound: int = 0
    answered_outbound: int = 0
    answered_internal: int = 0
    answered_by_others: int = 0
    missed: int = 0
    missed_outgoing: int = 0
    talk_ms: int = 0
    mean_talk_ms: int | None = None

    @classmethod
    def from_totals(cls, totals: CallTotals) -> CallCounts:
        return cls(
            calls=totals.calls,
            inbound=totals.inbound,
            outbound=totals.outbound,
            internal=totals.internal,
            answered=totals.answered,
            answered_inbound=totals.answered_inbound,
            answered_outbound=totals.answered_outbound,
            answered_internal=totals.answered_internal,
            answered_by_others=totals.answered_by_others,
            missed=totals.missed,
            missed_outgoing=totals.missed_outgoing,
            talk_ms=totals.talk_ms,
            mean_talk_ms=_mean(totals.talk_ms, totals.talked),
        )


@dataclass(frozen=True)
class CallbackStats:
    """The subject's missed-call items whose first missed call is in the period (see the docstring)."""

    missed_items: int = 0
    resolved: int = 0
    called_back: int = 0
    open: int = 0
    mean_callback_ms: int | None = None

    @classmethod
    def from_totals(cls, totals: ItemTotals) -> CallbackStats:
        return cls(
            missed_items=totals.items,
            resolved=totals.resolved,
            called_back=totals.called_back,
            open=totals.open,
            mean_callback_ms=_mean(totals.callback_ms, totals.callbacks),
        )


def _mean(total: int, count: int) -> int | None:
    return round(total / count) if count else None


@dataclass(frozen=True)
class HourCount:
    hour: int  # 0..23, local
    calls: int = 0
    answered: int = 0
    missed: int = 0


@dataclass(frozen=True)
class WeekdayCount:
    weekday: int  # ISO: 1 Monday .. 7 Sunday, local
    calls: int = 0
    answered: int = 0
    missed: int = 0

    @property
    def name(self) -> str:
        return WEEKDAY_NAMES[self.weekday - 1]


@dataclass(frozen=True)
class CallReport:
    subject: Subject
    period: Period
    counts: CallCounts
    callbacks: CallbackStats
    hours: list[HourCount]  # 24, hour 0 first
    weekdays: list[WeekdayCount]  # 7, Monday first

    @property
    def busiest_hour(self) -> int | None:
        """The local hour with most calls (the earliest on a tie); None without calls."""
        return _busiest((h.hour, h.calls) for h in self.hours)

    @property
    def busiest_weekday(self) -> int | None:
        return _busiest((d.weekday, d.calls) for d in self.weekdays)


def _busiest(counts: Iterable[tuple[int, int]]) -> int | None:
    best = max(counts, key=lambda pair: (pair[1], -pair[0]), default=None)
    return best[0] if best is not None and best[1] > 0 else None


def distribution(
    buckets: Iterable[tuple[int, CallTotals]], bucket_seconds: int, tz: ZoneInfo
) -> tuple[list[HourCount], list[WeekdayCount]]:
    """The calls per local hour of day and per local weekday, from per-UTC-bucket totals."""
    hours = [[0, 0, 0] for _ in range(24)]
    weekdays = [[0, 0, 0] for _ in range(7)]
    for bucket, totals in buckets:
        local = datetime.fromtimestamp(bucket * bucket_seconds, tz)
        for counter in (hours[local.hour], weekdays[local.isoweekday() - 1]):
            counter[0] += totals.calls
            counter[1] += totals.answered
            counter[2] += totals.missed
    return (
        [HourCount(hour, *values) for hour, values in enumerate(hours)],
        [WeekdayCount(day + 1, *values) for day, values in enumerate(weekdays)],
    )


# --- the ranking ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class EmployeeRow:
    employee_id: str
    name: str | None
    team_id: str | None
    counts: CallCounts
    callbacks: CallbackStats

    def metric(self, key: str) -> int | str | None:
        """The value sorted by under a :data:`SORT_KEYS` key."""
        if key == "name":
            return (self.name or self.employee_id).casefold()
        if key == "talk":
            return self.counts.talk_ms
        if key == "mean_talk":
            return self.counts.mean_talk_ms
        if key == "mean_callback":
            return self.callbacks.mean_callback_ms
        if key in ("missed_items", "resolved", "called_back", "open"):
            value: int = getattr(self.callbacks, key)
            return value
        value = getattr(self.counts, key)
        return value


@dataclass(frozen=True)
class EmployeeRanking:
    period: Period
    team_id: str | None
    team_name: str | None
    sort: str
    ascending: bool
    rows: list[EmployeeRow]  # at most ``limit``
    total: int  # rows before the limit

    @property
    def label(self) -> str:
        if self.team_id is None:
            return "All employees"
        return f"Team {self.team_name or self.team_id}"


def rank(rows: Iterable[EmployeeRow], sort: str, *, ascending: bool) -> list[EmployeeRow]:
    """Rows by ``sort`` (rows without a value, such as a mean over nothing, last either way), then by
    name and id."""
    with_value = [row for row in rows if row.metric(sort) is not None]
    without = [row for row in rows if row.metric(sort) is None]

    def by_name(row: EmployeeRow) -> tuple[str, str]:
        return ((row.name or row.employee_id).casefold(), row.employee_id)

    with_value.sort(key=by_name)
    with_value.sort(key=lambda row: row.metric(sort) or 0, reverse=not ascending)  # stable: ties by name
    return with_value + sorted(without, key=by_name)


# --- the service ---------------------------------------------------------------------------------


class CallReportService:
    """Reports of the call log over one database."""

    def __init__(self, db: Database) -> None:
        self.db = db

    async def report(self, kind: SubjectKind, subject_id: str | None, window: Period) -> CallReport:
        """The report of a subject over a period; raises InvalidQuery for an unknown kind or a missing id.

        An id nobody knows gives a report of zeros (the crm read model may lag behind the calls).
        """
        if kind not in SUBJECT_KINDS:
            raise InvalidQuery("kind", f"unknown report subject {kind}")
        if kind == COMPANY:
            subject_id = None
        elif not subject_id:
            raise InvalidQuery(f"{kind}_id", "required")
        seconds = _bucket_seconds(window)
        async with self.db.session() as session:
            await repo.prepare(session)
            buckets = await repo.call_totals_by_bucket(
                session, kind, subject_id, window.start, window.end, bucket_seconds=seconds
            )
            items = await repo.item_totals(session, kind, subject_id, window.start, window.end)
            name = await repo.subject_name(session, kind, subject_id)
        totals = sum((totals for _, totals in buckets), CallTotals())
        hours, weekdays = distribution(buckets, seconds, window.tz)
        return CallReport(
            subject=Subject(kind, subject_id, name),
            period=window,
            counts=CallCounts.from_totals(totals),
            callbacks=CallbackStats.from_totals(items),
            hours=hours,
            weekdays=weekdays,
        )

    async def employee_report(self, employee_id: str, window: Period) -> CallReport:
        """The report of one employee (what the benchmark times for a month)."""
        return await self.report(EMPLOYEE, employee_id, window)

    async def team_report(self, team_id: str, window: Period) -> CallReport:
        return await self.report(TEAM, team_id, window)

    async def contact_report(self, contact_id: str, window: Period) -> CallReport:
        return await self.report(CONTACT, contact_id, window)

    async def company_report(self, window: Period) -> CallReport:
        return await self.report(COMPANY, None, window)

    async def employee_ranking(
        self,
        window: Period,
        *,
        team_id: str | None = None,
        sort: str = "calls",
        ascending: bool = False,
        limit: int = DEFAULT_RANKING_LIMIT,
    ) -> EmployeeRanking:
        """Per-employee numbers of a team (or everyone), sorted; raises InvalidQuery for a bad sort key or
        limit."""
        if sort not in SORT_KEYS:
            raise InvalidQuery("sort", f"unknown key {sort!r}; one of {', '.join(SORT_KEYS)}")
        if not 1 <= limit <= MAX_RANKING_LIMIT:
            raise InvalidQuery("limit", f"must be between 1 and {MAX_RANKING_LIMIT}")
        team_id = team_id or None
        async with self.db.session() as session:
            await repo.prepare(session)
            calls = await repo.call_totals_by_employee(session, window.start, window.end, team_id=team_id)
            listed = await repo.listed_employees(session, team_id)
            employee_ids = set(calls) | set(listed)
            items = await repo.item_totals_by_employee(
                session, window.start, window.end, employee_ids=employee_ids if team_id else None
            )
            if team_id is None:
                employee_ids |= set(items)
            names = {**listed, **await repo.employee_names(session, employee_ids - set(listed))}
            team_name = await repo.subject_name(session, TEAM, team_id) if team_id else None
        rows = [
            EmployeeRow(
                employee_id=employee_id,
                name=names[employee_id].name if employee_id in names else None,
                team_id=names[employee_id].team_id if employee_id in names else team_id,
                counts=CallCounts.from_totals(calls.get(employee_id, CallTotals())),
                callbacks=CallbackStats.from_totals(items.get(employee_id, ItemTotals())),
            )
            for employee_id in employee_ids
        ]
        ranked = rank(rows, sort, ascending=ascending)
        return EmployeeRanking(
            period=window,
            team_id=team_id,
            team_name=team_name,
            sort=sort,
            ascending=ascending,
            rows=ranked[:limit],
            total=len(ranked),
        )


def seconds(ms: int | None) -> float | None:
    """Milliseconds as seconds for the APIs (None stays None)."""
    return None if ms is None else ms / 1000


def format_duration(ms: int | None) -> str:
    """``1 h 05 min``, ``4 min 10 s``, ``12 s``, ``-`` for nothing: for people, in the charts."""
    if ms is None:
        return "-"
    total = math.floor(ms / 1000 + 0.5)
    hours, rest = divmod(total, 3600)
    minutes, secs = divmod(rest, 60)
    if hours:
        return f"{hours} h {minutes:02d} min"
    if minutes:
        return f"{minutes} min {secs:02d} s"
    return f"{secs} s"
