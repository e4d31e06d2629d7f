"""gRPC API of the call reports: the ``telecrm.calls.v1.CallReports`` servicer over
:class:`telecrm_calls.reports.CallReportService`. Bad periods, time zones and sort keys answer
INVALID_ARGUMENT naming the request field."""

from __future__ import annotations

from datetime import UTC
from typing import NoReturn

import grpc

from telecrm.calls.v1 import reports_pb2, reports_pb2_grpc
from telecrm_calls.records import InvalidQuery
from telecrm_calls.reports import (
    DEFAULT_RANKING_LIMIT,
    CallbackStats,
    CallCounts,
    CallReport,
    CallReportService,
    EmployeeRanking,
    Period,
    SubjectKind,
    period,
    seconds,
)
from telecrm_calls.reports_svg import ranking_svg, ranking_title, report_svg, report_title
from telecrm_common.timestamps import timestamp_message

SERVICE_NAME = reports_pb2.DESCRIPTOR.services_by_name["CallReports"].full_name
SVG_CONTENT_TYPE = "image/svg+xml"

SUBJECT_KINDS: dict[SubjectKind, reports_pb2.ReportSubjectKind.ValueType] = {
    "employee": reports_pb2.REPORT_SUBJECT_KIND_EMPLOYEE,
    "team": reports_pb2.REPORT_SUBJECT_KIND_TEAM,
    "contact": reports_pb2.REPORT_SUBJECT_KIND_CONTACT,
    "company": reports_pb2.REPORT_SUBJECT_KIND_COMPANY,
}
# Service field -> request field, so that INVALID_ARGUMENT names what the client sent.
_FIELDS = {"start": "start_time", "end": "end_time", "tz": "time_zone"}

PeriodRequest = reports_pb2.GetCallReportRequest | reports_pb2.ListEmployeeReportsRequest


async def _abort(context: grpc.aio.ServicerContext, code: grpc.StatusCode, message: str) -> NoReturn:
    await context.abort(code, message)
    raise AssertionError("context.abort returned")  # it raises; this tells the type checker


async def _period(request: PeriodRequest, context: grpc.aio.ServicerContext) -> Period:
    for name in ("start_time", "end_time"):
        if not request.HasField(name):
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{name}: required")
    try:
        return period(
            request.start_time.ToDatetime(tzinfo=UTC),
            request.end_time.ToDatetime(tzinfo=UTC),
            request.time_zone or None,
        )
    except InvalidQuery as exc:
        await _abort(
            context, grpc.StatusCode.INVALID_ARGUMENT, f"{_FIELDS.get(exc.field, exc.field)}: {exc.message}"
        )


def counts_message(counts: CallCounts) -> reports_pb2.CallCounts:
    return reports_pb2.CallCounts(
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


def callbacks_message(callbacks: CallbackStats) -> reports_pb2.CallbackStats:
    return reports_pb2.CallbackStats(
        missed_items=callbacks.missed_items,
        resolved=callbacks.resolved,
        called_back=callbacks.called_back,
        open=callbacks.open,
        mean_callback_seconds=seconds(callbacks.mean_callback_ms),
    )


def report_message(report: CallReport) -> reports_pb2.CallReport:
    return reports_pb2.CallReport(
        subject_kind=SUBJECT_KINDS[report.subject.kind],
        subject_id=report.subject.id or "",
        subject_name=report.subject.name or "",
        start_time=timestamp_message(report.period.start),
        end_time=timestamp_message(report.period.end),
        time_zone=report.period.tz_name,
        counts=counts_message(report.counts),
        callbacks=callbacks_message(report.callbacks),
        hours=[
            reports_pb2.HourCount(hour=h.hour, calls=h.calls, answered=h.answered, missed=h.missed)
            for h in report.hours
        ],
        weekdays=[
            reports_pb2.WeekdayCount(weekday=d.weekday, calls=d.calls, answered=d.answered, missed=d.missed)
            for d in report.weekdays
        ],
        busiest_hour=report.busiest_hour,
        busiest_weekday=report.busiest_weekday,
    )


def ranking_message(ranking: EmployeeRanking) -> reports_pb2.EmployeeReportList:
    return reports_pb2.EmployeeReportList(
        team_id=ranking.team_id or "",
        team_name=ranking.team_name or "",
        start_time=timestamp_message(ranking.period.start),
        end_time=timestamp_message(ranking.period.end),
        time_zone=ranking.period.tz_name,
        sort=ranking.sort,
        ascending=ranking.ascending,
        rows=[
            reports_pb2.EmployeeReportRow(
                employee_id=row.employee_id,
                name=row.name or "",
                team_id=row.team_id or "",
                counts=counts_message(row.counts),
                callbacks=callbacks_message(row.callbacks),
            )
            for row in ranking.rows
        ],
        total_size=ranking.total,
    )


class CallReportsServicer(reports_pb2_grpc.CallReportsServicer):
    """GetCallReport, ListEmployeeReports and their charts (Render...) over :class:`CallReportService`."""

    def __init__(self, reports: CallReportService) -> None:
        self._reports = reports

    async def _report(
        self, request: reports_pb2.GetCallReportRequest, context: grpc.aio.ServicerContext
    ) -> CallReport:
        which = request.WhichOneof("subject")
        if which is None:
            await _abort(
                context,
                grpc.StatusCode.INVALID_ARGUMENT,
                "subject: one of employee_id, team_id, contact_id, company is required",
            )
        window = await _period(request, context)
        kind: SubjectKind
        subject_id: str | None
        if which == "company":
            if not request.company:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, "company: must be true")
            kind, subject_id = "company", None
        else:
            kind = "employee" if which == "employee_id" else "team" if which == "team_id" else "contact"
            subject_id = getattr(request, which)
            if not subject_id:
                await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, f"{which}: required")
        try:
            return await self._reports.report(kind, subject_id, window)
        except InvalidQuery as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    async def _ranking(
        self, request: reports_pb2.ListEmployeeReportsRequest, context: grpc.aio.ServicerContext
    ) -> EmployeeRanking:
        window = await _period(request, context)
        sort = request.sort or "calls"
        try:
            return await self._reports.employee_ranking(
                window,
                team_id=request.team_id or None,
                sort=sort,
                ascending=request.ascending,
                limit=request.limit or DEFAULT_RANKING_LIMIT,
            )
        except InvalidQuery as exc:
            await _abort(context, grpc.StatusCode.INVALID_ARGUMENT, str(exc))

    async def GetCallReport(
        self, request: reports_pb2.GetCallReportRequest, context: grpc.aio.ServicerContext
    ) -> reports_pb2.CallReport:
        return report_message(await self._report(request, context))

    async def RenderCallReport(
        self, request: reports_pb2.GetCallReportRequest, context: grpc.aio.ServicerContext
    ) -> reports_pb2.ReportChart:
        report = await self._report(request, context)
        return reports_pb2.ReportChart(
            content_type=SVG_CONTENT_TYPE, content=report_svg(report).encode(), title=report_title(report)
        )

    async def ListEmployeeReports(
        self, request: reports_pb2.ListEmployeeReportsRequest, context: grpc.aio.ServicerContext
    ) -> reports_pb2.EmployeeReportList:
        return ranking_message(await self._ranking(request, context))

    async def RenderEmployeeReports(
        self, request: reports_pb2.ListEmployeeReportsRequest, context: grpc.aio.ServicerContext
    ) -> reports_pb2.ReportChart:
        ranking = await self._ranking(request, context)
        return reports_pb2.ReportChart(
            content_type=SVG_CONTENT_TYPE, content=ranking_svg(ranking).encode(), title=ranking_title(ranking)
        )


def add_to_server(server: grpc.aio.Server, reports: CallReportService) -> None:
    reports_pb2_grpc.add_CallReportsServicer_to_server(CallReportsServicer(reports), server)
