"""The screen pop's look-up: any number format, exact first, then the last digits; the card with its
details within the deadline; the same over REST (per user) and gRPC (a real grpc.aio server)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import UTC, datetime
from typing import Any

import grpc
import httpx
import pytest
from fastapi import FastAPI
from google.protobuf.struct_pb2 import Struct

from telecrm.crm.v1 import contacts_pb2, contacts_pb2_grpc
from telecrm_common.auth import Principal, Role, Visibility, default_rights
from telecrm_common.db import Database
from telecrm_common.grpc import GrpcServer, channel
from telecrm_crm import contacts_grpc
from telecrm_crm.audit import AuditLog
from telecrm_crm.contacts import ContactIn, ContactOut, ContactService, PhoneIn, system_principal
from telecrm_crm.contacts_api import contacts_router
from telecrm_crm.lookup import CallsSummary, NumberLookup, OpenTask, RecentCall
from telecrm_crm.settings import CRMSettings

SECRET = b"lookup-test-cursor-secret"
ADMIN = system_principal("tests")


class Employees:
    """People's answer for the card: name and extension by employee id."""

    def __init__(self, known: dict[str, tuple[str, str | None]], delay: float = 0.0) -> None:
        self.known = known
        self.delay = delay

    async def get(self, employee_id: str) -> tuple[str, str | None] | None:
        await asyncio.sleep(self.delay)
        return self.known.get(employee_id)


class Tasks:
    def __init__(self, delay: float = 0.0) -> None:
        self.delay = delay

    async def open_tasks(self, contact_id: str, limit: int) -> tuple[Sequence[OpenTask], int]:
        await asyncio.sleep(self.delay)
        due = datetime(2026, 12, 1, 9, 0, tzinfo=UTC)
        return [OpenTask(f"task-of-{contact_id}", "Send the offer", "in_progress", due)], 3


class Calls:
    def __init__(self) -> None:
        self.asked: list[tuple[str | None, str | None]] = []

    async def recent_calls(self, *, contact_id: str | None, e164: str | None, limit: int) -> CallsSummary:
        self.asked.append((contact_id, e164))
        call = RecentCall("call-1", datetime(2026, 11, 20, 10, 0, tzinfo=UTC), "inbound", "missed")
        return CallsSummary(total=4, missed=1, recent=(call,))


class Broken:
    async def open_tasks(self, contact_id: str, limit: int) -> tuple[Sequence[OpenTask], int]:
        raise RuntimeError("tasks are down")


@pytest.fixture
async def make_lookup(crm_db: Database) -> AsyncIterator[Callable[..., NumberLookup]]:
    """Look-ups on the test database (each closed at the end: on PostgreSQL they have a pool)."""
    made: list[NumberLookup] = []

    def make(**options: Any) -> NumberLookup:
        made.append(NumberLookup(crm_db, default_region="BG", **options))
        return made[-1]

    yield make
    for lookup in made:
        await lookup.close()


@pytest.fixture
def lookup(make_lookup: Callable[..., NumberLookup]) -> NumberLookup:
    return make_lookup(cache_ttl=60)


@pytest.fixture
def service(crm_db: Database, lookup: NumberLookup) -> ContactService:
    return ContactService(
        crm_db,
        audit=AuditLog("writes"),
        cursor_secret=SECRET,
        default_region="BG",
        on_change=lookup.invalidate,
    )


async def add(
    service: ContactService, name: str, *numbers: str, by: Principal = ADMIN, **fields: Any
) -> ContactOut:
    data = ContactIn(name=name, phones=[PhoneIn(number=number) for number in numbers], **fields)
    return await service.create(by, data, allow_duplicate=True)


# --- matching ---------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "asked",
    ["+7 (499) 369-04-39", "0074993690439", "sip:+74993690439@pbx.example;user=phone", "+74993690439"],
)
async def test_any_format_of_the_number_finds_the_contact_exactly(
    service: ContactService, lookup: NumberLookup, asked: str
) -> None:
    maria = await add(service, "Maria", "+7 (499) 369-04-39 доб. 12")
    result = await lookup.lookup(asked)
    assert result.match == "exact"
    assert result.contact is not None
    assert (result.contact.contact_id, result.contact.name, result.e164) == (
        maria.id,
        "Maria",
        "+74993690439",
    )
    assert result.contact.phone is not None
    assert result.contact.phone.extension == "12"


async def test_the_last_digits_find_a_number_stored_without_its_country(
    service: ContactService, lookup: NumberLookup
) -> None:
    kept = await add(service, "Typed badly", "(499) 369-04-39")  # no country code, not a BG number
    assert kept.phones[0].e164 is None
    result = await lookup.lookup("+7 499 369 04 39")
    assert (result.match, result.contact and result.contact.contact_id) == ("suffix", kept.id)


async def test_several_last_digit_matches_rank_the_callers_country_first_or_are_ambiguous(
    service: ContactService, lookup: NumberLookup
) -> None:
    russian = await add(service, "Moscow client", "+7 967 123 45 67")
    bulgarian = await add(service, "Typed as Bulgarian", "067 123 4567")  # a UA number without +380
    ranked = await lookup.lookup("+7 867 123 45 67")  # same last 9 digits, neither is exact
    assert ranked.match == "suffix"
    assert [c.contact_id for c in ranked.candidates] == [russian.id, bulgarian.id]
    assert ranked.contact is not None
    assert ranked.contact.contact_id == russian.id
    unclear = await lookup.lookup("+380 67 123 4567")  # neither in Ukraine
    assert unclear.match == "ambiguous"
    assert unclear.contact is None
    assert {c.contact_id for c in unclear.candidates} == {russian.id, bulgarian.id}


async def test_a_company_and_its_persons_sharing_the_switchboard_pop_the_company(
    service: ContactService, lookup: NumberLookup
) -> None:
    company = await add(service, "Balkan Trade", "+359 2 981 1234", kind="company")
    ivan = await add(service, "Ivan", "02 981 1234 вн. 305", company_id=company.id)
    result = await lookup.lookup("029811234")
    assert (result.match, result.contact and result.contact.contact_id) == ("exact", company.id)
    assert {c.contact_id for c in result.candidates} == {company.id, ivan.id}

    # Two persons of a company at one desk number the company does not have: still the company.
    other = await add(service, "Nord", kind="company")
    olga = await add(service, "Olga", "+380 44 500 1000", company_id=other.id)
    taras = await add(service, "Taras", "+380 44 500 1000", company_id=other.id)
    desk = await lookup.lookup("+380445001000")
    assert desk.match == "exact"
    assert desk.contact is not None
    assert (desk.contact.contact_id, desk.contact.kind, desk.contact.phone) == (other.id, "company", None)
    assert {c.contact_id for c in desk.candidates} == {olga.id, taras.id}


async def test_unrelated_contacts_with_one_number_are_ambiguous_newest_first(
    service: ContactService, lookup: NumberLookup
) -> None:
    first = await add(service, "Petar", "0888 555 666")
    second = await add(service, "Petar Ltd", "+359 888 555 666", kind="company")
    result = await lookup.lookup("+359888555666", max_candidates=5)
    assert result.match == "ambiguous"
    assert [c.contact_id for c in result.candidates] == [second.id, first.id]


@pytest.mark.parametrize("asked", ["+359 2 400 0000", "101", "anonymous", "", "+"])
async def test_unknown_internal_and_withheld_numbers_match_nobody(
    service: ContactService, lookup: NumberLookup, asked: str
) -> None:
    await add(service, "Someone", "+359 2 400 0001")
    result = await lookup.lookup(asked)
    assert (result.match, result.contact, result.candidates) == ("none", None, [])


async def test_a_change_of_contacts_is_seen_at_once_despite_the_cache(
    service: ContactService, lookup: NumberLookup
) -> None:
    assert (await lookup.lookup("0888 777 888")).match == "none"  # cached as unknown
    contact = await add(service, "New caller", "0888 777 888")
    found = await lookup.lookup("0888 777 888")
    assert found.contact is not None
    assert found.contact.contact_id == contact.id
    await service.delete(ADMIN, contact.id)
    assert (await lookup.lookup("0888 777 888")).match == "none"


# --- the card's details -----------------------------------------------------------------------------


async def test_the_card_has_the_responsible_employee_open_tasks_and_last_calls(
    service: ContactService, make_lookup: Callable[..., NumberLookup]
) -> None:
    calls = Calls()
    lookup = make_lookup(
        employees=Employees({"emp-7": ("Kalina Angelova", "107")}), tasks=Tasks(), calls=calls
    )
    contact = await add(service, "Teodor", "0888 100 200", responsible_employee_id="emp-7")
    result = await lookup.lookup("+359888100200")
    assert result.contact is not None
    assert (result.contact.responsible_employee_name, result.contact.responsible_extension) == (
        "Kalina Angelova",
        "107",
    )
    assert result.candidates == [result.contact]
    assert ([t.task_id for t in result.open_tasks], result.open_tasks_total) == ([f"task-of-{contact.id}"], 3)
    assert result.calls is not None
    assert (result.calls.total, result.calls.missed) == (4, 1)
    assert not result.incomplete
    names_only = await lookup.lookup("+359888100200", names_only=True)
    assert names_only.contact is not None
    assert names_only.contact.responsible_employee_name is None
    unknown = await lookup.lookup("0888 300 400")
    assert unknown.calls is not None
    assert calls.asked[-1] == (None, "+359888300400")


async def test_details_that_do_not_fit_the_deadline_are_left_out_not_waited_for(
    service: ContactService, make_lookup: Callable[..., NumberLookup]
) -> None:
    lookup = make_lookup(employees=Employees({"emp-7": ("Kalina", "107")}, delay=2.0), tasks=Broken())
    await add(service, "Teodor", "0888 100 200", responsible_employee_id="emp-7")
    started = time.monotonic()
    result = await lookup.lookup("0888100200", timeout=0.3)
    assert time.monotonic() - started < 0.6
    assert result.contact is not None
    assert result.contact.name == "Teodor"
    assert result.contact.responsible_employee_name is None
    assert result.incomplete


# --- REST, per user --------------------------------------------------------------------------------


async def test_over_rest_a_user_finds_only_contacts_they_see(
    service: ContactService,
    lookup: NumberLookup,
    access: Any,
    token_for: Callable[[Principal], dict[str, str]],
    agent: Principal,
) -> None:
    stranger = Principal(
        subject="u-str",
        employee_id="emp-str",
        roles=frozenset({Role.AGENT}),
        team_ids=frozenset({"team-care"}),
        rights=default_rights([Role.AGENT]),
        visibility=Visibility.OWN,
    )
    await add(service, "Care client", "0888 200 300", by=stranger)
    app = FastAPI()
    app.include_router(contacts_router(service, access, lookup))
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://crm") as client:
        mine = await client.get(
            "/contacts/lookup", params={"number": "0888200300"}, headers=token_for(stranger)
        )
        theirs = await client.get(
            "/contacts/lookup", params={"number": "0888200300"}, headers=token_for(agent)
        )
        missing = await client.get("/contacts/lookup", headers=token_for(agent))
    assert mine.status_code == 200
    assert (mine.json()["match"], mine.json()["contact"]["name"]) == ("exact", "Care client")
    assert (theirs.json()["match"], theirs.json()["contact"], theirs.json()["hidden"]) == ("none", None, 1)
    assert missing.status_code == 422


# --- gRPC --------------------------------------------------------------------------------------------


@pytest.fixture
async def stub(
    service: ContactService, make_lookup: Callable[..., NumberLookup]
) -> AsyncIterator[contacts_pb2_grpc.ContactsStub]:
    async def ok() -> None:
        return None

    slow = make_lookup(employees=Employees({"emp-7": ("Kalina", "107")}, delay=1.0), tasks=Tasks())
    server = GrpcServer(
        CRMSettings(grpc_port=0), service_names=[contacts_grpc.SERVICE_NAME], checks={"database": ok}
    )
    contacts_grpc.add_to_server(server.server, service, slow)
    await server.start()
    async with channel(f"127.0.0.1:{server.port}") as chan:
        yield contacts_pb2_grpc.ContactsStub(chan)
    await server.stop(0)


async def test_grpc_look_up_honours_the_deadline(
    stub: contacts_pb2_grpc.ContactsStub, service: ContactService
) -> None:
    contact = await add(service, "Teodor", "0888 100 200", responsible_employee_id="emp-7")
    request = contacts_pb2.LookupNumberRequest(number="+359 888 100 200")
    started = time.monotonic()
    answer = await stub.LookupNumber(request, timeout=0.3)
    assert time.monotonic() - started < 0.6
    assert answer.match == contacts_pb2.MATCH_KIND_EXACT
    assert (answer.contact.contact_id, answer.contact.phone.e164) == (contact.id, "+359888100200")
    assert answer.incomplete  # the employee's name did not fit in 300 ms
    assert answer.open_tasks_total == 3  # the tasks did
    quick = await stub.LookupNumber(
        contacts_pb2.LookupNumberRequest(number="0888100200", names_only=True), timeout=0.3
    )
    assert (quick.match, quick.incomplete, quick.contact.name) == (
        contacts_pb2.MATCH_KIND_EXACT,
        False,
        "Teodor",
    )
    nobody = await stub.LookupNumber(contacts_pb2.LookupNumberRequest(number="101"), timeout=1)
    assert nobody.match == contacts_pb2.MATCH_KIND_NONE
    with pytest.raises(grpc.aio.AioRpcError) as empty:
        await stub.LookupNumber(contacts_pb2.LookupNumberRequest(number=" "), timeout=1)
    assert empty.value.code() == grpc.StatusCode.INVALID_ARGUMENT


async def test_grpc_creates_a_contact_from_a_number_and_reads_it(
    stub: contacts_pb2_grpc.ContactsStub, service: ContactService
) -> None:
    fields = Struct()
    request = contacts_pb2.CreateContactRequest(
        phones=[contacts_pb2.ContactPhoneInput(number="+40 721 234 567", kind="mobile")],
        created_by_employee_id="emp-3",
        request_id="call-77",
        custom_fields=fields,
    )
    created = await stub.CreateContact(request, timeout=5)
    assert (created.name, created.responsible_employee_id, created.owner_employee_id) == (
        "+40 721 234 567",
        "emp-3",
        "emp-3",
    )
    assert [(p.e164, p.kind, p.valid) for p in created.phones] == [("+40721234567", "mobile", True)]
    retried = await stub.CreateContact(request, timeout=5)
    assert retried.contact_id == created.contact_id

    with pytest.raises(grpc.aio.AioRpcError) as duplicate:
        await stub.CreateContact(
            contacts_pb2.CreateContactRequest(
                name="Ioana", phones=[contacts_pb2.ContactPhoneInput(number="0040721234567")]
            ),
            timeout=5,
        )
    assert duplicate.value.code() == grpc.StatusCode.ALREADY_EXISTS
    assert created.contact_id in (duplicate.value.details() or "")
    with pytest.raises(grpc.aio.AioRpcError) as invalid:
        await stub.CreateContact(
            contacts_pb2.CreateContactRequest(
                name="X", phones=[contacts_pb2.ContactPhoneInput(number="0888 1", kind="pager")]
            ),
            timeout=5,
        )
    assert invalid.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (invalid.value.details() or "").startswith("phones[0].kind:")

    fetched = await stub.GetContact(contacts_pb2.GetContactRequest(contact_id=created.contact_id), timeout=5)
    assert (fetched.contact_id, fetched.version) == (created.contact_id, 1)
    survivor = await add(service, "Ioana", "+40 721 234 567")
    await service.merge(ADMIN, survivor.id, [created.contact_id])
    with pytest.raises(grpc.aio.AioRpcError) as gone:
        await stub.GetContact(contacts_pb2.GetContactRequest(contact_id=created.contact_id), timeout=5)
    assert gone.value.code() == grpc.StatusCode.NOT_FOUND
    assert survivor.id in (gone.value.details() or "")
