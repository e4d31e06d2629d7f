"""Benchmark: call events per second through NATS JetStream -> calls service -> database.

Starts a real nats-server and the calls service as a real process (PostgreSQL when TEST_DATABASE_URL
is set, SQLite otherwise), publishes whole call lifecycles (offered, ringing, answered, ended) at full
speed, samples the consumer's lag while the calls service catches up, and checks that every call left
exactly one ended record. Repeated; medians are reported.
"""

from __future__ import annotations

import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path

from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import text
from sqlalchemy.ext.asyncio import create_async_engine

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.bus import Bus
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


async def one_run(nats_url: str, database_url: str, calls: int, durable: str) -> RunResult:
    bus = await Bus.connect(nats_url, name="bench")
    await bus.ensure_streams(STREAMS)
    start = datetime.now(UTC)
    events = [e for i in range(calls) for e in lifecycle(i, start + timedelta(milliseconds=i))]
    spec = tel_consumer(durable)
    max_lag = 0
    t0 = time.perf_counter()
    window = 500
    for offset in range(0, len(events), window):
        chunk = events[offset : offset + window]
        await asyncio.gather(*(bus.publish(call_event_subject(e), e, msg_id=e.event_id) for e in chunk))
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
        records = (await conn.execute(text("SELECT count(*) FROM calls WHERE state = 'ended'"))).scalar_one()
    await engine.dispose()
    return RunResult(len(events), t_published - t0, t_done - t0, max_lag, int(records))


def run(calls: int = 2000, repeats: int = 3) -> list[Row]:
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        nats = NatsServer(data_dir=root / "nats", log_path=root / "nats.log").start()
        database_url = create_database("bench-calls", root)
        backend = "PostgreSQL" if database_url.startswith("postgresql") else "SQLite"
        port = free_port()
        env = {
            "CALLS_NATS_URL": nats.url,
            "CALLS_DATABASE_URL": database_url,
            "CALLS_HTTP_PORT": str(port),
            "CALLS_GRPC_PORT": str(free_port()),
            "CALLS_LOG_LEVEL": "WARNING",
        }
        proc = ManagedProcess(
            "calls",
            [sys.executable, "-m", "telecrm_calls"],
            env=env,
            log_path=root / "calls.log",
        ).start()
        try:
            wait_http_ok(f"http://127.0.0.1:{port}/readyz", 60, proc)
            results = []
            for _ in range(repeats):
                results.append(asyncio.run(one_run(nats.url, database_url, calls, "calls")))
            expected = calls * repeats
            got = results[-1].records
            rates = [r.events / r.total_seconds for r in results]
            drain = statistics.median([r.total_seconds - r.publish_seconds for r in results])
            publish_rates = [r.events / r.publish_seconds for r in results]
            rows.append(
                Row(
                    f"bus -> calls -> {backend}: call events/s end to end",
                    f"{statistics.median(rates):,.0f}",
                    f"median of {repeats} runs of {calls} calls x 4 events; "
                    f"lifecycles/s {statistics.median(rates) / 4:,.0f}",
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
                    f"drained {drain:.2f}s after the last publish (median)",
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
            proc.stop()
            nats.stop()
            drop_database(database_url)
    return rows
