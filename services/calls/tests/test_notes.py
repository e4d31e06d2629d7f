"""Notes on a call (reason, result, comment, links): the service rules, REST and gRPC."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from telecrm.calls.v1 import calls_pb2, calls_pb2_grpc
from telecrm_calls import grpc as calls_grpc
from telecrm_calls.access import CallsAccess
from telecrm_calls.api import calls_router
from telecrm_calls.models import Call
from telecrm_calls.notes import MAX_LENGTHS, CallNotesService, InvalidNotes, NotesConflict
from telecrm_calls.notes_api import expected_version, notes_router
from telecrm_calls.service import CallLogService, CallNotFound
from telecrm_calls.settings import CallsSettings
from telecrm_common.app import http_app
from telecrm_common.auth import Principal, Role, Visibility
from telecrm_common.db import Database
from telecrm_common.grpc import GrpcServer, channel
from telecrm_devstack.testing import make_principal

T0 = datetime(2025, 3, 14, 9, 26, 53, 589000, tzinfo=UTC)
REASONS = ("Order", "Complaint", "Question")
USER_1 = make_principal("u-1", Role.ADMIN, employee_id="user-1", visibility=Visibility.ALL)
RESULTS = ("Sold", "Call back", "Closed")


def call_row(call_id: str, *, state: str = "ended", **overrides: Any) -> Call:
    """A call record as ingestion writes it (answered; ended unless ``state`` says otherwise)."""
    ended = state == "ended"
    values: dict[str, Any] = {
        "call_id": call_id,
        "direction": "inbound",
        "caller_number": "+74993690439",
        "caller_e164": "+74993690439",
        "callee_number": "+74951112233",
        "callee_e164": "+74951112233",
        "extension": "101",
        "employee_id": "emp-1",
        "started_at": T0,
        "answered_at": T0 + timedelta(seconds=5),
        "ended_at": T0 + timedelta(seconds=65) if ended else None,
        "disposition": "answered" if ended else None,
        "state": state,
        "incomplete": False,
        "context": {"contact_id": "c-ctx"},
        "contact_id": "c-ctx",
        "last_sequence": 4,
        **overrides,
    }
    return Call(**values)


@pytest.fixture
async def calls(db: Database) -> Database:
    """Three calls: c-1 and c-2 ended, c-live still talking."""
    async with db.session() as session:
        session.add_all([call_row("c-1"), call_row("c-2"), call_row("c-live", state="answered")])
    return db


@pytest.fixture
def notes(calls: Database) -> CallNotesService:
    return CallNotesService(calls, reasons=REASONS)


@pytest.fixture
async def api(
    notes: CallNotesService, service: CallLogService, access: CallsAccess, admin_headers: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    app = http_app("calls", "", [calls_router(service, access), notes_router(notes, access)], {})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://calls", headers=admin_headers
    ) as client:
        yield client


@pytest.fixture
async def stub(service: CallLogService, notes: CallNotesService) -> AsyncIterator[calls_pb2_grpc.CallLogStub]:
    server = GrpcServer(CallsSettings(grpc_port=0), service_names=[calls_grpc.SERVICE_NAME], checks={})
    calls_grpc.add_to_server(server.server, service, notes=notes)
    await server.start()
    async with channel(f"127.0.0.1:{server.port}") as chan:
        yield calls_pb2_grpc.CallLogStub(chan)
    await server.stop(0)


def fields(call: Call) -> dict[str, Any]:
    names = ("reason", "result", "comment", "contact_id", "task_id", "ticket_id", "links_edited")
    return {name: getattr(call, name) for name in names}


# --- the service -----------------------------------------------------------------------------------------


async def test_only_the_masked_fields_change(notes: CallNotesService) -> None:
    entry = await notes.update_notes(
        "c-1", {"reason": " Order ", "comment": "wants a quote\r\nby Friday"}, updated_by="user-1"
    )
    call = entry.call
    assert fields(call) == {
        "reason": "Order",
        "result": None,
        "comment": "wants a quote\nby Friday",
        "contact_id": "c-ctx",
        "task_id": None,
        "ticket_id": None,
        "links_edited": False,
    }
    assert (call.notes_version, call.notes_updated_by) == (1, "user-1")
    assert call.notes_updated_at is not None
    assert call.notes_updated_at.tzinfo is not None

    call = (await notes.update_notes("c-1", {"result": "Sold"}, updated_by="user-2")).call
    assert (call.reason, call.result, call.comment) == ("Order", "Sold", "wants a quote\nby Friday")
    assert (call.notes_version, call.notes_updated_by) == (2, "user-2")

    # None and "" (and blanks) clear.
    call = (await notes.update_notes("c-1", {"reason": None, "comment": "  "})).call
    assert (call.reason, call.result, call.comment, call.notes_version) == (None, "Sold", None, 3)
    assert call.notes_updated_by is None

    # Nothing to change: nothing changes, the version neither.
    before = call.notes_updated_at
    call = (await notes.update_notes("c-1", {"result": "Sold"}, updated_by="user-3")).call
    call = (await notes.update_notes("c-1", {}, updated_by="user-3")).call
    assert (call.notes_version, call.notes_updated_by, call.notes_updated_at) == (3, None, before)
    assert (await notes.get_notes("c-1")).call.notes_version == 3


async def test_links_edited_only_when_a_link_changes(notes: CallNotesService) -> None:
    call = (await notes.update_notes("c-1", {"contact_id": "c-ctx", "reason": "Order"})).call
    assert call.links_edited is False  # the same contact re-sent: still the registry's
    call = (await notes.update_notes("c-1", {"task_id": "t-1"})).call
    assert (call.contact_id, call.task_id, call.links_edited) == ("c-ctx", "t-1", True)
    call = (await notes.update_notes("c-2", {"contact_id": None})).call
    assert (call.contact_id, call.links_edited) == (None, True)


async def test_two_agents_editing(notes: CallNotesService) -> None:
    seen_by_a = (await notes.get_notes("c-1")).call.notes_version
    seen_by_b = (await notes.get_notes("c-1")).call.notes_version
    await notes.update_notes("c-1", {"comment": "A's comment"}, expected_version=seen_by_a)
    with pytest.raises(NotesConflict) as conflict:
        await notes.update_notes("c-1", {"comment": "B's comment"}, expected_version=seen_by_b)
    assert (conflict.value.expected_version, conflict.value.current_version) == (0, 1)
    assert (await notes.get_notes("c-1")).call.comment == "A's comment"
    # B reads again and reapplies.
    call = (await notes.update_notes("c-1", {"comment": "B's comment"}, expected_version=1)).call
    assert (call.comment, call.notes_version) == ("B's comment", 2)


async def test_concurrent_updates_on_one_version_one_wins(notes: CallNotesService) -> None:
    results = await asyncio.gather(
        *(notes.update_notes("c-1", {"comment": f"agent {n}"}, expected_version=0) for n in range(4)),
        return_exceptions=True,
    )
    won = [r for r in results if not isinstance(r, BaseException)]
    lost = [r for r in results if isinstance(r, BaseException)]
    assert len(won) == 1, results
    assert len(lost) == 3, results
    assert all(isinstance(r, NotesConflict) and r.current_version == 1 for r in lost)
    assert (await notes.get_notes("c-1")).call.comment == won[0].call.comment


async def test_concurrent_updates_without_a_version_all_count(notes: CallNotesService) -> None:
    await asyncio.gather(*(notes.update_notes("c-2", {"comment": f"agent {n}"}) for n in range(4)))
    assert (await notes.get_notes("c-2")).call.notes_version == 4


async def test_option_lists(calls: Database) -> None:
    notes = CallNotesService(calls, reasons=REASONS, results=RESULTS)
    with pytest.raises(InvalidNotes) as invalid:
        await notes.update_notes("c-1", {"reason": "Spam"})
    assert invalid.value.field == "reason"
    with pytest.raises(InvalidNotes) as invalid:
        await notes.update_notes("c-1", {"reason": "Order", "result": "sold"})  # exact values only
    assert invalid.value.field == "result"
    call = (await notes.update_notes("c-1", {"reason": "Order", "result": "Sold"})).call
    assert (call.reason, call.result, call.notes_version) == ("Order", "Sold", 1)

    # The lists change: a stored value they no longer hold stays as long as nobody changes it.
    narrowed = CallNotesService(calls, reasons=("Question",), results=RESULTS)
    call = (await narrowed.update_notes("c-1", {"reason": "Order", "comment": "kept"})).call
    assert (call.reason, call.comment) == ("Order", "kept")
    with pytest.raises(InvalidNotes):
        await narrowed.update_notes("c-2", {"reason": "Order"})

    # Without lists: free text.
    call = (await CallNotesService(calls).update_notes("c-2", {"reason": "Anything", "result": "Else"})).call
    assert (call.reason, call.result) == ("Anything", "Else")


@pytest.mark.parametrize(
    ("changes", "field"),
    [
        ({"reason": "x" * 201}, "reason"),
        ({"comment": "x" * 4001}, "comment"),
        ({"contact_id": "c" * 101}, "contact_id"),
        ({"comment": "bell\x07"}, "comment"),
        ({"comment": "nul\x00"}, "comment"),
        ({"result": "two\nlines"}, "result"),
        ({"task_id": "t\t1"}, "task_id"),
        ({"ticket_id": "\x85"}, "ticket_id"),
        ({"notes_version": "7"}, "notes_version"),
    ],
)
async def test_invalid_values_are_refused(calls: Database, changes: dict[str, str], field: str) -> None:
    notes = CallNotesService(calls)
    with pytest.raises(InvalidNotes) as invalid:
        await notes.update_notes("c-1", changes)
    assert invalid.value.field == field
    assert (await notes.get_notes("c-1")).call.notes_version == 0


async def test_what_is_kept_as_typed(calls: Database) -> None:
    notes = CallNotesService(calls)
    longest = "é" * MAX_LENGTHS["comment"]
    assert (await notes.update_notes("c-1", {"comment": longest})).call.comment == longest
    text = "<script>alert('x')</script>\n\t-- '; DROP TABLE calls; --"
    assert (await notes.update_notes("c-1", {"comment": text})).call.comment == text
    with pytest.raises(InvalidNotes) as invalid:
        await notes.update_notes("c-1", {"comment": "ok"}, updated_by="u" * 101)
    assert invalid.value.field == "updated_by"


async def test_unknown_call(notes: CallNotesService) -> None:
    with pytest.raises(CallNotFound):
        await notes.update_notes("nope", {"comment": "x"})
    with pytest.raises(CallNotFound):
        await notes.get_notes("nope")


async def test_a_live_call_takes_notes(notes: CallNotesService) -> None:
    call = (await notes.update_notes("c-live", {"reason": "Order"}, updated_by="user-1")).call
    assert (call.state, call.reason, call.notes_version, call.published_revision) == (
        "answered",
        "Order",
        1,
        0,
    )


def test_settings_read_the_lists_from_json(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("CALLS_CALL_REASONS", '["Order", "Complaint"]')
    settings = CallsSettings()
    assert (settings.call_reasons, settings.call_results) == (["Order", "Complaint"], [])


# --- REST ------------------------------------------------------------------------------------------------


async def test_rest_round_trip(
    api: httpx.AsyncClient, token_for: Callable[[Principal], dict[str, str]]
) -> None:
    response = await api.get("/calls/c-1/notes")
    assert response.status_code == 200
    assert response.headers["etag"] == '"0"'
    assert response.json() == {
        "call_id": "c-1",
        "reason": None,
        "result": None,
        "comment": None,
        "contact_id": "c-ctx",
        "task_id": None,
        "ticket_id": None,
        "links_edited": False,
        "version": 0,
        "updated_at": None,
        "updated_by": None,
    }

    response = await api.patch(
        "/calls/c-1/notes",
        json={"reason": "Order", "comment": "wants a quote", "task_id": "t-1"},
        headers={"If-Match": '"0"', **token_for(USER_1)},
    )
    assert response.status_code == 200, response.text
    assert response.headers["etag"] == '"1"'
    body = response.json()
    assert (body["reason"], body["comment"], body["task_id"], body["contact_id"]) == (
        "Order",
        "wants a quote",
        "t-1",
        "c-ctx",
    )
    assert (body["version"], body["updated_by"], body["links_edited"]) == (1, "user-1", True)
    assert body["updated_at"] is not None

    # null and "" clear; absent fields stay.
    response = await api.patch("/calls/c-1/notes", json={"comment": None, "task_id": ""})
    body = response.json()
    assert (body["reason"], body["comment"], body["task_id"], body["version"]) == ("Order", None, None, 2)
    assert body["updated_by"] == "u-admin"  # the default client's user (no employee: its user id)

    # The call record shows its notes.
    record = (await api.get("/calls/c-1")).json()
    assert record["notes"]["reason"] == "Order"
    assert record["notes"]["version"] == 2
    assert (record["team_id"], record["missed"], record["legs"], record["transfers"]) == (None, False, [], [])


async def test_rest_conflict(api: httpx.AsyncClient) -> None:
    agent_a = (await api.get("/calls/c-1/notes")).headers["etag"]
    agent_b = (await api.get("/calls/c-1/notes")).headers["etag"]
    ok = await api.patch("/calls/c-1/notes", json={"comment": "A"}, headers={"If-Match": agent_a})
    assert ok.status_code == 200
    refused = await api.patch("/calls/c-1/notes", json={"comment": "B"}, headers={"If-Match": agent_b})
    assert refused.status_code == 412
    assert refused.headers["etag"] == '"1"'
    assert refused.json()["version"] == 1
    assert "version 1" in refused.json()["detail"]
    assert (await api.get("/calls/c-1/notes")).json()["comment"] == "A"
    # A tag that names no version of ours never matches; `*` matches any.
    weak = await api.patch("/calls/c-1/notes", json={"comment": "B"}, headers={"If-Match": 'W/"1"'})
    assert weak.status_code == 412
    anything = await api.patch("/calls/c-1/notes", json={"comment": "B"}, headers={"If-Match": "*"})
    assert (anything.status_code, anything.json()["comment"]) == (200, "B")


def test_if_match_parsing() -> None:
    assert [expected_version(v) for v in (None, "*", '"3"', "3", ' "12" ', 'W/"3"', '"x"', '"1", "2"')] == [
        None,
        None,
        3,
        3,
        12,
        -1,
        -1,
        -1,
    ]


async def test_rest_options_and_validation(api: httpx.AsyncClient) -> None:
    options = (await api.get("/calls/notes/options")).json()
    assert options["reasons"] == list(REASONS)
    assert options["results"] == []
    assert options["max_lengths"]["comment"] == 4000

    response = await api.patch("/calls/c-1/notes", json={"reason": "Spam"})
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "reason"]
    assert "configured" in error["msg"]

    response = await api.patch("/calls/c-1/notes", json={"comment": "x" * 4001})
    assert (response.status_code, response.json()["detail"][0]["loc"]) == (422, ["body", "comment"])
    response = await api.patch("/calls/c-1/notes", json={"result": "a\u0000b"})
    assert (response.status_code, response.json()["detail"][0]["loc"]) == (422, ["body", "result"])
    response = await api.patch("/calls/c-1/notes", json={"version": 3})
    assert response.status_code == 422
    assert response.json()["detail"][0]["loc"] == ["body", "version"]
    response = await api.patch("/calls/c-1/notes", json={"comment": 5})
    assert response.status_code == 422
    response = await api.patch("/calls/c-1/notes", json={"comment": "x"}, headers={"Authorization": ""})
    assert response.status_code == 401
    assert (await api.get("/calls/c-1/notes")).json()["version"] == 0

    # Script in text is data: stored and returned as sent (the web app escapes it).
    script = {"comment": "<img src=x onerror=alert(1)>"}
    assert (await api.patch("/calls/c-1/notes", json=script)).json()["comment"] == script["comment"]


async def test_rest_unknown_call(api: httpx.AsyncClient) -> None:
    assert (await api.get("/calls/nope/notes")).status_code == 404
    response = await api.patch("/calls/nope/notes", json={"comment": "x"}, headers={"If-Match": '"0"'})
    assert response.status_code == 404
    assert response.json() == {"detail": "call 'nope' not found"}


async def test_openapi_documents_the_notes(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    patch = spec["paths"]["/calls/{call_id}/notes"]["patch"]
    assert {p["name"] for p in patch["parameters"]} == {"call_id", "if-match"}
    assert {"404", "412", "422"} <= set(patch["responses"])
    assert "/calls/notes/options" in spec["paths"]


# --- gRPC ------------------------------------------------------------------------------------------------


async def test_grpc_round_trip(stub: calls_pb2_grpc.CallLogStub) -> None:
    call = await stub.UpdateCallNotes(
        calls_pb2.UpdateCallNotesRequest(
            call_id="c-1",
            notes=calls_pb2.CallNotes(reason="Order", comment="via gRPC", ticket_id="tk-1"),
            update_mask=FieldMask(paths=["reason", "comment"]),
            updated_by="emp-1",
        )
    )
    assert (call.notes.reason, call.notes.comment, call.notes.ticket_id, call.notes.contact_id) == (
        "Order",
        "via gRPC",
        "",  # not in the mask
        "c-ctx",
    )
    assert (call.notes_version, call.notes_updated_by, call.state) == (1, "emp-1", "ended")
    assert call.HasField("notes_updated_at")
    assert (await stub.GetCall(calls_pb2.GetCallRequest(call_id="c-1"))).notes == call.notes

    # An empty mask sets all six: what the message leaves empty is cleared.
    call = await stub.UpdateCallNotes(
        calls_pb2.UpdateCallNotesRequest(
            call_id="c-1",
            notes=calls_pb2.CallNotes(result="Closed", contact_id="c-2"),
            expected_notes_version=1,
        )
    )
    assert call.notes == calls_pb2.CallNotes(result="Closed", contact_id="c-2")
    assert call.notes_version == 2
    # "notes." prefixed paths are understood too.
    call = await stub.UpdateCallNotes(
        calls_pb2.UpdateCallNotesRequest(
            call_id="c-1",
            notes=calls_pb2.CallNotes(comment="again"),
            update_mask=FieldMask(paths=["notes.comment"]),
        )
    )
    assert (call.notes.comment, call.notes.result) == ("again", "Closed")


@pytest.mark.parametrize(
    ("request_", "code", "detail"),
    [
        (calls_pb2.UpdateCallNotesRequest(call_id=""), grpc.StatusCode.INVALID_ARGUMENT, "call_id"),
        (
            calls_pb2.UpdateCallNotesRequest(
                call_id="c-1",
                notes=calls_pb2.CallNotes(reason="Spam"),
                update_mask=FieldMask(paths=["reason"]),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "notes.reason",
        ),
        (
            calls_pb2.UpdateCallNotesRequest(call_id="c-1", update_mask=FieldMask(paths=["notes_version"])),
            grpc.StatusCode.INVALID_ARGUMENT,
            "update_mask",
        ),
        (
            calls_pb2.UpdateCallNotesRequest(
                call_id="c-1",
                notes=calls_pb2.CallNotes(comment="x" * 4001),
                update_mask=FieldMask(paths=["comment"]),
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "notes.comment",
        ),
        (
            calls_pb2.UpdateCallNotesRequest(call_id="c-1", updated_by="bad\x1b[31m"),
            grpc.StatusCode.INVALID_ARGUMENT,
            "updated_by",
        ),
        (calls_pb2.UpdateCallNotesRequest(call_id="nope"), grpc.StatusCode.NOT_FOUND, "nope"),
        (
            calls_pb2.UpdateCallNotesRequest(call_id="c-1", expected_notes_version=5),
            grpc.StatusCode.FAILED_PRECONDITION,
            "version 0",
        ),
    ],
)
async def test_grpc_errors(
    stub: calls_pb2_grpc.CallLogStub,
    request_: calls_pb2.UpdateCallNotesRequest,
    code: grpc.StatusCode,
    detail: str,
) -> None:
    with pytest.raises(grpc.aio.AioRpcError) as error:
        await stub.UpdateCallNotes(request_)
    assert error.value.code() == code
    assert detail in (error.value.details() or "")


async def test_grpc_without_notes_service(service: CallLogService) -> None:
    server = GrpcServer(CallsSettings(grpc_port=0), service_names=[calls_grpc.SERVICE_NAME], checks={})
    calls_grpc.add_to_server(server.server, service)
    await server.start()
    try:
        async with channel(f"127.0.0.1:{server.port}") as chan:
            with pytest.raises(grpc.aio.AioRpcError) as error:
                await calls_pb2_grpc.CallLogStub(chan).UpdateCallNotes(
                    calls_pb2.UpdateCallNotesRequest(call_id="c-1")
                )
        assert error.value.code() == grpc.StatusCode.UNIMPLEMENTED
    finally:
        await server.stop(0)
