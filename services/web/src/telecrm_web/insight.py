"""The reports page and the call recordings, passed through from calls with the user's own token.

calls decides who may see which report and which recording; this module turns the page's questions
into calls' terms and streams the answers back:

- a report's period is whole days in the user's time zone (``from_date`` .. ``to_date``, both
  included), which calls takes as ``from`` / ``to`` (exclusive) with ``tz``;
- calls draws the charts as SVG documents; they are passed on as they are (``image/svg+xml`` with a
  CSP that lets no script run) for the page's ``<img>``, which is same-origin as its CSP requires;
- a recording's audio is relayed chunk by chunk, never held whole in memory, with the headers that let
  an ``<audio>`` element seek: ``Range`` / ``If-Range`` go up, ``206`` / ``416`` with ``Content-Range``,
  ``Accept-Ranges`` and ``Content-Length`` come back.
"""

from __future__ import annotations

from datetime import date, timedelta
from typing import Annotated, Any, Literal
from urllib.parse import quote
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import httpx
from fastapi import APIRouter, Depends, HTTPException, Query, Request, Response
from fastapi.responses import JSONResponse, StreamingResponse
from starlette.types import Receive, Scope, Send

from telecrm_common.auth import Principal
from telecrm_web.api import Forwarder, passthrough
from telecrm_web.pages import Pages
from telecrm_web.sessions import Session

MAX_PERIOD_DAYS = 366  # calls' own limit
SUBJECT_LIST_LIMIT = 200
Subject = Literal["employee", "team", "contact", "company"]
_SUBJECT_PATHS = {"employee": "employees", "team": "teams", "contact": "contacts"}
SVG_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
    "Cache-Control": "no-store",
}
# What a player's request carries up to calls, and what of calls' answer comes back down.
_AUDIO_REQUEST_HEADERS = ("range", "if-range", "if-none-match", "if-modified-since")
_AUDIO_RESPONSE_HEADERS = (
    "content-type",
    "content-length",
    "content-range",
    "accept-ranges",
    "etag",
    "last-modified",
    "content-disposition",
    "cache-control",
)


def _invalid(name: str, message: str) -> HTTPException:
    return HTTPException(422, [{"loc": ["query", name], "msg": message, "type": "value_error"}])


def report_period(
    from_date: Annotated[date, Query(description="First day, in the user's time zone")],
    to_date: Annotated[date, Query(description="Last day (included)")],
    tz: Annotated[str, Query(max_length=64, description="IANA time zone of the days")] = "UTC",
) -> dict[str, str]:
    """The period as calls' report routes take it (``to`` exclusive: the day after the last)."""
    try:
        ZoneInfo(tz)
    except (ZoneInfoNotFoundError, ValueError):
        raise _invalid("tz", f"unknown time zone {tz!r}") from None
    if to_date < from_date:
        raise _invalid("to_date", "the last day is before the first")
    if (to_date - from_date).days >= MAX_PERIOD_DAYS:
        raise _invalid("to_date", f"a report covers at most {MAX_PERIOD_DAYS} days")
    return {"from": from_date.isoformat(), "to": (to_date + timedelta(days=1)).isoformat(), "tz": tz}


Period = Annotated[dict[str, str], Depends(report_period)]


def report_path(
    subject: Annotated[
        Subject, Query(description="Whose calls: an employee, a team, a contact, or everyone")
    ],
    id: Annotated[str | None, Query(max_length=128, description="The employee, team or contact")] = None,
) -> str:
    """calls' path of the report on ``subject`` (without the ``.svg`` of the chart)."""
    if subject == "company":
        return "/reports/summary"
    if not id:
        raise _invalid("id", f"name the {subject}")
    return f"/reports/{_SUBJECT_PATHS[subject]}/{quote(id, safe='')}"


ReportPath = Annotated[str, Depends(report_path)]


def report_kinds(p: Principal) -> list[str]:
    """The subjects whose reports ``p`` may look at, as calls allows them."""
    kinds = []
    if p.employee_id or p.sees_all or p.visible_team_ids:
        kinds.append("employee")
    if p.sees_all or p.visible_team_ids:
        kinds.append("team")
    if p.sees_all or p.is_supervisor:
        kinds.append("contact")
    if p.sees_all:
        kinds.append("company")
    return kinds


class UpstreamStream(StreamingResponse):
    """A response of calls relayed as it comes; calls' response is closed however the relay ends (a
    player that seeks drops its request mid-way)."""

    def __init__(self, upstream: httpx.Response, headers: dict[str, str]) -> None:
        super().__init__(upstream.aiter_raw(), status_code=upstream.status_code, headers=headers)
        self.upstream = upstream

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            await self.upstream.aclose()


def _with_our_urls(body: dict[str, Any]) -> dict[str, Any]:
    """calls' list of a call's recordings, its links pointing at this site."""
    for item in body.get("items", []):
        base = f"/api/recordings/{quote(str(item['recording_id']), safe='')}"
        item["urls"] = {"audio": f"{base}/audio", "download": f"{base}/audio?download=true"}
    return body


def insight_router(pages: Pages, forwarder: Forwarder) -> APIRouter:
    router = APIRouter()
    signed_in = Depends(pages.guard.api_session)
    upstream = forwarder.upstream

    @router.get("/reports", include_in_schema=False)
    async def reports_page(request: Request) -> Response:
        session = pages.guard.session_of(request)
        kinds = report_kinds(session.principal) if session is not None else []
        return pages.signed_in_page(request, "reports.html", "reports", "reports_title", report_kinds=kinds)

    # --- reports ------------------------------------------------------------------------------------

    @router.get(
        "/api/reports",
        tags=["reports"],
        summary="The call figures of an employee, a team, a contact or the company over whole days",
        description="calls' `/reports/...`: 403 when the user may not see that subject's calls.",
    )
    async def report(path: ReportPath, period: Period, session: Session = signed_in) -> Response:
        return await forwarder.forward(session, upstream.calls, "GET", path, params=period)

    @router.get(
        "/api/reports/chart.svg",
        tags=["reports"],
        summary="The same report drawn by calls as an SVG chart (for an <img>)",
        response_class=Response,
        responses={200: {"content": {"image/svg+xml": {}}}},
    )
    async def report_chart(path: ReportPath, period: Period, session: Session = signed_in) -> Response:
        return await svg(session, f"{path}.svg", period)

    @router.get(
        "/api/reports/employees",
        tags=["reports"],
        summary="Every employee's figures (of a team, or of everyone), sorted: calls' ranking",
    )
    async def ranking(
        period: Period,
        team_id: Annotated[str | None, Query(max_length=128)] = None,
        sort: Annotated[str, Query(max_length=32)] = "calls",
        session: Session = signed_in,
    ) -> Response:
        params = {**period, "team_id": team_id, "sort": sort}
        return await forwarder.forward(session, upstream.calls, "GET", "/reports/employees", params=params)

    @router.get(
        "/api/reports/subjects",
        tags=["reports"],
        summary="The employees and teams the user may pick for a report (crm's lists, by name)",
    )
    async def subjects(
        q: Annotated[str | None, Query(max_length=200)] = None, session: Session = signed_in
    ) -> dict[str, Any]:
        kinds = report_kinds(session.principal)
        found: dict[str, Any] = {"kinds": kinds, "employees": [], "teams": []}
        wanted = [("employees", "/employees", "employee"), ("teams", "/teams", "team")]
        for key, path, kind in wanted:
            if kind not in kinds:
                continue
            params = {"q": (q or "").strip() or None, "limit": SUBJECT_LIST_LIMIT}
            if key == "employees":
                params["active"] = "true"
            response = await forwarder.send(session, upstream.crm, "GET", path, params=params)
            if response.status_code != 200:
                continue  # the user may still see their own report
            found[key] = [{"id": i["id"], "name": i["name"]} for i in response.json().get("items", [])]
        return found

    async def svg(session: Session, path: str, params: dict[str, Any]) -> Response:
        response = await forwarder.send(session, upstream.calls, "GET", path, params=params)
        if response.status_code != 200:
            return passthrough(response)
        if not response.headers.get("content-type", "").startswith("image/svg+xml"):
            raise HTTPException(502, "calls answered a chart that is not SVG")
        return Response(response.content, media_type="image/svg+xml", headers=SVG_HEADERS)

    # --- recordings ---------------------------------------------------------------------------------

    @router.get(
        "/api/calls/{call_id}/recordings",
        tags=["recordings"],
        summary="The recordings of a call, with the links of their audio here",
        description="404 when the call has none, or when the user may not see the call (calls tells "
        "nobody whether a call they may not see exists).",
    )
    async def call_recordings(call_id: str, session: Session = signed_in) -> Response:
        response = await forwarder.send(
            session, upstream.calls, "GET", f"/calls/{quote(call_id, safe='')}/recordings"
        )
        if response.status_code != 200:
            return passthrough(response)
        return JSONResponse(_with_our_urls(response.json()), headers={"Cache-Control": "no-store"})

    @router.api_route(
        "/api/recordings/{recording_id}/audio",
        methods=["GET", "HEAD"],
        tags=["recordings"],
        summary="The audio of a recording, for a player: ranges (206, 416), validators, streamed",
        response_class=Response,
        responses={
            200: {"content": {"audio/wav": {}}},
            206: {"content": {"audio/wav": {}}, "description": "The requested range"},
            304: {"description": "Not modified"},
            307: {"description": "Kept by the cloud PBX that made it: its URL"},
            416: {"description": "Range not satisfiable (`Content-Range: bytes */size`)"},
        },
    )
    async def audio(
        recording_id: str,
        request: Request,
        download: Annotated[bool, Query(description="As an attachment with a descriptive name")] = False,
        session: Session = signed_in,
    ) -> Response:
        headers = {name: request.headers[name] for name in _AUDIO_REQUEST_HEADERS if name in request.headers}
        headers["Accept-Encoding"] = "identity"  # byte positions are the file's
        response = await forwarder.send(
            session,
            upstream.calls,
            request.method,
            f"/recordings/{quote(recording_id, safe='')}/audio",
            params={"download": "true" if download else None},
            headers=headers,
            stream=True,
        )
        passed = {
            name: response.headers[name] for name in _AUDIO_RESPONSE_HEADERS if name in response.headers
        }
        passed["X-Content-Type-Options"] = "nosniff"
        if response.status_code in (200, 206) and request.method == "GET":
            return UpstreamStream(response, passed)
        await response.aread()
        await response.aclose()
        if response.status_code in (200, 206, 304):  # HEAD, or not modified: the headers alone
            return Response(status_code=response.status_code, headers=passed)
        refused = passthrough(response)
        for name in ("content-range", "accept-ranges"):
            if name in response.headers:
                refused.headers[name] = response.headers[name]
        return refused

    @router.delete(
        "/api/recordings/{recording_id}",
        tags=["recordings"],
        status_code=204,
        summary="Delete a recording (administrators only: calls answers 403 to others)",
        response_class=Response,
    )
    async def delete_recording(recording_id: str, session: Session = signed_in) -> Response:
        return await forwarder.forward(
            session, upstream.calls, "DELETE", f"/recordings/{quote(recording_id, safe='')}"
        )

    return router
