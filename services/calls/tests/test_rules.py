"""The call rules with the numbers registry: direction, internal and unregistered calls, missed outgoing
calls, ring groups, transfers, employees, teams and contacts (PostgreSQL or SQLite)."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import timedelta

import httpx
import pytest
from sqlalchemy import select

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls.models import Call, CallParty, Contact, Employee, MissedCallTarget, Number
from telecrm_calls.rules import CallRules
from telecrm_calls.service import CallLogService, CallQuery
from telecrm_calls.testing import T0, CallScript
from telecrm_common.auth import AuthSettings, Principal, Role, TokenIssuer, Visibility
from telecrm_common.db import Database
from telecrm_devstack.testing import make_principal

OUT, INTERNAL = ev.DIRECTION_OUTBOUND, ev.DIRECTION_INTERNAL
CUSTOMER = "+359888123456"


async def seed_registry(db: Database) -> None:
    """Two teams: sales (e-ann on 101, e-bob on 102) and support (e-cat on 201); one contact."""
    async with db.session() as session:
        for employee, name, team in (
            ("e-ann", "Ann", "t-sales"),
            ("e-bob", "Bob", "t-sales"),
            ("e-cat", "Cat", "t-support"),
        ):
            session.add(
                Employee(employee_id=employee, name=name, team_id=team, active=True, deleted=False, version=1)
            )
        for number, employee in (("101", "e-ann"), ("102", "e-bob"), ("201", "e-cat"), ("300", None)):
            session.add(
                Number(id=f"n-{number}", kind="internal", number=number, digits=number, employee_id=employee)
            )
        session.add(Contact(contact_id="c-acme", kind="company", name="Acme", deleted=False, version=1))
        session.add(
            Number(
                id="n-acme",
                kind="contact",
                number=CUSTOMER,
                e164=CUSTOMER,
                digits=CUSTOMER[1:],
                contact_id="c-acme",
            )
        )


async def record(service: CallLogService, call_id: str) -> Call | None:
    async with service.db.session() as session:
        return await session.get(Call, call_id)


async def parties(service: CallLogService, call_id: str) -> dict[str, tuple[str | None, str | None, str]]:
    async with service.db.session() as session:
        rows = await session.scalars(select(CallParty).where(CallParty.call_id == call_id))
        return {p.extension: (p.employee_id, p.team_id, p.role) for p in rows}


async def ids(service: CallLogService, **filters: object) -> list[str]:
    page = await service.list_calls(CallQuery(limit=100, **filters))  # type: ignore[arg-type]
    return [entry.call.call_id for entry in page.items]


def outbound(call_id: str, callee: str, *, caller: str = "101", start_min: float = 0) -> CallScript:
    return CallScript(
        call_id,
        start=T0 + timedelta(minutes=start_min),
        direction=OUT,
        caller=caller,
        callee=callee,
        extension=caller,
    )


# --- direction -----------------------------------------------------------------------------------


async def test_short_numbers_and_registered_extensions_make_internal_calls(service: CallLogService) -> None:
    await seed_registry(service.db)
    # Reported as inbound by a PBX, but both ends are ours: 4-digit 1234 is short, 101 is registered.
    events = CallScript("dir-1", caller="1234", callee="101", extension="101").answered_call()
    # Registered extension 300 with 7 digits of callee? No: 300 calls a long outside number.
    events += outbound("dir-2", "+442071234567", caller="300").answered_call()
    unspecified = CallScript(
        "dir-3", direction=ev.DIRECTION_UNSPECIFIED, caller="102", callee="+442071234567", extension="102"
    )
    events += unspecified.answered_call()
    await service.ingest(events)

    assert [(await record(service, c)).direction for c in ("dir-1", "dir-2", "dir-3")] == [  # type: ignore[union-attr]
        "internal",
        "outbound",
        "outbound",  # no direction given: an internal number placed it
    ]


async def test_the_minimum_length_of_external_numbers_is_a_setting(db: Database) -> None:
    short_external = CallScript("len-1", caller="112233", callee="101", extension="101").answered_call()
    default = CallLogService(db, cursor_secret="s")
    await default.ingest(short_external)
    assert (await record(default, "len-1")).direction == "inbound"  # type: ignore[union-attr]

    seven = CallLogService(db, cursor_secret="s", call_rules=CallRules(external_number_min_digits=7))
    await seven.ingest(CallScript("len-2", caller="112233", callee="101", extension="101").answered_call())
    assert (await record(seven, "len-2")).direction == "internal"  # type: ignore[union-attr]


async def test_internal_calls_are_logged_or_not_by_setting(db: Database) -> None:
    skip = CallLogService(db, cursor_secret="s", call_rules=CallRules(internal_calls="skip"))
    events = CallScript(
        "int-1", direction=INTERNAL, caller="101", callee="102", extension="102"
    ).answered_call()
    events += CallScript("ext-1", caller=CUSTOMER, extension="102").answered_call()
    result = await skip.ingest(events)

    assert result.calls == ["ext-1"]
    assert await ids(skip) == ["ext-1"]
    assert await parties(skip, "int-1") == {}
    # The events are kept: with the setting back to "log", the next event of the call records it.
    log = CallLogService(db, cursor_secret="s")
    late = CallScript("int-1", direction=INTERNAL, caller="101", callee="102", extension="102")
    late.sequence = 4
    await log.ingest([late.held(70)])
    assert (await record(log, "int-1")).direction == "internal"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    ("policy", "expected"),
    [("log", "inbound"), ("internal", "internal"), ("skip", None)],
)
async def test_calls_to_unregistered_extensions_follow_the_setting(
    db: Database, policy: str, expected: str | None
) -> None:
    await seed_registry(db)
    service = CallLogService(db, cursor_secret="s", call_rules=CallRules(unregistered_extensions=policy))  # type: ignore[arg-type]
    await service.ingest(CallScript("unreg", caller=CUSTOMER, extension="555").missed_call())
    await service.ingest(CallScript("reg", caller=CUSTOMER, extension="101").missed_call())

    found = await record(service, "unreg")
    assert (found.direction if found else None) == expected
    assert (await record(service, "reg")).direction == "inbound"  # type: ignore[union-attr]


# --- missed --------------------------------------------------------------------------------------


async def test_an_unsuccessful_outgoing_call_is_a_missed_outgoing_call(service: CallLogService) -> None:
    calls = {
        "o-noanswer": (ev.DISPOSITION_NO_ANSWER, 480),
        "o-busy": (ev.DISPOSITION_BUSY, 486),
        "o-failed": (ev.DISPOSITION_FAILED, 404),
    }
    events: list[ev.CallEvent] = []
    for n, (call_id, (disposition, status)) in enumerate(calls.items()):
        script = outbound(call_id, "+442071234567", start_min=n)
        events += [script.offered(), script.ended(20, disposition, sip_status=status)]
    events += outbound("o-ok", "+442071234567", start_min=5).answered_call()
    events += CallScript("i-missed", start=T0 + timedelta(minutes=6), caller=CUSTOMER).missed_call()
    busy_agent = CallScript("i-busy", start=T0 + timedelta(minutes=7), caller=CUSTOMER)
    events += [busy_agent.offered(), busy_agent.ended(2, ev.DISPOSITION_BUSY, sip_status=486)]
    await service.ingest(events)

    assert sorted(await ids(service, missed=True)) == ["i-missed", "o-busy", "o-failed", "o-noanswer"]
    assert sorted(await ids(service, missed=True, direction="outbound")) == [
        "o-busy",
        "o-failed",
        "o-noanswer",
    ]
    assert sorted(await ids(service, missed=False)) == ["i-busy", "o-ok"]


# --- ring groups and transfers -------------------------------------------------------------------


def ring_group(call_id: str, *, answered_by: str | None) -> list[ev.CallEvent]:
    """An inbound call ringing 101 and 102 at once; one of them answers, or nobody does."""
    call = CallScript(call_id, caller=CUSTOMER, extension="101")
    events = [call.offered(), call.ringing(0.1, "101"), call.ringing(0.1, "102")]
    if answered_by is None:
        return [*events, call.ended(30, ev.DISPOSITION_MISSED, sip_status=487, hangup_by=ev.HANGUP_BY_CALLER)]
    other = "102" if answered_by == "101" else "101"
    answered = call.answered(6, answered_by)
    answered.answered.leg_id = f"leg-{answered_by}"
    return [
        *events,
        answered,
        call.leg_ended(6, other, ev.DISPOSITION_CANCELLED, sip_status=487),
        call.ended(
            66, ev.DISPOSITION_ANSWERED, sip_status=200, answered_at=6, answered_extension=answered_by
        ),
    ]


async def test_a_ring_group_is_one_record_with_the_answered_and_the_cancelled_legs(
    service: CallLogService, client: httpx.AsyncClient
) -> None:
    await seed_registry(service.db)
    await service.ingest(ring_group("rg-1", answered_by="102"))

    call = await record(service, "rg-1")
    assert call is not None
    assert (call.extension, call.employee_id, call.team_id, call.disposition) == (
        "102",
        "e-bob",
        "t-sales",
        "answered",
    )
    assert [(leg["extension"], leg["disposition"]) for leg in call.legs] == [
        ("101", "cancelled"),
        ("102", "answered"),
    ]
    assert await parties(service, "rg-1") == {
        "101": ("e-ann", "t-sales", "rang"),
        "102": ("e-bob", "t-sales", "answered"),
    }
    # Both agents see it in their log; it counts once for the team.
    assert await ids(service, employee_id="e-ann") == ["rg-1"]
    assert await ids(service, employee_id="e-bob") == ["rg-1"]
    assert (await service.list_calls(CallQuery(team_id="t-sales", include_total=True))).total == 1

    body = (await client.get("/calls/rg-1")).json()
    assert [(leg["extension"], leg["disposition"]) for leg in body["legs"]] == [
        ("101", "cancelled"),
        ("102", "answered"),
    ]


async def test_a_missed_ring_group_call_is_missed_for_every_member_and_team(service: CallLogService) -> None:
    await seed_registry(service.db)
    await service.ingest(ring_group("rg-2", answered_by=None))

    call = await record(service, "rg-2")
    assert call is not None
    assert call.missed
    assert [(leg["extension"], leg["disposition"]) for leg in call.legs] == [
        ("101", "missed"),
        ("102", "missed"),
    ]
    async with service.db.session() as session:
        targets = {(t.kind, t.value) for t in await session.scalars(select(MissedCallTarget))}
    assert targets == {
        ("extension", "101"),
        ("extension", "102"),
        ("employee", "e-ann"),
        ("employee", "e-bob"),
        ("team", "t-sales"),
    }


async def test_a_transfer_keeps_one_conversation_with_the_hand_over_visible(service: CallLogService) -> None:
    await seed_registry(service.db)
    call = CallScript("tr-1", caller=CUSTOMER, extension="101")
    events = [call.offered(), call.ringing(0.1), call.answered(4), call.transferred(40, "201", attended=True)]
    events.append(call.ended(100, ev.DISPOSITION_ANSWERED, sip_status=200, answered_at=4))
    await service.ingest(events)

    found = await record(service, "tr-1")
    assert found is not None
    assert (found.extension, found.talk_ms) == ("101", 96_000)
    assert [(t["from_extension"], t["to_extension"], t["attended"]) for t in found.transfers] == [
        ("101", "201", True)
    ]
    assert await parties(service, "tr-1") == {
        "101": ("e-ann", "t-sales", "answered"),
        "201": ("e-cat", "t-support", "transferred"),
    }
    assert await ids(service, team_id="t-support") == ["tr-1"]
    assert await ids(service, employee_id="e-ann") == ["tr-1"]


# --- contacts ------------------------------------------------------------------------------------


async def test_calls_are_linked_to_the_contact_of_the_number(service: CallLogService) -> None:
    await seed_registry(service.db)
    async with service.db.session() as session:  # a second contact sharing a switchboard number
        for contact in ("c-x", "c-y"):
            session.add(Contact(contact_id=contact, name=contact, deleted=False, version=1))
            session.add(
                Number(
                    id=f"n-{contact}",
                    kind="contact",
                    number="+442070000000",
                    e164="+442070000000",
                    digits="442070000000",
                    contact_id=contact,
                )
            )
    events = CallScript("ct-in", caller=CUSTOMER).answered_call()
    events += outbound("ct-out", CUSTOMER, start_min=2).answered_call()
    events += CallScript("ct-shared", start=T0 + timedelta(minutes=4), caller="+442070000000").answered_call()
    dialled = outbound("ct-ctx", "+442071234567", start_min=6)
    dialled.context = {"contact_id": "c-from-task", "task_id": "task-7"}
    events += dialled.answered_call()
    await service.ingest(events)

    assert sorted(await ids(service, contact_id="c-acme")) == ["ct-in", "ct-out"]
    assert (await record(service, "ct-shared")).contact_id is None  # type: ignore[union-attr]
    ctx = await record(service, "ct-ctx")
    assert ctx is not None
    assert (ctx.contact_id, ctx.task_id) == ("c-from-task", "task-7")


async def test_links_an_agent_edited_survive_later_events(service: CallLogService) -> None:
    await seed_registry(service.db)
    call = CallScript("ed-1", caller=CUSTOMER)
    events = call.answered_call()
    await service.ingest(events[:3])
    async with service.db.session() as session:
        row = await session.get(Call, "ed-1")
        assert row is not None
        assert row.contact_id == "c-acme"
        row.contact_id, row.links_edited = "c-other", True
    await service.ingest(events[3:])  # the end of the call refolds the record

    found = await record(service, "ed-1")
    assert found is not None
    assert (found.contact_id, found.state) == ("c-other", "ended")


# --- queries -------------------------------------------------------------------------------------


async def seed_log(service: CallLogService) -> None:
    await seed_registry(service.db)
    events: list[ev.CallEvent] = []
    events += CallScript("s-1", caller=CUSTOMER, extension="101").answered_call()
    events += CallScript(
        "s-2", start=T0 + timedelta(minutes=1), caller="+442071234567", extension="102"
    ).missed_call()
    events += outbound("s-3", "+380441234567", caller="201", start_min=2).answered_call()
    live = CallScript("s-4", start=T0 + timedelta(minutes=3), caller=CUSTOMER, extension="101")
    events += [live.offered(), live.ringing(0.1)]
    await service.ingest(events)
    recording = ev.RecordingReady(event_id="r-1", call_id="s-3", recording_id="rec-1", location="s-3.wav")
    await service.ingest([recording])


async def test_filters_combine(service: CallLogService) -> None:
    await seed_log(service)

    assert await ids(service, employee_id="e-ann") == ["s-4", "s-1"]
    assert await ids(service, employee_id="e-ann", states=("ended",)) == ["s-1"]
    assert await ids(service, states=("ringing", "answered")) == ["s-4"]
    assert await ids(service, team_id="t-sales", missed=True) == ["s-2"]
    assert await ids(service, recorded=True) == ["s-3"]
    assert await ids(service, recorded=False, team_id="t-support") == []
    assert await ids(service, number="380 44") == ["s-3"]  # digits of the E.164, spaces ignored
    assert await ids(service, number="888123", employee_id="e-ann", states=("ended",)) == ["s-1"]
    assert await ids(service, contact_id="c-acme", sort="oldest") == ["s-1", "s-4"]
    assert await ids(service, started_from=T0 + timedelta(minutes=1), direction="outbound") == ["s-3"]


async def test_oldest_first_pages_and_their_cursors(service: CallLogService) -> None:
    await seed_log(service)
    first = await service.list_calls(CallQuery(limit=2, sort="oldest"))
    second = await service.list_calls(CallQuery(limit=2, sort="oldest", cursor=first.next_cursor))
    assert [e.call.call_id for e in first.items + second.items] == ["s-1", "s-2", "s-3", "s-4"]

    newest = await service.list_calls(CallQuery(limit=2))
    assert newest.next_cursor is not None
    with pytest.raises(Exception, match="signature"):  # a newest-first cursor is not an oldest-first one
        await service.list_calls(CallQuery(limit=2, sort="oldest", cursor=newest.next_cursor))


ANN = make_principal("u-ann", Role.AGENT, employee_id="e-ann", teams=("t-sales",))
BOB_TEAM = make_principal(
    "u-bob", Role.AGENT, employee_id="e-bob", teams=("t-sales",), visibility=Visibility.TEAM
)
CAT_SUPERVISOR = make_principal(
    "u-cat", Role.SUPERVISOR, employee_id="e-cat", teams=("t-support",), supervised=("t-sales",)
)
ADMIN_NO_EMPLOYEE = make_principal("u-root", Role.ADMIN, visibility=Visibility.ALL)


async def test_rest_shows_each_user_the_calls_their_role_lets_them_see(
    service: CallLogService,
    client: httpx.AsyncClient,
    token_for: Callable[[Principal], dict[str, str]],
) -> None:
    await seed_log(service)

    async def listed(user: Principal, **params: str) -> Sequence[str]:
        response = await client.get("/calls", params=params, headers=token_for(user))
        assert response.status_code == 200, response.text
        return [item["call_id"] for item in response.json()["items"]]

    # An agent who sees only their own: mine by default, and never more whatever they ask for.
    assert await listed(ANN) == ["s-4", "s-1"]
    assert await listed(ANN, scope="team") == ["s-4", "s-1"]
    assert await listed(ANN, scope="all") == ["s-4", "s-1"]
    assert await listed(ANN, employee_id="e-cat") == []  # another team's employee: nothing
    assert await listed(ANN, employee_id="e-bob") == []  # a team mate, but Ann sees only her own
    # An agent who sees their team: their own by default, the team's when asked.
    assert await listed(BOB_TEAM) == ["s-2"]
    assert await listed(BOB_TEAM, scope="team") == ["s-4", "s-2", "s-1"]
    assert await listed(BOB_TEAM, scope="all") == ["s-4", "s-2", "s-1"]
    assert await listed(BOB_TEAM, employee_id="e-ann") == ["s-4", "s-1"]
    # A supervisor: their own, and the teams they supervise.
    assert await listed(CAT_SUPERVISOR) == ["s-3"]
    assert await listed(CAT_SUPERVISOR, scope="all") == ["s-4", "s-3", "s-2", "s-1"]
    assert await listed(CAT_SUPERVISOR, team_id="t-sales") == ["s-4", "s-2", "s-1"]
    # An admin sees the whole log; one who is no employee has no "mine".
    assert await listed(ADMIN_NO_EMPLOYEE) == ["s-4", "s-3", "s-2", "s-1"]
    missing = await client.get("/calls", params={"scope": "mine"}, headers=token_for(ADMIN_NO_EMPLOYEE))
    assert missing.status_code == 422
    assert missing.json()["detail"][0]["loc"] == ["query", "scope"]

    # One call: 404 for those who may not see it, as if it did not exist.
    assert (await client.get("/calls/s-3", headers=token_for(ANN))).status_code == 404
    assert (await client.get("/calls/s-1", headers=token_for(ANN))).status_code == 200
    assert (await client.get("/calls/s-3", headers=token_for(CAT_SUPERVISOR))).status_code == 200
    # The CSV export follows the same rules.
    export = await client.get("/calls/export.csv", params={"scope": "all"}, headers=token_for(ANN))
    assert export.status_code == 200
    assert [line.split(",")[0] for line in export.text.splitlines()[1:]] == ["s-4", "s-1"]


async def test_rest_needs_a_valid_token(
    service: CallLogService, client: httpx.AsyncClient, auth_settings: AuthSettings
) -> None:
    await seed_log(service)
    for headers in (
        {"Authorization": ""},  # none
        {"Authorization": "Basic dXNlcjpwYXNz"},  # not a bearer token
        {"Authorization": "Bearer not-a-jwt"},
        {"Authorization": "Bearer " + TokenIssuer(auth_settings).issue(ANN, now=0)[0]},  # expired
        {
            "Authorization": "Bearer "
            + TokenIssuer(AuthSettings(secret="another-installation-secret-32-bytes!!")).issue(ANN)[0]
        },
    ):
        for path in ("/calls", "/calls/s-1", "/calls/export.csv"):
            response = await client.get(path, headers=headers)
            assert response.status_code == 401, (path, headers, response.text)
            assert response.headers["www-authenticate"] == "Bearer"
    assert (await client.get("/healthz", headers={"Authorization": ""})).status_code == 200


@pytest.mark.parametrize(
    ("params", "field"),
    [
        ({"number": "12"}, "number"),  # too few digits to search
        ({"state": "gone"}, "state"),
        ({"recorded": "maybe"}, "recorded"),
        ({"sort": "loudest"}, "sort"),
        ({"scope": "company"}, "scope"),
    ],
)
async def test_bad_filters_name_the_field(
    client: httpx.AsyncClient, params: dict[str, str], field: str
) -> None:
    response = await client.get("/calls", params=params)
    assert response.status_code == 422
    assert [error["loc"][1] for error in response.json()["detail"]] == [field]


async def test_an_employee_on_two_extensions_of_one_call_has_it_once(service: CallLogService) -> None:
    await seed_registry(service.db)
    async with service.db.session() as session:  # Ann's second phone
        session.add(Number(id="n-105", kind="internal", number="105", digits="105", employee_id="e-ann"))
    call = CallScript("two-phones", caller=CUSTOMER, extension="101")
    await service.ingest(
        [
            call.offered(),
            call.ringing(0.1, "101"),
            call.ringing(0.1, "105"),
            call.ended(20, ev.DISPOSITION_MISSED),
        ]
    )

    page = await service.list_calls(CallQuery(employee_id="e-ann", include_total=True))
    assert ([e.call.call_id for e in page.items], page.total) == (["two-phones"], 1)
    assert await parties(service, "two-phones") == {
        "101": ("e-ann", "t-sales", "rang"),
        "105": (None, "t-sales", "rang"),  # her second leg: the employee is named once a call
    }
