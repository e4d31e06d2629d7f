"""gRPC telecrm.crm.v1.Tickets over a real grpc.aio server on a free port."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import grpc
import pytest
from google.protobuf.timestamp_pb2 import Timestamp
from sqlalchemy import select

from telecrm.crm.v1 import tickets_pb2, tickets_pb2_grpc
from telecrm_common.auth import Principal
from telecrm_common.db import Database
from telecrm_common.grpc import GrpcServer, channel
from telecrm_crm import tickets_grpc
from telecrm_crm.attachments import AttachmentStore
from telecrm_crm.audit import AuditLog
from telecrm_crm.models import AuditEntry
from telecrm_crm.settings import CRMSettings
from telecrm_crm.tickets import TicketService

from .conftest import CURSOR_SECRET


@pytest.fixture
async def service(crm_db: Database, tmp_path: Path, admin: Principal) -> TicketService:
    service = TicketService(
        crm_db,
        audit=AuditLog("changes"),
        attachments=AttachmentStore(tmp_path / "files", max_bytes=10_000),
        cursor_secret=CURSOR_SECRET,
    )
    await service.create_series(admin, "Q", "Walk-in queue")
    await service.create_type(admin, "repair", "Repair")
    return service


@pytest.fixture
async def stub(service: TicketService) -> AsyncIterator[tickets_pb2_grpc.TicketsStub]:
    async def ok() -> None:
        return None

    server = GrpcServer(
        CRMSettings(grpc_port=0), service_names=[tickets_grpc.SERVICE_NAME], checks={"db": ok}
    )
    tickets_grpc.add_to_server(server.server, service)
    await server.start()
    async with channel(f"127.0.0.1:{server.port}") as chan:
        yield tickets_pb2_grpc.TicketsStub(chan)
    await server.stop(0)


def _ts(text: str) -> Timestamp:
    stamp = Timestamp()
    stamp.FromJsonString(text)
    return stamp


async def test_a_service_opens_a_ticket_once_per_request_id(
    stub: tickets_pb2_grpc.TicketsStub, crm_db: Database
) -> None:
    request = tickets_pb2.CreateTicketRequest(
        request_id="queue-ticket-A017",
        actor="queue",
        client_id="contact-9",
        type_code="repair",
        product="Washing machine W7",
        priority="high",
        team_id="team-field",
        scheduled_start=_ts("2026-12-02T09:00:00Z"),
        scheduled_end=_ts("2026-12-02T10:00:00Z"),
        ticket_date="2026-12-01",
    )
    first = await stub.CreateTicket(request, timeout=5)
    again = await stub.CreateTicket(request, timeout=5)
    assert again.ticket_id == first.ticket_id
    assert (first.code, first.status, first.priority, first.ticket_date) == (
        "Q-1",
        "taken",
        "high",
        "2026-12-01",
    )
    assert (first.created_by, first.taken_by_id, first.version) == ("system:queue", "", 1)
    assert first.scheduled_start.ToJsonString() == "2026-12-02T09:00:00Z"
    async with crm_db.session() as session:
        actors = (
            await session.scalars(select(AuditEntry.actor_subject).where(AuditEntry.entity_kind == "ticket"))
        ).all()
    assert actors == ["system:queue"]

    fetched = await stub.GetTicket(tickets_pb2.GetTicketRequest(ticket_id=first.ticket_id), timeout=5)
    assert fetched == first


@pytest.mark.parametrize(
    ("fields", "field"),
    [
        ({}, "client_id"),
        ({"client_id": "c", "priority": "urgent"}, "priority"),
        ({"client_id": "c", "type_code": "nope"}, "type_code"),
        ({"client_id": "c", "series": "NONE"}, "series"),
        ({"client_id": "c", "ticket_date": "01.12.2026"}, "ticket_date"),
        ({"client_id": "c", "notify_customer": True}, "customer_email"),
    ],
)
async def test_bad_requests_name_the_field(
    stub: tickets_pb2_grpc.TicketsStub, fields: dict[str, object], field: str
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.CreateTicket(tickets_pb2.CreateTicketRequest(**fields), timeout=5)  # type: ignore[arg-type]
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (caught.value.details() or "").startswith(f"{field}:")


async def test_unknown_ticket_is_not_found(stub: tickets_pb2_grpc.TicketsStub) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.GetTicket(tickets_pb2.GetTicketRequest(ticket_id="nope"), timeout=5)
    assert caught.value.code() == grpc.StatusCode.NOT_FOUND


async def test_a_customers_tickets_page_by_page(
    stub: tickets_pb2_grpc.TicketsStub, service: TicketService, admin: Principal
) -> None:
    made = []
    for n in range(5):
        fields = {"client_id": "acme"} if n != 3 else {"client_id": "globex", "contact_person_id": "acme"}
        made.append(await stub.CreateTicket(tickets_pb2.CreateTicketRequest(**fields), timeout=5))  # type: ignore[arg-type]
    await stub.CreateTicket(tickets_pb2.CreateTicketRequest(client_id="someone-else"), timeout=5)
    await service.change_status(admin, made[0].ticket_id, "cancelled")

    codes: list[str] = []
    token = ""
    while True:
        page = await stub.ListTicketsForContact(
            tickets_pb2.ListTicketsForContactRequest(contact_id="acme", page_size=2, page_token=token),
            timeout=5,
        )
        codes += [ticket.code for ticket in page.tickets]
        token = page.next_page_token
        if not token:
            break
    assert codes == ["Q-5", "Q-4", "Q-3", "Q-2", "Q-1"]
    open_only = await stub.ListTicketsForContact(
        tickets_pb2.ListTicketsForContactRequest(contact_id="acme", open_only=True), timeout=5
    )
    assert [t.code for t in open_only.tickets] == ["Q-5", "Q-4", "Q-3", "Q-2"]
    with pytest.raises(grpc.aio.AioRpcError) as caught:
        await stub.ListTicketsForContact(
            tickets_pb2.ListTicketsForContactRequest(contact_id="acme", page_token="forged"), timeout=5
        )
    assert caught.value.code() == grpc.StatusCode.INVALID_ARGUMENT
