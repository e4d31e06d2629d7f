"""The screen pop's number look-up: who is calling, in about a millisecond, at a million contacts.

Why it is built this way:

- The number is parsed like the contacts' numbers (:mod:`telecrm_crm.phones`), so any format finds
  them: "+7 (499) 369-04-39", "8 499 3690439", "00359...", "sip:+359...@pbx". The exact match is an
  equality on the indexed ``e164`` column. Only when it finds nobody, the last N digits
  (``suffix_digits``, 9 by default) are looked up as a range on the indexed reversed digits, which
  finds numbers stored with another or no country code, or that did not parse. Either is one indexed
  statement. On PostgreSQL they run on a small asyncpg pool of the look-up's own (``pool_size``),
  prepared once per connection with PostgreSQL's plan cache: the service's shared pool pings every
  connection it hands out and re-plans every statement (right for its other queries), which alone
  costs more than the look-up. Elsewhere (SQLite) they run on the service's engine.
- Several contacts with the number: when they are one company and its persons (a switchboard), the
  company's card is the answer; after a last-digits match the one contact in the caller's country
  ranks first; otherwise the answer is ``ambiguous`` with the candidates, best first (most recently
  changed), and the agent picks.
- A user sees only the contacts they may see (``hidden`` counts the others, so the desktop can say
  "known, but not yours" instead of offering to create a duplicate); other services (gRPC) see all.
- The card's details come from other parts through small protocols injected here: the responsible
  employee's name and extension (:class:`EmployeeDirectory`), the contact's open tasks
  (:class:`OpenTasksProvider`) and last calls (:class:`CallHistoryProvider`). Unwired, they give
  nothing. They run concurrently and only within what is left of the caller's deadline: a slow or
  failing one leaves its part out and marks the answer ``incomplete``; the card itself is never late
  because of them.
- A small in-process cache (``cache_ttl`` seconds, 2 by default; 0 turns it off) answers the repeats of
  one call (the gateway's name look-up, then the desktop's card). Every committed contact change on
  this replica empties it (:meth:`NumberLookup.invalidate`); a change made by another replica is seen
  within the TTL at the latest.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping, Sequence
from contextlib import asynccontextmanager
from dataclasses import dataclass, field, replace
from datetime import datetime
from typing import Any, Literal, Protocol, TypeVar

import asyncpg
from sqlalchemy import Select, bindparam, select
from sqlalchemy.dialects.postgresql import asyncpg as asyncpg_dialect

from telecrm_common.auth import Principal
from telecrm_common.db import Database
from telecrm_crm.contacts import may_see_owner
from telecrm_crm.contacts_models import Contact, ContactPhone
from telecrm_crm.phones import ParsedPhone, country_code_of, is_region, parse_phone, suffix_range

log = logging.getLogger(__name__)

Match = Literal["exact", "suffix", "ambiguous", "none"]
DEFAULT_SUFFIX_DIGITS = 9
MIN_SUFFIX_DIGITS = 6  # fewer would match far too many numbers
DEFAULT_MAX_CANDIDATES = 10
MAX_CANDIDATES = 50
FETCH_LIMIT = MAX_CANDIDATES + 1  # phone rows read per look-up
T = TypeVar("T")


# --- what other parts provide ----------------------------------------------------------------------


class EmployeeDirectory(Protocol):
    """People: an employee's name and extension, or None when unknown."""

    async def get(self, employee_id: str) -> tuple[str, str | None] | None: ...


@dataclass(frozen=True, slots=True)
class OpenTask:
    task_id: str
    title: str
    status: str
    due_at: datetime | None = None


class OpenTasksProvider(Protocol):
    """Tasks: a contact's unfinished tasks (nearest deadline first, at most ``limit``) and their count."""

    async def open_tasks(self, contact_id: str, limit: int) -> tuple[Sequence[OpenTask], int]: ...


@dataclass(frozen=True, slots=True)
class RecentCall:
    call_id: str
    started_at: datetime
    direction: str  # inbound, outbound, internal
    disposition: str  # answered, missed, busy...
    talk_seconds: int = 0
    employee_id: str | None = None


@dataclass(frozen=True, slots=True)
class CallsSummary:
    total: int = 0
    missed: int = 0
    recent: tuple[RecentCall, ...] = ()


class CallHistoryProvider(Protocol):
    """The call log: the last calls with a contact, or with a number no contact has."""

    async def recent_calls(self, *, contact_id: str | None, e164: str | None, limit: int) -> CallsSummary: ...


# --- the answer ------------------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class CardPhone:
    id: str
    number: str
    e164: str | None
    extension: str | None
    kind: str
    valid: bool


@dataclass(frozen=True, slots=True)
class Card:
    """What a screen pop shows of a contact."""

    contact_id: str
    kind: str
    name: str
    company_id: str | None
    company_name: str | None
    job_title: str | None
    responsible_employee_id: str | None
    owner_employee_id: str | None
    owner_team_id: str | None
    version: int
    updated_at: datetime
    phone: CardPhone | None  # the number that matched (None for a company shown for its persons)
    responsible_employee_name: str | None = None
    responsible_extension: str | None = None

    @property
    def family(self) -> str | None:
        """The company this contact is or belongs to."""
        return self.contact_id if self.kind == "company" else self.company_id


@dataclass
class LookupResult:
    number: str  # as asked
    e164: str | None  # as parsed
    match: Match
    contact: Card | None = None
    candidates: list[Card] = field(default_factory=list)
    hidden: int = 0  # matching contacts the asker may not see
    open_tasks: list[OpenTask] = field(default_factory=list)
    open_tasks_total: int = 0
    calls: CallsSummary | None = None
    incomplete: bool = False  # some details were left out (deadline, or a part failed)


# --- the statements --------------------------------------------------------------------------------

_P = ContactPhone.__table__
_C = Contact.__table__
_COMPANY = _C.alias("company")
_CARD_COLUMNS = (
    _C.c.id,
    _C.c.kind,
    _C.c.name,
    _C.c.company_id,
    _COMPANY.c.name.label("company_name"),
    _C.c.job_title,
    _C.c.responsible_employee_id,
    _C.c.owner_employee_id,
    _C.c.owner_team_id,
    _C.c.version,
    _C.c.updated_at,
)
_PHONE_COLUMNS = (_P.c.id, _P.c.raw, _P.c.e164, _P.c.extension, _P.c.kind, _P.c.valid, _P.c.rdigits)
_FROM = _P.join(_C, _C.c.id == _P.c.contact_id).outerjoin(_COMPANY, _COMPANY.c.id == _C.c.company_id)


def _phones_where(*conditions: Any) -> Select[Any]:
    return (
        select(*_CARD_COLUMNS, *_PHONE_COLUMNS)
        .select_from(_FROM)
        .where(*conditions, _C.c.deleted_at.is_(None))
        .order_by(_C.c.updated_at.desc(), _C.c.id, _P.c.position)
        .limit(FETCH_LIMIT)
    )


EXACT = _phones_where(_P.c.e164 == bindparam("e164"))
SUFFIX = _phones_where(_P.c.rdigits >= bindparam("low"), _P.c.rdigits < bindparam("high"))
COMPANY = (
    select(*_CARD_COLUMNS)
    .select_from(_C.outerjoin(_COMPANY, _COMPANY.c.id == _C.c.company_id))
    .where(_C.c.id == bindparam("contact_id"), _C.c.deleted_at.is_(None))
)


Run = Callable[[Select[Any], Mapping[str, Any]], Awaitable[Sequence[Any]]]


@dataclass(frozen=True)
class _Compiled:
    """A statement as asyncpg runs it: its SQL with $n parameters, their names and defaults."""

    sql: str
    names: tuple[str, ...]
    defaults: Mapping[str, Any]

    @classmethod
    def of(cls, statement: Select[Any]) -> _Compiled:
        compiled = statement.compile(dialect=asyncpg_dialect.dialect())  # type: ignore[no-untyped-call]
        return cls(str(compiled), tuple(compiled.positiontup or ()), dict(compiled.params))

    def args(self, params: Mapping[str, Any]) -> list[Any]:
        return [params[name] if name in params else self.defaults[name] for name in self.names]


class _PostgresReader:
    """The look-up's statements on an asyncpg pool of its own (created at the first look-up)."""

    def __init__(self, dsn: str, size: int) -> None:
        self._dsn = dsn
        self._size = size
        self._pool: Any = None
        self._lock = asyncio.Lock()
        self._compiled = {id(s): _Compiled.of(s) for s in (EXACT, SUFFIX, COMPANY)}

    async def _get_pool(self) -> Any:
        if self._pool is None:
            async with self._lock:
                if self._pool is None:
                    self._pool = await asyncpg.create_pool(
                        self._dsn, min_size=1, max_size=self._size, max_inactive_connection_lifetime=300
                    )
        return self._pool

    @asynccontextmanager
    async def connection(self) -> AsyncIterator[Run]:
        pool = await self._get_pool()
        async with pool.acquire() as conn:

            async def run(statement: Select[Any], params: Mapping[str, Any]) -> Sequence[Any]:
                compiled = self._compiled[id(statement)]
                return await conn.fetch(compiled.sql, *compiled.args(params))  # type: ignore[no-any-return]

            yield run

    async def close(self) -> None:
        if self._pool is not None:
            await self._pool.close()
            self._pool = None


def _card(row: Sequence[Any], phone: CardPhone | None) -> Card:
    return Card(
        contact_id=row[0],
        kind=row[1],
        name=row[2],
        company_id=row[3],
        company_name=row[4],
        job_title=row[5],
        responsible_employee_id=row[6],
        owner_employee_id=row[7],
        owner_team_id=row[8],
        version=row[9],
        updated_at=row[10],
        phone=phone,
    )


@dataclass(frozen=True, slots=True)
class _Found:
    """What the database said about a number (cached): the matching contacts, best first."""

    method: Literal["exact", "suffix", "none"]
    cards: tuple[tuple[Card, str | None], ...]  # with the matched phone's digits (reversed)
    company: Card | None  # the company of them all, when they are one company's family


class LookupCache:
    """A small LRU of look-ups with a time to live; :meth:`clear` after every change of contacts."""

    def __init__(self, ttl: float, max_entries: int = 10_000) -> None:
        self.ttl = ttl
        self.max_entries = max_entries
        self._entries: OrderedDict[str, tuple[float, _Found]] = OrderedDict()
        self.generation = 0

    def get(self, key: str) -> _Found | None:
        if self.ttl <= 0:
            return None
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry[0] < time.monotonic():
            self._entries.pop(key, None)
            return None
        self._entries.move_to_end(key)
        return entry[1]

    def put(self, key: str, found: _Found, generation: int) -> None:
        """Keep ``found`` unless contacts changed since the look-up began (``generation``)."""
        if self.ttl <= 0 or generation != self.generation:
            return
        self._entries[key] = (time.monotonic() + self.ttl, found)
        self._entries.move_to_end(key)
        while len(self._entries) > self.max_entries:
            self._entries.popitem(last=False)

    def clear(self) -> None:
        self.generation += 1
        self._entries.clear()

    def __len__(self) -> int:
        return len(self._entries)


class NumberLookup:
    """Looks numbers up for screen pops (see the module's docstring)."""

    def __init__(
        self,
        db: Database,
        *,
        default_region: str = "BG",
        suffix_digits: int = DEFAULT_SUFFIX_DIGITS,
        employees: EmployeeDirectory | None = None,
        tasks: OpenTasksProvider | None = None,
        calls: CallHistoryProvider | None = None,
        cache_ttl: float = 2.0,
        cache_size: int = 10_000,
        details_timeout: float = 0.5,
        open_tasks_limit: int = 5,
        recent_calls_limit: int = 5,
        pool_size: int = 4,
    ) -> None:
        if not is_region(default_region):
            raise ValueError(f"default_region {default_region!r} is not a region phonenumbers knows")
        if suffix_digits < MIN_SUFFIX_DIGITS:
            raise ValueError(f"suffix_digits must be at least {MIN_SUFFIX_DIGITS}")
        self.db = db
        self.region = default_region.upper()
        self.suffix_digits = suffix_digits
        self.employees = employees
        self.tasks = tasks
        self.calls = calls
        self.cache = LookupCache(cache_ttl, cache_size)
        self.details_timeout = details_timeout
        self.open_tasks_limit = open_tasks_limit
        self.recent_calls_limit = recent_calls_limit
        self._postgres: _PostgresReader | None = None
        if db.dialect == "postgresql":
            dsn = db.url.set(drivername="postgresql").render_as_string(hide_password=False)
            self._postgres = _PostgresReader(dsn, pool_size)

    async def close(self) -> None:
        """Close the look-up's own connections (at shutdown)."""
        if self._postgres is not None:
            await self._postgres.close()

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[Run]:
        if self._postgres is not None:
            async with self._postgres.connection() as run:
                yield run
            return
        async with self.db.engine.connect() as conn:

            async def run(statement: Select[Any], params: Mapping[str, Any]) -> Sequence[Any]:
                return list(await conn.execute(statement, params))

            yield run

    def invalidate(self) -> None:
        """Forget every cached look-up (call after a committed change of contacts)."""
        self.cache.clear()

    # --- the look-up ---------------------------------------------------------------------------------

    async def lookup(
        self,
        number: str,
        *,
        principal: Principal | None = None,
        names_only: bool = False,
        timeout: float | None = None,
        max_candidates: int = DEFAULT_MAX_CANDIDATES,
    ) -> LookupResult:
        """Who has ``number``; ``principal`` limits it to the contacts they see (None: all).

        ``timeout`` (seconds) bounds the whole look-up: TimeoutError when even the contact could not be
        found in time; details that do not fit are left out (``incomplete``).
        """
        loop = asyncio.get_running_loop()
        deadline = loop.time() + timeout if timeout is not None else None
        parsed = parse_phone(number[:200], self.region)
        result = LookupResult(number=number, e164=parsed.e164, match="none")
        if not parsed.digits:
            return result
        async with asyncio.timeout_at(deadline):
            found = await self._find(parsed)
        self._decide(result, found, parsed, principal, max(1, min(max_candidates, MAX_CANDIDATES)))
        if not names_only:
            await self._details(result, deadline)
        return result

    async def _find(self, parsed: ParsedPhone) -> _Found:
        key = parsed.e164 or f"#{parsed.digits}"
        cached = self.cache.get(key)
        if cached is not None:
            return cached
        generation = self.cache.generation
        method: Literal["exact", "suffix", "none"] = "none"
        rows: list[Any] = []
        async with self._connection() as run:
            if parsed.e164 is not None:
                rows = list(await run(EXACT, {"e164": parsed.e164}))
                method = "exact" if rows else "none"
            if not rows:
                bounds = suffix_range(parsed.digits, self.suffix_digits)
                if bounds is not None:
                    rows = list(await run(SUFFIX, {"low": bounds[0], "high": bounds[1]}))
                    method = "suffix" if rows else "none"
            cards: dict[str, tuple[Card, str | None]] = {}
            for row in rows:
                if row[0] in cards:
                    continue  # the contact's other phone with this number (another extension)
                phone = CardPhone(
                    id=row[11], number=row[12], e164=row[13], extension=row[14], kind=row[15], valid=row[16]
                )
                cards[row[0]] = (_card(row, phone), row[17])
            company = None
            families = {card.family for card, _ in cards.values()}
            if len(cards) > 1 and len(families) == 1 and None not in families:
                family = next(iter(families))
                if family in cards:
                    company = cards[family][0]
                else:
                    found_rows = await run(COMPANY, {"contact_id": family})
                    company = _card(found_rows[0], None) if found_rows else None
        found = _Found(method=method, cards=tuple(cards.values()), company=company)
        self.cache.put(key, found, generation)
        return found

    @staticmethod
    def _visible(principal: Principal | None, card: Card) -> bool:
        if principal is None:
            return True
        return may_see_owner(
            principal, card.owner_employee_id, card.owner_team_id, card.responsible_employee_id
        )

    def _decide(
        self,
        result: LookupResult,
        found: _Found,
        parsed: ParsedPhone,
        principal: Principal | None,
        max_candidates: int,
    ) -> None:
        visible = [(card, rdigits) for card, rdigits in found.cards if self._visible(principal, card)]
        result.hidden = len(found.cards) - len(visible)
        if not visible:
            return
        if found.method == "suffix":
            visible = self._ranked(visible, parsed)
        cards = [card for card, _ in visible]
        result.candidates = cards[:max_candidates]
        if len(cards) == 1:
            result.match = "exact" if found.method == "exact" else "suffix"
            result.contact = cards[0]
            return
        company = found.company
        if company is not None and result.hidden == 0 and self._visible(principal, company):
            result.match = "exact" if found.method == "exact" else "suffix"
            result.contact = next((card for card in cards if card.contact_id == company.contact_id), company)
            return
        if found.method == "suffix" and self._first_ranks_alone(visible, parsed):
            result.match = "suffix"
            result.contact = cards[0]
            return
        result.match = "ambiguous"

    @staticmethod
    def _rank(parsed: ParsedPhone, card: Card, rdigits: str | None) -> tuple[int, int]:
        """Lower is better: the caller's country first, then the same number of digits."""
        phone = card.phone
        country = country_code_of(phone.e164) if phone is not None else None
        same_country = parsed.country_code is not None and country == parsed.country_code
        same_length = rdigits is not None and len(rdigits) == len(parsed.digits)
        return (0 if same_country else 1, 0 if same_length else 1)

    def _ranked(
        self, cards: list[tuple[Card, str | None]], parsed: ParsedPhone
    ) -> list[tuple[Card, str | None]]:
        return sorted(cards, key=lambda item: self._rank(parsed, item[0], item[1]))  # stable: newest first

    def _first_ranks_alone(self, cards: list[tuple[Card, str | None]], parsed: ParsedPhone) -> bool:
        ranks = [self._rank(parsed, card, rdigits) for card, rdigits in cards]
        return ranks[0] == (0, 0) and ranks[1] != (0, 0)

    # --- the details ---------------------------------------------------------------------------------

    async def _details(self, result: LookupResult, deadline: float | None) -> None:
        """The responsible employee, open tasks and last calls, concurrently, within the deadline."""
        loop = asyncio.get_running_loop()
        limit_at = loop.time() + self.details_timeout
        if deadline is not None:
            limit_at = min(limit_at, deadline - 0.002)  # a little time to answer
        contact = result.contact
        jobs: dict[str, Awaitable[Any]] = {}
        if contact is not None and contact.responsible_employee_id and self.employees is not None:
            jobs["employee"] = self.employees.get(contact.responsible_employee_id)
        if contact is not None and self.tasks is not None:
            jobs["tasks"] = self.tasks.open_tasks(contact.contact_id, self.open_tasks_limit)
        if self.calls is not None and (contact is not None or result.e164):
            jobs["calls"] = self.calls.recent_calls(
                contact_id=contact.contact_id if contact is not None else None,
                e164=result.e164 if contact is None else None,
                limit=self.recent_calls_limit,
            )
        if not jobs:
            return
        if limit_at <= loop.time():
            for job in jobs.values():
                if asyncio.iscoroutine(job):
                    job.close()
            result.incomplete = True
            return
        names = list(jobs)
        outcomes = await asyncio.gather(
            *(self._bounded(name, jobs[name], limit_at) for name in names), return_exceptions=False
        )
        for name, (ok, value) in zip(names, outcomes, strict=True):
            if not ok:
                result.incomplete = True
                continue
            if name == "employee" and value is not None and contact is not None:
                employee_name, extension = value
                result.contact = replace(
                    contact, responsible_employee_name=employee_name, responsible_extension=extension
                )
                result.candidates = [
                    result.contact if card.contact_id == contact.contact_id else card
                    for card in result.candidates
                ]
            elif name == "tasks" and value is not None:
                tasks, total = value
                result.open_tasks, result.open_tasks_total = list(tasks), int(total)
            elif name == "calls":
                result.calls = value

    @staticmethod
    async def _bounded(name: str, job: Awaitable[T], limit_at: float) -> tuple[bool, T | None]:
        try:
            async with asyncio.timeout_at(limit_at):
                return True, await job
        except TimeoutError:
            log.warning("look-up detail left out: %s did not answer in time", name)
        except Exception as exc:  # a part that is down leaves its detail out; one line, no traceback
            log.warning(
                "look-up detail left out: %s failed (%s)",
                name,
                _reason(exc),
                exc_info=log.isEnabledFor(logging.DEBUG),
            )
        return False, None


__all__ = [
    "COMPANY",
    "EXACT",
    "SUFFIX",
    "CallHistoryProvider",
    "CallsSummary",
    "Card",
    "CardPhone",
    "EmployeeDirectory",
    "LookupCache",
    "LookupResult",
    "NumberLookup",
    "OpenTask",
    "OpenTasksProvider",
    "RecentCall",
]


def _reason(exc: BaseException) -> str:
    details = getattr(exc, "details", None)
    text = details() if callable(details) else str(exc)
    return f"{type(exc).__name__}: {text}"[:300]
