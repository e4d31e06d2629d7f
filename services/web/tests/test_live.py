"""Live screen pops over real NATS and real WebSockets: a ringing call becomes a card on the ringing
employee's tabs (and nobody else's) at once, completed by crm's look-up; answered and ended calls update
it; two calls stack two cards; a tab that reconnects catches up on what it missed; a WebSocket from
another site, or without a session, is refused."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from websockets.asyncio.client import ClientConnection, connect
from websockets.exceptions import ConnectionClosed

from telecrm.events.v1 import call_events_pb2 as ev

from .conftest import ADA, BOB, RunningDesktop, Services, call_event, new_call_id, unique_number

WAIT = 10.0


@asynccontextmanager
async def live_socket(
    desktop: RunningDesktop, session_id: str | None, *, origin: str | None = None, query: str = ""
) -> AsyncIterator[ClientConnection]:
    url = desktop.url.replace("http://", "ws://") + "/api/live" + query
    headers = {"Cookie": f"telecrm_session={session_id}"} if session_id else {}
    async with connect(url, additional_headers=headers, origin=origin or desktop.url) as socket:  # type: ignore[arg-type]
        yield socket


async def session_of(desktop: RunningDesktop, login: str) -> str:
    async with desktop.client() as client:
        await desktop.log_in(client, login)
        return str(client.cookies["telecrm_session"])


async def next_card(socket: ClientConnection, call_id: str, **expected: Any) -> dict[str, Any]:
    """The next card of ``call_id`` whose fields have the expected values (pings and others skipped)."""
    async with asyncio.timeout(WAIT):
        while True:
            message = json.loads(await socket.recv())
            if message["type"] != "card" or message["card"]["call_id"] != call_id:
                continue
            card: dict[str, Any] = message["card"]
            if all(card.get(key) == value for key, value in expected.items()):
                return card


async def messages_within(socket: ClientConnection, seconds: float) -> list[dict[str, Any]]:
    """What the socket received within ``seconds``, pings left out."""
    received: list[dict[str, Any]] = []
    with contextlib.suppress(TimeoutError):
        async with asyncio.timeout(seconds):
            while True:
                message = json.loads(await socket.recv())
                if message["type"] != "ping":
                    received.append(message)
    return received


async def close_code(socket: ClientConnection) -> int | None:
    """The code the server closed the socket with (messages before it are skipped)."""
    try:
        async with asyncio.timeout(WAIT):
            while True:
                await socket.recv()
    except ConnectionClosed as closed:
        return closed.rcvd.code if closed.rcvd is not None else None


async def hello(socket: ClientConnection) -> dict[str, Any]:
    message: dict[str, Any] = json.loads(await asyncio.wait_for(socket.recv(), WAIT))
    assert message["type"] == "hello"
    return message


async def test_a_ringing_call_pops_a_card_with_the_contact_on_the_employees_tabs_only(
    desktop: RunningDesktop, services: Services
) -> None:
    number = unique_number()
    services.create_contact("Grace Hopper", number, responsible_employee_id=BOB, notes="met at the fair")
    ada, bob = await session_of(desktop, "ada"), await session_of(desktop, "bob")
    async with (
        live_socket(desktop, ada) as tab1,
        live_socket(desktop, ada) as tab2,
        live_socket(desktop, bob) as bobs,
    ):
        assert (await hello(tab1))["employee_id"] == ADA
        await hello(tab2)
        await hello(bobs)
        call_id = new_call_id()
        await desktop.publish(call_event("ringing", call_id, caller=number, caller_name="GH", leg_id="l1"))
        first = await next_card(tab1, call_id)
        assert first["state"] == "ringing"
        assert first["number"] == number
        assert first["extension"] == "201"
        assert first["lookup_state"] == "pending"  # sent at once, without waiting for crm
        done = await next_card(tab1, call_id, lookup_state="done")
        assert done["lookup"]["match"] == "exact"
        assert done["lookup"]["contact"]["name"] == "Grace Hopper"
        assert done["lookup"]["contact"]["responsible_employee_name"] == "Bob Marley"
        assert done["missed_open"] == 0
        assert (await next_card(tab2, call_id, lookup_state="done"))["seq"] == done["seq"]
        assert await messages_within(bobs, 1.0) == []  # Bob's tab hears pings only


async def test_an_unknown_number_completes_the_card_with_no_match(desktop: RunningDesktop) -> None:
    ada = await session_of(desktop, "ada")
    async with live_socket(desktop, ada) as tab:
        await hello(tab)
        call_id = new_call_id()
        await desktop.publish(call_event("ringing", call_id, caller=unique_number(), leg_id="l1"))
        card = await next_card(tab, call_id, lookup_state="done")
    assert card["lookup"]["match"] == "none"
    assert card["lookup"]["contact"] is None


async def test_answered_and_ended_update_the_card_and_a_second_call_stacks_a_second_card(
    desktop: RunningDesktop,
) -> None:
    ada = await session_of(desktop, "ada")
    async with live_socket(desktop, ada) as tab:
        await hello(tab)
        first, second = new_call_id(), new_call_id()
        await desktop.publish(call_event("ringing", first, leg_id="l1"))
        await next_card(tab, first, state="ringing")
        await desktop.publish(call_event("answered", first, sequence=2, extension="201", leg_id="l1"))
        await next_card(tab, first, state="answered", answered_extension="201")
        await desktop.publish(call_event("ringing", second, caller=unique_number(), leg_id="l2"))
        await next_card(tab, second, state="ringing")
        await desktop.publish(
            call_event(
                "ended",
                first,
                sequence=3,
                disposition=ev.DISPOSITION_ANSWERED,
                answered_extension="201",
                sip_status=200,
            )
        )
        ended = await next_card(tab, first, state="ended")
    assert ended["disposition"] == "answered"
    cards = desktop.parts.pops.cards_since(ADA, boot=desktop.parts.pops.boot, after=0)
    assert [c["call_id"] for c in cards if c["call_id"] in (first, second)] == [second, first]


async def test_a_ring_group_shows_each_agent_who_answered(desktop: RunningDesktop) -> None:
    ada, bob = await session_of(desktop, "ada"), await session_of(desktop, "bob")
    async with live_socket(desktop, ada) as adas, live_socket(desktop, bob) as bobs:
        await hello(adas)
        await hello(bobs)
        call_id = new_call_id()
        await desktop.publish(call_event("ringing", call_id, extension="201", employee_id=ADA, leg_id="a"))
        await desktop.publish(
            call_event("ringing", call_id, sequence=2, extension="202", employee_id=BOB, leg_id="b")
        )
        await next_card(bobs, call_id, state="ringing")
        await desktop.publish(call_event("answered", call_id, sequence=3, extension="201", leg_id="a"))
        await desktop.publish(
            call_event(
                "leg_ended",
                call_id,
                sequence=4,
                extension="202",
                employee_id=BOB,
                leg_id="b",
                disposition=ev.DISPOSITION_CANCELLED,
            )
        )
        bobs_card = await next_card(bobs, call_id, state="answered")
        adas_card = await next_card(adas, call_id, state="answered")
    assert bobs_card["answered_extension"] == "201"
    assert bobs_card["extension"] == "202"
    assert adas_card["answered_extension"] == "201"


async def test_an_extension_without_an_employee_in_the_event_is_resolved_through_crm(
    desktop: RunningDesktop,
) -> None:
    ada = await session_of(desktop, "ada")
    async with live_socket(desktop, ada) as tab:
        await hello(tab)
        call_id = new_call_id()
        await desktop.publish(call_event("ringing", call_id, extension="201", employee_id="", leg_id="l1"))
        card = await next_card(tab, call_id)
    assert card["employee_id"] == ADA


async def test_a_tab_that_reconnects_gets_the_cards_it_missed(desktop: RunningDesktop) -> None:
    ada = await session_of(desktop, "ada")
    async with live_socket(desktop, ada) as tab:
        boot = (await hello(tab))["boot"]
        seen = new_call_id()
        await desktop.publish(call_event("ringing", seen, leg_id="l1"))
        last = (await next_card(tab, seen, lookup_state="done"))["seq"]
    # Offline: one call changes, another rings.
    missed = new_call_id()
    await desktop.publish(call_event("answered", seen, sequence=2, extension="201", leg_id="l1"))
    await desktop.publish(call_event("ringing", missed, caller=unique_number(), leg_id="l2"))
    pops = desktop.parts.pops
    async with asyncio.timeout(WAIT):
        while len(pops.cards_since(ADA, boot=boot, after=last)) < 2:  # noqa: ASYNC110 - polls the hub
            await asyncio.sleep(0.02)
    async with live_socket(desktop, ada, query=f"?boot={boot}&after={last}") as tab:
        await hello(tab)
        caught_up = [await next_card(tab, seen), await next_card(tab, missed)]
    assert caught_up[0]["state"] == "answered"
    assert caught_up[1]["lookup_state"] == "none"  # nobody was connected: the page looks it up
    async with desktop.client() as client:
        client.cookies.set("telecrm_session", ada)
        listed = (await client.get("/api/screen-pops", params={"boot": "another-boot", "after": last})).json()
    assert {seen, missed} <= {card["call_id"] for card in listed["cards"]}  # another boot: all of them


async def test_a_socket_from_another_site_or_without_a_session_is_closed_with_a_reason(
    desktop: RunningDesktop,
) -> None:
    ada = await session_of(desktop, "ada")
    for session, origin, code in (
        (ada, "https://evil.example", 4403),
        (None, None, 4401),
        ("forged-session-id", None, 4401),
    ):
        async with live_socket(desktop, session, origin=origin) as socket:
            assert await close_code(socket) == code


async def test_a_socket_whose_session_ends_is_closed_so_the_page_logs_in_again(
    desktop: RunningDesktop,
) -> None:
    ada = await session_of(desktop, "ada")
    async with live_socket(desktop, ada) as tab:
        await hello(tab)
        session = desktop.parts.store.get(ada)
        assert session is not None
        desktop.parts.store.expire(session)
        assert await close_code(tab) == 4401


async def test_an_undecodable_event_is_ignored_and_the_next_one_still_pops(desktop: RunningDesktop) -> None:
    ada = await session_of(desktop, "ada")
    async with live_socket(desktop, ada) as tab:
        await hello(tab)
        await desktop.bus.nc.publish("tel.call.ringing", b"\xff\x00 not a protobuf")
        call_id = new_call_id()
        await desktop.publish(call_event("ringing", call_id, leg_id="l1"))
        assert (await next_card(tab, call_id))["state"] == "ringing"
