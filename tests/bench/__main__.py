"""`make bench`: run every benchmark and print one table.

python -m tests.bench [--calls N] [--repeats N] [--only bus|sip|ring|screen-pop|calls-scale|crm-lookup]
                      [--sip-calls N] [--pop-rate N] [--database-url URL]

--calls is the call lifecycles per bus run for `bus` (default 2000) and the size of the generated call
log for `calls-scale` (default 10,000,000). `calls-scale` and `crm-lookup` need PostgreSQL
(--database-url, by default the local server); they are skipped when none answers, unless asked for
with --only. `--ingest-rate N` publishes N call lifecycles a second and reports whether the call log
kept up (sustained), instead of publishing at full speed. `crm-lookup` generates (once) a million
contacts in telecrm_bench_crm and times screen-pop look-ups in-service and over gRPC. `ring` times
INVITE -> the agent's phone ringing with crm's caller-name look-up fast, slow, silent and cached.
`screen-pop` times the ringing event on the bus -> the card on the agent's WebSocket (web service).
`sip` times the gateway pool behind Kamailio with sipp (calls held at once, calls a second).
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from pathlib import Path

import asyncpg

from tests.bench import bus_to_calls, calls_data
from tests.bench.report import Row, table


def _postgres_answers(url: str) -> bool:
    async def probe() -> None:
        conn = await asyncpg.connect(calls_data.plain_url(url), database="postgres", timeout=5)
        await conn.close()

    try:
        asyncio.run(probe())
    except (OSError, asyncpg.PostgresError, TimeoutError):
        return False
    return True


def crm_lookup(args: argparse.Namespace) -> list[Row]:
    from tests.bench import crm_lookup

    url = args.database_url or crm_lookup.DEFAULT_DATABASE_URL
    if args.only is None and not _postgres_answers(url):
        return [Row("crm number look-up (crm-lookup)", "skipped", f"no PostgreSQL answers at {url}")]
    contacts = args.contacts or crm_lookup.DEFAULT_CONTACTS
    return crm_lookup.run(contacts, url, runs=args.lookup_runs, say=lambda s: print(s, flush=True))


def calls_scale(args: argparse.Namespace) -> list[Row]:
    from tests.bench import calls_scale

    url = args.database_url or calls_data.DEFAULT_DATABASE_URL
    if args.only is None and not _postgres_answers(url):
        return [Row("call log at scale (calls-scale)", "skipped", f"no PostgreSQL answers at {url}")]
    calls = args.calls or calls_data.DEFAULT_CALLS
    rows = calls_scale.run(calls, url, runs=args.runs, say=lambda s: print(s, flush=True))
    if args.ingest_calls:
        rows += bus_to_calls.run(
            calls=args.ingest_calls,
            repeats=args.repeats,
            database_url=url,
            profile=args.profile_ingest,
            replicas=args.ingest_replicas,
            rate=args.ingest_rate,
            warmup=args.warmup_calls,
        )
        if args.ingest_into_dataset:
            rows += bus_to_calls.run(
                calls=args.ingest_calls,
                repeats=args.repeats,
                database_url=url,
                into_existing=True,
                replicas=args.ingest_replicas,
            )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument(
        "--calls",
        type=int,
        default=None,
        help="call lifecycles per bus run; calls in the calls-scale dataset",
    )
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--sip-calls", type=int, default=100, help="sip: concurrent calls the gateway pool is sized for"
    )
    parser.add_argument(
        "--only", choices=["bus", "sip", "ring", "screen-pop", "calls-scale", "crm-lookup"], default=None
    )
    parser.add_argument(
        "--database-url",
        default=None,
        help="PostgreSQL for calls-scale (its dataset database) and bus (a fresh database on that server)",
    )
    parser.add_argument("--runs", type=int, default=60, help="calls-scale: timed runs per query case")
    parser.add_argument(
        "--ingest-calls",
        type=int,
        default=20_000,
        help="calls-scale: call lifecycles per ingestion run (0: no ingestion benchmark)",
    )
    parser.add_argument(
        "--ingest-into-dataset",
        action="store_true",
        help="calls-scale: also ingest into the big dataset's database (its calls are removed afterwards)",
    )
    parser.add_argument(
        "--ingest-replicas",
        type=int,
        default=1,
        help="bus/calls-scale: calls service replicas sharing the consumer",
    )
    parser.add_argument(
        "--profile-ingest", type=Path, default=None, help="calls-scale: cProfile the calls service into FILE"
    )
    parser.add_argument(
        "--ingest-rate",
        type=float,
        default=None,
        help="bus/calls-scale: publish this many call lifecycles a second (sustained rate) instead of "
        "at full speed; the run lasts --calls / rate seconds",
    )
    parser.add_argument(
        "--warmup-calls",
        type=int,
        default=10_000,
        help="bus/calls-scale: call lifecycles ingested (not measured) into a fresh database before the "
        "runs, then ANALYZE: the steady state of a running system (0: measure from an empty database)",
    )
    parser.add_argument(
        "--contacts", type=int, default=None, help="crm-lookup: contacts in the dataset (default 1,000,000)"
    )
    parser.add_argument("--lookup-runs", type=int, default=2000, help="crm-lookup: look-ups timed per case")
    parser.add_argument("--pop-rate", type=float, default=20.0, help="screen-pop: new calls a second")
    parser.add_argument(
        "--pop-seconds", type=float, default=20.0, help="screen-pop: how long calls are offered"
    )
    parser.add_argument(
        "--pop-agents", type=int, default=20, help="screen-pop: agents logged in, one tab each"
    )
    args = parser.parse_args()
    if args.runs < 1:
        parser.error("--runs must be positive (the issue's figures use at least 50)")
    rows: list[Row] = []
    if args.only in (None, "bus"):
        rows += bus_to_calls.run(
            calls=args.calls or 2000,
            repeats=args.repeats,
            database_url=args.database_url,
            replicas=args.ingest_replicas,
            rate=args.ingest_rate,
            warmup=args.warmup_calls,
        )
    if args.only in (None, "sip"):
        from tests.bench import sip_gateway

        rows += sip_gateway.run(
            repeats=args.repeats, calls=args.sip_calls, say=lambda s: print(s, flush=True)
        )
    if args.only in (None, "screen-pop"):
        from tests.bench import screen_pop

        rows += screen_pop.run(
            rate=args.pop_rate,
            seconds=args.pop_seconds,
            agents=args.pop_agents,
            say=lambda s: print(s, flush=True),
        )
    if args.only in (None, "ring"):
        from tests.bench import ring_latency

        rows += ring_latency.run(say=lambda s: print(s, flush=True))
    if args.only in (None, "calls-scale"):
        rows += calls_scale(args)
    if args.only in (None, "crm-lookup"):
        rows += crm_lookup(args)
    print()
    print(table(rows, "make bench  (" + " ".join(["python -m tests.bench", *sys.argv[1:]]) + ")"))


if __name__ == "__main__":
    main()
