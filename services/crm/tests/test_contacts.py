"""Contacts over the REST API: companies and persons, numbers kept as typed, rights and visibility,
duplicates found and merged, creating from a caller's number, custom fields and the events the call
log consumes."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from telecrm.crm.v1 import directory_events_pb2 as directory_pb
from telecrm_calls.directory import phones_of
from telecrm_common.app import http_app
from telecrm_common.auth import Principal, Role, Visibility, default_rights
from telecrm_common.db import Database
from telecrm_common.events import decode_directory_event
from telecrm_crm.audit import AuditLog
from telecrm_crm.contacts import ContactService
from telecrm_crm.contacts_api import contacts_router
from telecrm_crm.contacts_models import Contact
from telecrm_crm.lookup import NumberLookup
from telecrm_crm.models import OutboxMessage

SECRET = b"contacts-test-cursor-secret"
Headers = Callable[[Principal], dict[str, str]]


def person(subject: str, role: Role, employee: str, team: str, **extra: Any) -> Principal:
    return Principal(
        subject=subject,
        employee_id=employee,
        name=subject,
        roles=frozenset({role}),
        team_ids=frozenset({team}),
        supervised_team_ids=frozenset(extra.pop("supervised", ())),
        rights=extra.pop("rights", default_rights([role])),
        visibility=extra.pop("visibility", Visibility.OWN),
    )


@pytest.fixture
def service(crm_db: Database) -> ContactService:
    return ContactService(crm_db, audit=AuditLog("changes"), cursor_secret=SECRET, default_region="BG")


@pytest.fixture
async def client(service: ContactService, access: Any) -> AsyncIterator[httpx.AsyncClient]:
    lookup = NumberLookup(service.db, cache_ttl=0)
    app = http_app("crm", "", [contacts_router(service, access, lookup)], {})
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://crm") as http:
        yield http
    await lookup.close()


async def contact_events(db: Database) -> list[tuple[str, directory_pb.ContactEvent]]:
    async with db.session() as session:
        rows = (await session.scalars(select(OutboxMessage).order_by(OutboxMessage.seq))).all()
    events = []
    for row in rows:
        if row.subject.startswith("crm.contact."):
            event = decode_directory_event(row.subject, row.payload)  # the call log's own decoder
            assert isinstance(event, directory_pb.ContactEvent)
            events.append((row.subject, event))
    return events


async def count_contacts(db: Database) -> int:
    async with db.session() as session:
        return int(await session.scalar(select(func.count()).select_from(Contact)) or 0)


async def create(
    client: httpx.AsyncClient, headers: dict[str, str], body: dict[str, Any], **params: Any
) -> dict[str, Any]:
    response = await client.post("/contacts", json=body, headers=headers, params=params)
    assert response.status_code == 201, response.text
    return response.json()  # type: ignore[no-any-return]


# --- create, read, list ----------------------------------------------------------------------------


async def test_a_company_and_its_person_with_numbers_in_local_formats(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal
) -> None:
    auth = token_for(admin)
    put = await client.put(
        "/contact-fields/segment",
        json={"label": "Segment", "type": "choice", "choices": ["retail", "wholesale"]},
        headers=auth,
    )
    assert put.status_code == 201, put.text
    company = await create(
        client,
        auth,
        {
            "kind": "company",
            "name": "Balkan Trade OOD",
            "tax_id": "BG123456789",
            "phones": [{"number": "02 981 1234", "kind": "work"}],
            "custom_fields": {"segment": "wholesale"},
        },
    )
    response = await client.post(
        "/contacts",
        json={
            "name": "  Ivan   Petrov ",
            "company_id": company["id"],
            "job_title": "Buyer",
            "phones": [
                {"number": "0888 123 456", "kind": "mobile"},
                {"number": "02 981 1234 вн. 305", "kind": "work"},
            ],
            "emails": ["Ivan.Petrov@Balkan.example"],
            "address": "Sofia, 1 Vitosha Blvd",
        },
        headers=auth,
    )
    assert response.status_code == 201, response.text
    ivan = response.json()
    assert response.headers["Location"] == f"/contacts/{ivan['id']}"
    assert ivan["name"] == "Ivan Petrov"
    assert ivan["company_name"] == "Balkan Trade OOD"
    assert [(p["number"], p["e164"], p["extension"], p["valid"]) for p in ivan["phones"]] == [
        ("0888 123 456", "+359888123456", None, True),
        ("02 981 1234 вн. 305", "+35929811234", "305", True),
    ]
    assert ivan["phones"][1]["display"] == "+359 2 981 1234 ext. 305"
    assert (ivan["owner_employee_id"], ivan["version"]) == ("emp-admin", 1)

    fetched = (await client.get(f"/contacts/{ivan['id']}", headers=auth)).json()
    assert fetched == ivan
    persons = (await client.get("/contacts", params={"company_id": company["id"]}, headers=auth)).json()
    assert [p["id"] for p in persons["items"]] == [ivan["id"]]
    by_email = await client.get("/contacts", params={"email": "ivan.petrov@balkan.EXAMPLE"}, headers=auth)
    assert [p["id"] for p in by_email.json()["items"]] == [ivan["id"]]


async def test_an_invalid_number_is_stored_as_typed_flagged_and_found_again(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal
) -> None:
    auth = token_for(admin)
    contact = await create(
        client,
        auth,
        {"name": "Night guard", "phones": [{"number": "ask at reception 12-34", "kind": "other"}]},
    )
    (phone,) = contact["phones"]
    assert (phone["number"], phone["e164"], phone["valid"]) == ("ask at reception 12-34", None, False)
    found = (await client.get("/contacts", params={"q": "1234"}, headers=auth)).json()
    assert [c["id"] for c in found["items"]] == [contact["id"]]


async def test_bad_input_answers_422_naming_the_field_and_keeps_nothing(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal, crm_db: Database
) -> None:
    auth = token_for(admin)
    await client.put("/contact-fields/since", json={"label": "Client since", "type": "date"}, headers=auth)
    person_id = (await create(client, auth, {"name": "Not a company"}))["id"]
    cases = [
        ({"name": "X", "emails": ["ok@example.com", "not an address"]}, ["body", "emails", 1]),
        ({"name": "X", "phones": [{"number": "0888 1", "kind": "pager"}]}, ["body", "phones", 0, "kind"]),
        ({"name": "X", "custom_fields": {"colour": "red"}}, ["body", "custom_fields", "colour"]),
        ({"name": "X", "custom_fields": {"since": "yesterday"}}, ["body", "custom_fields", "since"]),
        ({"name": "X", "company_id": person_id}, ["body", "company_id"]),
        ({"name": "   "}, ["body", "name"]),
        (
            {"name": "X", "phones": [{"number": "0888 123 456"}, {"number": "+359888123456"}]},
            ["body", "phones", 1, "number"],
        ),
    ]
    for body, location in cases:
        response = await client.post("/contacts", json=body, headers=auth)
        assert response.status_code == 422, (body, response.text)
        assert response.json()["detail"][0]["loc"] == location, body
    # Valid JSON and a valid str, but no text a database can store (half a surrogate pair), also in
    # a custom field, whose values no schema types.
    await client.put("/contact-fields/motto", json={"label": "Motto", "type": "text"}, headers=auth)
    for raw, location in (
        (b'{"name": "Acme", "notes": "\\ud83d broken"}', ["body", "notes"]),
        (b'{"name": "Acme", "custom_fields": {"motto": "\\ud83d"}}', ["body", "custom_fields", "motto"]),
    ):
        response = await client.post(
            "/contacts", content=raw, headers={**auth, "content-type": "application/json"}
        )
        assert (response.status_code, response.json()["detail"][0]["loc"]) == (422, location), raw
    assert await count_contacts(crm_db) == 1


# --- creating from a caller's number ---------------------------------------------------------------


async def test_a_contact_from_an_unknown_number_in_one_call(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal
) -> None:
    auth = token_for(agent)
    response = await client.post("/contacts/from-number", json={"number": "sip:0888123456@pbx"}, headers=auth)
    assert response.status_code == 201, response.text
    contact = response.json()
    assert contact["name"] == "+359 88 812 3456"
    assert contact["responsible_employee_id"] == "emp-agent"  # the auto-assign automation
    assert (contact["owner_employee_id"], contact["owner_team_id"]) == ("emp-agent", "team-sales")
    assert [(p["e164"], p["kind"]) for p in contact["phones"]] == [("+359888123456", "mobile")]

    # The same caller again: the contact exists; the answer names it.
    again = await client.post("/contacts/from-number", json={"number": "+359 88 812 3456"}, headers=auth)
    assert again.status_code == 409
    detail = again.json()["detail"]
    assert [(d["contact_id"], d["number"], d["visible"]) for d in detail["duplicates"]] == [
        (contact["id"], "+359888123456", True)
    ]

    # A retried request (same Idempotency-Key) is the same contact, created once.
    keyed = {**auth, "Idempotency-Key": "pop-42"}
    body = {"number": "+40 721 234 567", "name": "Ioana", "responsible_employee_id": "emp-other"}
    first = await client.post("/contacts/from-number", json=body, headers=keyed)
    second = await client.post("/contacts/from-number", json=body, headers=keyed)
    assert first.status_code == second.status_code == 201
    assert first.json()["id"] == second.json()["id"]
    assert first.json()["responsible_employee_id"] == "emp-other"


# --- duplicates and merging ------------------------------------------------------------------------


async def test_a_number_another_contact_has_is_a_409_listing_it_unless_allowed(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal, crm_db: Database
) -> None:
    auth = token_for(admin)
    first = await create(client, auth, {"name": "Maria", "phones": [{"number": "+7 (499) 369-04-39"}]})
    response = await client.post(
        "/contacts", json={"name": "M. Ivanova", "phones": [{"number": "00 7 499 369-04-39"}]}, headers=auth
    )
    assert response.status_code == 409
    (duplicate,) = response.json()["detail"]["duplicates"]
    assert (duplicate["contact_id"], duplicate["name"], duplicate["number"]) == (
        first["id"],
        "Maria",
        "+74993690439",
    )
    assert await count_contacts(crm_db) == 1
    second = await create(
        client,
        auth,
        {"name": "M. Ivanova", "phones": [{"number": "00 7 499 369-04-39"}]},
        allow_duplicate="true",
    )
    # Editing an unrelated field of a contact that shares a number is no new duplicate.
    patched = await client.patch(f"/contacts/{second['id']}", json={"notes": "VIP"}, headers=auth)
    assert patched.status_code == 200, patched.text
    # Adding a known number to a third contact is.
    third = await create(client, auth, {"name": "Petar"})
    added = await client.post(
        f"/contacts/{third['id']}/phones", json={"number": "+74993690439"}, headers=auth
    )
    assert added.status_code == 409
    assert {d["contact_id"] for d in added.json()["detail"]["duplicates"]} == {first["id"], second["id"]}

    # A company's persons may share its switchboard number.
    company = await create(
        client, auth, {"kind": "company", "name": "Nord LLC", "phones": [{"number": "+380 44 123 4567"}]}
    )
    await create(
        client,
        auth,
        {"name": "Olena", "company_id": company["id"], "phones": [{"number": "044 123 45 67 дод. 7"}]},
    )


async def test_adding_a_number_to_a_contact_and_a_repeat_changes_nothing(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal
) -> None:
    auth = token_for(admin)
    contact = await create(client, auth, {"name": "Stefan", "phones": [{"number": "0888 111 222"}]})
    added = await client.post(
        f"/contacts/{contact['id']}/phones", json={"number": "02 444 5555", "kind": "home"}, headers=auth
    )
    assert added.status_code == 200, added.text
    assert [p["e164"] for p in added.json()["phones"]] == ["+359888111222", "+35924445555"]
    assert added.json()["version"] == 2
    repeat = await client.post(
        f"/contacts/{contact['id']}/phones", json={"number": "+359 2 444 5555", "kind": "home"}, headers=auth
    )
    assert repeat.json()["version"] == 2
    removed = await client.delete(
        f"/contacts/{contact['id']}/phones/{added.json()['phones'][0]['id']}", headers=auth
    )
    assert [p["e164"] for p in removed.json()["phones"]] == ["+35924445555"]


async def test_merging_duplicates_unites_them_and_the_loser_points_to_the_survivor(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal, crm_db: Database
) -> None:
    auth = token_for(admin)
    await client.put("/contact-fields/vip", json={"label": "VIP", "type": "text"}, headers=auth)
    await client.put("/contact-fields/budget", json={"label": "Budget", "type": "number"}, headers=auth)
    keep = await create(
        client,
        auth,
        {
            "name": "Anna Smirnova",
            "phones": [{"number": "+7 495 100 20 30"}],
            "emails": ["anna@example.com"],
            "custom_fields": {"vip": "yes"},
        },
    )
    lose = await create(
        client,
        auth,
        {
            "name": "Anna S.",
            "phones": [{"number": "+7 495 100 20 30"}, {"number": "+7 916 555 44 33"}],
            "emails": ["ANNA@example.com", "a.s@example.com"],
            "custom_fields": {"vip": "no", "budget": 5000},
            "notes": "Prefers e-mail",
            "address": "Moscow",
            "responsible_employee_id": "emp-7",
        },
        allow_duplicate="true",
    )
    groups = (await client.get("/contacts/duplicates", headers=auth)).json()["items"]
    assert [(g["key"], {c["id"] for c in g["contacts"]}) for g in groups] == [
        ("+74951002030", {keep["id"], lose["id"]})
    ]
    by_email = (await client.get("/contacts/duplicates", params={"by": "email"}, headers=auth)).json()
    assert [g["key"] for g in by_email["items"]] == ["anna@example.com"]

    response = await client.post(
        f"/contacts/{keep['id']}/merge", json={"contact_ids": [lose["id"]], "version": 1}, headers=auth
    )
    assert response.status_code == 200, response.text
    merged = response.json()
    assert [p["e164"] for p in merged["phones"]] == ["+74951002030", "+79165554433"]
    assert merged["emails"] == ["anna@example.com", "a.s@example.com"]
    assert merged["custom_fields"] == {"vip": "yes", "budget": 5000}
    assert (merged["notes"], merged["address"], merged["responsible_employee_id"]) == (
        "Prefers e-mail",
        "Moscow",
        "emp-7",
    )
    gone = await client.get(f"/contacts/{lose['id']}", headers=auth)
    assert gone.status_code == 404
    assert gone.headers["X-Merged-Into"] == keep["id"]
    assert (await client.get("/contacts/duplicates", headers=auth)).json()["items"] == []

    subjects = [
        (s, getattr(e, e.WhichOneof("kind") or "").contact_id, e.version)
        for s, e in await contact_events(crm_db)
    ]
    assert subjects[-2:] == [("crm.contact.updated", keep["id"], 2), ("crm.contact.deleted", lose["id"], 2)]
    deleted = (await contact_events(crm_db))[-1][1]
    assert deleted.deleted.merged_into == keep["id"]
    history = (await client.get(f"/contacts/{keep['id']}/history", headers=auth)).json()
    assert [entry["action"] for entry in history] == ["create", "merge"]
    assert history[1]["changes"]["merged"] == [None, [lose["id"]]]


async def test_merging_companies_moves_their_persons(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal, crm_db: Database
) -> None:
    auth = token_for(admin)
    keep = await create(client, auth, {"kind": "company", "name": "Vita Group"})
    lose = await create(client, auth, {"kind": "company", "name": "VITA group Ltd"})
    employee = await create(client, auth, {"name": "Pavel", "company_id": lose["id"]})
    refused = await client.post(
        f"/contacts/{keep['id']}/merge", json={"contact_ids": [employee["id"]]}, headers=auth
    )
    assert refused.status_code == 422
    merged = await client.post(
        f"/contacts/{keep['id']}/merge", json={"contact_ids": [lose["id"]]}, headers=auth
    )
    assert merged.status_code == 200, merged.text
    moved = (await client.get(f"/contacts/{employee['id']}", headers=auth)).json()
    assert (moved["company_id"], moved["company_name"], moved["version"]) == (keep["id"], "Vita Group", 2)
    last = {getattr(e, e.WhichOneof("kind") or "").contact_id: e for _, e in await contact_events(crm_db)}
    assert last[employee["id"]].updated.company_name == "Vita Group"


# --- changes, versions, rights, visibility ---------------------------------------------------------


async def test_a_stale_version_is_a_409_and_changes_nothing(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal
) -> None:
    auth = token_for(admin)
    contact = await create(client, auth, {"name": "Georgi"})
    ok = await client.patch(
        f"/contacts/{contact['id']}", json={"name": "Georgi Ivanov", "version": 1}, headers=auth
    )
    assert ok.json()["version"] == 2
    stale = await client.patch(f"/contacts/{contact['id']}", json={"name": "G.", "version": 1}, headers=auth)
    assert stale.status_code == 409
    assert "version is now 2" in stale.json()["detail"]
    assert (await client.get(f"/contacts/{contact['id']}", headers=auth)).json()["name"] == "Georgi Ivanov"
    deleted = await client.delete(f"/contacts/{contact['id']}", params={"version": 1}, headers=auth)
    assert deleted.status_code == 409


async def test_without_the_right_the_answer_is_403_and_nothing_changes(
    client: httpx.AsyncClient, token_for: Headers, agent: Principal, crm_db: Database
) -> None:
    auth = token_for(agent)
    contact = await create(client, auth, {"name": "Elena", "phones": [{"number": "0888 999 000"}]})
    assert (await client.delete(f"/contacts/{contact['id']}", headers=auth)).status_code == 403  # agents
    other = await create(
        client, auth, {"name": "Elena D.", "phones": [{"number": "0888 999 000"}]}, allow_duplicate="true"
    )
    merge = await client.post(
        f"/contacts/{contact['id']}/merge", json={"contact_ids": [other["id"]]}, headers=auth
    )
    assert merge.status_code == 403
    reader = person("u-reader", Role.AGENT, "emp-reader", "team-sales", rights=frozenset())
    refused = await client.post("/contacts", json={"name": "Nope"}, headers=token_for(reader))
    assert refused.status_code == 403
    patch = await client.patch(f"/contacts/{contact['id']}", json={"name": "Nope"}, headers=token_for(reader))
    assert patch.status_code == 403
    field = await client.put("/contact-fields/x", json={"label": "X"}, headers=auth)
    assert field.status_code == 403
    assert await count_contacts(crm_db) == 2
    assert (await client.get(f"/contacts/{contact['id']}", headers=auth)).json()["name"] == "Elena"


async def test_users_see_their_own_their_teams_and_the_shared_contacts(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal, agent: Principal, supervisor: Principal
) -> None:
    colleague = person("u-col", Role.AGENT, "emp-col", "team-sales", visibility=Visibility.TEAM)
    stranger = person("u-str", Role.AGENT, "emp-str", "team-care")
    mine = await create(client, token_for(agent), {"name": "Agent's client"})
    theirs = await create(client, token_for(stranger), {"name": "Care client"})
    shared = await create(client, token_for(admin), {"name": "Shared client", "owner_employee_id": None})
    assigned = await create(
        client,
        token_for(admin),
        {"name": "Given to the agent", "owner_team_id": "team-x", "responsible_employee_id": "emp-agent"},
    )

    async def names(user: Principal) -> set[str]:
        page = (await client.get("/contacts", headers=token_for(user))).json()
        return {c["name"] for c in page["items"]}

    assert await names(agent) == {"Agent's client", "Shared client", "Given to the agent"}
    assert await names(colleague) == {"Agent's client", "Shared client"}  # the team's
    assert await names(stranger) == {"Care client", "Shared client"}
    assert await names(supervisor) == {"Agent's client", "Shared client"}
    assert len(await names(admin)) == 4
    assert (await client.get(f"/contacts/{theirs['id']}", headers=token_for(agent))).status_code == 404
    patch = await client.patch(f"/contacts/{theirs['id']}", json={"name": "x"}, headers=token_for(agent))
    assert patch.status_code == 404
    assert (await client.get(f"/contacts/{mine['id']}", headers=token_for(stranger))).status_code == 404
    assert (await client.get(f"/contacts/{assigned['id']}", headers=token_for(agent))).status_code == 200
    assert shared["owner_employee_id"] is None
    # An agent cannot hand a contact to a team and lose it.
    handed = await client.patch(
        f"/contacts/{mine['id']}",
        json={"owner_employee_id": None, "owner_team_id": "team-care"},
        headers=token_for(agent),
    )
    assert handed.status_code == 422
    assert handed.json()["detail"][0]["loc"] == ["body", "owner_team_id"]


async def test_pages_follow_each_other_and_search_finds_names_and_numbers(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal
) -> None:
    auth = token_for(admin)
    for index, name in enumerate(["Dimitar", "Ana", "Bogdan", "Cristina", "Emil"]):
        await create(client, auth, {"name": name, "phones": [{"number": f"+40 721 234 56{index}"}]})
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, Any] = {"limit": 2, "include_total": "true"}
        if cursor:
            params["cursor"] = cursor
        page = (await client.get("/contacts", params=params, headers=auth)).json()
        assert page["total"] == 5
        seen += [c["name"] for c in page["items"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ["Ana", "Bogdan", "Cristina", "Dimitar", "Emil"]
    recent = (await client.get("/contacts", params={"sort": "-updated", "limit": 1}, headers=auth)).json()
    assert recent["items"][0]["name"] == "Emil"
    by_name = (await client.get("/contacts", params={"q": "GDA"}, headers=auth)).json()
    assert [c["name"] for c in by_name["items"]] == ["Bogdan"]
    by_number = (await client.get("/contacts", params={"q": "+40 721 234 563"}, headers=auth)).json()
    assert [c["name"] for c in by_number["items"]] == ["Cristina"]
    tampered = await client.get(
        "/contacts", params={"cursor": "x" + str(recent["next_cursor"])}, headers=auth
    )
    assert tampered.status_code == 400


# --- events ----------------------------------------------------------------------------------------


async def test_every_change_publishes_the_contact_event_the_call_log_reads(
    client: httpx.AsyncClient, token_for: Headers, admin: Principal, crm_db: Database
) -> None:
    auth = token_for(admin)
    company = await create(client, auth, {"kind": "company", "name": "Delta SRL"})
    contact = await create(
        client,
        auth,
        {
            "name": "Radu",
            "company_id": company["id"],
            "responsible_employee_id": "emp-5",
            "phones": [{"number": "+40 721 234 567", "kind": "mobile"}, {"number": "not known"}],
        },
    )
    await client.patch(
        f"/contacts/{contact['id']}", json={"phones": [{"number": "+40 721 234 567 int. 4"}]}, headers=auth
    )
    await client.patch(f"/contacts/{company['id']}", json={"name": "Delta Group SRL"}, headers=auth)
    await client.patch(f"/contacts/{contact['id']}", json={"notes": "same"}, headers=auth)
    await client.patch(f"/contacts/{contact['id']}", json={"notes": "same"}, headers=auth)  # no change
    await client.delete(f"/contacts/{company['id']}", headers=auth)

    events = [
        (s, e)
        for s, e in await contact_events(crm_db)
        if getattr(e, e.WhichOneof("kind") or "").contact_id == contact["id"]
    ]
    assert [(s, e.version) for s, e in events] == [
        ("crm.contact.created", 1),
        ("crm.contact.updated", 2),  # its numbers
        ("crm.contact.updated", 3),  # its company renamed
        ("crm.contact.updated", 4),  # notes
        ("crm.contact.updated", 5),  # its company deleted: detached
    ]
    created = events[0][1].created
    assert (created.kind, created.name, created.company_name, created.responsible_employee_id) == (
        "person",
        "Radu",
        "Delta SRL",
        "emp-5",
    )
    # What the call log makes of it: its phones with E.164 (the unparsable one has no digits).
    assert [(p.e164, p.kind) for p in phones_of(created, "RO")] == [("+40721234567", "mobile")]
    assert [(p.e164, p.extension, p.valid) for p in events[1][1].updated.phones] == [
        ("+40721234567", "4", True)
    ]
    assert events[2][1].updated.company_name == "Delta Group SRL"
    assert (events[4][1].updated.company_id, events[4][1].updated.company_name) == ("", "")
    assert len({e.event_id for _, e in events}) == len(events)
