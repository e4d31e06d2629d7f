"""The pages beyond the desktop, over HTTP against real crm and calls: the call log's CSV export with the
page's filters (streamed), the contacts register and a contact, the service tickets with their workflow
and notes, and what a user without the right to change tickets gets (no buttons, 403)."""

from __future__ import annotations

import csv
import io
from typing import Any

from .conftest import ADA, RunningDesktop, Services, call_event, new_call_id, unique_number
from .test_api import wait_for_call

SCHEDULE = {
    "scheduled_start": "2030-01-07T08:00:00Z",
    "scheduled_end": "2030-01-07T10:00:00Z",
    "team_id": "web-team",
}


def a_ticket(services: Services, **fields: Any) -> dict[str, Any]:
    contact = services.create_contact("Ticket Customer", unique_number(), responsible_employee_id=ADA)
    return services.create_ticket(contact["id"], taken_by_id=ADA, **SCHEDULE, **fields)


async def test_the_call_log_exports_as_csv_with_the_filters_of_the_page(
    desktop: RunningDesktop, services: Services
) -> None:
    number = unique_number()
    call_ids = [new_call_id() for _ in range(2)]
    for call_id in call_ids:
        await desktop.publish(call_event("ringing", call_id, caller=number, leg_id="leg-1"))
    other = new_call_id()
    await desktop.publish(call_event("ringing", other, caller=unique_number(), leg_id="leg-1"))
    for call_id in [*call_ids, other]:
        await wait_for_call(services, call_id)
    async with desktop.client() as client:
        anonymous = await client.get("/api/calls/export.csv")
        await desktop.log_in(client, "ada")
        response = await client.get(
            "/api/calls/export.csv", params={"number": number[-7:], "direction": "inbound"}
        )
        wrong_zone = await client.get("/api/calls/export.csv", params={"tz": "Mars/Olympus"})
    assert anonymous.status_code == 401
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("text/csv")
    assert response.headers["content-disposition"].startswith("attachment")
    rows = list(csv.DictReader(io.StringIO(response.text)))
    assert {row["call_id"] for row in rows} == set(call_ids)
    assert wrong_zone.status_code == 422
    assert "Mars/Olympus" in wrong_zone.text


async def test_the_call_log_takes_the_direction_and_result_filters(
    desktop: RunningDesktop, services: Services
) -> None:
    number = unique_number()
    call_id = new_call_id()
    await desktop.publish(call_event("ringing", call_id, caller=number, leg_id="leg-1"))
    await wait_for_call(services, call_id)
    async with desktop.client() as client:
        await desktop.log_in(client, "ada")
        inbound = (await client.get("/api/calls", params={"number": number, "direction": "inbound"})).json()
        outbound = (await client.get("/api/calls", params={"number": number, "direction": "outbound"})).json()
        answered = (
            await client.get("/api/calls", params={"number": number, "disposition": "answered"})
        ).json()
        nonsense = await client.get("/api/calls", params={"disposition": "exploded"})
    assert [c["call_id"] for c in inbound["items"]] == [call_id]
    assert outbound["items"] == []
    assert answered["items"] == []  # still ringing: no disposition yet
    assert nonsense.status_code == 422


async def test_contacts_are_listed_page_by_page_and_one_contact_is_shown(
    desktop: RunningDesktop, services: Services
) -> None:
    marker = unique_number()[-6:]
    made = [
        services.create_contact(f"Pager {marker} {i}", unique_number(), responsible_employee_id=ADA)
        for i in range(3)
    ]
    async with desktop.client() as client:
        await desktop.log_in(client, "ada")
        first = (await client.get("/api/contacts", params={"q": f"Pager {marker}", "limit": 2})).json()
        second = (
            await client.get(
                "/api/contacts",
                params={"q": f"Pager {marker}", "limit": 2, "cursor": first["next_cursor"]},
            )
        ).json()
        one = await client.get(f"/api/contacts/{made[0]['id']}")
        missing = await client.get("/api/contacts/no-such-contact")
        page = await client.get("/contacts")
    assert first["total"] == 3
    assert len(first["items"]) == 2
    assert len(second["items"]) == 1
    assert {c["id"] for c in first["items"] + second["items"]} == {c["id"] for c in made}
    assert one.status_code == 200
    assert one.json()["name"] == made[0]["name"]
    assert missing.status_code == 404
    assert page.status_code == 200
    assert 'src="/static/contacts.js"' in page.text
    assert 'aria-current="page">Contacts' in page.text


async def test_a_ticket_moves_along_its_workflow_and_a_stale_move_is_refused(
    desktop: RunningDesktop, services: Services
) -> None:
    ticket = a_ticket(services, product="Boiler", description="No hot water")
    path = f"/api/tickets/{ticket['id']}"
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        listed = (await client.get("/api/tickets", params={"status": "taken", "product": "Boiler"})).json()
        no_token = await client.post(f"{path}/status", json={"status": "allocated"})
        moved = await client.post(
            f"{path}/status",
            json={"status": "allocated", "version": ticket["version"]},
            headers={"X-CSRF-Token": csrf},
        )
        stale = await client.post(
            f"{path}/status",
            json={"status": "cancelled", "version": ticket["version"]},
            headers={"X-CSRF-Token": csrf},
        )
        not_allowed = await client.post(
            f"{path}/status",
            json={"status": "finalized", "version": moved.json()["version"]},
            headers={"X-CSRF-Token": csrf},
        )
        unknown = await client.post(
            f"{path}/status", json={"status": "exploded"}, headers={"X-CSRF-Token": csrf}
        )
        note = await client.post(
            f"{path}/notes", json={"text": "<b>called</b> the customer"}, headers={"X-CSRF-Token": csrf}
        )
        empty_note = await client.post(f"{path}/notes", json={"text": ""}, headers={"X-CSRF-Token": csrf})
        notes = (await client.get(f"{path}/notes")).json()
        page = await client.get("/tickets")
    assert ticket["id"] in {t["id"] for t in listed["items"]}
    assert no_token.status_code == 403
    assert moved.status_code == 200, moved.text
    assert moved.json()["status"] == "allocated"
    assert moved.json()["allowed_next"] == ["confirmed", "cancelled"]
    assert stale.status_code == 409
    assert not_allowed.status_code == 409
    assert unknown.status_code == 422
    assert note.status_code == 201
    assert empty_note.status_code == 422
    assert "<b>called</b> the customer" in [n["text"] for n in notes]
    assert 'data-can-modify-ticket="true"' in page.text


async def test_a_user_without_the_right_to_change_tickets_gets_no_buttons_and_a_403(
    desktop: RunningDesktop, services: Services
) -> None:
    ticket = a_ticket(services)
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "nina")
        page = await client.get("/tickets")
        refused = await client.post(
            f"/api/tickets/{ticket['id']}/status",
            json={"status": "cancelled"},
            headers={"X-CSRF-Token": csrf},
        )
        note = await client.post(
            f"/api/tickets/{ticket['id']}/notes", json={"text": "hi"}, headers={"X-CSRF-Token": csrf}
        )
    assert 'data-can-modify-ticket="false"' in page.text
    assert 'id="ticket-note-form"' not in page.text
    assert refused.status_code == 403
    assert note.status_code == 403


async def test_the_pages_send_a_signed_out_user_to_log_in_and_back(desktop: RunningDesktop) -> None:
    async with desktop.client() as client:
        tickets = await client.get("/tickets")
        contacts = await client.get("/contacts")
    assert tickets.status_code == 303
    assert tickets.headers["location"] == "/login?next=/tickets"
    assert contacts.status_code == 303
    assert contacts.headers["location"] == "/login?next=/contacts"
