"""The JSON API of the desktop's pages (``/api/...``) and the live WebSocket (``/api/live``).

Each route forwards to crm or calls with the session's access token and passes their answer on
(a 403 of crm stays a 403, a 412 of calls stays a 412), so the services alone decide what a user may
see and do. The desktop's own answers: 401 when the session is gone (the page goes to log-in and
comes back), 403 for a state change without the CSRF token or from another site, 502/504 when a
service does not answer.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time as clock
from datetime import date, datetime, time, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Query, Response, WebSocket
from fastapi.responses import JSONResponse, StreamingResponse
from pydantic import BaseModel, ConfigDict, Field
from starlette.background import BackgroundTask
from starlette.websockets import WebSocketDisconnect, WebSocketState

from telecrm_web.errors import SessionExpired, UpstreamUnavailable
from telecrm_web.i18n import LANGUAGE_COOKIE, LANGUAGES, TIME_ZONE_COOKIE
from telecrm_web.live import LiveSocket, ScreenPops
from telecrm_web.security import Guard, origin_allowed
from telecrm_web.sessions import Session, SessionStore
from telecrm_web.upstream import Upstream

log = logging.getLogger(__name__)

# WebSocket close codes the page understands (4000-4999 are the application's own).
CLOSE_SESSION_ENDED = 4401
CLOSE_FORBIDDEN_ORIGIN = 4403
CLOSE_TOO_SLOW = 4408
PAGE_SIZE_MAX = 100
_PASSED_HEADERS = ("etag", "location", "x-merged-into")


def as_utc_range(
    from_date: date | None, to_date: date | None, tz: str | None
) -> tuple[str | None, str | None]:
    """A period of whole days in the user's time zone as UTC instants (``to`` inclusive, so the
    instant is the start of the next day)."""
    try:
        zone = ZoneInfo(tz) if tz else ZoneInfo("UTC")
    except (ZoneInfoNotFoundError, ValueError):
        raise HTTPException(
            status_code=422,
            detail=[{"loc": ["query", "tz"], "msg": f"unknown time zone {tz!r}", "type": "value_error"}],
        ) from None

    def instant(day: date) -> str:
        return datetime.combine(day, time.min, tzinfo=zone).astimezone(ZoneInfo("UTC")).isoformat()

    start = instant(from_date) if from_date else None
    end = instant(to_date + timedelta(days=1)) if to_date else None
    return start, end


Direction = Literal["inbound", "outbound", "internal"]
Disposition = Literal["answered", "missed", "busy", "no_answer", "failed", "cancelled", "rejected"]


def call_filters(
    number: Annotated[str | None, Query(max_length=64)] = None,
    from_date: Annotated[date | None, Query(description="First day, in the user's time zone")] = None,
    to_date: Annotated[date | None, Query(description="Last day (included)")] = None,
    tz: Annotated[str | None, Query(max_length=64, description="IANA time zone of the days")] = None,
    scope: Annotated[Literal["mine", "team", "all"] | None, Query()] = None,
    missed: Annotated[bool | None, Query()] = None,
    direction: Annotated[Direction | None, Query()] = None,
    disposition: Annotated[list[Disposition] | None, Query(description="Repeat for several")] = None,
    extension: Annotated[str | None, Query(max_length=64)] = None,
    contact_id: Annotated[str | None, Query(max_length=100)] = None,
    recorded: Annotated[bool | None, Query()] = None,
) -> dict[str, Any]:
    """The call log's filters as calls takes them (shared by the page and the CSV export)."""
    started_from, started_to = as_utc_range(from_date, to_date, tz)
    return {
        "number": number,
        "from": started_from,
        "to": started_to,
        "scope": scope,
        "missed": None if missed is None else str(missed).lower(),
        "direction": direction,
        "disposition": list(disposition or []),
        "extension": extension,
        "contact_id": contact_id,
        "recorded": None if recorded is None else str(recorded).lower(),
    }


class Forwarder:
    """Sends a request to crm or calls as the session's user and turns the answer into ours."""

    def __init__(self, upstream: Upstream, store: SessionStore) -> None:
        self.upstream = upstream
        self.store = store

    async def send(
        self,
        session: Session,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        params: dict[str, Any] | None = None,
        json: Any = None,
        data: dict[str, str] | None = None,
        headers: dict[str, str] | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        async def once(token: str) -> httpx.Response:
            return await self.upstream.request(
                client,
                method,
                path,
                token=token,
                params=params,
                json=json,
                data=data,
                headers=headers,
                stream=stream,
            )

        try:
            token = await self.store.access_token(session)
            response = await once(token)
            if response.status_code == 401:
                # crm may have ended the token early (password changed, user disabled): one refresh
                # tells; if the new token is refused too, the session is over.
                await response.aclose()
                token = await self.store.access_token(session, force_refresh=True)
                response = await once(token)
                if response.status_code == 401:
                    await response.aclose()
                    if client is self.upstream.gateway:
                        # crm still takes the token (it just refreshed it): the gateway is set up with
                        # another signing key. Not the user's fault: keep the session.
                        raise UpstreamUnavailable("sip-gateway", "does not accept this installation's tokens")
                    self.store.expire(session)
                    raise SessionExpired("the services no longer accept this session")
        except SessionExpired as exc:
            raise HTTPException(
                status_code=401, detail=str(exc), headers={"Cache-Control": "no-store"}
            ) from None
        except UpstreamUnavailable as exc:
            raise HTTPException(status_code=504 if exc.timeout else 502, detail=str(exc)) from None
        return response

    async def forward(
        self, session: Session, client: httpx.AsyncClient, method: str, path: str, **kw: Any
    ) -> Response:
        return passthrough(await self.send(session, client, method, path, **kw))

    async def download(
        self, session: Session, client: httpx.AsyncClient, path: str, *, params: dict[str, Any]
    ) -> Response:
        """A file of a service (a CSV export) streamed to the browser as it comes, never held whole
        in memory; a refusal of the service is passed on as JSON."""
        response = await self.send(session, client, "GET", path, params=params, stream=True)
        if response.status_code != 200:
            await response.aread()
            await response.aclose()
            return passthrough(response)
        headers = {"Cache-Control": "no-store"}
        if disposition := response.headers.get("content-disposition"):
            headers["Content-Disposition"] = disposition
        return StreamingResponse(
            response.aiter_bytes(),
            media_type=response.headers.get("content-type", "application/octet-stream"),
            headers=headers,
            background=BackgroundTask(response.aclose),
        )


def passthrough(response: httpx.Response) -> Response:
    """The service's answer as ours: status, JSON body and the headers the page uses."""
    headers = {name: response.headers[name] for name in _PASSED_HEADERS if name in response.headers}
    headers["Cache-Control"] = "no-store"
    if response.status_code == 204 or not response.content:
        return Response(status_code=response.status_code, headers=headers)
    try:
        body = response.json()
    except ValueError:
        body = {"detail": response.text[:500]}
    return JSONResponse(body, status_code=response.status_code, headers=headers)


TicketStatus = Literal["taken", "allocated", "confirmed", "finalized", "cancelled"]
MAX_NOTE_LENGTH = 10_000


class TicketStatusIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    status: TicketStatus
    version: int | None = Field(default=None, ge=1, description="409 unless it is the ticket's current one")
    note: str | None = Field(default=None, max_length=MAX_NOTE_LENGTH)


class TicketNoteIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    text: str = Field(min_length=1, max_length=MAX_NOTE_LENGTH)


def upstream_path(*parts: str) -> str:
    """A service's path from its segments, each quoted whole: an id with "/" or "?" stays one segment."""
    return "/" + "/".join(quote(part, safe="") for part in parts)


class DialIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    number: str = Field(
        min_length=1, max_length=64, pattern=r"^[0-9+*#()\s.\-]+$", description="the number to call"
    )
    context: dict[str, str] = Field(
        default_factory=dict, max_length=20, description="where the click came from: contact_id, ticket_id..."
    )


class TransferIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    extension: str = Field(min_length=1, max_length=32, pattern=r"^[0-9A-Za-z*#+._-]+$")
    attended: bool = False


class DtmfIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    digits: str = Field(pattern=r"^[0-9*#A-Da-d]{1,32}$", description="0-9, *, #, A-D; at most 32")


def _invalid(where: str, name: str, message: str) -> list[dict[str, Any]]:
    return [{"loc": [where, name], "msg": message, "type": "value_error"}]


def _detail_of(response: httpx.Response) -> Any:
    try:
        return response.json().get("detail")
    except (ValueError, AttributeError):
        return response.text[:200]


class PreferencesIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    language: Literal["en", "bg", "ro", "uk", "ru"] | None = None
    time_zone: str | None = Field(default=None, max_length=64, description="IANA name: Europe/Sofia")


def api_router(guard: Guard, forwarder: Forwarder, pops: ScreenPops, *, ping_interval: float) -> APIRouter:
    router = APIRouter(prefix="/api", tags=["desktop"])
    signed_in = Depends(guard.api_session)
    upstream = forwarder.upstream

    @router.get("/session", summary="Who is signed in, their rights, and the CSRF token of the session")
    async def get_session(session: Session = signed_in) -> dict[str, Any]:
        p = session.principal
        return {
            "user_id": p.subject,
            "name": p.name,
            "employee_id": p.employee_id,
            "roles": sorted(p.roles),
            "rights": sorted(p.rights),
            "is_admin": p.is_admin,
            "csrf_token": session.csrf_token,
            "live": {"boot": pops.boot},
            "click_to_call": upstream.gateway is not None,
        }

    @router.put("/preferences", status_code=204, summary="The user's language and time zone")
    async def put_preferences(body: PreferencesIn, session: Session = signed_in) -> Response:
        response = Response(status_code=204)
        if body.language is not None:
            assert body.language in LANGUAGES
            guard.cookies.set_plain(response, LANGUAGE_COOKIE, body.language)
        if body.time_zone is not None:
            try:
                ZoneInfo(body.time_zone)
            except (ZoneInfoNotFoundError, ValueError):
                raise HTTPException(
                    status_code=422,
                    detail=[
                        {
                            "loc": ["body", "time_zone"],
                            "msg": f"unknown time zone {body.time_zone!r}",
                            "type": "value_error",
                        }
                    ],
                ) from None
            guard.cookies.set_plain(response, TIME_ZONE_COOKIE, body.time_zone)
        return response

    # --- the call log -------------------------------------------------------------------------------

    @router.get("/calls", summary="The call log (calls' GET /calls), one page at a time")
    async def list_calls(
        filters: Annotated[dict[str, Any], Depends(call_filters)],
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 25,
        session: Session = signed_in,
    ) -> Response:
        params = {
            **filters,
            "cursor": cursor,
            "limit": limit,
            "include_total": "true" if not cursor else "false",
        }
        return await forwarder.forward(session, upstream.calls, "GET", "/calls", params=params)

    @router.get(
        "/calls/export.csv",
        summary="The call log as CSV (calls' GET /calls/export.csv), with the same filters",
        response_class=StreamingResponse,
    )
    async def export_calls(
        filters: Annotated[dict[str, Any], Depends(call_filters)], session: Session = signed_in
    ) -> Response:
        return await forwarder.download(session, upstream.calls, "/calls/export.csv", params=filters)

    @router.get("/missed-calls", summary="Missed calls to call back (calls' GET /missed-calls)")
    async def list_missed_calls(
        state: Annotated[Literal["open", "resolved", "all"], Query()] = "open",
        number: Annotated[str | None, Query(max_length=64)] = None,
        scope: Annotated[
            Literal["mine", "team", "all"], Query(description="mine: calls that rang me; team: my teams'")
        ] = "all",
        team_id: Annotated[str | None, Query(max_length=128, description="with scope=team: one team")] = None,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 25,
        session: Session = signed_in,
    ) -> Response:
        params: dict[str, Any] = {"state": state, "number": number, "cursor": cursor, "limit": limit}
        if scope == "mine":
            if not session.employee_id:
                raise HTTPException(422, _invalid("query", "scope", "you are not an employee"))
            params["employee_id"] = session.employee_id
        elif scope == "team":
            p = session.principal
            teams = sorted(p.team_ids | p.supervised_team_ids)
            if team_id is None and len(teams) != 1:
                raise HTTPException(
                    422, _invalid("query", "team_id", "name the team (you are in none or in several)")
                )
            params["team_id"] = team_id or teams[0]
        return await forwarder.forward(session, upstream.calls, "GET", "/missed-calls", params=params)

    @router.get("/notes/options", summary="The reasons and results to choose from")
    async def notes_options(session: Session = signed_in) -> Response:
        return await forwarder.forward(session, upstream.calls, "GET", "/calls/notes/options")

    @router.get("/calls/{call_id}/notes", summary="The notes of a call (with its ETag)")
    async def get_notes(call_id: str, session: Session = signed_in) -> Response:
        return await forwarder.forward(
            session, upstream.calls, "GET", f"/calls/{quote(call_id, safe='')}/notes"
        )

    @router.patch(
        "/calls/{call_id}/notes",
        summary="Record reason, result and comment of a call",
        description="Send `If-Match` with the ETag you edited: 412 when someone changed them meanwhile.",
    )
    async def patch_notes(
        call_id: str,
        body: Annotated[dict[str, Any], Body()],
        if_match: Annotated[str | None, Header(alias="If-Match", max_length=32)] = None,
        session: Session = signed_in,
    ) -> Response:
        headers = {"If-Match": if_match} if if_match else None
        return await forwarder.forward(
            session,
            upstream.calls,
            "PATCH",
            f"/calls/{quote(call_id, safe='')}/notes",
            json=body,
            headers=headers,
        )

    # --- contacts ------------------------------------------------------------------------------------

    @router.get("/lookup", summary="The screen pop's card of a number (crm's look-up)")
    async def lookup(
        number: Annotated[str, Query(min_length=1, max_length=200)], session: Session = signed_in
    ) -> Response:
        return await forwarder.forward(
            session, upstream.crm, "GET", "/contacts/lookup", params={"number": number}
        )

    @router.get("/contacts", summary="Find contacts by name or number (crm's GET /contacts)")
    async def find_contacts(
        q: Annotated[str | None, Query(max_length=200, description="Part of a name, or a number")] = None,
        kind: Annotated[Literal["person", "company"] | None, Query()] = None,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 10,
        session: Session = signed_in,
    ) -> Response:
        params = {
            "q": (q or "").strip() or None,
            "kind": kind,
            "cursor": cursor,
            "limit": limit,
            "include_total": "true" if not cursor else None,
        }
        return await forwarder.forward(session, upstream.crm, "GET", "/contacts", params=params)

    @router.get("/contacts/{contact_id}", summary="One contact (crm's GET /contacts/{id})")
    async def get_contact(contact_id: str, session: Session = signed_in) -> Response:
        return await forwarder.forward(
            session, upstream.crm, "GET", f"/contacts/{quote(contact_id, safe='')}"
        )

    def _creation_headers(idempotency_key: str | None) -> dict[str, str] | None:
        return {"Idempotency-Key": idempotency_key} if idempotency_key else None

    @router.post("/contacts", summary="Create a company or a person (crm's POST /contacts)")
    async def create_contact(
        body: Annotated[dict[str, Any], Body()],
        allow_duplicate: bool = False,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=100)] = None,
        session: Session = signed_in,
    ) -> Response:
        return await forwarder.forward(
            session,
            upstream.crm,
            "POST",
            "/contacts",
            json=body,
            params={"allow_duplicate": "true" if allow_duplicate else None},
            headers=_creation_headers(idempotency_key),
        )

    @router.post("/contacts/{contact_id}/phones", summary="Add a caller's number to an existing contact")
    async def add_phone(
        contact_id: str,
        body: Annotated[dict[str, Any], Body()],
        allow_duplicate: bool = False,
        session: Session = signed_in,
    ) -> Response:
        return await forwarder.forward(
            session,
            upstream.crm,
            "POST",
            f"/contacts/{quote(contact_id, safe='')}/phones",
            json=body,
            params={"allow_duplicate": "true" if allow_duplicate else None},
        )

    # --- service tickets -----------------------------------------------------------------------------

    @router.get("/tickets", summary="The register of service tickets (crm's GET /tickets)")
    async def list_tickets(
        status: Annotated[list[TicketStatus] | None, Query(description="Repeat for several")] = None,
        client_id: Annotated[str | None, Query(max_length=100)] = None,
        product: Annotated[str | None, Query(max_length=200, description="A part of it")] = None,
        cursor: Annotated[str | None, Query(max_length=1024)] = None,
        limit: Annotated[int, Query(ge=1, le=PAGE_SIZE_MAX)] = 25,
        session: Session = signed_in,
    ) -> Response:
        params = {
            "status": list(status or []),
            "client_id": client_id,
            "product": (product or "").strip() or None,
            "cursor": cursor,
            "limit": limit,
            "include_total": "true" if not cursor else None,
        }
        return await forwarder.forward(session, upstream.crm, "GET", "/tickets", params=params)

    @router.get("/tickets/{ticket_id}", summary="A ticket, with the statuses it may move to")
    async def get_ticket(ticket_id: str, session: Session = signed_in) -> Response:
        return await forwarder.forward(session, upstream.crm, "GET", f"/tickets/{quote(ticket_id, safe='')}")

    @router.post(
        "/tickets/{ticket_id}/status",
        summary="Move a ticket along its workflow",
        description="`{status, version, note?}`: 409 when the ticket changed meanwhile or the move is not "
        "allowed; 403 without the right to modify tickets.",
    )
    async def change_ticket_status(
        ticket_id: str, body: TicketStatusIn, session: Session = signed_in
    ) -> Response:
        return await forwarder.forward(
            session,
            upstream.crm,
            "POST",
            f"/tickets/{quote(ticket_id, safe='')}/status",
            json=body.model_dump(exclude_none=True),
        )

    @router.get("/tickets/{ticket_id}/notes", summary="The ticket's notes, oldest first")
    async def ticket_notes(ticket_id: str, session: Session = signed_in) -> Response:
        return await forwarder.forward(
            session, upstream.crm, "GET", f"/tickets/{quote(ticket_id, safe='')}/notes"
        )

    @router.post("/tickets/{ticket_id}/notes", summary="Add a text note to a ticket")
    async def add_ticket_note(ticket_id: str, body: TicketNoteIn, session: Session = signed_in) -> Response:
        return await forwarder.forward(
            session,
            upstream.crm,
            "POST",
            f"/tickets/{quote(ticket_id, safe='')}/notes",
            data={"text": body.text},
        )

    # --- click-to-call and the live call's buttons (the sip-gateway) ----------------------------------

    extensions: dict[str, tuple[str | None, float]] = {}

    def gateway() -> httpx.AsyncClient:
        if upstream.gateway is None:
            raise HTTPException(503, "click-to-call is not set up here (WEB_GATEWAY_URL)")
        return upstream.gateway

    async def own_extension(session: Session) -> str:
        """The extension of the signed-in employee (crm's employee record, cached a minute)."""
        employee = session.employee_id
        if not employee:
            raise HTTPException(409, {"code": "no_extension", "message": "you are not an employee"})
        cached = extensions.get(employee)
        now = clock.monotonic()
        if cached is None or cached[1] < now:
            response = await forwarder.send(
                session, upstream.crm, "GET", f"/employees/{quote(employee, safe='')}"
            )
            if response.status_code != 200:
                raise HTTPException(response.status_code, _detail_of(response))
            extension = response.json().get("extension") or None
            if len(extensions) > 10_000:
                extensions.clear()
            cached = extensions[employee] = (extension, now + 60.0)
        if not cached[0]:
            raise HTTPException(
                409, {"code": "no_extension", "message": "you have no extension to ring: ask an admin"}
            )
        return cached[0]

    @router.post(
        "/calls/dial",
        summary="Click-to-call: ring my extension, then the number (the sip-gateway's POST /calls/dial)",
        description="`{number, context?}` with an `Idempotency-Key`: repeated clicks with the same key are "
        "one call (200 with the first call's id; 201 for a new one). 409 `no_extension` when the user has no "
        "extension; 403/422/501/502 of the gateway are passed on; 503 when no gateway is set up.",
    )
    async def dial(
        body: DialIn,
        idempotency_key: Annotated[str | None, Header(alias="Idempotency-Key", max_length=100)] = None,
        session: Session = signed_in,
    ) -> Response:
        client = gateway()
        extension = await own_extension(session)
        key = idempotency_key or f"{session.id[:16]}:{body.number}"
        return await forwarder.forward(
            session,
            client,
            "POST",
            "/calls/dial",
            json={
                "extension": extension,
                "number": body.number,
                "idempotency_key": key,
                "context": body.context,
            },
            headers={"Idempotency-Key": key},
        )

    @router.get("/calls/active", summary="My calls in progress (the sip-gateway's GET /calls/active)")
    async def active_calls(session: Session = signed_in) -> Response:
        return await forwarder.forward(session, gateway(), "GET", "/calls/active")

    @router.post(
        "/calls/{call_id}/transfer",
        summary="Transfer a live call of mine to another extension (blind, or attended)",
    )
    async def transfer(call_id: str, body: TransferIn, session: Session = signed_in) -> Response:
        return await forwarder.forward(
            session,
            gateway(),
            "POST",
            f"/calls/{quote(call_id, safe='')}/transfer",
            json=body.model_dump(),
        )

    @router.post(
        "/calls/{call_id}/transfer/{step}",
        summary="Attended transfer: hand the customer over to the consulted extension, or take them back",
    )
    async def transfer_step(
        call_id: str, step: Literal["complete", "cancel"], session: Session = signed_in
    ) -> Response:
        return await forwarder.forward(
            session, gateway(), "POST", f"/calls/{quote(call_id, safe='')}/transfer/{step}"
        )

    @router.post("/calls/{call_id}/dtmf", summary="Send tones on a live call of mine (an IVR's menu)")
    async def dtmf(call_id: str, body: DtmfIn, session: Session = signed_in) -> Response:
        return await forwarder.forward(
            session, gateway(), "POST", f"/calls/{quote(call_id, safe='')}/dtmf", json=body.model_dump()
        )

    # After the routes above: Starlette takes the first route whose path matches, so this one would
    # answer 422 for /transfer and /dtmf.
    @router.post(
        "/calls/{call_id}/{action}",
        summary="Hang up, hold, resume a live call of mine (the sip-gateway's call control)",
        description="404 when the call is over, 403 when it is not one of the user's, 409 when it is not in "
        "a state for this (hold before the answer).",
    )
    async def control(
        call_id: str,
        action: Literal["hangup", "hold", "resume"],
        session: Session = signed_in,
    ) -> Response:
        return await forwarder.forward(
            session, gateway(), "POST", f"/calls/{quote(call_id, safe='')}/{action}"
        )

    # --- screen pops ---------------------------------------------------------------------------------

    @router.get("/screen-pops", summary="My cards that changed after a sequence number (catch-up)")
    async def screen_pops(
        boot: Annotated[str | None, Query(max_length=64)] = None,
        after: Annotated[int, Query(ge=0)] = 0,
        session: Session = signed_in,
    ) -> dict[str, Any]:
        employee = session.employee_id
        cards = pops.cards_since(employee, boot=boot, after=after) if employee else []
        return {"boot": pops.boot, "cards": cards}

    @router.websocket("/live")
    async def live(websocket: WebSocket) -> None:
        await websocket.accept()
        if not origin_allowed(websocket.headers, guard.allowed_origins):
            await websocket.close(code=CLOSE_FORBIDDEN_ORIGIN, reason="not from this site")
            return
        session = guard.store.get(websocket.cookies.get(guard.cookies.name))
        if session is None:
            await websocket.close(code=CLOSE_SESSION_ENDED, reason="log in again")
            return
        await serve_live(websocket, session, guard.store, pops, ping_interval)

    return router


async def serve_live(
    websocket: WebSocket, session: Session, store: SessionStore, pops: ScreenPops, ping_interval: float
) -> None:
    """One tab's live connection: hello, the cards it missed, then every change, and pings."""
    sink = LiveSocket(session, websocket.send_json)
    boot = websocket.query_params.get("boot")
    try:
        after = max(0, int(websocket.query_params.get("after", "0")))
    except ValueError:
        after = 0
    await websocket.send_json({"type": "hello", "boot": pops.boot, "employee_id": session.employee_id})
    pops.attach(sink)  # before the backlog: a change from now on is sent (twice at worst, never lost)
    for card in pops.cards_since(session.employee_id, boot=boot, after=after) if session.employee_id else []:
        sink.send({"type": "card", "boot": pops.boot, "card": card})
    code = 1000

    async def receive() -> None:
        with contextlib.suppress(WebSocketDisconnect):
            while True:
                await websocket.receive_text()  # the page sends nothing; this notices it leaving

    async def ping() -> None:
        nonlocal code
        while True:
            await asyncio.sleep(ping_interval)
            if store.get(session.id) is None:  # logged out elsewhere, or expired: back to log-in
                code = CLOSE_SESSION_ENDED
                sink.stop()
                return
            sink.send({"type": "ping"})

    tasks = [asyncio.create_task(t) for t in (sink.write(), receive(), ping())]
    try:
        await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
    except Exception:
        log.debug("live connection failed", exc_info=True)
    finally:
        pops.detach(sink)
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if sink.overflowed:
            code = CLOSE_TOO_SLOW
        if websocket.client_state == WebSocketState.CONNECTED:
            with contextlib.suppress(Exception):
                await websocket.close(code=code)
