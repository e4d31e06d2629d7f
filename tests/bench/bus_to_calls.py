"""Benchmark: call events per second through NATS JetStream -> calls service -> database.

Starts a real nats-server and the calls service as a real process, publishes whole call lifecycles
(offered, ringing, answered, ended) at full speed, samples the consumer's lag while the calls service
catches up, and checks that every call left exactly one ended record. Repeated; medians are reported.

With ``rate`` the lifecycles are published at that pace instead (as a gateway would, every 50 ms a
slice), for ``calls / rate`` seconds, and the lag is sampled all along: the rate is sustained when
the lag stays bounded and is gone soon after the last publish, not growing with the run.

The database: a fresh one on the PostgreSQL server of ``database_url`` when it is given (dropped
afterwards), or with ``into_existing`` that very database (the calls of the run are deleted afterwards:
ingestion into a big call log, e.g. the 10-million-call dataset of :mod:`tests.bench.calls_data`);
otherwise a fresh PostgreSQL database when TEST_DATABASE_URL is set, else SQLite. With ``profile`` the
calls service runs under cProfile and its statistics are written there.

Wall-clock rates depend on what else runs on the machine; the cost of a lifecycle much less. Each run
also reports it: CPU seconds of the calls processes and of the PostgreSQL backends serving the bench
database per 1,000 lifecycles, and the database's work per lifecycle: transactions, rows inserted and
updated in the call log's tables (with the share of HOT updates, which touch no index), and the WAL
written for the bench database (read with ``pg_waldump`` when the server is local and its WAL
readable, else the server-wide WAL, other clients included).
"""

from __future__ import annotations

import asyncio
import os
import re
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import asyncpg
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import bindparam, make_url, text
from sqlalchemy.ext.asyncio import create_async_engine

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.bus import Bus, BusError, ConsumerSpec, SerializedMessage
from telecrm_common.db import async_url
from telecrm_common.events import STREAMS, call_event_subject, tel_consumer
from telecrm_devstack.databases import create_database, drop_database
from telecrm_devstack.processes import ManagedProcess, NatsServer, free_port, wait_http_ok
from tests.bench.report import Row


def _ts(moment: datetime) -> Timestamp:
    stamp = Timestamp()
    stamp.FromDatetime(moment)
    return stamp


def lifecycle(index: int, start: datetime) -> list[ev.CallEvent]:
    """The four events of one answered inbound call."""
    call_id = str(uuid.uuid4())
    caller = f"+1555{index % 10_000_000:07d}"
    header = {
        "call_id": call_id,
        "direction": ev.DIRECTION_INBOUND,
        "caller": ev.Party(number=caller, e164=caller),
        "callee": ev.Party(number="101", extension="101"),
        "line": "+15551230000",
        "extension": "101",
        "source": "bench",
    }
    answered = start + timedelta(seconds=3)
    ended = start + timedelta(seconds=63)
    kinds = [
        ({"offered": ev.CallOffered(request_uri="sip:101@gw")}, start),
        ({"ringing": ev.CallRinging(extension="101")}, start + timedelta(milliseconds=50)),
        ({"answered": ev.CallAnswered(extension="101", started_at=_ts(start))}, answered),
        (
            {
                "ended": ev.CallEnded(
                    disposition=ev.DISPOSITION_ANSWERED,
                    sip_status=200,
                    q850_cause=16,
                    hangup_by=ev.HANGUP_BY_CALLER,
                    started_at=_ts(start),
                    answered_at=_ts(answered),
                    answered_extension="101",
                )
            },
            ended,
        ),
    ]
    return [
        ev.CallEvent(event_id=str(uuid.uuid4()), sequence=seq, occurred_at=_ts(at), **header, **kind)  # type: ignore[arg-type]
        for seq, (kind, at) in enumerate(kinds, start=1)
    ]


@dataclass
class RunResult:
    events: int
    publish_seconds: float
    total_seconds: float
    max_lag: int
    records: int
    call_ids: list[str]
    outbox_backlog: int  # calls.* events waiting in the outbox when the consumer had caught up
    outbox_seconds: float  # how long after that the outbox was empty
    lag_at_last_publish: int = 0
    cost: Cost | None = None


TICK_SECONDS = 0.05

# The call log's tables ingestion writes, whose row counters the cost reports.
INGEST_TABLES = ("call_events", "calls", "call_parties", "outbox")


@dataclass(frozen=True)
class Snapshot:
    """Counters read before and after a run; the run's cost is the difference."""

    consumer_cpu: float  # seconds, every calls process
    backend_cpu: dict[int, float]  # seconds, by pid: PostgreSQL backends serving the bench database
    wal_lsn: int
    commits: int
    rows: dict[str, tuple[int, int, int]]  # table: (inserted, updated, HOT-updated)


@dataclass(frozen=True)
class Cost:
    """What one run cost, per lifecycle (``calls`` of them)."""

    calls: int
    consumer_cpu: float
    backend_cpu: float
    wal_bytes: int
    wal_scope: str  # "bench database" or "server-wide"
    wal_by_relation: dict[str, int]  # empty when only the server-wide figure is known
    commits: int
    rows: dict[str, tuple[int, int, int]]


def _cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a local process (None when it is gone or not readable)."""
    try:
        fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    except OSError:
        return None
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


async def _snapshot(conn: asyncpg.Connection, consumer_pids: list[int]) -> Snapshot:
    consumer = sum(filter(None, (_cpu_seconds(pid) for pid in consumer_pids)))
    pids = await conn.fetch(
        "SELECT pid FROM pg_stat_activity WHERE datname = current_database() AND pid <> pg_backend_pid()"
    )
    backends = {row["pid"]: cpu for row in pids if (cpu := _cpu_seconds(row["pid"])) is not None}
    lsn = int(await conn.fetchval("SELECT pg_wal_lsn_diff(pg_current_wal_lsn(), '0/0')"))
    commits = int(
        await conn.fetchval("SELECT xact_commit FROM pg_stat_database WHERE datname = current_database()")
    )
    tables = await conn.fetch(
        "SELECT relname, n_tup_ins, n_tup_upd, n_tup_hot_upd FROM pg_stat_user_tables "
        "WHERE relname = ANY($1::text[])",
        list(INGEST_TABLES),
    )
    rows = {r["relname"]: (r["n_tup_ins"], r["n_tup_upd"], r["n_tup_hot_upd"]) for r in tables}
    return Snapshot(consumer, backends, lsn, commits, rows)


async def _settled_snapshot(conn: asyncpg.Connection, consumer_pids: list[int]) -> Snapshot:
    """A snapshot once the backends reported their table counters (an idle backend flushes its
    statistics within about ten seconds)."""
    last = await _snapshot(conn, consumer_pids)
    for _ in range(30):
        await asyncio.sleep(1.0)
        now = await _snapshot(conn, consumer_pids)
        if now.rows == last.rows and now.commits == last.commits:
            return now
        last = now
    return last


def _pg_waldump(server_version: int) -> str | None:
    major = server_version // 10_000
    found = shutil.which("pg_waldump") or f"/usr/lib/postgresql/{major}/bin/pg_waldump"
    return found if Path(found).exists() else None


_WAL_RECORD = re.compile(r"len \(rec/tot\):\s*\d+/\s*(\d+), tx:\s*(\d+),.*?desc: (\S+)")


async def _database_wal(conn: asyncpg.Connection, start: int, end: int) -> tuple[int, dict[str, int]] | None:
    """Bytes of WAL between the two positions that belong to this database (records on its relations
    and the commit records of their transactions), and those bytes by relation (table or index;
    ``commit`` for the commit records). None when the WAL cannot be read here."""
    version = int(await conn.fetchval("SHOW server_version_num"))
    tool = _pg_waldump(version)
    try:
        data_dir = await conn.fetchval("SHOW data_directory")
    except asyncpg.PostgresError:
        return None
    wal_dir = Path(data_dir) / "pg_wal"
    if tool is None or not os.access(wal_dir, os.R_OK):
        return None
    oid = int(await conn.fetchval("SELECT oid FROM pg_database WHERE datname = current_database()"))
    relation = re.compile(rf"rel \d+/{oid}/(\d+)")

    def lsn(value: int) -> str:
        return f"{value >> 32:X}/{value & 0xFFFFFFFF:X}"

    proc = await asyncio.to_thread(
        subprocess.run,
        [tool, "-p", str(wal_dir), "-s", lsn(start), "-e", lsn(end)],
        capture_output=True,
        text=True,
        check=False,
    )
    ours: set[str] = set()
    by_node: dict[int, int] = {}
    commits: list[tuple[str, int]] = []
    for line in proc.stdout.splitlines():
        match = _WAL_RECORD.search(line)
        if match is None:
            continue
        size, xid, desc = int(match.group(1)), match.group(2), match.group(3)
        if (rel := relation.search(line)) is not None:
            node = int(rel.group(1))
            by_node[node] = by_node.get(node, 0) + size
            ours.add(xid)
        elif desc == "COMMIT":
            commits.append((xid, size))
    names = {
        int(r["relfilenode"]): r["relname"]
        for r in await conn.fetch("SELECT relfilenode, relname FROM pg_class WHERE relfilenode <> 0")
    }
    by_relation: dict[str, int] = {}
    for node, size in by_node.items():
        name = names.get(node, f"relfilenode {node}")
        by_relation[name] = by_relation.get(name, 0) + size
    by_relation["commit"] = sum(size for xid, size in commits if xid in ours)
    return sum(by_relation.values()), by_relation


async def _cost(conn: asyncpg.Connection, before: Snapshot, after: Snapshot, calls: int) -> Cost:
    backend = sum(cpu - before.backend_cpu.get(pid, 0.0) for pid, cpu in after.backend_cpu.items())
    read = await _database_wal(conn, before.wal_lsn, after.wal_lsn)
    scope = "bench database"
    wal_by_relation: dict[str, int] = {}
    if read is None:
        wal, scope = after.wal_lsn - before.wal_lsn, "server-wide"
    else:
        wal, wal_by_relation = read
    rows = {
        table: tuple(
            a - b
            for a, b in zip(after.rows.get(table, (0, 0, 0)), before.rows.get(table, (0, 0, 0)), strict=True)
        )
        for table in INGEST_TABLES
    }
    return Cost(
        calls,
        after.consumer_cpu - before.consumer_cpu,
        backend,
        wal,
        scope,
        wal_by_relation,
        after.commits - before.commits,
        rows,  # type: ignore[arg-type]
    )


def serialized(events: list[ev.CallEvent]) -> list[SerializedMessage]:
    """The events as the gateway publishes them (subject, Nats-Msg-Id = event id), serialized up front
    so that the publishing loop costs little CPU: the bench shares the machine with what it measures."""
    return [
        SerializedMessage(call_event_subject(e), e.SerializeToString(), e.event_id, e.DESCRIPTOR.full_name)
        for e in events
    ]


async def publish(bus: Bus, messages: list[SerializedMessage]) -> None:
    """Publish pipelined, every message acknowledged by the stream (else BusError)."""
    acknowledged = await bus.publish_serialized(messages, timeout=30)
    if acknowledged != len(messages):
        raise BusError(f"only {acknowledged} of {len(messages)} events were acknowledged by the stream")


async def _publish_paced(
    bus: Bus, events: list[SerializedMessage], rate: float, spec: ConsumerSpec[Any]
) -> tuple[int, int]:
    """Publish ``rate`` lifecycles (4 events each) a second in 50 ms slices, sampling the lag after
    each; returns the largest lag seen and the lag right after the last slice."""
    per_tick = rate * 4 * TICK_SECONDS
    max_lag = lag = 0
    t0 = time.perf_counter()
    sent = 0
    tick = 0
    while sent < len(events):
        tick += 1
        due = min(len(events), round(per_tick * tick))
        await publish(bus, events[sent:due])
        sent = due
        lag = await bus.pending(spec)
        max_lag = max(max_lag, lag)
        await asyncio.sleep(max(0.0, t0 + tick * TICK_SECONDS - time.perf_counter()))
    return max_lag, lag


async def one_run(
    nats_url: str,
    database_url: str,
    calls: int,
    durable: str,
    first: int = 0,
    rate: float | None = None,
    consumer_pids: list[int] | None = None,
    cost: bool = True,
) -> RunResult:
    bus = await Bus.connect(nats_url, name="bench")
    await bus.ensure_streams(STREAMS)
    start = datetime.now(UTC)
    events = [e for i in range(first, first + calls) for e in lifecycle(i, start + timedelta(milliseconds=i))]
    call_ids = sorted({e.call_id for e in events})
    messages = serialized(events)
    spec = tel_consumer(durable)
    stats: asyncpg.Connection | None = None
    before: Snapshot | None = None
    if cost and database_url.startswith("postgresql"):
        plain = make_url(database_url).set(drivername="postgresql")
        stats = await asyncpg.connect(plain.render_as_string(hide_password=False), timeout=10)
        before = await _settled_snapshot(stats, consumer_pids or [])
    max_lag = lag_at_last_publish = 0
    t0 = time.perf_counter()
    if rate is not None:
        max_lag, lag_at_last_publish = await _publish_paced(bus, messages, rate, spec)
    else:
        window = 500
        for offset in range(0, len(messages), window):
            await publish(bus, messages[offset : offset + window])
    t_published = time.perf_counter()
    while True:
        lag = await bus.pending(spec)
        max_lag = max(max_lag, lag)
        if lag == 0:
            break
        await asyncio.sleep(0.05)
    t_done = time.perf_counter()
    await bus.close()
    engine = create_async_engine(async_url(database_url))
    async with engine.connect() as conn:
        # What the service publishes in turn (calls.record.*, calls.missed.*) leaves through the outbox.
        backlog = None
        while time.perf_counter() - t_done < 120:
            pending = int((await conn.execute(text("SELECT count(*) FROM outbox"))).scalar_one())
            await conn.commit()
            backlog = pending if backlog is None else backlog
            if pending == 0:
                break
            await asyncio.sleep(0.05)
        t_outbox = time.perf_counter()
        # Counted in chunks with IN (portable: SQLite has no ANY, and caps the parameters of a query).
        records = 0
        for offset in range(0, len(call_ids), 500):
            records += (
                await conn.execute(
                    text("SELECT count(*) FROM calls WHERE state = 'ended' AND call_id IN :ids").bindparams(
                        bindparam("ids", expanding=True)
                    ),
                    {"ids": call_ids[offset : offset + 500]},
                )
            ).scalar_one()
    await engine.dispose()
    cost = None
    if stats is not None and before is not None:
        try:
            after = await _settled_snapshot(stats, consumer_pids or [])
            cost = await _cost(stats, before, after, calls)
        finally:
            await stats.close()
    return RunResult(
        len(events),
        t_published - t0,
        t_done - t0,
        max_lag,
        int(records),
        call_ids,
        backlog or 0,
        t_outbox - t_done,
        lag_at_last_publish,
        cost,
    )


async def _delete_calls(database_url: str, call_ids: list[str], since: datetime) -> None:
    """Remove what the runs wrote into an existing database (its dataset stays as it was)."""
    engine = create_async_engine(async_url(database_url))
    async with engine.begin() as conn:
        for table in ("missed_call_calls", "call_recordings", "call_parties", "calls", "call_events"):
            await conn.execute(text(f"DELETE FROM {table} WHERE call_id = ANY(:ids)"), {"ids": call_ids})
        await conn.execute(text("DELETE FROM outbox WHERE created_at >= :since"), {"since": since})
    await engine.dispose()


async def _analyze(database_url: str) -> None:
    """ANALYZE the bench database (what autovacuum does on its own a little later)."""
    engine = create_async_engine(async_url(database_url))
    async with engine.connect() as conn:
        await conn.execute(text("ANALYZE"))
        await conn.commit()
    await engine.dispose()


async def _admin(database_url: str, sql: str) -> None:
    """Run ``sql`` on the server's ``postgres`` database (CREATE / DROP DATABASE)."""
    admin = make_url(database_url).set(drivername="postgresql", database="postgres")
    conn = await asyncpg.connect(admin.render_as_string(hide_password=False), timeout=10)
    try:
        await conn.execute(sql)
    finally:
        await conn.close()


def _fresh_database(server_url: str) -> str:
    """A new empty database on the PostgreSQL server of ``server_url``."""
    name = f"tcrm_bench_ingest_{uuid.uuid4().hex[:10]}"
    asyncio.run(_admin(server_url, f'CREATE DATABASE "{name}"'))
    return make_url(server_url).set(database=name).render_as_string(hide_password=False)


def _drop(database_url: str) -> None:
    name = make_url(database_url).database
    asyncio.run(_admin(database_url, f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)'))


def run(
    calls: int = 2000,
    repeats: int = 3,
    *,
    database_url: str | None = None,
    into_existing: bool = False,
    profile: Path | None = None,
    replicas: int = 1,
    rate: float | None = None,
    warmup: int = 0,
) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        nats = NatsServer(data_dir=root / "nats", log_path=root / "nats.log").start()
        drop: Callable[[str], None] | None
        if database_url is None:
            database_url = create_database("bench-calls", root)
            drop = drop_database
            where = ""
        elif into_existing:
            drop = None
            where = f" ({make_url(database_url).database}, existing)"
        else:
            database_url = _fresh_database(database_url)
            drop = _drop
            where = " (fresh database)"
        backend = ("PostgreSQL" if database_url.startswith("postgresql") else "SQLite") + where
        since = datetime.now(UTC)
        if replicas > 1:
            backend += f", {replicas} replicas"
        procs: list[ManagedProcess] = []
        results: list[RunResult] = []
        try:
            # Replicas share the durable consumer (each event handled once); only the first is profiled.
            for replica in range(replicas):
                command = [sys.executable, "-m", "telecrm_calls"]
                if profile is not None and replica == 0:
                    profile.parent.mkdir(parents=True, exist_ok=True)
                    command = [
                        sys.executable,
                        "-m",
                        "cProfile",
                        "-o",
                        str(profile.resolve()),
                        "-m",
                        "telecrm_calls",
                    ]
                port = free_port()
                env = {
                    "CALLS_NATS_URL": nats.url,
                    "CALLS_DATABASE_URL": database_url,
                    "CALLS_HTTP_PORT": str(port),
                    "CALLS_GRPC_PORT": str(free_port()),
                    "CALLS_LOG_LEVEL": "WARNING",
                }
                proc = ManagedProcess(
                    "calls", command, env=env, log_path=root / f"calls-{replica}.log"
                ).start()
                procs.append(proc)
                wait_http_ok(f"http://127.0.0.1:{port}/readyz", 60, proc)
            if warmup and not into_existing:
                # Steady state, as a running system is: a fresh database's tables have no statistics
                # until autovacuum analyzes them (within a minute or so), and meanwhile the planner
                # scans whole tables for look-ups an index answers. Not measured.
                asyncio.run(one_run(nats.url, database_url, warmup, "calls", -warmup, cost=False))
                asyncio.run(_analyze(database_url))
                backend += f", after a warm-up of {warmup:,} calls and ANALYZE"
            for repeat in range(repeats):
                pids = [proc.process.pid for proc in procs if proc.process is not None]
                results.append(
                    asyncio.run(
                        one_run(
                            nats.url,
                            database_url,
                            calls,
                            "calls",
                            repeat * calls,
                            rate=rate,
                            consumer_pids=pids,
                        )
                    )
                )
            expected = calls * repeats
            got = sum(r.records for r in results)
            if rate is not None:
                rows += _paced_rows(results, rate, calls, repeats, backend)
            else:
                rows += _full_speed_rows(results, calls, repeats, backend)
            rows.append(
                Row(
                    "  outbox backlog when the consumer caught up (calls.* events)",
                    f"{statistics.median([r.outbox_backlog for r in results]):,.0f}",
                    f"empty {statistics.median([r.outbox_seconds for r in results]):.2f}s later (median)",
                )
            )
            rows += _cost_rows(results)
            rows.append(
                Row(
                    "  ended records / calls published",
                    f"{got:,} / {expected:,}",
                    "ok" if got == expected else "MISMATCH",
                )
            )
        finally:
            for proc in procs:
                proc.stop()
            nats.stop()
            if drop is not None:
                drop(database_url)
            elif results:
                asyncio.run(_delete_calls(database_url, [c for r in results for c in r.call_ids], since))
    return rows


def _full_speed_rows(results: list[RunResult], calls: int, repeats: int, backend: str) -> list[Row]:
    rows: list[Row] = []
    rates = [r.events / r.total_seconds for r in results]
    drain = statistics.median([r.total_seconds - r.publish_seconds for r in results])
    publish_rates = [r.events / r.publish_seconds for r in results]
    rows.append(
        Row(
            f"bus -> calls -> {backend}: call events/s end to end",
            f"{statistics.median(rates):,.0f}",
            f"median of {repeats} runs of {calls} calls x 4 events, published at full speed",
        )
    )
    rows.append(
        Row(
            "  call lifecycles/s end to end",
            f"{statistics.median(rates) / 4:,.0f}",
            f"runs: {', '.join(f'{r / 4:,.0f}' for r in rates)}",
        )
    )
    rows.append(
        Row(
            "  publish rate (events/s, JetStream acked)",
            f"{statistics.median(publish_rates):,.0f}",
            "",
        )
    )
    rows.append(
        Row(
            "  consumer lag, max while catching up (messages)",
            f"{statistics.median([r.max_lag for r in results]):,.0f}",
            f"drained {drain:.2f}s after the last publish (median); lag in time = messages / rate",
        )
    )
    return rows


def _paced_rows(results: list[RunResult], rate: float, calls: int, repeats: int, backend: str) -> list[Row]:
    """Rows of the paced runs: whether the consumer kept up, with the lag that says so."""
    per_second = rate * 4
    offered = [r.events / r.publish_seconds / 4 for r in results]
    at_end = [r.lag_at_last_publish for r in results]
    drains = [r.total_seconds - r.publish_seconds for r in results]
    # Kept up: the publisher held the pace, and when it stopped the consumer was less than a
    # second of traffic behind (a lag that grew with the run would be many seconds by then).
    kept_up = [o >= 0.98 * rate and lag <= per_second for o, lag in zip(offered, at_end, strict=True)]
    return [
        Row(
            f"bus -> calls -> {backend}: {rate:,.0f} call lifecycles/s sustained",
            "yes" if all(kept_up) else "NO",
            f"{repeats} runs of {calls:,} calls ({calls / rate:.0f} s each) x 4 events, published every "
            f"{TICK_SECONDS * 1000:.0f} ms; kept up in {sum(kept_up)} of {len(kept_up)}",
        ),
        Row(
            "  lifecycles/s published (offered)",
            f"{statistics.median(offered):,.0f}",
            f"runs: {', '.join(f'{o:,.0f}' for o in offered)}",
        ),
        Row(
            "  consumer lag while publishing, max (messages)",
            f"{statistics.median([r.max_lag for r in results]):,.0f}",
            f"= {statistics.median([r.max_lag for r in results]) / per_second:.2f} s of traffic (median)",
        ),
        Row(
            "  consumer lag at the last publish (messages)",
            f"{statistics.median(at_end):,.0f}",
            f"runs: {', '.join(f'{lag:,}' for lag in at_end)}; empty {statistics.median(drains):.2f} s later",
        ),
    ]


def _cost_rows(results: list[RunResult]) -> list[Row]:
    """What a lifecycle cost (medians over the runs): CPU, transactions, rows written, WAL."""
    costs = [r.cost for r in results if r.cost is not None]
    if not costs:
        return []

    def median(per_run: Callable[[Cost], float]) -> float:
        return statistics.median(per_run(c) for c in costs)

    def per_call(table: str, index: int) -> float:
        return median(lambda c: c.rows[table][index] / c.calls)

    hot = median(lambda c: c.rows["calls"][2] / c.rows["calls"][1] if c.rows["calls"][1] else 0.0)
    return [
        Row(
            "  consumer CPU s / 1,000 lifecycles",
            f"{median(lambda c: c.consumer_cpu / c.calls * 1000):.3f}",
            "every calls process; runs: "
            + ", ".join(f"{c.consumer_cpu / c.calls * 1000:.3f}" for c in costs),
        ),
        Row(
            "  PostgreSQL backends CPU s / 1,000 lifecycles",
            f"{median(lambda c: c.backend_cpu / c.calls * 1000):.3f}",
            "the backends serving the bench database (not the WAL writer, checkpointer, autovacuum)",
        ),
        Row(
            "  WAL bytes / lifecycle",
            f"{median(lambda c: c.wal_bytes / c.calls):,.0f}",
            f"{costs[0].wal_scope}; runs: {', '.join(f'{c.wal_bytes / c.calls:,.0f}' for c in costs)}",
        ),
        *_wal_rows(costs),
        Row(
            "  transactions / 1,000 lifecycles",
            f"{median(lambda c: c.commits / c.calls * 1000):.1f}",
            "commits in the bench database (ingest batches, outbox, the bench's own polling)",
        ),
        Row(
            "  calls rows inserted + updated / lifecycle",
            f"{per_call('calls', 0):.2f} + {per_call('calls', 1):.2f}",
            f"HOT updates {hot:.0%} of the updates (a non-HOT update writes all 11 indexes)",
        ),
        Row(
            "  call_parties / call_events / outbox rows inserted / lifecycle",
            " / ".join(f"{per_call(table, 0):.2f}" for table in ("call_parties", "call_events", "outbox")),
            "",
        ),
    ]


def _wal_rows(costs: list[Cost]) -> list[Row]:
    """The WAL of the first run by relation, biggest first (where a lifecycle's bytes go)."""
    cost = costs[0]
    if not cost.wal_by_relation:
        return []
    top = sorted(cost.wal_by_relation.items(), key=lambda item: -item[1])
    shown = ", ".join(f"{name} {size / cost.calls:,.0f}" for name, size in top[:8])
    return [Row("    WAL bytes / lifecycle by relation", "", shown)]
