"""The numbers registry: extensions edited here, contacts' numbers from crm; service, REST and gRPC."""

from __future__ import annotations

from collections.abc import AsyncIterator

import grpc
import httpx
import pytest
from google.protobuf.field_mask_pb2 import FieldMask

from telecrm.calls.v1 import numbers_pb2, numbers_pb2_grpc
from telecrm.crm.v1 import directory_events_pb2 as directory_pb
from telecrm_calls import numbers_grpc
from telecrm_calls.access import CallsAccess
from telecrm_calls.api import calls_router
from telecrm_calls.directory import DirectoryReadModel
from telecrm_calls.numbers import (
    DuplicateNumber,
    ExtensionChanges,
    ExtensionInput,
    InvalidField,
    NumberNotFound,
    NumberQuery,
    NumberReadOnly,
    NumbersRegistry,
    VersionMismatch,
)
from telecrm_calls.numbers_api import numbers_router
from telecrm_calls.records import InvalidCursor, InvalidQuery
from telecrm_calls.service import CallLogService, CallQuery
from telecrm_calls.settings import CallsSettings
from telecrm_common.app import http_app
from telecrm_common.db import Database
from telecrm_common.grpc import GrpcServer, channel

SECRET = "test-cursor-secret"
NUMBER = "+74993690439"


@pytest.fixture
def registry(db: Database) -> NumbersRegistry:
    return NumbersRegistry(db, cursor_secret=SECRET)


@pytest.fixture
async def crm(db: Database) -> DirectoryReadModel:
    """What crm has told the call log: two employees (one deleted since) and a contact with a phone."""
    read_model = DirectoryReadModel(db)
    events: list[directory_pb.EmployeeEvent | directory_pb.ContactEvent] = []
    for employee_id, name, team in (
        ("e-1", "Anna", "sales"),
        ("e-2", "Boris", "support"),
        ("e-gone", "X", ""),
    ):
        event = directory_pb.EmployeeEvent(event_id=f"{employee_id}-1", version=1)
        event.created.CopyFrom(
            directory_pb.Employee(
                employee_id=employee_id, name=name, team_id=team, team_name=team.title(), active=True
            )
        )
        events.append(event)
    events.append(
        directory_pb.EmployeeEvent(
            event_id="e-gone-2", version=2, deleted=directory_pb.EmployeeDeleted(employee_id="e-gone")
        )
    )
    contact = directory_pb.ContactEvent(event_id="c-1-1", version=1)
    contact.created.CopyFrom(
        directory_pb.Contact(
            contact_id="c-1",
            kind="person",
            name="Olga",
            company_name="Horns & Hoofs",
            phones=[directory_pb.ContactPhone(number="+7 (499) 369-04-39", e164=NUMBER, kind="work")],
        )
    )
    events.append(contact)
    await read_model.apply(events)
    return read_model


async def contact_number_id(registry: NumbersRegistry) -> str:
    page = await registry.list_numbers(NumberQuery(kind="contact"))
    (row,) = page.items
    return row.number.id


# --- the service -----------------------------------------------------------------------------------


async def test_an_extension_shows_its_employee_and_team(
    registry: NumbersRegistry, crm: DirectoryReadModel
) -> None:
    created = await registry.create_extension(
        ExtensionInput(number=" 101 ", label=" Reception ", employee_id="e-1")
    )
    assert (created.number.number, created.number.label, created.number.kind) == (
        "101",
        "Reception",
        "internal",
    )
    assert (created.employee_name, created.team_id, created.team_name) == ("Anna", "sales", "Sales")
    assert (created.employee_active, created.number.version, created.number.e164) == (True, 1, None)

    nobody = await registry.create_extension(ExtensionInput(number="200"))
    assert (nobody.employee_name, nobody.employee_active, nobody.number.label) == (None, None, None)


@pytest.mark.parametrize(
    ("data", "field"),
    [
        (ExtensionInput(number=""), "number"),
        (ExtensionInput(number="10a"), "number"),
        (ExtensionInput(number="+101"), "number"),
        (ExtensionInput(number="1" * 16), "number"),
        (
            ExtensionInput(number="\u0661\u0660\u0661"),
            "number",
        ),  # Arabic-Indic digits are not what a PBX dials
        (ExtensionInput(number="101", employee_id="e-unknown"), "employee_id"),
        (ExtensionInput(number="101", employee_id="e-gone"), "employee_id"),
        (ExtensionInput(number="101", label="x" * 201), "label"),
    ],
)
async def test_invalid_extensions_name_the_field(
    registry: NumbersRegistry, crm: DirectoryReadModel, data: ExtensionInput, field: str
) -> None:
    with pytest.raises(InvalidField) as raised:
        await registry.create_extension(data)
    assert raised.value.field == field
    assert (await registry.list_numbers(NumberQuery(kind="internal"))).total == 0


async def test_an_extension_is_registered_once(registry: NumbersRegistry, crm: DirectoryReadModel) -> None:
    await registry.create_extension(ExtensionInput(number="101"))
    other = await registry.create_extension(ExtensionInput(number="102"))
    with pytest.raises(DuplicateNumber):
        await registry.create_extension(ExtensionInput(number="101", label="again"))
    with pytest.raises(DuplicateNumber):
        await registry.update_extension(
            other.number.id, ExtensionChanges(number="101", fields=frozenset({"number"}))
        )
    # A contact's number with the same digits is no conflict: extensions are ours alone.
    await registry.create_extension(ExtensionInput(number="74993690439"))


async def test_editing_an_extension(registry: NumbersRegistry, crm: DirectoryReadModel) -> None:
    row = await registry.create_extension(ExtensionInput(number="101", label="Reception", employee_id="e-1"))
    number_id = row.number.id

    edited = await registry.update_extension(
        number_id,
        ExtensionChanges(
            number="111", employee_id="e-2", fields=frozenset({"number", "employee_id"}), expected_version=1
        ),
    )
    assert (edited.number.number, edited.number.label, edited.employee_name) == ("111", "Reception", "Boris")
    assert edited.number.version == 2
    found = await registry.list_numbers(NumberQuery(number="11"))
    assert [r.number.id for r in found.items] == [number_id]

    # Nothing changed: no new version.
    same = await registry.update_extension(
        number_id, ExtensionChanges(number="111", fields=frozenset({"number"}))
    )
    assert same.number.version == 2

    with pytest.raises(VersionMismatch):
        await registry.update_extension(
            number_id, ExtensionChanges(label="x", fields=frozenset({"label"}), expected_version=1)
        )
    cleared = await registry.update_extension(
        number_id, ExtensionChanges(fields=frozenset({"label", "employee_id"}))
    )
    assert (cleared.number.label, cleared.number.employee_id, cleared.employee_name) == (None, None, None)

    with pytest.raises(InvalidField) as raised:
        await registry.update_extension(number_id, ExtensionChanges(fields=frozenset({"number"})))
    assert raised.value.field == "number"
    with pytest.raises(InvalidField) as raised:
        await registry.update_extension(
            number_id, ExtensionChanges(employee_id="e-gone", fields=frozenset({"employee_id"}))
        )
    assert raised.value.field == "employee_id"

    with pytest.raises(VersionMismatch):
        await registry.delete_extension(number_id, expected_version=1)
    await registry.delete_extension(number_id, expected_version=3)
    with pytest.raises(NumberNotFound):
        await registry.get_number(number_id)
    with pytest.raises(NumberNotFound):
        await registry.delete_extension(number_id)


async def test_contact_numbers_are_edited_in_crm(registry: NumbersRegistry, crm: DirectoryReadModel) -> None:
    number_id = await contact_number_id(registry)
    row = await registry.get_number(number_id)
    assert (row.number.e164, row.contact_name, row.company_name, row.number.phone_kind) == (
        NUMBER,
        "Olga",
        "Horns & Hoofs",
        "work",
    )
    with pytest.raises(NumberReadOnly):
        await registry.update_extension(
            number_id, ExtensionChanges(label="mine", fields=frozenset({"label"}))
        )
    with pytest.raises(NumberReadOnly):
        await registry.delete_extension(number_id)
    assert (await registry.get_number(number_id)).number.label is None


async def test_the_list_filters_and_pages_in_number_order(
    registry: NumbersRegistry, crm: DirectoryReadModel
) -> None:
    for n in range(7):
        await registry.create_extension(
            ExtensionInput(number=f"10{n}", employee_id="e-1" if n % 2 else "e-2")
        )

    seen: list[str] = []
    cursor = None
    while True:
        page = await registry.list_numbers(NumberQuery(limit=3, cursor=cursor))
        assert page.total == 8
        seen += [f"{row.number.kind}:{row.number.number}" for row in page.items]
        cursor = page.next_cursor
        if cursor is None:
            break
    assert seen == ["contact:+7 (499) 369-04-39", *(f"internal:10{n}" for n in range(7))]

    anna = await registry.list_numbers(NumberQuery(employee_id="e-1"))
    assert ([row.number.number for row in anna.items], anna.total) == (["101", "103", "105"], 3)
    olga = await registry.list_numbers(NumberQuery(contact_id="c-1"))
    assert [row.number.e164 for row in olga.items] == [NUMBER]
    internal = await registry.list_numbers(NumberQuery(kind="internal", number="10", limit=2))
    assert (len(internal.items), internal.total) == (2, 7)
    # The number search matches a contact's E.164 form and its number as entered.
    assert (await registry.list_numbers(NumberQuery(number="7499369"))).total == 1


async def test_bad_filters_and_foreign_cursors_are_refused(
    registry: NumbersRegistry, service: CallLogService, crm: DirectoryReadModel
) -> None:
    for query, field in (
        (NumberQuery(kind="external"), "kind"),
        (NumberQuery(number="abc"), "number"),
        (NumberQuery(limit=0), "limit"),
    ):
        with pytest.raises(InvalidQuery) as raised:
            await registry.list_numbers(query)
        assert raised.value.field == field
    await registry.create_extension(ExtensionInput(number="101"))
    page = await registry.list_numbers(NumberQuery(limit=1))
    assert page.next_cursor is not None
    with pytest.raises(InvalidCursor):
        await registry.list_numbers(NumberQuery(cursor=page.next_cursor[:-2] + "AA"))
    with pytest.raises(InvalidCursor):
        await service.list_calls(CallQuery(cursor=page.next_cursor))  # a cursor of another list


# --- REST --------------------------------------------------------------------------------------------


@pytest.fixture
async def api(
    registry: NumbersRegistry, service: CallLogService, access: CallsAccess, admin_headers: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    async def ok() -> None:
        return None

    app = http_app(
        "calls", "", [calls_router(service, access), numbers_router(registry, access)], {"database": ok}
    )
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://calls", headers=admin_headers
    ) as client:
        yield client


def problem_fields(response: httpx.Response) -> list[list[str]]:
    assert response.status_code == 422, response.text
    return [error["loc"] for error in response.json()["detail"]]


async def test_rest_create_read_edit_delete(api: httpx.AsyncClient, crm: DirectoryReadModel) -> None:
    created = await api.post("/numbers", json={"number": "101", "label": "Reception", "employee_id": "e-1"})
    assert created.status_code == 201, created.text
    body = created.json()
    assert created.headers["location"] == f"/numbers/{body['id']}"
    assert {k: body[k] for k in ("kind", "number", "label", "employee_name", "team_name", "version")} == {
        "kind": "internal",
        "number": "101",
        "label": "Reception",
        "employee_name": "Anna",
        "team_name": "Sales",
        "version": 1,
    }
    assert (await api.get(created.headers["location"])).json() == body

    patched = await api.patch(f"/numbers/{body['id']}", json={"employee_id": "e-2", "version": 1})
    assert patched.status_code == 200, patched.text
    assert (patched.json()["employee_name"], patched.json()["label"], patched.json()["version"]) == (
        "Boris",
        "Reception",
        2,
    )
    stale = await api.patch(f"/numbers/{body['id']}", json={"label": None, "version": 1})
    assert stale.status_code == 409
    assert "version" in stale.json()["detail"]
    cleared = await api.patch(f"/numbers/{body['id']}", json={"label": None})
    assert cleared.json()["label"] is None

    assert (await api.delete(f"/numbers/{body['id']}", params={"version": 1})).status_code == 409
    assert (await api.delete(f"/numbers/{body['id']}")).status_code == 204
    assert (await api.get(f"/numbers/{body['id']}")).status_code == 404
    assert (await api.patch(f"/numbers/{body['id']}", json={"label": "x"})).status_code == 404
    assert (await api.delete(f"/numbers/{body['id']}")).status_code == 404


async def test_rest_errors_name_the_field(api: httpx.AsyncClient, crm: DirectoryReadModel) -> None:
    assert problem_fields(await api.post("/numbers", json={"number": "10-1"})) == [["body", "number"]]
    assert problem_fields(await api.post("/numbers", json={"number": "101", "employee_id": "e-gone"})) == [
        ["body", "employee_id"]
    ]
    assert problem_fields(await api.post("/numbers", json={"number": "101", "kind": "contact"})) == [
        ["body", "kind"]
    ]
    assert (await api.post("/numbers", json={"number": "101"})).status_code == 201
    duplicate = await api.post("/numbers", json={"number": "101"})
    assert duplicate.status_code == 409
    assert "registered already" in duplicate.json()["detail"]

    listed = (await api.get("/numbers", params={"kind": "internal"})).json()
    (extension,) = listed["items"]
    assert problem_fields(await api.patch(f"/numbers/{extension['id']}", json={"number": None})) == [
        ["body", "number"]
    ]
    assert problem_fields(await api.get("/numbers", params={"kind": "pbx"})) == [["query", "kind"]]
    assert problem_fields(await api.get("/numbers", params={"number": "abc"})) == [["query", "number"]]
    tampered = await api.get("/numbers", params={"cursor": "bm90.aGVyZQ"})
    assert tampered.status_code == 400
    assert tampered.json()["detail"].startswith("cursor:")


async def test_rest_lists_both_kinds_and_refuses_to_edit_contacts(
    api: httpx.AsyncClient, crm: DirectoryReadModel
) -> None:
    for number in ("102", "101"):
        assert (await api.post("/numbers", json={"number": number, "employee_id": "e-1"})).status_code == 201
    first = (await api.get("/numbers", params={"limit": 2})).json()
    assert first["total"] == 3
    assert [(n["kind"], n["number"]) for n in first["items"]] == [
        ("contact", "+7 (499) 369-04-39"),
        ("internal", "101"),
    ]
    assert (first["items"][0]["contact_name"], first["items"][0]["e164"]) == ("Olga", NUMBER)
    second = (await api.get("/numbers", params={"limit": 2, "cursor": first["next_cursor"]})).json()
    assert ([n["number"] for n in second["items"]], second["next_cursor"]) == (["102"], None)

    by_number = (await api.get("/numbers", params={"number": "(499) 369"})).json()
    assert [n["kind"] for n in by_number["items"]] == ["contact"]
    contact_id = by_number["items"][0]["id"]
    refused = await api.patch(f"/numbers/{contact_id}", json={"label": "mine"})
    assert refused.status_code == 409
    assert "edited in crm" in refused.json()["detail"]
    assert (await api.delete(f"/numbers/{contact_id}")).status_code == 409


# --- gRPC --------------------------------------------------------------------------------------------


@pytest.fixture
async def stub(registry: NumbersRegistry) -> AsyncIterator[numbers_pb2_grpc.NumbersRegistryStub]:
    async def ok() -> None:
        return None

    server = GrpcServer(
        CallsSettings(grpc_port=0), service_names=[numbers_grpc.SERVICE_NAME], checks={"database": ok}
    )
    numbers_grpc.add_to_server(server.server, registry)
    await server.start()
    async with channel(f"127.0.0.1:{server.port}") as chan:
        yield numbers_pb2_grpc.NumbersRegistryStub(chan)
    await server.stop(0)


async def test_grpc_registry(stub: numbers_pb2_grpc.NumbersRegistryStub, crm: DirectoryReadModel) -> None:
    created = await stub.CreateExtension(
        numbers_pb2.CreateExtensionRequest(
            extension=numbers_pb2.Extension(number="101", label="Reception", employee_id="e-1")
        )
    )
    assert (created.kind, created.employee_name, created.team_id, created.employee_active) == (
        numbers_pb2.NUMBER_KIND_INTERNAL,
        "Anna",
        "sales",
        True,
    )
    assert (await stub.GetNumber(numbers_pb2.GetNumberRequest(id=created.id))) == created

    # Only the masked field changes, although the others were sent empty.
    updated = await stub.UpdateExtension(
        numbers_pb2.UpdateExtensionRequest(
            id=created.id,
            extension=numbers_pb2.Extension(label="Front desk"),
            update_mask=FieldMask(paths=["label"]),
            expected_version=1,
        )
    )
    assert (updated.number, updated.label, updated.employee_id, updated.version) == (
        "101",
        "Front desk",
        "e-1",
        2,
    )

    listed = await stub.ListNumbers(numbers_pb2.ListNumbersRequest(page_size=1))
    assert ([n.kind for n in listed.numbers], listed.total_size) == ([numbers_pb2.NUMBER_KIND_CONTACT], 2)
    assert (listed.numbers[0].contact_name, listed.numbers[0].e164) == ("Olga", NUMBER)
    rest = await stub.ListNumbers(
        numbers_pb2.ListNumbersRequest(page_size=1, page_token=listed.next_page_token)
    )
    assert ([n.id for n in rest.numbers], rest.next_page_token) == ([created.id], "")
    internal = await stub.ListNumbers(
        numbers_pb2.ListNumbersRequest(kind=numbers_pb2.NUMBER_KIND_INTERNAL, employee_id="e-1")
    )
    assert [n.id for n in internal.numbers] == [created.id]

    contact = listed.numbers[0]
    failures = [
        (
            stub.CreateExtension(
                numbers_pb2.CreateExtensionRequest(extension=numbers_pb2.Extension(number="101"))
            ),
            grpc.StatusCode.ALREADY_EXISTS,
            "registered already",
        ),
        (
            stub.CreateExtension(
                numbers_pb2.CreateExtensionRequest(
                    extension=numbers_pb2.Extension(number="102", employee_id="nobody")
                )
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "employee_id",
        ),
        (
            stub.UpdateExtension(
                numbers_pb2.UpdateExtensionRequest(
                    id=created.id, update_mask=FieldMask(paths=["label"]), expected_version=1
                )
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "version",
        ),
        (
            stub.UpdateExtension(
                numbers_pb2.UpdateExtensionRequest(id=created.id, update_mask=FieldMask(paths=["kind"]))
            ),
            grpc.StatusCode.INVALID_ARGUMENT,
            "update_mask",
        ),
        (
            stub.UpdateExtension(
                numbers_pb2.UpdateExtensionRequest(id=contact.id, update_mask=FieldMask(paths=["label"]))
            ),
            grpc.StatusCode.FAILED_PRECONDITION,
            "edited in crm",
        ),
        (
            stub.DeleteExtension(numbers_pb2.DeleteExtensionRequest(id=contact.id)),
            grpc.StatusCode.FAILED_PRECONDITION,
            "edited in crm",
        ),
        (
            stub.ListNumbers(numbers_pb2.ListNumbersRequest(page_token="garbage")),
            grpc.StatusCode.INVALID_ARGUMENT,
            "page_token",
        ),
        (stub.GetNumber(numbers_pb2.GetNumberRequest(id="missing")), grpc.StatusCode.NOT_FOUND, "missing"),
    ]
    for call, code, text in failures:
        with pytest.raises(grpc.aio.AioRpcError) as raised:
            await call
        assert raised.value.code() == code
        assert text in (raised.value.details() or "")

    # Without a mask, every field is replaced: an empty employee clears it.
    replaced = await stub.UpdateExtension(
        numbers_pb2.UpdateExtensionRequest(id=created.id, extension=numbers_pb2.Extension(number="103"))
    )
    assert (replaced.number, replaced.label, replaced.employee_id, replaced.employee_name) == (
        "103",
        "",
        "",
        "",
    )
    await stub.DeleteExtension(
        numbers_pb2.DeleteExtensionRequest(id=created.id, expected_version=replaced.version)
    )
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetNumber(numbers_pb2.GetNumberRequest(id=created.id))
    assert raised.value.code() == grpc.StatusCode.NOT_FOUND
