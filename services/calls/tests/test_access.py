"""Who sees and changes what over REST: crm's tokens, and the visibility of calls, missed calls,
notes, recordings, the numbers registry and reports (telecrm_calls.access)."""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from datetime import timedelta
from pathlib import Path

import httpx
import pytest

from telecrm_calls.access import CallsAccess
from telecrm_calls.api import calls_router
from telecrm_calls.missed import MissedCallLog
from telecrm_calls.missed_api import missed_calls_router
from telecrm_calls.notes import CallNotesService
from telecrm_calls.notes_api import notes_router
from telecrm_calls.numbers import NumbersRegistry
from telecrm_calls.numbers_api import numbers_router
from telecrm_calls.recordings import RecordingFiles, RecordingService
from telecrm_calls.recordings_api import recordings_router
from telecrm_calls.reports import CallReportService
from telecrm_calls.reports_api import reports_router
from telecrm_calls.service import CallLogService
from telecrm_common.app import http_app
from telecrm_common.auth import Principal, Role, Visibility
from telecrm_devstack.testing import make_principal

from .conftest import SECRET
from .test_rules import ANN, BOB_TEAM, CAT_SUPERVISOR, seed_log

ADMIN = make_principal("u-admin", Role.ADMIN, visibility=Visibility.ALL)
MARCH = {"from": "2025-03-01", "to": "2025-04-01", "tz": "UTC"}

Headers = Callable[[Principal], dict[str, str]]


@pytest.fixture
async def api(
    service: CallLogService, access: CallsAccess, tmp_path: Path
) -> AsyncIterator[httpx.AsyncClient]:
    """Every REST router of the service, wired as main wires them."""
    db = service.db
    recordings = RecordingService(
        db, RecordingFiles(tmp_path), retention=timedelta(days=30), sweep_interval=60
    )
    routers = [
        notes_router(CallNotesService(db), access),
        calls_router(service, access),
        recordings_router(recordings, access),
        missed_calls_router(MissedCallLog(db, cursor_secret=SECRET), access),
        numbers_router(NumbersRegistry(db, cursor_secret=SECRET), access),
        reports_router(CallReportService(db), access),
    ]
    app = http_app("calls", "", routers, {})
    await seed_log(service)
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://calls") as client:
        yield client


async def status(api: httpx.AsyncClient, token_for: Headers, user: Principal, method: str, path: str) -> int:
    response = await api.request(
        method, path, headers=token_for(user), params=MARCH if "/reports" in path else None
    )
    return response.status_code


async def test_every_route_needs_a_token(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    for path, operations in spec["paths"].items():
        if path in ("/healthz", "/readyz"):  # probes answer without a token
            continue
        concrete = path.replace("{call_id}", "s-1").replace("{recording_id}", "rec-1")
        concrete = concrete.replace("{item_id}", "x").replace("{number_id}", "n-101")
        concrete = concrete.replace("{employee_id}", "e-ann").replace("{team_id}", "t-sales")
        concrete = concrete.replace("{contact_id}", "c-acme")
        for method in operations:
            response = await api.request(method.upper(), concrete, params=MARCH)
            assert response.status_code == 401, (method, path, response.text)


async def test_missed_calls_are_listed_for_those_they_rang_and_their_supervisors(
    api: httpx.AsyncClient, token_for: Headers
) -> None:
    async def numbers(user: Principal, **params: str) -> list[str]:
        response = await api.get("/missed-calls", params={"state": "all", **params}, headers=token_for(user))
        assert response.status_code == 200, response.text
        return [item["number"] for item in response.json()["items"]]

    everyone = await numbers(ADMIN)
    assert everyone == ["+442071234567"]  # s-2, missed on Bob's 102
    assert await numbers(BOB_TEAM) == everyone
    assert await numbers(CAT_SUPERVISOR) == everyone  # Cat supervises sales
    assert await numbers(CAT_SUPERVISOR, team_id="t-sales") == everyone
    assert await numbers(ANN) == []  # Ann sees only her own
    assert await numbers(ANN, employee_id="e-bob") == []

    item_id = (await api.get("/missed-calls", params={"state": "all"}, headers=token_for(ADMIN))).json()[
        "items"
    ][0]["id"]
    assert await status(api, token_for, BOB_TEAM, "GET", f"/missed-calls/{item_id}") == 200
    assert await status(api, token_for, ANN, "GET", f"/missed-calls/{item_id}") == 404


async def test_notes_of_a_call_only_for_those_who_see_it(api: httpx.AsyncClient, token_for: Headers) -> None:
    assert await status(api, token_for, ANN, "GET", "/calls/s-3/notes") == 404
    refused = await api.patch("/calls/s-3/notes", json={"comment": "mine now"}, headers=token_for(ANN))
    assert refused.status_code == 404
    assert (await api.get("/calls/s-3/notes", headers=token_for(ADMIN))).json()["comment"] is None

    changed = await api.patch("/calls/s-1/notes", json={"comment": "quote sent"}, headers=token_for(ANN))
    assert changed.status_code == 200, changed.text
    assert (changed.json()["comment"], changed.json()["updated_by"]) == ("quote sent", "e-ann")


async def test_recordings_follow_their_call_and_only_admins_delete(
    api: httpx.AsyncClient, token_for: Headers
) -> None:
    # rec-1 belongs to s-3, Cat's outbound call.
    for path in ("/calls/s-3/recordings", "/recordings/rec-1", "/recordings/rec-1/audio"):
        assert await status(api, token_for, ANN, "GET", path) == 404, path
    assert await status(api, token_for, CAT_SUPERVISOR, "GET", "/recordings/rec-1") == 200
    assert await status(api, token_for, CAT_SUPERVISOR, "GET", "/calls/s-3/recordings") == 200

    assert await status(api, token_for, CAT_SUPERVISOR, "DELETE", "/recordings/rec-1") == 403
    assert await status(api, token_for, ADMIN, "GET", "/recordings/rec-1") == 200  # still there
    assert await status(api, token_for, ADMIN, "DELETE", "/recordings/rec-1") == 204
    assert await status(api, token_for, ADMIN, "GET", "/recordings/rec-1") == 404


async def test_everyone_reads_the_numbers_registry_and_admins_change_it(
    api: httpx.AsyncClient, token_for: Headers
) -> None:
    listed = await api.get("/numbers", headers=token_for(ANN))
    assert listed.status_code == 200
    assert "101" in [item["number"] for item in listed.json()["items"]]

    body = {"number": "150", "label": "Reception"}
    refused = await api.post("/numbers", json=body, headers=token_for(CAT_SUPERVISOR))
    assert refused.status_code == 403
    assert refused.json()["detail"] == "only an administrator may register extensions"
    created = await api.post("/numbers", json=body, headers=token_for(ADMIN))
    assert created.status_code == 201, created.text
    number_id = created.json()["id"]
    assert (
        await api.patch(f"/numbers/{number_id}", json={"label": "Desk"}, headers=token_for(ANN))
    ).status_code == 403
    assert await status(api, token_for, ANN, "DELETE", f"/numbers/{number_id}") == 403
    assert await status(api, token_for, ADMIN, "DELETE", f"/numbers/{number_id}") == 204


@pytest.mark.parametrize(
    ("user", "path", "expected"),
    [
        (ANN, "/reports/employees/e-ann", 200),
        (ANN, "/reports/employees/e-bob", 403),  # a team mate, but Ann sees only her own
        (ANN, "/reports/teams/t-sales", 403),
        (BOB_TEAM, "/reports/employees/e-ann", 200),  # Bob sees his team
        (BOB_TEAM, "/reports/employees/e-cat", 403),
        (BOB_TEAM, "/reports/teams/t-sales", 200),
        (BOB_TEAM, "/reports/teams/t-sales.svg", 200),
        (BOB_TEAM, "/reports/contacts/c-acme", 403),
        (CAT_SUPERVISOR, "/reports/employees/e-bob", 200),  # the team Cat supervises
        (CAT_SUPERVISOR, "/reports/contacts/c-acme", 200),
        (CAT_SUPERVISOR, "/reports/summary", 403),
        (CAT_SUPERVISOR, "/reports/employees", 403),  # the ranking of everyone
        (CAT_SUPERVISOR, "/reports/employees?team_id=t-sales", 200),
        (CAT_SUPERVISOR, "/reports/employees?team_id=t-other", 403),
        (ADMIN, "/reports/summary", 200),
        (ADMIN, "/reports/employees", 200),
    ],
)
async def test_reports_follow_who_sees_whose_calls(
    api: httpx.AsyncClient, token_for: Headers, user: Principal, path: str, expected: int
) -> None:
    path, _, team = path.partition("?team_id=")
    params = {**MARCH, **({"team_id": team} if team else {})}
    response = await api.get(path, headers=token_for(user), params=params)
    assert response.status_code == expected, response.text


async def test_openapi_declares_the_bearer_token(api: httpx.AsyncClient) -> None:
    spec = (await api.get("/openapi.json")).json()
    schemes = spec["components"]["securitySchemes"]
    assert schemes == {
        "crm access token": {
            "type": "http",
            "scheme": "bearer",
            "description": "The access token from crm's `POST /auth/login` (or the identity provider's)",
        }
    }
    assert spec["paths"]["/calls"]["get"]["security"] == [{"crm access token": []}]
    assert "security" not in spec["paths"]["/healthz"]["get"]
