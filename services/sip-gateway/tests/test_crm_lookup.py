"""CrmLookup against a real grpc.aio server that implements crm's Contacts with fixed answers.

The server is a fake of crm (``FakeContactsServicer``): it answers from a table, may be slow, and counts
what it was asked. The real crm is asked in tests/e2e/test_provider_api.py.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass, field

import grpc
import pytest

from telecrm.crm.v1 import contacts_pb2, contacts_pb2_grpc
from telecrm_gateway.crm_lookup import CallerCard, CrmLookup, cache_key
from tests.sipp.runner import free_port

IVAN = contacts_pb2.ContactCard(
    contact_id="c-ivan",
    kind="person",
    name="Ivan Petrov",
    company_id="c-acme",
    company_name="Acme Ltd",
    responsible_employee_id="emp-7",
    responsible_extension="107",
)
ACME = contacts_pb2.ContactCard(contact_id="c-acme", kind="company", name="Acme Ltd")


@dataclass
class FakeContactsServicer(contacts_pb2_grpc.ContactsServicer):
    """A stand-in for crm's Contacts: fixed answers by number, an optional delay, and a log of requests."""

    cards: dict[str, contacts_pb2.ContactCard] = field(default_factory=dict)
    ambiguous: set[str] = field(default_factory=set)
    delay: float = 0.0
    asked: list[contacts_pb2.LookupNumberRequest] = field(default_factory=list)

    async def LookupNumber(
        self, request: contacts_pb2.LookupNumberRequest, context: grpc.aio.ServicerContext
    ) -> contacts_pb2.LookupNumberResponse:
        self.asked.append(request)
        if self.delay:
            await asyncio.sleep(self.delay)
        if request.number in self.ambiguous:
            return contacts_pb2.LookupNumberResponse(
                match=contacts_pb2.MATCH_KIND_AMBIGUOUS, candidates=[IVAN, ACME]
            )
        card = self.cards.get(request.number)
        if card is None:
            return contacts_pb2.LookupNumberResponse(match=contacts_pb2.MATCH_KIND_NONE)
        return contacts_pb2.LookupNumberResponse(
            match=contacts_pb2.MATCH_KIND_EXACT, contact=card, candidates=[card]
        )

    def numbers_asked(self) -> list[str]:
        return [request.number for request in self.asked]


@dataclass
class FakeCrm:
    servicer: FakeContactsServicer
    target: str


@pytest.fixture
async def crm() -> AsyncIterator[FakeCrm]:
    servicer = FakeContactsServicer(
        cards={"+15557654321": IVAN, "+15550001111": ACME}, ambiguous={"+15552223333"}
    )
    server = grpc.aio.server()
    contacts_pb2_grpc.add_ContactsServicer_to_server(servicer, server)
    port = server.add_insecure_port("127.0.0.1:0")
    await server.start()
    yield FakeCrm(servicer, f"127.0.0.1:{port}")
    await server.stop(0)


@pytest.fixture
async def lookup(crm: FakeCrm) -> AsyncIterator[CrmLookup]:
    client = CrmLookup(crm.target, deadline=2.0)
    yield client
    await client.close()


async def test_a_known_number_gives_the_card_and_is_cached(crm: FakeCrm, lookup: CrmLookup) -> None:
    assert lookup.cached("+15557654321") is None
    card = await lookup.lookup("+15557654321")
    assert card == CallerCard(
        contact_id="c-ivan",
        name="Ivan Petrov",
        company="Acme Ltd",
        responsible_employee_id="emp-7",
        responsible_extension="107",
    )
    # The same number written otherwise is the same cache entry: crm is asked once.
    assert await lookup.lookup("+1 555-765-4321") == card
    assert lookup.cached("+1 (555) 765 4321") == card
    assert crm.servicer.numbers_asked() == ["+15557654321"]
    # Asked for the responsible employee's extension too (names_only would leave it out).
    assert crm.servicer.asked[0].names_only is False
    assert (lookup.requests, lookup.hits, lookup.errors) == (1, 1, 0)


async def test_a_company_is_named_by_its_name_without_a_company(lookup: CrmLookup) -> None:
    card = await lookup.lookup("+15550001111")
    assert card is not None
    assert (card.name, card.company, card.responsible_extension) == ("Acme Ltd", "", "")


async def test_unknown_and_ambiguous_numbers_are_none_and_cached_as_such(
    crm: FakeCrm, lookup: CrmLookup
) -> None:
    assert await lookup.lookup("+15559990000") is None
    assert await lookup.lookup("+15559990000") is None
    assert await lookup.lookup("+15552223333") is None  # two contacts: no name beats a wrong name
    assert crm.servicer.numbers_asked() == ["+15559990000", "+15552223333"]
    assert lookup.errors == 0


async def test_numbers_without_digits_are_not_asked(crm: FakeCrm, lookup: CrmLookup) -> None:
    for number in ("", "anonymous", "  ", "Restricted", "1" * 300):
        assert await lookup.lookup(number) is None
    assert crm.servicer.asked == []


async def test_a_slow_crm_answers_none_within_the_deadline_and_is_asked_again(
    crm: FakeCrm, caplog: pytest.LogCaptureFixture
) -> None:
    crm.servicer.delay = 5.0
    client = CrmLookup(crm.target, deadline=0.05)
    try:
        with caplog.at_level(logging.WARNING, logger="telecrm_gateway.crm_lookup"):
            assert await client.lookup("+15557654321") is None
            assert await client.lookup("+15557654321") is None  # errors are not cached
        assert client.errors == 2
        assert len(crm.servicer.asked) == 2
        # One warning when crm starts failing, not one per call.
        warnings = [r for r in caplog.records if "look-up failed" in r.getMessage()]
        assert len(warnings) == 1
        assert "DEADLINE_EXCEEDED" in warnings[0].getMessage()

        crm.servicer.delay = 0.0
        with caplog.at_level(logging.INFO, logger="telecrm_gateway.crm_lookup"):
            assert (await client.lookup("+15557654321")) is not None
        assert any("answers again" in r.getMessage() for r in caplog.records)
    finally:
        await client.close()


async def test_an_unreachable_crm_answers_none() -> None:
    client = CrmLookup(f"127.0.0.1:{free_port()}", deadline=1.0)
    try:
        assert await client.lookup("+15557654321") is None
        assert client.errors == 1
        assert client.cached("+15557654321") is None
    finally:
        await client.close()


async def test_concurrent_look_ups_of_one_number_share_one_request(crm: FakeCrm) -> None:
    crm.servicer.delay = 0.3
    client = CrmLookup(crm.target, deadline=5.0)
    try:
        cards = await asyncio.gather(*(client.lookup("+15557654321") for _ in range(10)))
        assert {card.contact_id if card else None for card in cards} == {"c-ivan"}
        assert len(crm.servicer.asked) == 1
    finally:
        await client.close()


async def test_one_caller_giving_up_does_not_cancel_the_others(crm: FakeCrm) -> None:
    crm.servicer.delay = 0.3
    client = CrmLookup(crm.target, deadline=5.0)
    try:
        impatient = asyncio.create_task(client.lookup("+15557654321"))
        patient = asyncio.create_task(client.lookup("+15557654321"))
        await asyncio.sleep(0.05)
        impatient.cancel()
        card = await patient
        assert card is not None
        assert card.name == "Ivan Petrov"
        assert impatient.cancelled()
        assert len(crm.servicer.asked) == 1
    finally:
        await client.close()


async def test_without_a_target_the_look_up_is_disabled() -> None:
    for target in (None, ""):
        client = CrmLookup(target)
        assert not client.enabled
        assert await client.lookup("+15557654321") is None
        assert client.requests == 0
        await client.close()


async def test_the_cache_keeps_the_most_recent_numbers(crm: FakeCrm) -> None:
    crm.servicer.cards["+15550000001"] = IVAN
    crm.servicer.cards["+15550000002"] = ACME
    client = CrmLookup(crm.target, cache_size=2)
    try:
        await client.lookup("+15550000001")
        await client.lookup("+15550000002")
        await client.lookup("+15550000001")  # a hit: 0001 becomes the most recent
        await client.lookup("+15557654321")  # evicts 0002, the least recently used
        assert client.cached("+15550000001") is not None
        assert client.cached("+15550000002") is None
        assert crm.servicer.numbers_asked() == ["+15550000001", "+15550000002", "+15557654321"]
    finally:
        await client.close()


async def test_a_zero_ttl_asks_every_time(crm: FakeCrm) -> None:
    client = CrmLookup(crm.target, cache_ttl=0, negative_ttl=0)
    try:
        await client.lookup("+15557654321")
        await client.lookup("+15557654321")
        await client.lookup("+15559990000")
        await client.lookup("+15559990000")
        assert len(crm.servicer.asked) == 4
    finally:
        await client.close()


async def test_after_close_look_ups_answer_none(crm: FakeCrm) -> None:
    client = CrmLookup(crm.target)
    await client.close()
    assert await client.lookup("+15557654321") is None
    assert crm.servicer.asked == []


def test_cache_key_drops_the_usual_formatting() -> None:
    assert cache_key(" +7 (499) 369-04.39 ") == "+74993690439"
