"""Benchmark: the screen pop's number look-up at a million contacts in PostgreSQL, in-service and over gRPC.

    python -m tests.bench.crm_lookup --contacts 1000000 \\
        --database-url postgresql://postgres@127.0.0.1:5432/telecrm_bench_crm [--runs 2000] [--force]

The dataset is made once and reused (``bench_crm_dataset`` records what was generated; ``--force``, a
different size or generator version makes it again, in a database dropped and created afresh, so an
interrupted load never leaves half a schema behind). The database must be named ``telecrm_bench_crm*``.
It is brought to crm's schema by crm's own Alembic migrations, then filled with COPY (asyncpg, binary)
with the secondary indexes and foreign keys of the contact tables dropped during the load and rebuilt
from their own definitions afterwards, then VACUUM ANALYZEd:

- ``--contacts`` contacts, one in ten a company, half of the persons in a company; 300 responsible
  employees in 30 teams; 1 or 2 phones each (~1.3 per contact) of Bulgaria (national format, mobiles
  and Sofia), Romania, Ukraine and Russia (international formats and masks), stored as the service
  stores them (raw, E.164, reversed digits); 3% are Russian numbers typed without their country code,
  which do not parse: the last-digits fallback is what finds them.

Then :class:`telecrm_crm.lookup.NumberLookup` is timed (cache off, so every look-up reads the database)
for numbers drawn from the data in the formats a PBX presents them (E.164, national, 00-prefixed, SIP
URIs): exact matches, last-digits matches (the numbers typed without their country, asked with it) and
unknown numbers (both statements miss). The same look-ups then go over gRPC to a real grpc.aio server on
a free port (client and server in this process, sharing its event loop). The card's responsible employee
comes from an in-memory directory (what the people part answers from); tasks and calls are not wired.
Every answer is checked: the contact the number belongs to must be the match (or among the candidates
of an ambiguous answer). Targets: p99 < 2 ms in-service, < 10 ms over gRPC.
"""

from __future__ import annotations

import argparse
import asyncio
import random
import time
import uuid
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import asyncpg
from sqlalchemy import make_url

from telecrm.crm.v1 import contacts_pb2, contacts_pb2_grpc
from telecrm_common.db import Database, upgrade
from telecrm_common.grpc import GrpcServer, channel
from telecrm_crm import contacts_grpc
from telecrm_crm.audit import AuditLog
from telecrm_crm.contacts import ContactService
from telecrm_crm.lookup import NumberLookup
from telecrm_crm.main import MIGRATIONS
from telecrm_crm.settings import CRMSettings
from tests.bench import calls_data
from tests.bench.report import Row

GENERATOR_VERSION = 1
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/telecrm_bench_crm"
DEFAULT_CONTACTS = 1_000_000
DEFAULT_RUNS = 2000
CHUNK = 50_000
SEED = 5_003  # issue 5, item 3
WARMUP = 200
SERVICE_TARGET_MS = 2.0
GRPC_TARGET_MS = 10.0
EMPLOYEES = 300
TEAMS = 30
CONTACT_TABLES = ("contacts", "contact_phones", "contact_emails")
START = datetime(2024, 1, 1, tzinfo=UTC)

Say = Callable[[str], None]


@dataclass(frozen=True)
class Dataset:
    version: int
    contacts: int
    phones: int
    generated_at: datetime
    seconds: float


def _check_name(url: str) -> str:
    name = make_url(url).database or ""
    if not name.startswith("telecrm_bench_crm"):
        raise SystemExit(f"the benchmark's database must be named telecrm_bench_crm*, not {name!r}")
    return name


def command(url: str, contacts: int) -> str:
    return (
        f"python -m tests.bench.crm_lookup --contacts {contacts} "
        f"--database-url {make_url(url).render_as_string(hide_password=True)}"
    )


# --- the dataset ---------------------------------------------------------------------------------


async def current_dataset(url: str) -> Dataset | None:
    try:
        conn = await asyncpg.connect(calls_data.plain_url(url))
    except asyncpg.InvalidCatalogNameError:
        return None
    try:
        if not await conn.fetchval("SELECT to_regclass('bench_crm_dataset') IS NOT NULL"):
            return None
        row = await conn.fetchrow(
            "SELECT version, contacts, phones, generated_at, seconds FROM bench_crm_dataset "
            "ORDER BY generated_at DESC LIMIT 1"
        )
    finally:
        await conn.close()
    if row is None:
        return None
    return Dataset(row["version"], row["contacts"], row["phones"], row["generated_at"], row["seconds"])


async def _recreate_database(url: str) -> None:
    name = _check_name(url)
    parsed = make_url(calls_data.plain_url(url))
    admin = await asyncpg.connect(parsed.set(database="postgres").render_as_string(hide_password=False))
    try:
        await admin.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await admin.execute(f'CREATE DATABASE "{name}"')
    finally:
        await admin.close()


def _digits(rng: random.Random, count: int) -> str:
    return "".join(rng.choice("0123456789") for _ in range(count))


def phone_number(rng: random.Random) -> tuple[str, str | None, str]:
    """(raw as typed, E.164 or None, digits to match by) of one generated phone."""
    roll = rng.random()
    if roll < 0.03:  # a Russian number typed without +7: does not parse in a Bulgarian installation
        area, rest = rng.choice(("495", "499", "812")), _digits(rng, 7)
        return f"({area}) {rest[:3]}-{rest[3:5]}-{rest[5:]}", None, area + rest
    if roll < 0.45:  # Bulgaria, written nationally
        if rng.random() < 0.7:
            nsn = rng.choice(("87", "88", "89")) + _digits(rng, 7)
            raw = f"0{nsn[:3]} {nsn[3:6]} {nsn[6:]}"
        else:
            nsn = "2" + _digits(rng, 7)
            raw = f"02 {nsn[1:4]} {nsn[4:]}"
        return raw, "+359" + nsn, "359" + nsn
    if roll < 0.65:  # Romania
        nsn = "7" + rng.choice("23456789") + _digits(rng, 7) if rng.random() < 0.7 else "21" + _digits(rng, 7)
        return f"+40 {nsn[:3]} {nsn[3:6]} {nsn[6:]}", "+40" + nsn, "40" + nsn
    if roll < 0.80:  # Ukraine
        nsn = rng.choice(("50", "66", "67", "68", "63", "73", "93", "96", "97", "98", "99", "44")) + _digits(
            rng, 7
        )
        return f"+380 {nsn[:2]} {nsn[2:5]} {nsn[5:7]} {nsn[7:]}", "+380" + nsn, "380" + nsn
    nsn = "9" + _digits(rng, 9) if rng.random() < 0.7 else rng.choice(("495", "499")) + _digits(rng, 7)
    return f"+7 ({nsn[:3]}) {nsn[3:6]}-{nsn[6:8]}-{nsn[8:]}", "+7" + nsn, "7" + nsn


def contact_rows(
    first: int, count: int, rng: random.Random
) -> tuple[list[tuple[Any, ...]], list[tuple[Any, ...]]]:
    """Rows of ``contacts`` and ``contact_phones`` for contacts ``first`` .. ``first + count - 1``."""
    contacts: list[tuple[Any, ...]] = []
    phones: list[tuple[Any, ...]] = []
    for i in range(first, first + count):
        contact_id = calls_data._stable_uuid("crm-contact", i)
        company = i % 10 == 0
        if company:
            name = f"{rng.choice(calls_data.COMPANY_WORDS)} {rng.choice(calls_data.COMPANY_KINDS)} {i}"
            company_id = None
        else:
            name = f"{rng.choice(calls_data.FIRST_NAMES)} {rng.choice(calls_data.LAST_NAMES)}"
            company_id = calls_data._stable_uuid("crm-contact", i - i % 10) if i % 2 else None
        employee = i % EMPLOYEES
        at = START + timedelta(seconds=i * 30)
        contacts.append(
            (
                contact_id, "company" if company else "person", name, name.casefold(), None, None,
                company_id, None, None, f"emp-{employee}", f"emp-{employee}", f"team-{employee // 10}",
                "{}", None, 1, at, at, "bench", None, None,
            )
        )  # fmt: skip
        for position in range(2 if rng.random() < 0.3 else 1):
            raw, e164, digits = phone_number(rng)
            phones.append(
                (
                    str(uuid.UUID(int=rng.getrandbits(128))), contact_id, position,
                    "mobile" if position == 0 else "work", raw, e164, None, e164 is not None,
                    digits[::-1], at,
                )
            )  # fmt: skip
    return contacts, phones


CONTACT_COLUMNS = (
    "id", "kind", "name", "name_key", "job_title", "tax_id", "company_id", "address", "notes",
    "responsible_employee_id", "owner_employee_id", "owner_team_id", "custom_fields", "request_id",
    "version", "created_at", "updated_at", "created_by", "deleted_at", "merged_into",
)  # fmt: skip
PHONE_COLUMNS = (
    "id", "contact_id", "position", "kind", "raw", "e164", "extension", "valid", "rdigits", "created_at",
)  # fmt: skip


async def _generate(url: str, contacts: int, say: Say) -> Dataset:
    started = time.perf_counter()
    await _recreate_database(url)
    await asyncio.to_thread(upgrade, url, MIGRATIONS)
    conn = await asyncpg.connect(calls_data.plain_url(url))
    try:
        tables = list(CONTACT_TABLES)
        indexes = await conn.fetch(
            "SELECT i.indexname, i.indexdef FROM pg_indexes i WHERE i.tablename = ANY($1::text[]) "
            "AND NOT EXISTS (SELECT 1 FROM pg_constraint c WHERE c.conname = i.indexname)",
            tables,
        )
        foreign = await conn.fetch(
            "SELECT conrelid::regclass::text AS tab, conname, pg_get_constraintdef(oid) AS def "
            "FROM pg_constraint WHERE contype = 'f' AND conrelid::regclass::text = ANY($1::text[])",
            tables,
        )
        for fk in foreign:
            await conn.execute(f'ALTER TABLE {fk["tab"]} DROP CONSTRAINT "{fk["conname"]}"')
        for index in indexes:
            await conn.execute(f'DROP INDEX "{index["indexname"]}"')
        rng = random.Random(SEED)
        phones_total = 0
        for first in range(0, contacts, CHUNK):
            contact_rows_, phone_rows = contact_rows(first, min(CHUNK, contacts - first), rng)
            await conn.copy_records_to_table("contacts", records=contact_rows_, columns=CONTACT_COLUMNS)
            await conn.copy_records_to_table("contact_phones", records=phone_rows, columns=PHONE_COLUMNS)
            phones_total += len(phone_rows)
            if (first // CHUNK) % 4 == 3 or first + CHUNK >= contacts:
                say(f"  {first + len(contact_rows_):,} contacts, {phones_total:,} phones loaded "
                    f"({time.perf_counter() - started:.0f}s)")  # fmt: skip
        await conn.execute("SET maintenance_work_mem = '256MB'")
        for index in indexes:
            await conn.execute(index["indexdef"])
        for fk in foreign:
            await conn.execute(f'ALTER TABLE {fk["tab"]} ADD CONSTRAINT "{fk["conname"]}" {fk["def"]}')
        say(f"  indexes and foreign keys rebuilt ({time.perf_counter() - started:.0f}s)")
        for table in tables:
            await conn.execute(f"VACUUM ANALYZE {table}")
        seconds = time.perf_counter() - started
        await conn.execute(
            "CREATE TABLE bench_crm_dataset (version integer NOT NULL, contacts bigint NOT NULL, "
            "phones bigint NOT NULL, generated_at timestamptz NOT NULL, seconds double precision NOT NULL)"
        )
        generated_at = datetime.now(UTC)
        await conn.execute(
            "INSERT INTO bench_crm_dataset VALUES ($1, $2, $3, $4, $5)",
            GENERATOR_VERSION, contacts, phones_total, generated_at, seconds,
        )  # fmt: skip
    finally:
        await conn.close()
    return Dataset(GENERATOR_VERSION, contacts, phones_total, generated_at, seconds)


async def prepare(url: str, contacts: int, *, force: bool = False, say: Say = print) -> tuple[Dataset, bool]:
    """The dataset in the database of ``url``, generated unless already there; whether it was made now."""
    _check_name(url)
    found = await current_dataset(url)
    if found is not None and found.version == GENERATOR_VERSION and found.contacts == contacts and not force:
        say(
            f"dataset of {found.contacts:,} contacts ({found.phones:,} phones) already there; "
            "--force remakes it"
        )
        await asyncio.to_thread(upgrade, url, MIGRATIONS)  # the schema may have grown since
        return found, False
    say(f"generating {contacts:,} contacts into {make_url(url).database}")
    return await _generate(url, contacts, say), True


# --- the look-ups ----------------------------------------------------------------------------------


@dataclass(frozen=True)
class Query:
    number: str  # as asked
    contact_id: str | None  # whose number it is (None: nobody's)


async def samples(url: str, runs: int, rng: random.Random) -> dict[str, list[Query]]:
    """Numbers to ask for, in the formats PBXs present them, with whose they are."""
    conn = await asyncpg.connect(calls_data.plain_url(url))
    try:
        known = await conn.fetch(
            "SELECT contact_id, raw, e164 FROM contact_phones WHERE e164 IS NOT NULL "
            "ORDER BY md5(id || $1) LIMIT $2",
            str(SEED), runs + WARMUP,
        )  # fmt: skip
        # Numbers typed without +7 that another contact does not have in full (that one is the exact
        # match, rightly): the last-digits fallback is what must find them.
        typed = await conn.fetch(
            "SELECT p.contact_id, p.raw, p.rdigits FROM contact_phones p WHERE p.e164 IS NULL "
            "AND NOT EXISTS (SELECT 1 FROM contact_phones o WHERE o.e164 = '+7' || reverse(p.rdigits)) "
            "ORDER BY md5(p.id || $1) LIMIT $2",
            str(SEED), runs + WARMUP,
        )  # fmt: skip
    finally:
        await conn.close()
    exact: list[Query] = []
    for index, row in enumerate(known):
        e164 = row["e164"]
        form = index % 4
        number = (e164, row["raw"], "00" + e164[1:], f"sip:{e164}@pbx.example;user=phone")[form]
        exact.append(Query(number, row["contact_id"]))
    suffix = [Query("+7 " + row["rdigits"][::-1], row["contact_id"]) for row in typed]
    # Athens numbers: no country of the dataset, and their last 9 digits ("10...") are nobody's either.
    unknown = [Query(f"+30 210 {rng.randrange(10**7):07d}", None) for _ in range(runs + WARMUP)]
    return {"exact": exact, "suffix": suffix, "unknown": unknown}


class Directory:
    """The responsible employees' names and extensions, as the people part answers them."""

    def __init__(self) -> None:
        self.known = {f"emp-{i}": (f"Employee {i}", str(100 + i)) for i in range(EMPLOYEES)}

    async def get(self, employee_id: str) -> tuple[str, str | None] | None:
        return self.known.get(employee_id)


def percentile(values: Sequence[float], fraction: float) -> float:
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-fraction * len(ordered) // 1))))
    return ordered[rank - 1]


def _right(kind: str, query: Query, match: str, contact: str | None, candidates: Sequence[str]) -> bool:
    if query.contact_id is None:
        return match == "none"
    if kind == "exact" and match not in ("exact", "ambiguous"):
        return False
    return (
        contact == query.contact_id
        or (match == "ambiguous" and query.contact_id in candidates)
        or (
            contact is not None and query.contact_id in candidates  # a company shown for its persons
        )
    )


async def timed(
    queries: Sequence[Query], ask: Callable[[str], Awaitable[tuple[str, str | None, list[str]]]], kind: str
) -> tuple[list[float], int]:
    for query in queries[:WARMUP]:
        await ask(query.number)
    times: list[float] = []
    wrong = 0
    for query in queries[WARMUP:]:
        t0 = time.perf_counter()
        match, contact, candidates = await ask(query.number)
        times.append((time.perf_counter() - t0) * 1000)
        wrong += not _right(kind, query, match, contact, candidates)
    return times, wrong


def row_of(label: str, times: list[float], wrong: int, target: float) -> Row:
    p50, p95, p99 = (percentile(times, f) for f in (0.50, 0.95, 0.99))
    verdict = "ok" if p99 < target else "OVER TARGET"
    if wrong:
        verdict += f"; WRONG ANSWERS: {wrong}"
    return Row(
        f"{label} p99",
        f"{p99:.2f} ms",
        f"p50 {p50:.2f}, p95 {p95:.2f}, max {max(times):.2f} ms, {len(times)} look-ups; "
        f"target < {target:g} ms: {verdict}",
    )


async def _measure(url: str, runs: int, say: Say) -> list[Row]:
    rng = random.Random(SEED)
    queries = await samples(url, runs, rng)
    db = Database(url, pool_size=4)
    rows: list[Row] = []
    try:
        lookup = NumberLookup(db, default_region="BG", employees=Directory(), cache_ttl=0)

        async def in_service(number: str) -> tuple[str, str | None, list[str]]:
            result = await lookup.lookup(number, timeout=1.0)
            contact = result.contact.contact_id if result.contact is not None else None
            return result.match, contact, [c.contact_id for c in result.candidates]

        for kind, label in (
            ("exact", "exact E.164"),
            ("suffix", "last 9 digits"),
            ("unknown", "unknown number"),
        ):
            times, wrong = await timed(queries[kind], in_service, kind)
            rows.append(row_of(f"crm look-up in-service, {label},", times, wrong, SERVICE_TARGET_MS))
            say(f"  {rows[-1].measure}: {rows[-1].value}  ({rows[-1].note})")

        cached = NumberLookup(db, default_region="BG", employees=Directory(), cache_ttl=60)

        async def repeated(number: str) -> tuple[str, str | None, list[str]]:
            await cached.lookup(number)  # the gateway's look-up while it rings...
            t0 = time.perf_counter()
            result = await cached.lookup(number)  # ...then the desktop's card
            repeat_times.append((time.perf_counter() - t0) * 1000)
            contact = result.contact.contact_id if result.contact is not None else None
            return result.match, contact, [c.contact_id for c in result.candidates]

        repeat_times: list[float] = []
        _, wrong = await timed(queries["exact"], repeated, "exact")
        repeat_times = repeat_times[WARMUP:]
        rows.append(
            row_of(
                "crm look-up in-service, repeat within the cache TTL,", repeat_times, wrong, SERVICE_TARGET_MS
            )
        )
        say(f"  {rows[-1].measure}: {rows[-1].value}  ({rows[-1].note})")

        service = ContactService(db, audit=AuditLog("none"), cursor_secret=b"bench", default_region="BG")
        server = GrpcServer(
            CRMSettings(grpc_host="127.0.0.1", grpc_port=0), service_names=[contacts_grpc.SERVICE_NAME]
        )
        contacts_grpc.add_to_server(server.server, service, lookup)
        await server.start()
        try:
            async with channel(f"127.0.0.1:{server.port}") as chan:
                stub = contacts_pb2_grpc.ContactsStub(chan)

                async def over_grpc(number: str) -> tuple[str, str | None, list[str]]:
                    answer = await stub.LookupNumber(
                        contacts_pb2.LookupNumberRequest(number=number), timeout=1.0
                    )
                    match = contacts_pb2.MatchKind.Name(answer.match).removeprefix("MATCH_KIND_").lower()
                    contact = answer.contact.contact_id or None
                    return match, contact, [c.contact_id for c in answer.candidates]

                for kind, label in (
                    ("exact", "exact E.164"),
                    ("suffix", "last 9 digits"),
                    ("unknown", "unknown"),
                ):
                    times, wrong = await timed(queries[kind], over_grpc, kind)
                    rows.append(row_of(f"crm look-up over gRPC, {label},", times, wrong, GRPC_TARGET_MS))
                    say(f"  {rows[-1].measure}: {rows[-1].value}  ({rows[-1].note})")
        finally:
            await server.stop(0)
    finally:
        await db.dispose()
    return rows


def run(
    contacts: int = DEFAULT_CONTACTS,
    database_url: str = DEFAULT_DATABASE_URL,
    *,
    runs: int = DEFAULT_RUNS,
    force: bool = False,
    say: Say = print,
) -> list[Row]:
    """Make or reuse the dataset, then time the look-ups; returns the table's rows."""

    async def main() -> list[Row]:
        dataset, generated = await prepare(database_url, contacts, force=force, say=say)
        name = make_url(database_url).database
        rows = [
            Row(
                f"crm contacts dataset: {dataset.contacts:,} contacts, {dataset.phones:,} phones ({name})",
                f"{dataset.seconds:,.0f} s",
                (
                    "generated now"
                    if generated
                    else f"reused, generated {dataset.generated_at:%Y-%m-%d %H:%M} UTC"
                )
                + f" by: {command(database_url, contacts)}",
            )
        ]
        return rows + await _measure(database_url, runs, say)

    return asyncio.run(main())


def main(argv: list[str] | None = None) -> None:
    from tests.bench.report import table

    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.crm_lookup",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--contacts", type=int, default=DEFAULT_CONTACTS)
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--runs", type=int, default=DEFAULT_RUNS, help="timed look-ups per case")
    parser.add_argument("--force", action="store_true", help="regenerate even when the dataset is there")
    args = parser.parse_args(argv)
    if args.contacts < 10 or args.runs < 100:
        parser.error("--contacts must be at least 10 and --runs at least 100")
    rows = run(
        args.contacts, args.database_url, runs=args.runs, force=args.force, say=lambda s: print(s, flush=True)
    )
    print()
    print(table(rows, command(args.database_url, args.contacts) + f" --runs {args.runs}"))


if __name__ == "__main__":
    main()
