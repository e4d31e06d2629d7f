"""REST API of the call reports, as data (JSON) and as charts (SVG).

``GET /reports/employees/{id}``, ``/reports/teams/{id}``, ``/reports/contacts/{id}``, ``/reports/summary``
(the whole company) and ``/reports/employees`` (the per-employee ranking, optionally of a team); each
also as ``... .svg``. Every one takes the period as ``from`` / ``to`` (ISO 8601 dates or date-times;
``to`` exclusive; local to ``tz`` when they carry no offset) and ``tz`` (an IANA time zone, default UTC).
What the numbers mean: :mod:`telecrm_calls.reports`.
"""

from __future__ import annotations

from datetime import datetime
from typing import Annotated, Any, Literal

from fastapi import APIRouter, Depends, HTTPException, Query, Response
from pydantic import BaseModel, ConfigDict, Field

from telecrm_calls.access import CallsAccess, may_see_team
from telecrm_calls.api import invalid_query_parameter
from telecrm_calls.records import InvalidQuery
from telecrm_calls.reports import (
    DEFAULT_RANKING_LIMIT,
    MAX_RANKING_LIMIT,
    SORT_KEYS,
    CallbackStats,
    CallCounts,
    CallReport,
    CallReportService,
    EmployeeRanking,
    EmployeeRow,
    Period,
    SubjectKind,
    parse_period,
    seconds,
)
from telecrm_calls.reports_svg import ranking_svg, report_svg
from telecrm_common.auth import Principal

SVG_MEDIA_TYPE = "image/svg+xml"
# An SVG opened on its own is a document: no script may run in it, whatever it contains.
SVG_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'",
    "X-Content-Type-Options": "nosniff",
}
# Service field -> query parameter, so that a 422 names the parameter the client sent.
_PARAMETERS = {"start": "from", "end": "to"}


# --- the period parameters -----------------------------------------------------------------------


def report_period(
    start: Annotated[
        str,
        Query(
            alias="from",
            max_length=64,
            description="Start of the period, inclusive: an ISO 8601 date (`2025-03-01`: midnight in "
            "`tz`) or date-time (`2025-03-01T08:00`, local to `tz` without an offset)",
        ),
    ],
    end: Annotated[
        str,
        Query(
            alias="to",
            max_length=64,
            description="End of the period, exclusive (`from=2025-03-01&to=2025-04-01` is March); at "
            "most 366 days after `from`",
        ),
    ],
    tz: Annotated[
        str,
        Query(max_length=64, description="IANA time zone of the period, the hours and the weekdays"),
    ] = "UTC",
) -> Period:
    try:
        return parse_period(start, end, tz)
    except InvalidQuery as exc:
        parameter = _PARAMETERS.get(exc.field, exc.field)
        value = {"start": start, "end": end, "tz": tz}.get(exc.field)
        raise invalid_query_parameter(parameter, exc.message, value) from None


Window = Annotated[Period, Depends(report_period)]
TeamId = Annotated[
    str | None, Query(max_length=128, description="The employees of this team; empty: everyone")
]
Sort = Annotated[str, Query(max_length=32, description=f"One of: {', '.join(SORT_KEYS)}")]
Order = Annotated[
    Literal["asc", "desc"] | None, Query(description="Default: largest first (`name`: A first)")
]
Limit = Annotated[int, Query(ge=1, le=MAX_RANKING_LIMIT, description="At most this many employees")]


# --- the responses -------------------------------------------------------------------------------


class PeriodOut(BaseModel):
    model_config = ConfigDict(populate_by_name=True)

    start: datetime = Field(alias="from", description="Inclusive (UTC)")
    end: datetime = Field(alias="to", description="Exclusive (UTC)")
    tz: str = Field(description="The time zone of the hours and weekdays")

    @classmethod
    def of(cls, window: Period) -> PeriodOut:
        return cls(start=window.start, end=window.end, tz=window.tz_name)


class SubjectOut(BaseModel):
    kind: SubjectKind
    id: str | None = Field(description="null for the company")
    name: str | None = Field(description="From crm's employees and contacts; null when not known")


class CountsOut(BaseModel):
    calls: int = Field(description="Calls started in the period that involved the subject")
    inbound: int
    outbound: int
    internal: int
    answered: int = Field(
        description="Answered calls the subject talked on (an employee or team answered or placed them)"
    )
    answered_inbound: int
    answered_outbound: int = Field(description="Placed by the subject and answered by the other side")
    answered_internal: int
    answered_by_others: int = Field(
        description="Inbound calls that rang the employee or team and that someone else answered"
    )
    missed: int = Field(description="Missed inbound calls that rang the subject")
    missed_outgoing: int = Field(description="Outgoing external calls that did not get through")
    talk_seconds: float = Field(description="Talk time of the answered calls")
    mean_talk_seconds: float | None = Field(description="Per answered call; null without any")

    @classmethod
    def of(cls, counts: CallCounts) -> CountsOut:
        return cls(
            calls=counts.calls,
            inbound=counts.inbound,
            outbound=counts.outbound,
            internal=counts.internal,
            answered=counts.answered,
            answered_inbound=counts.answered_inbound,
            answered_outbound=counts.answered_outbound,
            answered_internal=counts.answered_internal,
            answered_by_others=counts.answered_by_others,
            missed=counts.missed,
            missed_outgoing=counts.missed_outgoing,
            talk_seconds=counts.talk_ms / 1000,
            mean_talk_seconds=seconds(counts.mean_talk_ms),
        )


class CallbacksOut(BaseModel):
    missed_items: int = Field(
        description="Missed-call items of the subject whose first missed call started in the period"
    )
    resolved: int = Field(description="... resolved since by an answered call with the number")
    called_back: int = Field(description="... resolved by our outgoing call")
    open: int = Field(description="... still waiting for a callback")
    mean_callback_seconds: float | None = Field(
        description="Mean of resolved_at - first_missed_at over the resolved items; null without any"
    )

    @classmethod
    def of(cls, callbacks: CallbackStats) -> CallbacksOut:
        return cls(
            missed_items=callbacks.missed_items,
            resolved=callbacks.resolved,
            called_back=callbacks.called_back,
            open=callbacks.open,
            mean_callback_seconds=seconds(callbacks.mean_callback_ms),
        )


class HourOut(BaseModel):
    hour: int = Field(description="0..23, local time of `tz`")
    calls: int
    answered: int
    missed: int


class WeekdayOut(BaseModel):
    weekday: int = Field(description="ISO: 1 Monday .. 7 Sunday, local time of `tz`")
    name: str
    calls: int
    answered: int
    missed: int


class ReportOut(BaseModel):
    subject: SubjectOut
    period: PeriodOut
    counts: CountsOut
    callbacks: CallbacksOut
    hours: list[HourOut] = Field(description="24 entries, hour 0 first")
    weekdays: list[WeekdayOut] = Field(description="7 entries, Monday first")
    busiest_hour: int | None = Field(description="The hour with most calls; null without calls")
    busiest_weekday: int | None

    @classmethod
    def of(cls, report: CallReport) -> ReportOut:
        subject = report.subject
        return cls(
            subject=SubjectOut(kind=subject.kind, id=subject.id, name=subject.name),
            period=PeriodOut.of(report.period),
            counts=CountsOut.of(report.counts),
            callbacks=CallbacksOut.of(report.callbacks),
            hours=[
                HourOut(hour=h.hour, calls=h.calls, answered=h.answered, missed=h.missed)
                for h in report.hours
            ],
            weekdays=[
                WeekdayOut(
                    weekday=d.weekday, name=d.name, calls=d.calls, answered=d.answered, missed=d.missed
                )
                for d in report.weekdays
            ],
            busiest_hour=report.busiest_hour,
            busiest_weekday=report.busiest_weekday,
        )


class EmployeeRowOut(BaseModel):
    employee_id: str
    name: str | None
    team_id: str | None
    counts: CountsOut
    callbacks: CallbacksOut

    @classmethod
    def of(cls, row: EmployeeRow) -> EmployeeRowOut:
        return cls(
            employee_id=row.employee_id,
            name=row.name,
            team_id=row.team_id,
            counts=CountsOut.of(row.counts),
            callbacks=CallbacksOut.of(row.callbacks),
        )


class RankingOut(BaseModel):
    team_id: str | None
    team_name: str | None
    period: PeriodOut
    sort: str
    order: Literal["asc", "desc"]
    items: list[EmployeeRowOut]
    total: int = Field(description="Employees before the limit")

    @classmethod
    def of(cls, ranking: EmployeeRanking) -> RankingOut:
        return cls(
            team_id=ranking.team_id,
            team_name=ranking.team_name,
            period=PeriodOut.of(ranking.period),
            sort=ranking.sort,
            order="asc" if ranking.ascending else "desc",
            items=[EmployeeRowOut.of(row) for row in ranking.rows],
            total=ranking.total,
        )


def _svg(document: str) -> Response:
    return Response(content=document, media_type=SVG_MEDIA_TYPE, headers=SVG_HEADERS)


_SVG_RESPONSE: dict[int | str, dict[str, Any]] = {
    200: {"content": {SVG_MEDIA_TYPE: {}}, "description": "The chart"}
}


def _refuse(what: str) -> HTTPException:
    return HTTPException(status_code=403, detail=f"you may not see the report on {what}")


def reports_router(reports: CallReportService, access: CallsAccess) -> APIRouter:
    """``/reports/...``: the reports of :class:`CallReportService`, as JSON and SVG.

    Who sees which report follows who sees which calls: an employee's report needs the right to see
    that employee's calls, a team's (and the ranking of its members) a team the user sees; the ranking
    of everyone and the company summary are for users who see all; a contact's report, which counts
    every employee's calls with the contact, for supervisors and those who see all.
    """
    router = APIRouter(prefix="/reports", tags=["reports"])
    reader = Depends(access.current)

    async def allowed(user: Principal, kind: SubjectKind, subject_id: str | None) -> None:
        if user.sees_all:
            return
        if kind == "employee" and subject_id is not None:
            if not await access.may_see_employee(user, subject_id):
                raise _refuse(f"employee {subject_id!r}")
        elif kind == "team" and subject_id is not None:
            if not may_see_team(user, subject_id):
                raise _refuse(f"team {subject_id!r}")
        elif kind == "contact":
            if not user.is_supervisor:
                raise _refuse("a contact (supervisors and administrators only)")
        else:
            raise _refuse("the whole company (administrators only)")

    async def ranking(
        user: Principal, window: Period, team_id: str | None, sort: str, order: str | None, limit: int
    ) -> EmployeeRanking:
        await allowed(user, "team" if team_id else "company", team_id)
        ascending = order == "asc" if order else sort == "name"
        try:
            return await reports.employee_ranking(
                window, team_id=team_id, sort=sort, ascending=ascending, limit=limit
            )
        except InvalidQuery as exc:
            value = {"sort": sort, "limit": limit}.get(exc.field)
            raise invalid_query_parameter(exc.field, exc.message, value) from None

    async def report(
        user: Principal, kind: SubjectKind, subject_id: str | None, window: Period
    ) -> CallReport:
        await allowed(user, kind, subject_id)
        return await reports.report(kind, subject_id, window)

    @router.get(
        "/employees.svg",
        summary="Chart of the employees' numbers, sorted",
        response_class=Response,
        responses=_SVG_RESPONSE,
    )
    async def employees_svg(
        window: Window,
        team_id: TeamId = None,
        sort: Sort = "calls",
        order: Order = None,
        limit: Limit = 40,
        user: Principal = reader,
    ) -> Response:
        return _svg(ranking_svg(await ranking(user, window, team_id, sort, order, limit)))

    @router.get(
        "/employees",
        summary="The employees' numbers over a period, sorted (what a supervisor looks at)",
        description="One row per employee of the team (the calls they had as its members, and every "
        "member crm lists, with zeros when they had no call), or of everyone, sorted by `sort`.",
    )
    async def employees(
        window: Window,
        team_id: TeamId = None,
        sort: Sort = "calls",
        order: Order = None,
        limit: Limit = DEFAULT_RANKING_LIMIT,
        user: Principal = reader,
    ) -> RankingOut:
        return RankingOut.of(await ranking(user, window, team_id, sort, order, limit))

    @router.get(
        "/employees/{employee_id}.svg",
        summary="Chart of an employee's calls over a period",
        response_class=Response,
        responses=_SVG_RESPONSE,
    )
    async def employee_svg(employee_id: str, window: Window, user: Principal = reader) -> Response:
        return _svg(report_svg(await report(user, "employee", employee_id, window)))

    @router.get("/employees/{employee_id}", summary="An employee's calls over a period")
    async def employee(employee_id: str, window: Window, user: Principal = reader) -> ReportOut:
        return ReportOut.of(await report(user, "employee", employee_id, window))

    @router.get(
        "/teams/{team_id}.svg",
        summary="Chart of a team's calls over a period",
        response_class=Response,
        responses=_SVG_RESPONSE,
    )
    async def team_svg(team_id: str, window: Window, user: Principal = reader) -> Response:
        return _svg(report_svg(await report(user, "team", team_id, window)))

    @router.get("/teams/{team_id}", summary="A team's calls over a period")
    async def team(team_id: str, window: Window, user: Principal = reader) -> ReportOut:
        return ReportOut.of(await report(user, "team", team_id, window))

    @router.get(
        "/contacts/{contact_id}.svg",
        summary="Chart of the calls with a contact over a period",
        response_class=Response,
        responses=_SVG_RESPONSE,
    )
    async def contact_svg(contact_id: str, window: Window, user: Principal = reader) -> Response:
        return _svg(report_svg(await report(user, "contact", contact_id, window)))

    @router.get("/contacts/{contact_id}", summary="The calls with a contact over a period")
    async def contact(contact_id: str, window: Window, user: Principal = reader) -> ReportOut:
        return ReportOut.of(await report(user, "contact", contact_id, window))

    @router.get(
        "/summary.svg",
        summary="Chart of the whole company's calls over a period",
        response_class=Response,
        responses=_SVG_RESPONSE,
    )
    async def summary_svg(window: Window, user: Principal = reader) -> Response:
        return _svg(report_svg(await report(user, "company", None, window)))

    @router.get("/summary", summary="The whole company's calls over a period")
    async def summary(window: Window, user: Principal = reader) -> ReportOut:
        return ReportOut.of(await report(user, "company", None, window))

    return router
