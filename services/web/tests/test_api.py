"""The desktop's log-in and JSON API against real crm and calls: sessions kept on the server behind an
HttpOnly cookie, CSRF and origin checks on every change, 401 when the session is gone (and the way
back), the services' own refusals (403, 412) passed through, and a user's language and time zone."""

from __future__ import annotations

import asyncio
import re
from datetime import date
from typing import Any

import httpx
import pytest

from telecrm_web.api import as_utc_range

from .conftest import (
    ADA,
    PASSWORD,
    RunningDesktop,
    Services,
    call_event,
    new_call_id,
    running_desktop,
    unique_number,
)


async def test_log_in_keeps_the_tokens_on_the_server_behind_a_secure_httponly_cookie(
    services: Services,
) -> None:
    # The production default: Secure cookies (httpx keeps them off plain http, so the test carries
    # the log-in form's token by hand).
    async with running_desktop(services, cookie_secure=True) as desktop:
        async with desktop.client() as client:
            form = await client.get("/login")
        assert form.status_code == 200
        assert "Secure" in form.headers["set-cookie"]
        response = await plain_post_login(desktop, form.cookies["telecrm_login_csrf"])
        cookie = response.headers["set-cookie"]
        assert response.status_code == 303
        assert response.headers["location"] == "/desktop"
        for flag in ("HttpOnly", "Secure", "SameSite=lax", "Path=/"):
            assert flag in cookie
        found = re.search(r"telecrm_session=([\w-]{40,});", cookie)
        assert found is not None
        session = desktop.parts.store.get(found.group(1))
        assert session is not None
        assert session.principal.employee_id == ADA
        # Neither token ever reaches the browser.
        assert session.access_token not in response.text + cookie
        assert session.refresh_token not in response.text + cookie


async def plain_post_login(desktop: RunningDesktop, csrf: str) -> httpx.Response:
    async with desktop.client() as client:
        client.cookies.set("telecrm_login_csrf", csrf)
        return await client.post(
            "/login",
            data={"login": "ada", "password": PASSWORD, "csrf_token": csrf, "next": "/desktop"},
            headers={"Origin": desktop.url},
        )


async def test_the_desktop_page_names_the_user_and_carries_the_csrf_token(desktop: RunningDesktop) -> None:
    async with desktop.client() as client:
        assert (await client.get("/desktop")).headers["location"] == "/login?next=/desktop"
        csrf = await desktop.log_in(client, "ada")
        page = await client.get("/desktop")
    assert page.status_code == 200
    assert "Ada Lovelace" in page.text
    assert f'<meta name="csrf-token" content="{csrf}">' in page.text
    assert "script-src 'self'" in page.headers["content-security-policy"]
    assert 'data-can-create-contact="true"' in page.text


async def test_a_wrong_password_shows_the_form_again_with_the_login_kept(desktop: RunningDesktop) -> None:
    async with desktop.client() as client:
        form = await client.get("/login")
        response = await client.post(
            "/login",
            data={
                "login": "ada<script>",
                "password": "wrong password",
                "csrf_token": form.cookies["telecrm_login_csrf"],
            },
            headers={"Origin": desktop.url},
        )
    assert response.status_code == 401
    assert "Wrong login or password" in response.text
    assert 'value="ada&lt;script&gt;"' in response.text  # kept, and escaped
    assert "telecrm_session" not in response.headers.get("set-cookie", "")


@pytest.mark.parametrize("case", ["no form token", "another site"])
async def test_a_log_in_form_without_its_token_or_from_another_site_is_refused(
    desktop: RunningDesktop, case: str
) -> None:
    async with desktop.client() as client:
        form = await client.get("/login")
        token = form.cookies["telecrm_login_csrf"]
        response = await client.post(
            "/login",
            data={
                "login": "ada",
                "password": PASSWORD,
                "csrf_token": "" if case == "no form token" else token,
            },
            headers={"Origin": "https://evil.example" if case == "another site" else desktop.url},
        )
    assert response.status_code == 403
    assert "telecrm_session" not in response.headers.get("set-cookie", "")


async def test_log_in_returns_to_the_page_it_was_sent_from_but_never_to_another_site(
    desktop: RunningDesktop,
) -> None:
    async with desktop.client() as client:
        for asked, expected in (
            ("/desktop?x=1", "/desktop?x=1"),
            ("https://evil.example/", "/desktop"),
            ("//evil.example", "/desktop"),
        ):
            form = await client.get("/login", params={"next": asked})
            token = form.cookies["telecrm_login_csrf"]
            response = await client.post(
                "/login",
                data={"login": "ada", "password": PASSWORD, "csrf_token": token, "next": asked},
                headers={"Origin": desktop.url},
            )
            assert response.headers["location"] == expected


async def test_every_change_needs_the_pages_csrf_token_and_our_origin(
    desktop: RunningDesktop, services: Services
) -> None:
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        body = {"kind": "person", "name": "CSRF test", "phones": [{"number": unique_number()}]}
        refused = [
            await client.post("/api/contacts", json=body),
            await client.post("/api/contacts", json=body, headers={"X-CSRF-Token": "guess"}),
            await client.post(
                "/api/contacts", json=body, headers={"X-CSRF-Token": csrf, "Origin": "https://evil.example"}
            ),
            await client.post(
                "/api/contacts", json=body, headers={"X-CSRF-Token": csrf, "Sec-Fetch-Site": "cross-site"}
            ),
            await client.put("/api/preferences", json={"language": "bg"}),
        ]
        assert [r.status_code for r in refused] == [403] * 5
        with services.crm() as crm:
            assert crm.get("/contacts", params={"q": "CSRF test"}).json()["items"] == []
        created = await client.post(
            "/api/contacts", json=body, headers={"X-CSRF-Token": csrf, "Origin": desktop.url}
        )
    assert created.status_code == 201, created.text
    assert created.json()["name"] == "CSRF test"
    assert created.json()["created_by"]  # crm knows who: the user's own token was forwarded


async def test_an_ended_session_answers_401_and_the_desktop_sends_to_log_in(
    desktop: RunningDesktop,
) -> None:
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        assert (await client.get("/api/calls")).status_code == 200
        session = desktop.parts.store.get(client.cookies["telecrm_session"])
        assert session is not None
        session.last_seen -= desktop.parts.settings.session_idle_seconds + 1  # idle too long
        responses = [
            await client.get("/api/calls"),
            await client.patch("/api/calls/x/notes", json={}, headers={"X-CSRF-Token": csrf}),
        ]
        page = await client.get("/desktop")
    assert [r.status_code for r in responses] == [401, 401]
    assert responses[0].json()["detail"].startswith("no session")
    assert page.status_code == 303
    assert page.headers["location"] == "/login?next=/desktop"


async def test_an_expired_access_token_is_refreshed_and_a_refused_refresh_ends_the_session(
    desktop: RunningDesktop,
) -> None:
    async with desktop.client() as client:
        await desktop.log_in(client, "ada")
        session = desktop.parts.store.get(client.cookies["telecrm_session"])
        assert session is not None
        first_token, first_refresh = session.access_token, session.refresh_token
        session.access_expires_at = 0  # crm's token has expired
        assert (await client.get("/api/calls")).status_code == 200
        assert session.access_token != first_token
        assert session.refresh_token != first_refresh
        # The refresh token was used once already: crm refuses it again (and ends its session).
        session.refresh_token = first_refresh
        session.access_expires_at = 0
        response = await client.get("/api/calls")
        assert response.status_code == 401
        assert (await client.get("/api/calls")).status_code == 401
        assert desktop.parts.store.get(session.id) is None


async def test_refresh_races_of_one_session_use_the_refresh_token_once(desktop: RunningDesktop) -> None:
    async with desktop.client() as client:
        await desktop.log_in(client, "ada")
        session = desktop.parts.store.get(client.cookies["telecrm_session"])
        assert session is not None
        session.access_expires_at = 0
        answers = await asyncio.gather(*(client.get("/api/missed-calls") for _ in range(5)))
    assert [a.status_code for a in answers] == [200] * 5


async def test_a_refusal_of_crm_passes_through_and_the_page_hides_the_action(
    desktop: RunningDesktop,
) -> None:
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "nina")  # may not create contacts
        page = await client.get("/desktop")
        response = await client.post(
            "/api/contacts",
            json={"kind": "person", "name": "Not allowed", "phones": [{"number": unique_number()}]},
            headers={"X-CSRF-Token": csrf},
        )
    assert 'data-can-create-contact="false"' in page.text
    assert response.status_code == 403
    assert "contact.create" in response.json()["detail"]


async def test_logout_ends_the_session_here_and_at_crm(desktop: RunningDesktop, services: Services) -> None:
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        session = desktop.parts.store.get(client.cookies["telecrm_session"])
        assert session is not None
        refresh_token = session.refresh_token
        assert (await client.post("/logout", data={"csrf_token": "wrong"})).status_code == 403
        response = await client.post("/logout", data={"csrf_token": csrf}, headers={"Origin": desktop.url})
        assert response.status_code == 303
        assert response.headers["location"] == "/login"
        assert (await client.get("/api/calls")).status_code == 401
    async with httpx.AsyncClient(base_url=services.crm_url, timeout=10) as crm:
        refused = await crm.post("/auth/refresh", json={"refresh_token": refresh_token})
    assert refused.status_code == 401


async def wait_for_call(services: Services, call_id: str) -> dict[str, Any]:
    with services.calls() as calls:
        for _ in range(200):
            response = calls.get(f"/calls/{call_id}")
            if response.status_code == 200:
                return dict(response.json())
            await asyncio.sleep(0.05)
    raise AssertionError(f"call {call_id} never reached the call log")


async def test_call_notes_are_saved_with_if_match_and_a_stale_version_is_refused(
    desktop: RunningDesktop, services: Services
) -> None:
    call_id = new_call_id()
    await desktop.publish(call_event("ringing", call_id, extension="201", leg_id="leg-1"))
    await wait_for_call(services, call_id)
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        path = f"/api/calls/{call_id}/notes"
        current = await client.get(path)
        etag = current.headers["etag"]
        saved = await client.patch(
            path,
            json={"reason": "Order", "result": "Sold", "comment": "<b>bold</b> customer"},
            headers={"X-CSRF-Token": csrf, "If-Match": etag},
        )
        stale = await client.patch(
            path, json={"comment": "overwrite"}, headers={"X-CSRF-Token": csrf, "If-Match": etag}
        )
    assert saved.status_code == 200, saved.text
    assert saved.json()["comment"] == "<b>bold</b> customer"
    assert saved.headers["etag"] != etag
    assert stale.status_code == 412
    with services.calls() as calls:
        assert calls.get(f"/calls/{call_id}/notes").json()["comment"] == "<b>bold</b> customer"


async def test_the_call_log_is_paged_and_filtered_by_number(
    desktop: RunningDesktop, services: Services
) -> None:
    number = unique_number()
    call_ids = [new_call_id() for _ in range(3)]
    for call_id in call_ids:
        await desktop.publish(call_event("ringing", call_id, caller=number, leg_id="leg-1"))
    for call_id in call_ids:
        await wait_for_call(services, call_id)
    async with desktop.client() as client:
        await desktop.log_in(client, "ada")
        first = (await client.get("/api/calls", params={"number": number[-7:], "limit": 2})).json()
        second = (
            await client.get(
                "/api/calls", params={"number": number[-7:], "limit": 2, "cursor": first["next_cursor"]}
            )
        ).json()
        too_big = await client.get("/api/calls", params={"limit": 1000})
    assert first["total"] == 3
    assert len(first["items"]) == 2
    assert len(second["items"]) == 1
    assert {c["call_id"] for c in first["items"] + second["items"]} == set(call_ids)
    assert second["next_cursor"] is None
    assert too_big.status_code == 422


def test_days_of_a_period_are_taken_in_the_users_time_zone() -> None:
    assert as_utc_range(date(2024, 7, 1), date(2024, 7, 1), "Europe/Sofia") == (
        "2024-06-30T21:00:00+00:00",
        "2024-07-01T21:00:00+00:00",
    )
    assert as_utc_range(None, date(2024, 1, 31), None) == (None, "2024-02-01T00:00:00+00:00")


async def test_an_unknown_time_zone_is_a_clear_422(desktop: RunningDesktop) -> None:
    async with desktop.client() as client:
        csrf = await desktop.log_in(client, "ada")
        listed = await client.get("/api/calls", params={"from_date": "2024-01-01", "tz": "Mars/Olympus"})
        saved = await client.put(
            "/api/preferences", json={"time_zone": "Mars/Olympus"}, headers={"X-CSRF-Token": csrf}
        )
    assert listed.status_code == 422
    assert "Mars/Olympus" in listed.text
    assert saved.status_code == 422


async def test_the_language_is_chosen_per_user_and_the_pages_follow_it(desktop: RunningDesktop) -> None:
    async with desktop.client() as client:
        assert 'lang="ro"' in (await client.get("/login", headers={"Accept-Language": "ro-RO,en;q=0.5"})).text
        csrf = await desktop.log_in(client, "ada")
        saved = await client.put(
            "/api/preferences",
            json={"language": "bg", "time_zone": "Europe/Sofia"},
            headers={"X-CSRF-Token": csrf},
        )
        assert saved.status_code == 204
        page = await client.get("/desktop")
    assert '<html lang="bg">' in page.text
    assert "Работно място на оператора" in page.text
    assert 'data-time-zone="Europe/Sofia"' in page.text


async def test_a_service_that_does_not_answer_is_a_502_not_a_crash(services: Services) -> None:
    async with running_desktop(services) as desktop, desktop.client() as client:
        await desktop.log_in(client, "ada")
        desktop.parts.upstream.calls._base_url = httpx.URL("http://127.0.0.1:9")  # nothing listens
        response = await client.get("/api/calls")
    assert response.status_code == 502
    assert "calls cannot be reached" in response.json()["detail"]
