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
"""

from __future__ import annotations

import asyncio
import statistics
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


TICK_SECONDS = 0.05


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
    nats_url: str, database_url: str, calls: int, durable: str, first: int = 0, rate: float | None = None
) -> RunResult:
    bus = await Bus.connect(nats_url, name="bench")
    await bus.ensure_streams(STREAMS)
    start = datetime.now(UTC)
    events = [e for i in range(first, first + calls) for e in lifecycle(i, start + timedelta(milliseconds=i))]
    call_ids = sorted({e.call_id for e in events})
    messages = serialized(events)
    spec = tel_consumer(durable)
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
    )


async def _delete_calls(database_url: str, call_ids: list[str], since: datetime) -> None:
    """Remove what the runs wrote into an existing database (its dataset stays as it was)."""
    engine = create_async_engine(async_url(database_url))
    async with engine.begin() as conn:
        for table in ("missed_call_calls", "call_recordings", "call_parties", "calls", "call_events"):
            await conn.execute(text(f"DELETE FROM {table} WHERE call_id = ANY(:ids)"), {"ids": call_ids})
        await conn.execute(text("DELETE FROM outbox WHERE created_at >= :since"), {"since": since})
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
            for repeat in range(repeats):
                results.append(
                    asyncio.run(one_run(nats.url, database_url, calls, "calls", repeat * calls, rate=rate))
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
