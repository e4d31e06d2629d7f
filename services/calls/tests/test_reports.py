"""Call reports: the numbers of a small realistic month, time zones, the ranking, REST and gRPC.

The scenario (March 2025, UTC): Ann (101) and Bob (102) are Sales, Cat (103) and Dan (104) Support, Eve
(105) is in Sales without a call. ACME calls from NUMBER.

- ``ring``      Fri 14 09:30  inbound from ACME, rings 101 and 102, Bob answers after 5 s, 60 s talk
- ``miss1``     Fri 14 10:00  inbound from ACME, rings 101, missed
- ``miss2``     Fri 14 10:05  inbound from ACME, rings 101 and 102, missed
- ``callback``  Fri 14 10:30  Ann calls ACME back, answered after 7 s, 30 s talk (resolves miss1+miss2)
- ``out-miss``  Sat 15 14:00  Ann calls OTHER, no answer (a missed outgoing call)
- ``internal``  Mon 17 11:00  Ann calls Cat (103), answered after 2 s, 10 s talk
- ``dan``       Thu 20 08:00  inbound from OTHER, Dan answers after 3 s, 120 s talk (another employee)
- ``miss3``     Mon 31 09:15  inbound from STRANGER, rings 101, missed (open: nobody called back)
- ``old``       Thu 27 Feb    inbound from ACME answered by Ann (outside the period)
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import grpc
import httpx
import pytest
from google.protobuf.timestamp_pb2 import Timestamp

from telecrm.calls.v1 import reports_pb2, reports_pb2_grpc
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls import reports_grpc
from telecrm_calls.access import CallsAccess
from telecrm_calls.models import Contact, Employee, Number
from telecrm_calls.records import InvalidQuery
from telecrm_calls.reports import (
    CallbackStats,
    CallCounts,
    CallReportService,
    Period,
    _bucket_seconds,
    parse_period,
    period,
)
from telecrm_calls.reports_api import reports_router
from telecrm_calls.service import CallLogService
from telecrm_calls.settings import CallsSettings
from telecrm_calls.testing import CallScript
from telecrm_common.app import http_app
from telecrm_common.db import Database
from telecrm_common.grpc import GrpcServer, channel

NUMBER = "+74993690439"
OTHER = "+15551234567"
STRANGER = "+15559876543"
ANN_NAME = "Ann <script>alert(1)</script> & Co"
SALES_NAME = "Sales & <Ops>"
MARCH = ("2025-03-01", "2025-04-01")
SVG = "{http://www.w3.org/2000/svg}"


def utc(day: int, hour: int, minute: int = 0, month: int = 3) -> datetime:
    return datetime(2025, month, day, hour, minute, tzinfo=UTC)


# --- the scenario ------------------------------------------------------------------------------------


def inbound(
    call_id: str,
    start: datetime,
    *,
    caller: str = NUMBER,
    rings: tuple[str, ...] = ("101",),
    answer: str | None = None,
    ring: float = 5,
    talk: float = 60,
) -> list[ev.CallEvent]:
    """An inbound call that rings ``rings`` (a ring group when several) and is answered by ``answer``,
    or missed (the caller gives up after 20 s)."""
    call = CallScript(call_id, start=start, caller=caller, extension=rings[0])
    events = [call.offered(), *(call.ringing(0.1 * (n + 1), ext) for n, ext in enumerate(rings))]
    if answer is None:
        events.append(
            call.ended(20, ev.DISPOSITION_MISSED, sip_status=487, q850=16, hangup_by=ev.HANGUP_BY_CALLER)
        )
        return events
    return [
        *events,
        call.answered(ring, answer),
        call.ended(
            ring + talk,
            ev.DISPOSITION_ANSWERED,
            sip_status=200,
            q850=16,
            hangup_by=ev.HANGUP_BY_CALLER,
            answered_at=ring,
            answered_extension=answer,
        ),
    ]


def outbound(
    call_id: str, start: datetime, *, callee: str, extension: str = "101", answered: bool = True
) -> list[ev.CallEvent]:
    call = CallScript(
        call_id,
        start=start,
        direction=ev.DIRECTION_OUTBOUND,
        caller=extension,
        callee=callee,
        extension=extension,
    )
    if answered:
        return call.answered_call(ring=7, talk=30)
    return [
        call.offered(),
        call.ringing(1),
        call.ended(30, ev.DISPOSITION_NO_ANSWER, sip_status=480, hangup_by=ev.HANGUP_BY_SYSTEM),
    ]


def internal(call_id: str, start: datetime, *, caller: str, callee: str) -> list[ev.CallEvent]:
    call = CallScript(
        call_id, start=start, direction=ev.DIRECTION_INTERNAL, caller=caller, callee=callee, extension=callee
    )
    call.caller.extension = caller
    return call.answered_call(ring=2, talk=10)


async def seed_directory(db: Database) -> None:
    """crm's employees and contacts (read models) and the extensions registry, before any call."""
    people = [
        ("emp-ann", ANN_NAME, "101", "sales", SALES_NAME),
        ("emp-bob", "Bob", "102", "sales", SALES_NAME),
        ("emp-cat", "Cat", "103", "support", "Support"),
        ("emp-dan", "Dan", "104", "support", "Support"),
        ("emp-eve", "Eve", "105", "sales", SALES_NAME),
    ]
    async with db.session() as session:
        for employee_id, name, extension, team_id, team_name in people:
            session.add(
                Employee(
                    employee_id=employee_id,
                    name=name,
                    extension=extension,
                    team_id=team_id,
                    team_name=team_name,
                    active=True,
                    deleted=False,
                    version=1,
                )
            )
            session.add(
                Number(
                    id=f"ext-{extension}",
                    kind="internal",
                    number=extension,
                    digits=extension,
                    employee_id=employee_id,
                )
            )
        session.add(Contact(contact_id="c-acme", kind="company", name="ACME", deleted=False, version=1))
        session.add(
            Number(
                id="acme-phone",
                kind="contact",
                number=NUMBER,
                e164=NUMBER,
                digits=NUMBER[1:],
                contact_id="c-acme",
            )
        )


SCENARIO = [
    inbound("old", utc(27, 10, month=2), answer="101"),
    inbound("ring", utc(14, 9, 30), rings=("101", "102"), answer="102"),
    inbound("miss1", utc(14, 10)),
    inbound("miss2", utc(14, 10, 5), rings=("101", "102")),
    outbound("callback", utc(14, 10, 30), callee=NUMBER),
    outbound("out-miss", utc(15, 14), callee=OTHER, answered=False),
    internal("internal", utc(17, 11), caller="101", callee="103"),
    inbound("dan", utc(20, 8), caller=OTHER, rings=("104",), answer="104", ring=3, talk=120),
    inbound("miss3", utc(31, 9, 15), caller=STRANGER),
]


@pytest.fixture
def reports(db: Database) -> CallReportService:
    return CallReportService(db)


@pytest.fixture
async def scenario(service: CallLogService, reports: CallReportService) -> CallReportService:
    await seed_directory(service.db)
    for events in SCENARIO:
        await service.ingest(events)
    return reports


def march(tz: str = "UTC") -> Period:
    return parse_period(*MARCH, tz)


def hours_of(report: Any) -> dict[int, int]:
    return {h.hour: h.calls for h in report.hours if h.calls}


# --- the numbers -------------------------------------------------------------------------------------


async def test_an_employees_month(scenario: CallReportService) -> None:
    report = await scenario.employee_report("emp-ann", march())

    assert (report.subject.kind, report.subject.id, report.subject.name) == ("employee", "emp-ann", ANN_NAME)
    assert report.counts == CallCounts(
        calls=7,  # ring (rang), miss1, miss2, miss3 (rang), callback, out-miss, internal (placed)
        inbound=4,
        outbound=2,
        internal=1,
        answered=2,  # her callback and her internal call; Bob answered the ring group
        answered_inbound=0,
        answered_outbound=1,
        answered_internal=1,
        answered_by_others=1,
        missed=3,
        missed_outgoing=1,
        talk_ms=40_000,
        mean_talk_ms=20_000,
    )
    # miss1 + miss2 are one item, called back by Ann 30 min 07 s after miss1 started; miss3 is open.
    assert report.callbacks == CallbackStats(
        missed_items=2, resolved=1, called_back=1, open=1, mean_callback_ms=1_807_000
    )
    assert hours_of(report) == {9: 2, 10: 3, 11: 1, 14: 1}
    assert report.busiest_hour == 10
    assert {d.name: d.calls for d in report.weekdays if d.calls} == {"Fri": 4, "Sat": 1, "Mon": 2}
    assert report.busiest_weekday == 5
    assert [h.missed for h in report.hours][9:11] == [1, 2]  # miss3 at 09:15, miss1 and miss2 at 10


async def test_the_employee_who_answered_the_ring_group(scenario: CallReportService) -> None:
    report = await scenario.employee_report("emp-bob", march())

    counts = report.counts
    assert (counts.calls, counts.inbound, counts.answered, counts.answered_inbound) == (2, 2, 1, 1)
    assert (counts.missed, counts.answered_by_others, counts.talk_ms, counts.mean_talk_ms) == (
        1,
        0,
        60_000,
        60_000,
    )
    # miss2 rang him too: the item is his as well, called back by Ann.
    assert report.callbacks == CallbackStats(
        missed_items=1, resolved=1, called_back=1, open=0, mean_callback_ms=1_807_000
    )


async def test_a_team_counts_each_call_once(scenario: CallReportService) -> None:
    report = await scenario.team_report("sales", march())

    assert report.subject.name == SALES_NAME
    assert report.counts == CallCounts(
        calls=7,  # the ring group rang Ann and Bob: once
        inbound=4,
        outbound=2,
        internal=1,
        answered=3,
        answered_inbound=1,
        answered_outbound=1,
        answered_internal=1,
        answered_by_others=0,
        missed=3,
        missed_outgoing=1,
        talk_ms=100_000,
        mean_talk_ms=33_333,
    )
    assert report.callbacks == CallbackStats(
        missed_items=2, resolved=1, called_back=1, open=1, mean_callback_ms=1_807_000
    )

    support = await scenario.team_report("support", march())
    assert (support.counts.calls, support.counts.internal, support.counts.answered) == (2, 1, 2)
    assert support.callbacks == CallbackStats()


async def test_a_contacts_month(scenario: CallReportService) -> None:
    report = await scenario.contact_report("c-acme", march())

    assert report.subject.name == "ACME"
    counts = report.counts
    assert (counts.calls, counts.inbound, counts.outbound, counts.internal) == (4, 3, 1, 0)
    assert (counts.answered, counts.answered_inbound, counts.answered_outbound) == (2, 1, 1)
    assert (counts.missed, counts.missed_outgoing, counts.talk_ms, counts.mean_talk_ms) == (
        2,
        0,
        90_000,
        45_000,
    )
    assert report.callbacks == CallbackStats(
        missed_items=1, resolved=1, called_back=1, open=0, mean_callback_ms=1_807_000
    )


async def test_the_whole_company(scenario: CallReportService) -> None:
    report = await scenario.company_report(march())

    assert report.subject.label == "Whole company"
    assert report.counts == CallCounts(
        calls=8,
        inbound=5,
        outbound=2,
        internal=1,
        answered=4,
        answered_inbound=2,
        answered_outbound=1,
        answered_internal=1,
        answered_by_others=0,
        missed=3,
        missed_outgoing=1,
        talk_ms=220_000,
        mean_talk_ms=55_000,
    )
    assert report.callbacks == CallbackStats(
        missed_items=2, resolved=1, called_back=1, open=1, mean_callback_ms=1_807_000
    )
    # February alone: the old call, and no item (it resolved nothing).
    february = await scenario.company_report(parse_period("2025-02-01", "2025-03-01"))
    assert (february.counts.calls, february.counts.answered, february.callbacks.missed_items) == (1, 1, 0)


async def test_an_unknown_subject_is_all_zeros(scenario: CallReportService) -> None:
    report = await scenario.employee_report("emp-nobody", march())
    assert (report.subject.name, report.counts, report.callbacks) == (None, CallCounts(), CallbackStats())
    assert report.busiest_hour is None
    assert len(report.hours) == 24
    assert len(report.weekdays) == 7


# --- time zones --------------------------------------------------------------------------------------


async def test_the_time_zone_moves_the_busiest_hour(scenario: CallReportService) -> None:
    berlin = await scenario.employee_report("emp-ann", march("Europe/Berlin"))
    # UTC+1 until 30 March, UTC+2 after: miss3 (09:15 UTC on the 31st) is at 11:15 in Berlin.
    assert hours_of(berlin) == {10: 1, 11: 4, 12: 1, 15: 1}
    assert berlin.busiest_hour == 11
    # The period is Berlin's March: midnight there is 23:00 UTC the day before.
    assert (berlin.period.start, berlin.period.end) == (utc(28, 23, month=2), utc(31, 22))

    # Half-hour offsets: 09:30 UTC is 15:00 in Kolkata, 10:00 and 10:05 are 15:30 and 15:35.
    kolkata = await scenario.employee_report("emp-ann", march("Asia/Kolkata"))
    # (UTC hour buckets would put 09:30 at 14:30 and the callback, 10:30 UTC, with miss1 and miss2.)
    assert hours_of(kolkata) == {14: 1, 15: 3, 16: 2, 19: 1}
    assert kolkata.busiest_hour == 15


def test_quarter_hour_buckets_only_for_zones_that_need_them() -> None:
    assert _bucket_seconds(march("Europe/Berlin")) == 3600
    assert _bucket_seconds(march("Asia/Kolkata")) == 900
    assert _bucket_seconds(march("Asia/Kathmandu")) == 900
    assert _bucket_seconds(march()) == 3600


def test_periods_are_read_in_their_time_zone() -> None:
    window = parse_period("2025-03-14T08:00", "2025-03-14T18:00:00+01:00", "Europe/Berlin")
    assert (window.start, window.end) == (utc(14, 7), utc(14, 17))
    assert not window.whole_days
    assert march("America/New_York").whole_days
    assert parse_period("2025-03-01", "2025-03-02T00:00Z").end == utc(2, 0)


@pytest.mark.parametrize(
    ("start", "end", "tz", "field"),
    [
        ("2025-03-02", "2025-03-01", "UTC", "end"),
        ("2025-03-01", "2025-03-01", "UTC", "end"),
        ("2024-01-01", "2025-01-03", "UTC", "end"),  # 368 days
        ("yesterday", "2025-03-01", "UTC", "start"),
        ("2025-03-01", "2025-13-01", "UTC", "end"),
        ("2025-03-01", "2025-04-01", "Mars/Olympus_Mons", "tz"),
        ("2025-03-01", "2025-04-01", "../../etc/passwd", "tz"),
        ("0001-01-01", "0001-01-02", "Europe/Berlin", "start"),
    ],
)
def test_bad_periods_name_the_field(start: str, end: str, tz: str, field: str) -> None:
    with pytest.raises(InvalidQuery) as raised:
        parse_period(start, end, tz)
    assert raised.value.field == field


def test_a_leap_year_is_a_period_and_naive_times_are_refused() -> None:
    window = parse_period("2024-01-01", "2025-01-01", "Europe/Berlin")
    assert window.end - window.start == timedelta(days=366)
    with pytest.raises(InvalidQuery, match="start: needs a timezone"):
        period(datetime(2025, 3, 1), utc(2, 0))


# --- the ranking -------------------------------------------------------------------------------------


async def test_a_supervisor_ranks_the_team(scenario: CallReportService) -> None:
    ranking = await scenario.employee_ranking(march(), team_id="sales", sort="calls")

    assert ranking.team_name == SALES_NAME
    assert [(row.employee_id, row.counts.calls) for row in ranking.rows] == [
        ("emp-ann", 7),
        ("emp-bob", 2),
        ("emp-eve", 0),  # in the team, no call: listed with zeros
    ]
    assert ranking.rows[0].name == ANN_NAME
    assert ranking.rows[0].callbacks.missed_items == 2
    assert ranking.total == 3

    by_talk = await scenario.employee_ranking(march(), team_id="sales", sort="talk", ascending=True, limit=2)
    assert [(row.employee_id, row.counts.talk_ms) for row in by_talk.rows] == [
        ("emp-eve", 0),
        ("emp-ann", 40_000),
    ]
    assert by_talk.total == 3


async def test_everyone_ranked_by_missed_calls(scenario: CallReportService) -> None:
    ranking = await scenario.employee_ranking(march(), sort="missed")
    assert [(row.name, row.counts.missed) for row in ranking.rows] == [
        (ANN_NAME, 3),
        ("Bob", 1),
        ("Cat", 0),
        ("Dan", 0),
        ("Eve", 0),
    ]
    by_callback = await scenario.employee_ranking(march(), sort="mean_callback")
    # Only Ann and Bob have resolved items; the others (no mean) come last, by name.
    assert [row.employee_id for row in by_callback.rows] == [
        "emp-ann",
        "emp-bob",
        "emp-cat",
        "emp-dan",
        "emp-eve",
    ]
    by_name = await scenario.employee_ranking(march(), sort="name", ascending=True)
    assert [row.employee_id for row in by_name.rows][:2] == ["emp-ann", "emp-bob"]


# --- REST ------------------------------------------------------------------------------------------


@pytest.fixture
async def api(
    reports: CallReportService, access: CallsAccess, admin_headers: dict[str, str]
) -> AsyncIterator[httpx.AsyncClient]:
    app = http_app("reports", "test", [reports_router(reports, access)], {})
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://calls", headers=admin_headers
    ) as client:
        yield client


def params(tz: str = "UTC", **more: Any) -> dict[str, Any]:
    return {"from": MARCH[0], "to": MARCH[1], "tz": tz, **more}


async def test_rest_reports(scenario: CallReportService, api: httpx.AsyncClient) -> None:
    response = await api.get("/reports/employees/emp-ann", params=params("Europe/Berlin"))
    assert response.status_code == 200, response.text
    body = response.json()
    assert body["subject"] == {"kind": "employee", "id": "emp-ann", "name": ANN_NAME}
    assert body["period"] == {
        "from": "2025-02-28T23:00:00Z",
        "to": "2025-03-31T22:00:00Z",
        "tz": "Europe/Berlin",
    }
    assert body["counts"]["calls"] == 7
    assert body["counts"]["talk_seconds"] == 40.0
    assert body["counts"]["mean_talk_seconds"] == 20.0
    assert body["callbacks"] == {
        "missed_items": 2,
        "resolved": 1,
        "called_back": 1,
        "open": 1,
        "mean_callback_seconds": 1807.0,
    }
    assert body["busiest_hour"] == 11
    assert len(body["hours"]) == 24
    assert body["hours"][11] == {
        "hour": 11,
        "calls": 4,
        "answered": 1,
        "missed": 3,
    }
    assert body["weekdays"][0]["name"] == "Mon"

    team = (await api.get("/reports/teams/sales", params=params())).json()
    assert (team["subject"]["name"], team["counts"]["calls"]) == (SALES_NAME, 7)
    contact = (await api.get("/reports/contacts/c-acme", params=params())).json()
    assert contact["counts"]["calls"] == 4
    summary = (await api.get("/reports/summary", params=params())).json()
    assert (summary["subject"], summary["counts"]["calls"]) == (
        {"kind": "company", "id": None, "name": None},
        8,
    )

    ranking = (await api.get("/reports/employees", params=params(team_id="sales", sort="missed"))).json()
    assert [(row["employee_id"], row["counts"]["missed"]) for row in ranking["items"]] == [
        ("emp-ann", 3),
        ("emp-bob", 1),
        ("emp-eve", 0),
    ]
    assert (ranking["order"], ranking["total"], ranking["team_name"]) == ("desc", 3, SALES_NAME)


@pytest.mark.parametrize(
    ("path", "query", "field"),
    [
        ("/reports/summary", {"from": "2025-03-02", "to": "2025-03-01"}, "to"),
        ("/reports/summary", {"from": "2024-01-01", "to": "2025-03-01"}, "to"),
        ("/reports/summary", {"from": "1st of March", "to": "2025-04-01"}, "from"),
        ("/reports/employees/emp-ann", {"from": "2025-03-01", "to": "2025-04-01", "tz": "Mars/Base"}, "tz"),
        ("/reports/employees/emp-ann.svg", {"from": "2025-03-01", "to": "2025-04-01", "tz": "Nowhere"}, "tz"),
        ("/reports/teams/sales", {"to": "2025-04-01"}, "from"),
        ("/reports/employees", {"from": "2025-03-01", "to": "2025-04-01", "sort": "charm"}, "sort"),
        ("/reports/employees.svg", {"from": "2025-03-01", "to": "2025-04-01", "limit": "0"}, "limit"),
    ],
)
async def test_bad_queries_answer_422_naming_the_parameter(
    reports: CallReportService, api: httpx.AsyncClient, path: str, query: dict[str, str], field: str
) -> None:
    response = await api.get(path, params=query)
    assert response.status_code == 422, response.text
    assert [error["loc"] for error in response.json()["detail"]] == [["query", field]]


async def test_rest_charts(scenario: CallReportService, api: httpx.AsyncClient) -> None:
    response = await api.get("/reports/employees/emp-ann.svg", params=params("Europe/Berlin"))
    assert response.status_code == 200, response.text
    assert response.headers["content-type"].startswith("image/svg+xml")
    assert "default-src 'none'" in response.headers["content-security-policy"]
    assert "<script" not in response.text
    root = ET.fromstring(response.content)
    assert root.tag == f"{SVG}svg"
    title = root.findtext(f"{SVG}title") or ""
    assert ANN_NAME in title
    assert "1 Mar 2025 \u2013 31 Mar 2025 (Europe/Berlin)" in title
    hour_bars = [g for g in root.iter(f"{SVG}g") if g.get("class") == "hour-bar"]
    assert [g.get("data-key") for g in hour_bars] == [str(hour) for hour in range(24)]
    assert "11: 4 calls, 1 answered, 3 missed" in [g.findtext(f"{SVG}title") for g in hour_bars]

    for path in ("/reports/teams/sales.svg", "/reports/contacts/c-acme.svg", "/reports/summary.svg"):
        response = await api.get(path, params=params())
        assert response.status_code == 200, path
        assert ET.fromstring(response.content).tag == f"{SVG}svg"

    ranking = await api.get("/reports/employees.svg", params=params(team_id="sales", sort="talk"))
    assert ranking.status_code == 200
    root = ET.fromstring(ranking.content)
    bars = [g for g in root.iter(f"{SVG}g") if g.get("class") == "employee-bar"]
    assert [g.get("data-key") for g in bars] == ["emp-bob", "emp-ann", "emp-eve"]  # 60 s, 40 s, 0 s
    assert SALES_NAME in (root.findtext(f"{SVG}title") or "")


# --- gRPC ------------------------------------------------------------------------------------------


@pytest.fixture
async def stub(reports: CallReportService) -> AsyncIterator[reports_pb2_grpc.CallReportsStub]:
    server = GrpcServer(CallsSettings(grpc_port=0), service_names=[reports_grpc.SERVICE_NAME])
    reports_grpc.add_to_server(server.server, reports)
    await server.start()
    async with channel(f"127.0.0.1:{server.port}") as chan:
        yield reports_pb2_grpc.CallReportsStub(chan)
    await server.stop(0)


def stamp(value: datetime) -> Timestamp:
    result = Timestamp()
    result.FromDatetime(value)
    return result


async def test_grpc_round_trip(scenario: CallReportService, stub: reports_pb2_grpc.CallReportsStub) -> None:
    request = reports_pb2.GetCallReportRequest(
        employee_id="emp-ann", start_time=stamp(utc(1, 0)), end_time=stamp(utc(1, 0, month=4))
    )
    report = await stub.GetCallReport(request)
    assert (report.subject_kind, report.subject_name) == (reports_pb2.REPORT_SUBJECT_KIND_EMPLOYEE, ANN_NAME)
    assert (report.counts.calls, report.counts.missed, report.counts.missed_outgoing) == (7, 3, 1)
    assert (report.counts.talk_seconds, report.counts.mean_talk_seconds) == (40.0, 20.0)
    assert (report.callbacks.resolved, report.callbacks.open, report.callbacks.mean_callback_seconds) == (
        1,
        1,
        1807.0,
    )
    assert (report.time_zone, report.busiest_hour, len(report.hours)) == ("UTC", 10, 24)

    company = await stub.GetCallReport(
        reports_pb2.GetCallReportRequest(
            company=True, start_time=request.start_time, end_time=request.end_time, time_zone="Europe/Berlin"
        )
    )
    assert (company.subject_kind, company.counts.calls, company.busiest_hour) == (
        reports_pb2.REPORT_SUBJECT_KIND_COMPANY,
        8,
        11,
    )
    empty = await stub.GetCallReport(
        reports_pb2.GetCallReportRequest(
            contact_id="c-nobody", start_time=request.start_time, end_time=request.end_time
        )
    )
    assert not empty.HasField("busiest_hour")
    assert not empty.counts.HasField("mean_talk_seconds")

    chart = await stub.RenderCallReport(request)
    assert chart.content_type == "image/svg+xml"
    assert ANN_NAME in (ET.fromstring(chart.content).findtext(f"{SVG}title") or "")

    ranking = await stub.ListEmployeeReports(
        reports_pb2.ListEmployeeReportsRequest(
            team_id="sales", start_time=request.start_time, end_time=request.end_time, sort="answered"
        )
    )
    assert [(row.employee_id, row.counts.answered) for row in ranking.rows] == [
        ("emp-ann", 2),
        ("emp-bob", 1),
        ("emp-eve", 0),
    ]
    chart = await stub.RenderEmployeeReports(
        reports_pb2.ListEmployeeReportsRequest(start_time=request.start_time, end_time=request.end_time)
    )
    assert ET.fromstring(chart.content).tag == f"{SVG}svg"


@pytest.mark.parametrize(
    ("request_fields", "message"),
    [
        ({"employee_id": "emp-ann", "start_time": utc(2, 0), "end_time": utc(1, 0)}, "end_time: "),
        ({"employee_id": "emp-ann", "end_time": utc(1, 0)}, "start_time: required"),
        (
            {"team_id": "sales", "start_time": utc(1, 0), "end_time": utc(2, 0), "time_zone": "Nowhere/Town"},
            "time_zone: unknown",
        ),
        ({"start_time": utc(1, 0), "end_time": utc(2, 0)}, "subject: "),
        ({"employee_id": "", "start_time": utc(1, 0), "end_time": utc(2, 0)}, "employee_id: required"),
    ],
)
async def test_grpc_bad_requests(
    reports: CallReportService,
    stub: reports_pb2_grpc.CallReportsStub,
    request_fields: dict[str, Any],
    message: str,
) -> None:
    fields = {k: stamp(v) if isinstance(v, datetime) else v for k, v in request_fields.items()}
    with pytest.raises(grpc.aio.AioRpcError) as raised:
        await stub.GetCallReport(reports_pb2.GetCallReportRequest(**fields))
    assert raised.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert (raised.value.details() or "").startswith(message)
