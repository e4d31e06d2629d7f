"""Benchmark: how long the caller-name look-up holds ringing the agent up.

A gateway in this process (pjsua2) takes sipp calls to a line and rings a sipp agent phone that answers
at once; crm's number look-up is a gRPC server in this process answering after a set delay. For each
case the time from the INVITE (the ``offered`` event) to the agent's phone ringing (the ``ringing``
event, the phone's 180) is measured per call; the median and the 95th percentile are reported. The
gateway waits at most ``GATEWAY_CALLER_NAME_WAIT`` (0.15 s) for crm, so a slow crm costs at most that.
"""

from __future__ import annotations

import asyncio
import statistics
from collections.abc import Callable
from typing import Any

import grpc

from telecrm.crm.v1 import contacts_pb2, contacts_pb2_grpc
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_gateway.crm_lookup import CrmLookup
from telecrm_gateway.routing import RoutingTable
from telecrm_gateway.service import GatewayService
from telecrm_gateway.settings import GatewaySettings
from tests.bench.report import Row
from tests.sipp.runner import arun_uac, free_port, start_uas

HOST = "127.0.0.1"
LINE = "+15551230000"


class _Contacts(contacts_pb2_grpc.ContactsServicer):
    def __init__(self, delay: float) -> None:
        self.delay = delay

    async def LookupNumber(self, request: Any, context: Any) -> contacts_pb2.LookupNumberResponse:
        await asyncio.sleep(self.delay)
        card = contacts_pb2.ContactCard(contact_id="c-1", name="Ivan Petrov")
        return contacts_pb2.LookupNumberResponse(match=contacts_pb2.MATCH_KIND_EXACT, contact=card)


def _ring_ms(events: list[ev.CallEvent]) -> list[float]:
    offered: dict[str, float] = {}
    out = []
    for event in events:
        at = event.occurred_at.ToDatetime().timestamp()
        kind = event.WhichOneof("kind")
        if kind == "offered":
            offered[event.call_id] = at
        elif kind == "ringing" and event.call_id in offered:
            out.append((at - offered.pop(event.call_id)) * 1000)
    return out


async def _case(delay: float | None, cached: bool, calls: int) -> list[float]:
    server = grpc.aio.server()
    contacts_pb2_grpc.add_ContactsServicer_to_server(_Contacts(delay or 0.0), server)
    crm_port = server.add_insecure_port(f"{HOST}:0")
    await server.start()
    lookup = None
    if delay is not None:
        ttl = 60.0 if cached else 0.0  # 0: every call asks crm again
        lookup = CrmLookup(f"{HOST}:{crm_port}", cache_ttl=ttl, negative_ttl=ttl)
    events: list[ev.CallEvent] = []

    async def publish(event: ev.CallEvent) -> None:
        events.append(event)

    phone = start_uas("uas_answer.xml", duration_ms=0, calls=calls + 1)
    routes = RoutingTable.from_mapping(
        {
            "extensions": {"101": {"contact": f"sip:101@{HOST}:{phone.port}"}},
            "lines": {LINE: {"extension": "101", "name": "Sales"}},
        }
    )
    settings = GatewaySettings(sip_port=free_port(), instance_id="bench", rtp_host=HOST, pjsip_log_level=1)
    service = GatewayService(settings, routes, publish, lookup)
    await service.start()
    try:
        if cached:  # one call first, so the timed ones find the name cached
            await arun_uac("uac_answered.xml", HOST, service.sip_port, service=LINE, duration_ms=0)
            events.clear()
        result = await arun_uac(
            "uac_answered.xml",
            HOST,
            service.sip_port,
            service=LINE,
            duration_ms=0,
            calls=calls,
            max_concurrent=1,
            rate=20,
            timeout=calls * 3 + 30,
        )
        if not result.ok:
            raise RuntimeError(result.explain())
    finally:
        await service.stop(timeout=5.0)
        phone.stop()
        if lookup is not None:
            await lookup.close()
        await server.stop(None)
    return _ring_ms(events)


def run(calls: int = 40, say: Callable[[str], None] = print) -> list[Row]:
    cases: list[tuple[str, float | None, bool]] = [
        ("no crm look-up", None, False),
        ("crm answers at once, not cached", 0.0, False),
        ("crm answers in 50 ms, not cached", 0.05, False),
        ("crm answers in 250 ms (after the wait), not cached", 0.25, False),
        ("crm answers in 250 ms, cached", 0.25, True),
        ("crm never answers (past its 300 ms deadline)", 5.0, False),
    ]
    rows = []
    for name, delay, cached in cases:
        say(f"ring latency: {name}...")
        samples = asyncio.run(_case(delay, cached, calls))
        p95 = statistics.quantiles(samples, n=20)[-1] if len(samples) >= 2 else samples[0]
        rows.append(
            Row(
                f"INVITE to agent ringing, {name}",
                f"{statistics.median(samples):.1f} ms",
                f"median of {len(samples)} calls, p95 {p95:.1f} ms; name wait budget 150 ms",
            )
        )
    return rows


if __name__ == "__main__":
    from tests.bench.report import table

    print(table(run(), "python -m tests.bench.ring_latency"))
