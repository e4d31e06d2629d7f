"""A generated call log in PostgreSQL for the call-log benchmarks (10 million calls by default).

    python -m tests.bench.calls_data \\
        --database-url postgresql://postgres@127.0.0.1:5432/telecrm_bench_calls \\
        --calls 10000000 [--force] [--chunk 500000]

Creates the database when it is missing, brings it to the calls service's schema with its own Alembic
migrations, then fills it on the server side (``INSERT ... SELECT generate_series``, one chunk of calls
per statement) with a year of calls of one company:

- 12 months of calls ending at :data:`END`, weighted by hour and weekday in the office's time zone
  (office hours, quiet nights and weekends, a slight growth over the year), inserted in time order as a
  live system writes them;
- 300 employees in 30 teams, extensions 100..399 (``employees`` read model, ``numbers`` of kind
  internal); 200,000 contacts with 1-2 E.164 numbers each (+359, +40, +380, +7; ``contacts`` read model,
  ``numbers`` of kind contact); some callers unknown, a few anonymous; busier employees and customers;
- direction 55% inbound / 38% outbound / 7% internal; dispositions per direction (about 70% answered
  overall; missed, busy, no_answer, failed, cancelled, rejected as the PBX reports them), ring and talk
  times, SIP status and Q.850 cause, who hung up; ~10% of inbound calls ring a group of 2-3 extensions;
- the columns the service derives the way it derives them: ``party_digits`` (the digits of caller
  number, caller E.164, callee number, callee E.164 joined by one space), ``missed``
  (:func:`telecrm_common.telephony.is_missed_call`), ``recorded`` (~30% of answered calls, with their
  ``call_recordings`` row), ``contact_id``, ``team_id``, one ``call_parties`` row per extension involved
  (with the call's direction, disposition, missed flag and talk time, as the service copies them);
- missed-call items (``missed_calls``, ``missed_call_calls``, ``missed_call_targets``) folded as
  :mod:`telecrm_calls.missed` folds them: the missed inbound calls of a number up to the next answered
  call with it (inbound from it or outbound to it) are one item, resolved by that call.

The secondary indexes of ``calls`` and ``call_parties`` are dropped during the load and rebuilt from
their own definitions afterwards (much faster than maintaining them row by row), then everything is
VACUUM ANALYZEd. Every random choice is a hash of (row number, purpose): the same command gives the same
data. What was generated is recorded in ``bench_dataset``; a later run with the same generator version
and size does nothing (``--force`` regenerates).
"""

from __future__ import annotations

import argparse
import asyncio
import hashlib
import random
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

import asyncpg
from sqlalchemy import make_url

from telecrm_calls.main import MIGRATIONS
from telecrm_common.db import upgrade
from telecrm_common.telephony import q850_for_sip_status

GENERATOR_VERSION = 3  # 3: call_parties carry the call's direction, disposition, missed, talk_ms
DEFAULT_DATABASE_URL = "postgresql://postgres@127.0.0.1:5432/telecrm_bench_calls"
DEFAULT_CALLS = 10_000_000
DEFAULT_CHUNK = 500_000
END = datetime(2026, 11, 1, tzinfo=UTC)  # the data covers the 365 days before this instant
DAYS = 365
OFFICE_TZ = ZoneInfo("Europe/Sofia")
EMPLOYEES = 300
TEAMS = 30  # employees 10*t .. 10*t+9 form team t
FIRST_EXTENSION = 100
CONTACTS = 200_000
LINES = ("+35924001000", "+35924001001", "+40213001000", "+380442001000", "+74951001000", "+35924001002")

# Tables emptied before generating (those that exist: the schema may have grown).
DATA_TABLES = (
    "missed_call_targets", "missed_call_calls", "missed_calls", "call_recordings", "call_parties",
    "calls", "call_events", "outbox", "numbers", "contacts", "employees",
)  # fmt: skip
# Tables loaded without their secondary indexes and primary key (rebuilt after the load).
BULK_TABLES = ("calls", "call_parties")

Say = Callable[[str], None]


@dataclass(frozen=True)
class Dataset:
    """What ``bench_dataset`` says was generated."""

    version: int
    calls: int
    generated_at: datetime
    seconds: float
    revision: str | None

    def matches(self, calls: int) -> bool:
        return self.version == GENERATOR_VERSION and self.calls == calls


def plain_url(url: str) -> str:
    """asyncpg wants postgresql://, without SQLAlchemy's +driver."""
    parsed = make_url(url)
    if parsed.get_backend_name() != "postgresql":
        raise SystemExit(f"--database-url must be a PostgreSQL URL, not {parsed.get_backend_name()}")
    return parsed.set(drivername="postgresql").render_as_string(hide_password=False)


async def ensure_database(url: str) -> bool:
    """Create the database of ``url`` when it does not exist; True when it was created."""
    parsed = make_url(plain_url(url))
    name = parsed.database
    if not name:
        raise SystemExit("--database-url names no database")
    admin = await asyncpg.connect(parsed.set(database="postgres").render_as_string(hide_password=False))
    try:
        if await admin.fetchval("SELECT 1 FROM pg_database WHERE datname = $1", name):
            return False
        await admin.execute(f'CREATE DATABASE "{name}"')
        return True
    finally:
        await admin.close()


async def current_dataset(conn: asyncpg.Connection) -> Dataset | None:
    """The dataset recorded in the database (None when none, or a load was interrupted)."""
    if not await conn.fetchval("SELECT to_regclass('bench_dataset') IS NOT NULL"):
        return None
    if await conn.fetchval("SELECT to_regclass('bench_saved_indexes') IS NOT NULL") and await conn.fetchval(
        "SELECT count(*) FROM bench_saved_indexes"
    ):
        return None  # a load stopped before its indexes were rebuilt
    row = await conn.fetchrow(
        "SELECT version, calls, generated_at, seconds, revision FROM bench_dataset "
        "ORDER BY generated_at DESC LIMIT 1"
    )
    if row is None:
        return None
    return Dataset(row["version"], row["calls"], row["generated_at"], row["seconds"], row["revision"])


# --- helpers living in the bench database ------------------------------------------------------

_HELPERS = """
CREATE TABLE IF NOT EXISTS bench_dataset (
    version integer NOT NULL, calls bigint NOT NULL, generated_at timestamptz NOT NULL,
    seconds double precision NOT NULL, revision text, command text
);
CREATE TABLE IF NOT EXISTS bench_saved_indexes (
    table_name text NOT NULL, name text NOT NULL, is_constraint boolean NOT NULL, definition text NOT NULL,
    PRIMARY KEY (table_name, name)
);
-- A uniform number in [0, 1) for (row, purpose): a hash, so any chunk in any order gives the same data.
CREATE OR REPLACE FUNCTION bench_u(i bigint, k integer) RETURNS double precision
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT (hashint8extended(i, k) & 9007199254740991)::double precision / 9007199254740992.0 $$;
-- A non-negative 63-bit hash of (row, purpose), for digits.
CREATE OR REPLACE FUNCTION bench_h(i bigint, k integer) RETURNS bigint
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT hashint8extended(i, k) & 9223372036854775807 $$;
CREATE OR REPLACE FUNCTION bench_uuid(label text, i bigint) RETURNS text
    LANGUAGE sql IMMUTABLE PARALLEL SAFE
    AS $$ SELECT md5(label || '-' || i)::uuid::text $$;
"""


def _stable_uuid(label: str, i: int) -> str:
    """The same value as the SQL ``bench_uuid(label, i)``."""
    return str(uuid.UUID(hashlib.md5(f"{label}-{i}".encode()).hexdigest()))


FIRST_NAMES = (
    "Ivan", "Maria", "Georgi", "Elena", "Dimitar", "Yana", "Nikolai", "Petya", "Stefan", "Iva", "Andrei",
    "Ioana", "Mihai", "Alina", "Olena", "Taras", "Oksana", "Dmitry", "Anna", "Sergei", "Irina", "Victor",
    "Daria", "Pavel", "Raluca", "Bogdan", "Kalina", "Teodor", "Natalia", "Yuri",
)  # fmt: skip
LAST_NAMES = (
    "Petrov", "Ivanova", "Georgiev", "Dimitrova", "Popescu", "Ionescu", "Shevchenko", "Kovalenko",
    "Smirnov", "Kuznetsova", "Todorov", "Stoyanova", "Radu", "Stan", "Bondarenko", "Melnyk", "Volkov",
    "Sokolova", "Angelov", "Nikolova", "Marin", "Tkachenko", "Lebedev", "Hristova", "Iliev",
)  # fmt: skip
COMPANY_WORDS = (
    "Balkan", "Danube", "Black Sea", "Carpathian", "Nord", "Vita", "Agro", "Tech", "Trans", "Stroy",
    "Medi", "Euro", "Alfa", "Delta", "Sofia", "Varna", "Kyiv", "Cluj", "Odesa", "Plovdiv",
)  # fmt: skip
COMPANY_KINDS = ("Ltd", "SRL", "OOD", "TOV", "LLC", "JSC", "EOOD", "Group")
TEAM_NAMES = (
    "Sales", "Support", "Billing", "Retention", "Onboarding", "Key accounts", "Service desk", "Logistics",
    "Returns", "Partners",
)  # fmt: skip


def _sql_array(values: tuple[str, ...]) -> str:
    return "ARRAY[" + ", ".join("'" + v.replace("'", "''") + "'" for v in values) + "]"


def hour_weight(local: datetime, day_index: int) -> float:
    """How busy an hour is: office hours on weekdays, a little on Saturday, a slow growth over the year."""
    by_hour = {7: 0.05, 8: 0.35, 9: 0.85, 10: 1.0, 11: 1.0, 12: 0.7, 13: 0.8, 14: 1.0, 15: 0.95,
               16: 0.8, 17: 0.5, 18: 0.2, 19: 0.08, 20: 0.05, 21: 0.03}  # fmt: skip
    by_day = (1.0, 1.0, 1.0, 0.97, 0.9, 0.15, 0.06)  # Monday..Sunday
    return by_hour.get(local.hour, 0.01) * by_day[local.weekday()] * (0.85 + 0.3 * day_index / DAYS)


def slots(calls: int) -> list[tuple[datetime, int, int]]:
    """(hour start, first call number, last call number) for every hour that has calls."""
    start = END - timedelta(days=DAYS)
    hours = [start + timedelta(hours=h) for h in range(DAYS * 24)]
    weights = [hour_weight(h.astimezone(OFFICE_TZ), (h - start).days) for h in hours]
    total = sum(weights)
    out: list[tuple[datetime, int, int]] = []
    cumulative = 0.0
    first = 0
    for hour, weight in zip(hours, weights, strict=True):
        cumulative += weight
        nxt = round(calls * cumulative / total)
        if nxt > first:
            out.append((hour, first, nxt - 1))
        first = nxt
    return out


def _disposition_sql(column: str, cases: list[tuple[float, str]]) -> str:
    parts = " ".join(f"WHEN {column} < {limit} THEN '{name}'" for limit, name in cases[:-1])
    return f"CASE {parts} ELSE '{cases[-1][1]}' END"


INBOUND = [(0.72, "answered"), (0.93, "missed"), (0.96, "busy"), (0.975, "rejected"), (0.99, "failed"),
           (1.0, "no_answer")]  # fmt: skip
OUTBOUND = [(0.62, "answered"), (0.80, "no_answer"), (0.88, "busy"), (0.95, "cancelled"), (0.98, "failed"),
            (1.0, "rejected")]  # fmt: skip
INTERNAL = [(0.80, "answered"), (0.94, "missed"), (0.98, "busy"), (0.99, "rejected"), (1.0, "failed")]
SIP = {  # disposition -> (SIP status, reason, who hung up when nobody talked)
    "answered": (200, "OK", None),
    "missed": (487, "Request Terminated", "caller"),
    "cancelled": (487, "Request Terminated", "caller"),
    "no_answer": (480, "Temporarily Unavailable", "system"),
    "busy": (486, "Busy Here", "callee"),
    "rejected": (603, "Decline", "callee"),
    "failed": (503, "Service Unavailable", "system"),
}


def _case(column: str, mapping: dict[str, str]) -> str:
    return "CASE " + column + " " + " ".join(f"WHEN '{k}' THEN {v}" for k, v in mapping.items()) + " END"


CALLBACK_WINDOW = 300  # a callback returns a missed call among the 300 calls before it (minutes)
CALLBACK_SHARE = 0.6  # of outgoing calls look for a missed call to return (about 1 in 5 finds one)
UNKNOWN_NUMBERS = 500_000  # callers not in the registry (some call again)


def _missed_at(src: str) -> str:
    """SQL: call number ``src`` was an inbound call missed from a number that can be called back."""
    u_disp = f"bench_u({src}, 3)"
    return (
        f"({src} >= 0 AND bench_u({src}, 2) < 0.55 AND {u_disp} >= {INBOUND[0][0]} "
        f"AND {u_disp} < {INBOUND[1][0]} AND bench_u({src}, 7) >= 0.005)"
    )


def calls_chunk_sql() -> str:
    """One statement inserting calls $1 <= i < $2 with their parties and recordings."""
    sip_status = _case("disp", {d: str(s) for d, (s, _, _) in SIP.items()})
    sip_reason = _case("disp", {d: f"'{r}'" for d, (_, r, _) in SIP.items()})
    q850 = _case("disp", {d: str(q850_for_sip_status(s)) for d, (s, _, _) in SIP.items()})
    hangup = _case(
        "disp",
        {
            d: f"'{h}'" if h else "CASE WHEN u_hang < 0.5 THEN 'caller' ELSE 'callee' END"
            for d, (_, _, h) in SIP.items()
        },
    )
    disposition = (
        f"CASE dir WHEN 'inbound' THEN {_disposition_sql('u_disp', INBOUND)} "
        f"WHEN 'outbound' THEN {_disposition_sql('u_disp', OUTBOUND)} "
        f"ELSE {_disposition_sql('u_disp', INTERNAL)} END"
    )
    lines = _sql_array(LINES)
    reasons = _sql_array(("order", "delivery", "invoice", "complaint", "consultation", "repair", "offer"))
    results = _sql_array(("resolved", "callback", "order placed", "sent offer", "escalated", "no interest"))
    return f"""
WITH base AS (
    SELECT i,
        sl.hour_start + ((i - sl.first_i) + bench_u(i, 1)) * interval '1 hour' / (sl.last_i - sl.first_i + 1)
            AS started_at,
        bench_u(i, 2) AS u_dir, bench_u(i, 3) AS u_disp, bench_u(i, 4) AS u_emp, bench_u(i, 8) AS u_rg,
        bench_u(i, 9) AS u_ring, bench_u(i, 10) AS u_talk, bench_u(i, 11) AS u_talk2, bench_u(i, 12) AS u_fmt,
        bench_u(i, 13) AS u_rec, bench_u(i, 14) AS u_hang, bench_u(i, 15) AS u_other,
        bench_u(i, 16) AS u_note,
        i - 1 - floor(bench_u(i, 18) * {CALLBACK_WINDOW})::bigint AS src1,
        i - 1 - floor(bench_u(i, 19) * {CALLBACK_WINDOW})::bigint AS src2,
        i - 1 - floor(bench_u(i, 20) * {CALLBACK_WINDOW})::bigint AS src3
    FROM bench_slots sl, generate_series(greatest(sl.first_i, $1), least(sl.last_i, $2 - 1)) AS i
    WHERE sl.last_i >= $1 AND sl.first_i < $2
), d0 AS (
    SELECT b.*,
        CASE WHEN u_dir < 0.55 THEN 'inbound' WHEN u_dir < 0.93 THEN 'outbound' ELSE 'internal' END AS dir,
        least({EMPLOYEES - 1}, floor({EMPLOYEES} * power(u_emp, 1.25)))::int AS e
    FROM base b
), d1 AS (
    -- The outside number of an external call is a function of a call number j: its own (j = i), or for
    -- a callback the number of the missed inbound call it returns (an outgoing call a few minutes
    -- after one; the missed-call items get resolved as in real life).
    SELECT d0.*,
        CASE WHEN dir = 'outbound' AND bench_u(i, 21) < {CALLBACK_SHARE} THEN
            CASE WHEN {_missed_at("src1")} THEN src1 WHEN {_missed_at("src2")} THEN src2
                 WHEN {_missed_at("src3")} THEN src3 ELSE i END
        ELSE i END AS j
    FROM d0
), d1b AS (
    SELECT d1.*, bench_u(j, 6) AS u_s, bench_u(j, 7) AS u_known,
        least({CONTACTS - 1}, floor({CONTACTS} * power(bench_u(j, 5), 1.5)))::int AS c,
        floor(bench_u(j, 17) * {UNKNOWN_NUMBERS})::bigint AS q
    FROM d1
), d2 AS (
    SELECT d1b.*,
        {disposition} AS disp,
        CASE WHEN dir = 'inbound' AND u_rg < 0.05 THEN 3
             WHEN dir = 'inbound' AND u_rg < 0.10 THEN 2 ELSE 1 END AS group_size,
        (e + 1 + floor(u_other * {EMPLOYEES - 1})::int) % {EMPLOYEES} AS ec,
        CASE WHEN dir = 'internal' THEN 'internal' WHEN dir = 'inbound' AND u_known < 0.005 THEN 'anonymous'
             WHEN u_known < 0.12 THEN 'unknown' ELSE 'contact' END AS who,
        floor(u_s * (1 + (bench_u(c, 100) < 0.3)::int))::int AS s
    FROM d1b
), d3 AS (
    SELECT d2.*,
        CASE disp
            WHEN 'answered' THEN least(60000, 1500 + floor(-ln(1 - u_ring) * 7000))
            WHEN 'missed' THEN least(120000, 3000 + floor(-ln(1 - u_ring) * 12000))
            WHEN 'no_answer' THEN 30000 + floor(u_ring * 15000)
            WHEN 'cancelled' THEN least(60000, 2000 + floor(-ln(1 - u_ring) * 9000))
            ELSE floor(u_ring * 3000) END::bigint AS ring_ms,
        CASE WHEN disp <> 'answered' THEN 0
             WHEN u_talk < 0.15 THEN 2000 + floor(u_talk2 * 18000)
             ELSE least(7200000, 20000 + floor(-ln(1 - u_talk2) * 180000)) END::bigint AS talk_ms,
        CASE who
            WHEN 'contact' THEN cn.e164
            WHEN 'unknown' THEN '+3592' || lpad((bench_h(q, 17) % 10000000)::text, 7, '0')
        END AS ext_e164,
        CASE who
            WHEN 'contact' THEN cn.national
            WHEN 'unknown' THEN '02' || lpad((bench_h(q, 17) % 10000000)::text, 7, '0')
            WHEN 'anonymous' THEN 'anonymous'
        END AS ext_national,
        cn.contact_id, cn.name AS contact_name,
        em.employee_id, em.team_id, em.ext, em.name AS employee_name, em.team,
        ecm.ext AS ec_ext, ecm.name AS ec_name
    FROM d2
    JOIN bench_emp em ON em.idx = d2.e
    JOIN bench_emp ecm ON ecm.idx = d2.ec
    LEFT JOIN bench_cn cn ON cn.c = d2.c AND cn.s = d2.s AND d2.who = 'contact'
), g AS MATERIALIZED (
    SELECT d3.*,
        bench_uuid('bench-call', i) AS call_id,
        CASE dir WHEN 'inbound' THEN
                    CASE WHEN u_fmt < 0.6 THEN coalesce(ext_e164, ext_national) ELSE ext_national END
                 WHEN 'outbound' THEN ext ELSE ec_ext END AS caller_number,
        CASE WHEN dir = 'inbound' THEN ext_e164 END AS caller_e164,
        CASE dir WHEN 'inbound' THEN contact_name WHEN 'outbound' THEN employee_name ELSE ec_name END
            AS caller_name,
        CASE dir WHEN 'inbound' THEN ({lines})[team % {len(LINES)} + 1]
                 WHEN 'outbound' THEN CASE WHEN u_fmt < 0.3 THEN ext_e164 ELSE ext_national END
                 ELSE ext END AS callee_number,
        CASE dir WHEN 'inbound' THEN ({lines})[team % {len(LINES)} + 1] WHEN 'outbound' THEN ext_e164 END
            AS callee_e164,
        CASE dir WHEN 'outbound' THEN contact_name ELSE employee_name END AS callee_name,
        CASE WHEN dir <> 'internal' THEN ({lines})[team % {len(LINES)} + 1] END AS line,
        CASE WHEN disp = 'answered' THEN started_at + ring_ms * interval '1 millisecond' END AS answered_at,
        started_at + (ring_ms + talk_ms) * interval '1 millisecond' AS ended_at,
        (disp = 'answered' AND u_rec < 0.30) AS recorded,
        (disp = 'answered' AND dir = 'inbound' AND u_note < 0.10) AS noted,
        CASE WHEN dir = 'outbound' THEN disp <> 'answered' ELSE disp IN ('missed', 'no_answer') END
            AS is_missed
    FROM d3
), calls_in AS (
    INSERT INTO calls (
        call_id, direction, caller_number, caller_e164, caller_name, callee_number, callee_e164, callee_name,
        line, extension, employee_id, sip_call_id, started_at, answered_at, ended_at, ring_ms, talk_ms,
        disposition, sip_status, sip_reason, q850_cause, hangup_by, state, incomplete, context,
        last_sequence, created_at, updated_at, team_id, missed, recorded, party_digits, legs, transfers,
        contact_id, reason, result, notes_version, notes_updated_at, notes_updated_by, published_revision
    )
    SELECT call_id, dir, caller_number, caller_e164, caller_name, callee_number, callee_e164, callee_name,
        line, ext, employee_id, md5(call_id || 'sip') || '@10.20.' || team || '.' || (e % 10 + 10),
        started_at, answered_at, ended_at, ring_ms, talk_ms,
        disp, {sip_status}, {sip_reason}, {q850}, {hangup}, 'ended', false, '{{}}',
        CASE WHEN disp = 'answered' THEN 4 ELSE 3 END,
        ended_at + interval '150 milliseconds', ended_at + interval '150 milliseconds', team_id,
        is_missed,
        recorded,
        regexp_replace(coalesce(caller_number, ''), '[^0-9]', '', 'g') || ' '
            || regexp_replace(coalesce(caller_e164, ''), '[^0-9]', '', 'g') || ' '
            || regexp_replace(coalesce(callee_number, ''), '[^0-9]', '', 'g') || ' '
            || regexp_replace(coalesce(callee_e164, ''), '[^0-9]', '', 'g'),
        '[]', '[]', contact_id,
        CASE WHEN noted THEN ({reasons})[1 + floor(u_note * 70)::int % 7] END,
        CASE WHEN noted THEN ({results})[1 + floor(u_note * 600)::int % 6] END,
        CASE WHEN noted THEN 1 ELSE 0 END,
        CASE WHEN noted THEN ended_at + interval '2 minutes' END,
        CASE WHEN noted THEN employee_id END,
        1 + recorded::int + noted::int  -- calls.record.created, then updated by the recording, the notes
    FROM g
), parties_in AS (
    -- As telecrm_calls.rules keeps them: every extension with its employee and that employee's team
    -- (a ring group's legs are of one team: it is named on each), and the call's copied columns.
    INSERT INTO call_parties (
        call_id, extension, employee_id, team_id, role, started_at, direction, disposition, missed, talk_ms
    )
    SELECT g.call_id, pe.ext, pe.employee_id, pe.team_id, p.role, g.started_at, g.dir, g.disp, g.is_missed,
        g.talk_ms
    FROM g
    CROSS JOIN LATERAL (
        SELECT g.e AS idx,
               CASE WHEN g.dir = 'outbound' THEN 'placed' WHEN g.disp = 'answered' THEN 'answered'
                    ELSE 'rang' END AS role
        UNION ALL
        SELECT g.ec, 'placed' WHERE g.dir = 'internal'
        UNION ALL
        SELECT g.team * 10 + (g.e % 10 + k) % 10, 'rang' FROM generate_series(1, g.group_size - 1) AS k
    ) AS p
    JOIN bench_emp pe ON pe.idx = p.idx
)
INSERT INTO call_recordings (
    recording_id, call_id, event_id, location, content_type, size_bytes, duration_ms, started_at,
    occurred_at, created_at
)
SELECT md5(call_id || 'recording'), call_id, bench_uuid('bench-recording-event', i),
    'recordings/' || to_char(started_at AT TIME ZONE 'UTC', 'YYYY/MM/DD') || '/' || call_id || '.wav',
    'audio/wav', 44 + talk_ms * 16, talk_ms, answered_at, ended_at + interval '1500 milliseconds',
    ended_at + interval '1600 milliseconds'
FROM g WHERE recorded
"""


MISSED_SQL = [
    (
        "missed-call items: the calls of each number, in order",
        """
CREATE UNLOGGED TABLE bench_mev AS
SELECT coalesce(caller_e164, caller_number) AS key, started_at, call_id, 'm' AS kind,
       NULL::timestamptz AS answered_at, NULL::text AS direction, NULL::text AS extension,
       NULL::text AS employee_id,
       caller_number AS number, caller_name, contact_id
FROM calls WHERE state = 'ended' AND direction = 'inbound' AND disposition = 'missed'
  AND (caller_e164 IS NOT NULL OR caller_number ~ '[0-9]')
UNION ALL
SELECT coalesce(caller_e164, caller_number), started_at, call_id, 'r', answered_at, direction, extension,
       employee_id, NULL, NULL, NULL
FROM calls WHERE state = 'ended' AND direction = 'inbound' AND disposition = 'answered'
  AND (caller_e164 IS NOT NULL OR caller_number ~ '[0-9]')
UNION ALL
SELECT coalesce(callee_e164, callee_number), started_at, call_id, 'r', answered_at, direction, extension,
       employee_id, NULL, NULL, NULL
FROM calls WHERE state = 'ended' AND direction = 'outbound' AND disposition = 'answered'
  AND (callee_e164 IS NOT NULL OR callee_number ~ '[0-9]')
""",
    ),
    (
        "missed-call items: each missed call's resolving call",
        """
CREATE UNLOGGED TABLE bench_mgrp AS
SELECT *, count(*) FILTER (WHERE kind = 'r') OVER (PARTITION BY key ORDER BY started_at, call_id) AS grp
FROM bench_mev
""",
    ),
    (
        "missed-call items: missed_calls",
        """
INSERT INTO missed_calls (
    id, number_key, number, e164, caller_name, contact_id, state, missed_count, first_missed_at,
    last_missed_at, resolved_at, resolving_call_id, resolving_direction, resolving_extension,
    resolving_employee_id, callback_ms, version, created_at, updated_at
)
SELECT md5(m.key || ':' || m.grp), m.key, m.number, CASE WHEN m.key LIKE '+%' THEN m.key END, m.caller_name,
       m.contact_id, CASE WHEN r.call_id IS NULL THEN 'open' ELSE 'resolved' END, m.n, m.first_at, m.last_at,
       r.answered_at, r.call_id, r.direction, r.extension, r.employee_id,
       (extract(epoch FROM r.answered_at - m.first_at) * 1000)::bigint,
       m.n + (r.call_id IS NOT NULL)::int, m.first_at + interval '1 minute',
       coalesce(r.answered_at, m.last_at) + interval '1 second'
FROM (
    SELECT key, grp, count(*) AS n, min(started_at) AS first_at, max(started_at) AS last_at,
           (array_agg(number ORDER BY started_at DESC))[1] AS number,
           (array_agg(caller_name ORDER BY started_at DESC))[1] AS caller_name,
           (array_agg(contact_id ORDER BY started_at DESC))[1] AS contact_id
    FROM bench_mgrp WHERE kind = 'm' GROUP BY key, grp
) m
LEFT JOIN bench_mgrp r ON r.kind = 'r' AND r.key = m.key AND r.grp = m.grp + 1
""",
    ),
    (
        "missed-call items: missed_call_calls",
        """
INSERT INTO missed_call_calls (call_id, item_id, started_at, extensions, employee_ids, team_ids)
SELECT m.call_id, md5(m.key || ':' || m.grp), m.started_at,
       to_json(array_agg(p.extension ORDER BY p.extension)),
       coalesce(to_json(array_agg(DISTINCT p.employee_id) FILTER (WHERE p.employee_id IS NOT NULL)), '[]'),
       coalesce(to_json(array_agg(DISTINCT p.team_id) FILTER (WHERE p.team_id IS NOT NULL)), '[]')
FROM bench_mgrp m JOIN call_parties p ON p.call_id = m.call_id
WHERE m.kind = 'm'
GROUP BY m.call_id, m.key, m.grp, m.started_at
""",
    ),
    (
        "missed-call items: missed_call_targets",
        """
INSERT INTO missed_call_targets (item_id, kind, value)
SELECT DISTINCT mc.item_id, t.kind, t.value
FROM missed_call_calls mc
CROSS JOIN LATERAL (
    SELECT 'extension' AS kind, json_array_elements_text(mc.extensions) AS value
    UNION ALL SELECT 'employee', json_array_elements_text(mc.employee_ids)
    UNION ALL SELECT 'team', json_array_elements_text(mc.team_ids)
) t
""",
    ),
]


async def _existing(conn: asyncpg.Connection, tables: tuple[str, ...]) -> list[str]:
    rows = await conn.fetch(
        "SELECT c.relname FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
        "WHERE n.nspname = current_schema() AND c.relkind IN ('r', 'p') AND c.relname = ANY($1)",
        list(tables),
    )
    found = {row["relname"] for row in rows}
    return [t for t in tables if t in found]


async def _save_and_drop_indexes(conn: asyncpg.Connection, say: Say) -> None:
    """Remember the primary keys and indexes of the bulk tables, then drop them for the load."""
    for table in BULK_TABLES:
        constraints = await conn.fetch(
            "SELECT conname, pg_get_constraintdef(oid) AS def FROM pg_constraint "
            "WHERE conrelid = $1::regclass AND contype IN ('p', 'u')",
            table,
        )
        for row in constraints:
            await conn.execute(
                "INSERT INTO bench_saved_indexes VALUES ($1, $2, true, $3) ON CONFLICT DO NOTHING",
                table,
                row["conname"],
                f'ALTER TABLE {table} ADD CONSTRAINT "{row["conname"]}" {row["def"]}',
            )
        indexes = await conn.fetch(
            "SELECT i.relname AS name, pg_get_indexdef(i.oid) AS def FROM pg_index x "
            "JOIN pg_class i ON i.oid = x.indexrelid "
            "WHERE x.indrelid = $1::regclass AND NOT EXISTS "
            "(SELECT 1 FROM pg_constraint c WHERE c.conindid = x.indexrelid)",
            table,
        )
        for row in indexes:
            await conn.execute(
                "INSERT INTO bench_saved_indexes VALUES ($1, $2, false, $3) ON CONFLICT DO NOTHING",
                table,
                row["name"],
                row["def"],
            )
        for row in indexes:
            await conn.execute(f'DROP INDEX IF EXISTS "{row["name"]}"')
        for row in constraints:
            await conn.execute(f'ALTER TABLE {table} DROP CONSTRAINT IF EXISTS "{row["conname"]}"')
    count = await conn.fetchval("SELECT count(*) FROM bench_saved_indexes")
    say(f"  dropped {count} primary keys and indexes of {', '.join(BULK_TABLES)} for the load")


async def _restore_indexes(conn: asyncpg.Connection, say: Say) -> None:
    """Rebuild what :func:`_save_and_drop_indexes` dropped (constraints first), then forget it."""
    rows = await conn.fetch(
        "SELECT table_name, name, is_constraint, definition FROM bench_saved_indexes "
        "ORDER BY is_constraint DESC, table_name, name"
    )
    for row in rows:
        exists = await conn.fetchval(
            "SELECT 1 FROM pg_class WHERE relname = $1 AND relnamespace = current_schema()::regnamespace",
            row["name"],
        )
        if not exists:
            t0 = time.perf_counter()
            await conn.execute(row["definition"])
            say(f"  built {row['name']:<48} {time.perf_counter() - t0:7.1f}s")
        await conn.execute(
            "DELETE FROM bench_saved_indexes WHERE table_name = $1 AND name = $2",
            row["table_name"],
            row["name"],
        )


async def _load_people(conn: asyncpg.Connection, say: Say) -> None:
    rng = random.Random(20261101)
    people = []
    for e in range(EMPLOYEES):
        team = e // (EMPLOYEES // TEAMS)
        name = f"{rng.choice(FIRST_NAMES)} {rng.choice(LAST_NAMES)}"
        people.append(
            (
                e,
                _stable_uuid("bench-employee", e),
                _stable_uuid("bench-team", team),
                str(FIRST_EXTENSION + e),
                name,
                team,
                f"{TEAM_NAMES[team % len(TEAM_NAMES)]} {team // len(TEAM_NAMES) + 1}",
            )
        )
    await conn.execute("DROP TABLE IF EXISTS bench_emp")
    await conn.execute(
        "CREATE UNLOGGED TABLE bench_emp (idx int PRIMARY KEY, employee_id text, team_id text, ext text, "
        "name text, team int, team_name text)"
    )
    await conn.copy_records_to_table("bench_emp", records=people)
    await conn.execute(
        "INSERT INTO employees (employee_id, name, email, extension, team_id, team_name, active, deleted, "
        "version, updated_at) "
        "SELECT employee_id, name, lower(replace(name, ' ', '.')) || idx || '@example.com', ext, team_id, "
        "team_name, true, false, 1, $1 FROM bench_emp",
        END - timedelta(days=DAYS + 30),
    )
    await conn.execute(
        "INSERT INTO numbers (id, kind, number, e164, digits, label, employee_id, contact_id, phone_kind, "
        "version, created_at, updated_at) "
        "SELECT md5('bench-ext-' || idx), 'internal', ext, NULL, ext, name, employee_id, NULL, NULL, 1, "
        "$1, $1 "
        "FROM bench_emp",
        END - timedelta(days=DAYS + 30),
    )
    first, last, words, kinds = (
        _sql_array(x) for x in (FIRST_NAMES, LAST_NAMES, COMPANY_WORDS, COMPANY_KINDS)
    )
    await conn.execute("DROP TABLE IF EXISTS bench_cn")
    await conn.execute(
        f"""
CREATE UNLOGGED TABLE bench_cn AS
WITH c AS (
    SELECT c, bench_uuid('bench-contact', c) AS contact_id, bench_u(c, 101) < 0.25 AS company,
           1 + (bench_u(c, 100) < 0.3)::int AS n
    FROM generate_series(0, {CONTACTS - 1}) AS c
), n AS (
    SELECT c.*, s, bench_h(c.c * 2 + s, 102) AS h,
           CASE WHEN company THEN ({words})[(1 + bench_h(c.c, 103) % {len(COMPANY_WORDS)})::int] || ' '
                    || ({words})[(1 + bench_h(c.c, 104) % {len(COMPANY_WORDS)})::int] || ' '
                    || ({kinds})[(1 + bench_h(c.c, 105) % {len(COMPANY_KINDS)})::int]
                ELSE ({first})[(1 + bench_h(c.c, 103) % {len(FIRST_NAMES)})::int] || ' '
                    || ({last})[(1 + bench_h(c.c, 104) % {len(LAST_NAMES)})::int] END AS name
    FROM c, generate_series(0, c.n - 1) AS s
), e AS (
    SELECT n.*,
        CASE WHEN c % 10 < 4 THEN '+3598' || (7 + h % 3) || lpad((h / 3 % 10000000)::text, 7, '0')
             WHEN c % 10 < 7 THEN '+407' || lpad((h % 100000000)::text, 8, '0')
             WHEN c % 10 < 9 THEN '+380'
                 || (ARRAY['50','66','67','68','73','93','95','96','97','98','99'])[(1 + h % 11)::int]
                 || lpad((h / 11 % 10000000)::text, 7, '0')
             ELSE '+79' || lpad((h % 1000000000)::text, 9, '0') END AS e164
    FROM n
)
SELECT c, s, contact_id, company, name, e164,
    CASE WHEN c % 10 < 4 THEN '0' || substr(e164, 5) WHEN c % 10 < 7 THEN '0' || substr(e164, 4)
         WHEN c % 10 < 9 THEN '0' || substr(e164, 5) ELSE '8' || substr(e164, 3) END AS national
FROM e
"""
    )
    await conn.execute("ALTER TABLE bench_cn ADD PRIMARY KEY (c, s)")
    await conn.execute(
        "INSERT INTO contacts (contact_id, kind, name, company_id, company_name, responsible_employee_id, "
        "merged_into, deleted, version, updated_at) "
        "SELECT contact_id, CASE WHEN company THEN 'company' ELSE 'person' END, name, NULL, NULL, "
        f"bench_uuid('bench-employee', c % {EMPLOYEES}), NULL, false, 1, $1 FROM bench_cn WHERE s = 0",
        END - timedelta(days=DAYS + 30),
    )
    await conn.execute(
        "INSERT INTO numbers (id, kind, number, e164, digits, label, employee_id, contact_id, phone_kind, "
        "version, created_at, updated_at) "
        "SELECT md5('bench-number-' || c || '-' || s), 'contact', e164, e164, substr(e164, 2), NULL, NULL, "
        "contact_id, CASE WHEN s = 0 THEN 'mobile' ELSE 'work' END, 1, $1, $1 FROM bench_cn "
        "ON CONFLICT DO NOTHING",
        END - timedelta(days=DAYS + 30),
    )
    contacts = await conn.fetchval("SELECT count(*) FROM contacts")
    numbers = await conn.fetchval("SELECT count(*) FROM numbers")
    say(f"  {EMPLOYEES} employees in {TEAMS} teams, {contacts:,} contacts, {numbers:,} numbers")


async def generate(url: str, calls: int, *, chunk: int = DEFAULT_CHUNK, say: Say = print) -> Dataset:
    """Empty the call-log tables of the database and fill them with ``calls`` generated calls."""
    started = time.perf_counter()
    conn = await asyncpg.connect(plain_url(url), command_timeout=None)
    try:
        await conn.execute("SET synchronous_commit = off")
        await conn.execute("SET jit = off")  # compiling the generator's expressions takes a minute a chunk
        await conn.execute("SET work_mem = '256MB'")
        await conn.execute("SET maintenance_work_mem = '1GB'")
        await conn.execute("SET max_parallel_maintenance_workers = 1")
        await conn.execute(_HELPERS)
        await conn.execute("DELETE FROM bench_dataset")
        tables = await _existing(conn, DATA_TABLES)
        await conn.execute(f"TRUNCATE {', '.join(tables)}")
        say(f"  emptied {', '.join(tables)}")
        await _load_people(conn, say)
        await _save_and_drop_indexes(conn, say)
        hours = slots(calls)
        await conn.execute("DROP TABLE IF EXISTS bench_slots")
        await conn.execute(
            "CREATE UNLOGGED TABLE bench_slots (hour_start timestamptz, first_i bigint, last_i bigint)"
        )
        await conn.copy_records_to_table("bench_slots", records=hours)
        await conn.execute("CREATE INDEX ON bench_slots (first_i, last_i)")
        await conn.execute("ANALYZE bench_slots, bench_emp, bench_cn")
        statement = calls_chunk_sql()
        t_calls = time.perf_counter()
        for lo in range(0, calls, chunk):
            hi = min(lo + chunk, calls)
            await conn.execute(statement, lo, hi)
            elapsed = time.perf_counter() - t_calls
            rate = hi / elapsed
            say(
                f"  calls {hi:>11,} / {calls:,}  {rate:>9,.0f} calls/s  "
                f"elapsed {elapsed:6.0f}s  eta {(calls - hi) / rate:6.0f}s"
            )
        t_index = time.perf_counter()
        await _restore_indexes(conn, say)
        say(f"  indexes rebuilt in {time.perf_counter() - t_index:.0f}s")
        await conn.execute("ANALYZE calls, call_parties")
        for step, sql in MISSED_SQL:
            t0 = time.perf_counter()
            await conn.execute(sql)
            say(f"  {step:<56} {time.perf_counter() - t0:7.1f}s")
        await conn.execute("DROP TABLE IF EXISTS bench_mev, bench_mgrp, bench_slots")
        t0 = time.perf_counter()
        for table in await _existing(conn, DATA_TABLES):
            await conn.execute(f"VACUUM (ANALYZE) {table}")
        say(f"  VACUUM ANALYZE                                           {time.perf_counter() - t0:7.1f}s")
        revision = await _revision(conn)
        seconds = time.perf_counter() - started
        generated_at = datetime.now(UTC)
        await conn.execute(
            "INSERT INTO bench_dataset (version, calls, generated_at, seconds, revision, command) "
            "VALUES ($1, $2, $3, $4, $5, $6)",
            GENERATOR_VERSION,
            calls,
            generated_at,
            seconds,
            revision,
            command(url, calls),
        )
        return Dataset(GENERATOR_VERSION, calls, generated_at, seconds, revision)
    finally:
        await conn.close()


async def _revision(conn: asyncpg.Connection) -> str | None:
    if not await conn.fetchval("SELECT to_regclass('alembic_version_calls') IS NOT NULL"):
        return None
    value = await conn.fetchval("SELECT version_num FROM alembic_version_calls")
    return str(value) if value is not None else None


def command(url: str, calls: int) -> str:
    return (
        "python -m tests.bench.calls_data --database-url "
        f"{make_url(url).render_as_string(hide_password=True)} --calls {calls}"
    )


async def _prepare(url: str, calls: int, force: bool, chunk: int, say: Say) -> tuple[Dataset, bool]:
    if await ensure_database(url):
        say(f"created database {make_url(url).database}")
    t0 = time.perf_counter()
    await asyncio.to_thread(upgrade, url, MIGRATIONS)
    say(f"migrations of the calls service applied ({time.perf_counter() - t0:.1f}s)")
    conn = await asyncpg.connect(plain_url(url))
    try:
        found = await current_dataset(conn)
    finally:
        await conn.close()
    if found is not None and found.matches(calls) and not force:
        say(
            f"dataset v{found.version} with {found.calls:,} calls already there "
            f"(generated {found.generated_at:%Y-%m-%d %H:%M} UTC in {found.seconds:.0f}s); "
            "--force regenerates"
        )
        return found, False
    say(f"generating {calls:,} calls (generator v{GENERATOR_VERSION}) into {make_url(url).database}")
    dataset = await generate(url, calls, chunk=chunk, say=say)
    say(f"generated {calls:,} calls in {dataset.seconds:.0f}s ({calls / dataset.seconds:,.0f} calls/s)")
    return dataset, True


def prepare(
    url: str = DEFAULT_DATABASE_URL,
    calls: int = DEFAULT_CALLS,
    *,
    force: bool = False,
    chunk: int = DEFAULT_CHUNK,
    say: Say = print,
) -> tuple[Dataset, bool]:
    """The dataset of ``calls`` calls in the database of ``url``, generated unless already there.

    Returns it and whether it was generated now.
    """
    return asyncio.run(_prepare(url, calls, force, chunk, say))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(
        prog="python -m tests.bench.calls_data",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--database-url", default=DEFAULT_DATABASE_URL)
    parser.add_argument("--calls", type=int, default=DEFAULT_CALLS)
    parser.add_argument("--chunk", type=int, default=DEFAULT_CHUNK, help="calls per INSERT statement")
    parser.add_argument("--force", action="store_true", help="regenerate even when the dataset is there")
    args = parser.parse_args(argv)
    if args.calls < 1 or args.chunk < 1:
        parser.error("--calls and --chunk must be positive")
    prepare(
        args.database_url, args.calls, force=args.force, chunk=args.chunk, say=lambda s: print(s, flush=True)
    )


if __name__ == "__main__":
    main()
