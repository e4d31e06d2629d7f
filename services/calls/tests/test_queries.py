"""Filters and keyset pagination of the call list, over a seeded database (PostgreSQL or SQLite)."""

from __future__ import annotations

from datetime import timedelta

import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls.service import CallLogService, CallNotFound, CallQuery, InvalidCursor, InvalidQuery
from telecrm_calls.testing import T0, CallScript


def minute(n: float) -> timedelta:
    return timedelta(minutes=n)


def seed_events() -> list[ev.CallEvent]:
    """Twelve calls; q-06..q-10 start at the same instant (ties broken by call_id)."""
    out = ev.DIRECTION_OUTBOUND
    events: list[ev.CallEvent] = []
    events += CallScript("q-01", start=T0, extension="101").answered_call()
    events += CallScript("q-02", start=T0 + minute(1), extension="102").missed_call()
    busy = CallScript("q-03", start=T0 + minute(2), direction=out, caller="101", callee="+15551234567")
    events += [busy.offered(), busy.ended(3, ev.DISPOSITION_BUSY, sip_status=486)]
    failed = CallScript(
        "q-04", start=T0 + minute(3), direction=out, caller="103", callee="+15550000000", extension="103"
    )
    events += [failed.offered(), failed.ended(1, ev.DISPOSITION_FAILED, sip_status=404)]
    events += CallScript(
        "q-05",
        start=T0 + minute(4),
        direction=ev.DIRECTION_INTERNAL,
        caller="101",
        callee="102",
        extension="102",
    ).answered_call()
    for n in range(6, 11):
        events += CallScript(
            f"q-{n:02d}", start=T0 + minute(5), caller="+442071234567", extension="104"
        ).answered_call()
    live = CallScript("q-11", start=T0 + minute(6))
    events += [live.offered(), live.ringing(1)]
    masked = CallScript("q-12", start=T0 + minute(7), caller="8 (499) 555-12-34")
    masked.caller.e164 = "+74995551234"
    events += masked.missed_call()
    return events


NEWEST_FIRST = [
    "q-12",
    "q-11",
    "q-10",
    "q-09",
    "q-08",
    "q-07",
    "q-06",
    "q-05",
    "q-04",
    "q-03",
    "q-02",
    "q-01",
]


@pytest.fixture
async def seeded(service: CallLogService) -> CallLogService:
    await service.ingest(seed_events())
    return service


async def ids(service: CallLogService, **filters: object) -> list[str]:
    """Every matching call id, following the cursors page by page."""
    found: list[str] = []
    cursor = None
    while True:
        page = await service.list_calls(CallQuery(**filters, cursor=cursor))  # type: ignore[arg-type]
        found += [entry.call.call_id for entry in page.items]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor


async def test_newest_first_with_ties_broken_by_call_id(seeded: CallLogService) -> None:
    assert await ids(seeded) == NEWEST_FIRST


@pytest.mark.parametrize("limit", [1, 2, 3, 4, 5, 11, 12, 13, 500])
async def test_pages_cover_everything_once(seeded: CallLogService, limit: int) -> None:
    assert await ids(seeded, limit=limit) == NEWEST_FIRST


async def test_last_full_page_has_no_cursor(seeded: CallLogService) -> None:
    page = await seeded.list_calls(CallQuery(limit=12))
    assert len(page.items) == 12
    assert page.next_cursor is None


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        ("36904", ["q-11", "q-02", "q-01"]),
        ("+7 (499) 369-04-39", ["q-11", "q-02", "q-01"]),
        ("(499) 555-12", ["q-12"]),  # the raw number is masked; its E.164 form matches
        ("1555", ["q-04", "q-03"]),
        ("2071234567", ["q-10", "q-09", "q-08", "q-07", "q-06"]),
        ("103", ["q-04"]),
    ],
)
async def test_number_filter(seeded: CallLogService, number: str, expected: list[str]) -> None:
    assert await ids(seeded, number=number) == expected


async def test_extension_disposition_and_direction_filters(seeded: CallLogService) -> None:
    assert await ids(seeded, extension="102") == ["q-05", "q-02"]
    assert await ids(seeded, dispositions=("busy", "failed")) == ["q-04", "q-03"]
    assert await ids(seeded, dispositions=("missed",)) == ["q-12", "q-02"]
    assert await ids(seeded, direction="outbound") == ["q-04", "q-03"]
    assert await ids(seeded, direction="internal") == ["q-05"]
    assert await ids(seeded, direction="inbound", dispositions=("answered",), limit=2) == [
        "q-10",
        "q-09",
        "q-08",
        "q-07",
        "q-06",
        "q-01",
    ]


async def test_period_is_from_inclusive_to_exclusive(seeded: CallLogService) -> None:
    assert await ids(seeded, started_from=T0 + minute(1), started_to=T0 + minute(4)) == [
        "q-04",
        "q-03",
        "q-02",
    ]
    assert await ids(seeded, started_from=T0 + minute(5), started_to=T0 + minute(5.001), limit=2) == [
        "q-10",
        "q-09",
        "q-08",
        "q-07",
        "q-06",
    ]
    assert await ids(seeded, started_to=T0) == []
    assert await ids(seeded, started_from=T0 + minute(7)) == ["q-12"]


async def test_cursor_keeps_its_position_when_new_calls_arrive(seeded: CallLogService) -> None:
    first = await seeded.list_calls(CallQuery(limit=3))
    await seeded.ingest(CallScript("q-13", start=T0 + minute(60)).answered_call())
    second = await seeded.list_calls(CallQuery(limit=3, cursor=first.next_cursor))
    assert [e.call.call_id for e in second.items] == ["q-09", "q-08", "q-07"]


@pytest.mark.parametrize(
    ("query", "field"),
    [
        (CallQuery(limit=0), "limit"),
        (CallQuery(limit=501), "limit"),
        (CallQuery(number="abc"), "number"),
        (CallQuery(dispositions=("answered", "lost")), "dispositions"),
        (CallQuery(direction="sideways"), "direction"),
        (CallQuery(started_from=T0, started_to=T0), "started_to"),
        (CallQuery(started_from=T0 + minute(1), started_to=T0), "started_to"),
        (CallQuery(started_from=T0.replace(tzinfo=None)), "started_from"),
    ],
)
async def test_impossible_queries_name_the_field(
    service: CallLogService, query: CallQuery, field: str
) -> None:
    with pytest.raises(InvalidQuery) as raised:
        await service.list_calls(query)
    assert raised.value.field == field


async def test_bad_cursor_and_unknown_call(service: CallLogService) -> None:
    with pytest.raises(InvalidCursor):
        await service.list_calls(CallQuery(cursor="bm90LWEtY3Vyc29y.AAAA"))
    with pytest.raises(CallNotFound):
        await service.get_call("nope")


async def test_an_employees_view_filters_on_what_the_call_became(service: CallLogService) -> None:
    """The employee view filters disposition, direction and missed on the call's parties (their
    copies of the call's columns): they follow the call from ringing to its end, across batches, and
    the page and its total agree."""
    out = ev.DIRECTION_OUTBOUND
    ringing = CallScript("e-01", start=T0, extension="101", employee_id="emp-1")
    await service.ingest([ringing.offered(), ringing.ringing(1)])
    events = CallScript("e-02", start=T0 + minute(1), extension="101", employee_id="emp-1").answered_call()
    busy = CallScript(
        "e-03", start=T0 + minute(2), direction=out, caller="101", callee="+15551234567", employee_id="emp-1"
    )
    events += [busy.offered(), busy.ended(3, ev.DISPOSITION_BUSY, sip_status=486)]
    events += CallScript("e-04", start=T0 + minute(3), extension="102", employee_id="emp-2").missed_call()
    await service.ingest(events)

    async def view(**filters: object) -> tuple[list[str], int | None]:
        query = CallQuery(employee_id="emp-1", include_total=True, **filters)  # type: ignore[arg-type]
        page = await service.list_calls(query)
        return [entry.call.call_id for entry in page.items], page.total

    assert await view() == (["e-03", "e-02", "e-01"], 3)
    assert await view(dispositions=("missed",)) == ([], 0)
    assert await view(dispositions=("answered",)) == (["e-02"], 1)
    assert await view(direction="outbound", missed=True) == (["e-03"], 1)  # missed outgoing

    # The ringing call ends unanswered in a later batch: the employee's filtered view follows.
    await service.ingest([ringing.ended(20, ev.DISPOSITION_MISSED)])
    assert await view(dispositions=("missed",)) == (["e-01"], 1)
    assert await view(direction="inbound", missed=True) == (["e-01"], 1)
    assert await view(missed=False, started_from=T0 + minute(1)) == (["e-02"], 1)
    assert await view(dispositions=("missed",), extension="101") == (["e-01"], 1)
    assert await view(dispositions=("missed",), number="1555") == ([], 0)
