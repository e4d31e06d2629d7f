"""The mapping from what the gateway saw to CallEvent protobufs."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.events import call_event_subject
from telecrm_gateway import events
from telecrm_gateway.events import CallHeader, EndCause, Outcome, PartyInfo

INBOUND = ev.DIRECTION_INBOUND
T0 = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)


def header() -> CallHeader:
    return CallHeader(
        call_id="c-1",
        direction=INBOUND,
        caller=events.party("+15557654321", "US", display_name="Ann"),
        callee=events.party("+15551230000", "US", display_name="Alice", extension="101"),
        line="+15551230000",
        extension="101",
        employee_id="emp-1",
        sip_call_id="abc@host",
        source="sip-gateway/test",
        request_uri="sip:+15551230000@gw",
    )


@pytest.mark.parametrize(
    ("cause", "status", "expected"),
    [
        (EndCause.CALLER_HANGUP, 487, Outcome(ev.DISPOSITION_MISSED, 487, "Request Terminated", 16, 1)),
        (EndCause.CALLEE_HANGUP, 486, Outcome(ev.DISPOSITION_BUSY, 486, "Busy Here", 17, 2)),
        (EndCause.CALLEE_HANGUP, 600, Outcome(ev.DISPOSITION_BUSY, 600, "Busy Here", 17, 2)),
        (EndCause.CALLEE_HANGUP, 603, Outcome(ev.DISPOSITION_REJECTED, 603, "Busy Here", 21, 2)),
        (EndCause.CALLEE_HANGUP, 503, Outcome(ev.DISPOSITION_FAILED, 503, "Busy Here", 41, 3)),
        (EndCause.CALLEE_HANGUP, 404, Outcome(ev.DISPOSITION_FAILED, 404, "Busy Here", 1, 3)),
        (EndCause.CALLEE_HANGUP, 480, Outcome(ev.DISPOSITION_MISSED, 480, "Busy Here", 18, 3)),
        (EndCause.RING_TIMEOUT, 0, Outcome(ev.DISPOSITION_MISSED, 480, "Temporarily Unavailable", 19, 3)),
        (EndCause.NO_ROUTE, 0, Outcome(ev.DISPOSITION_FAILED, 404, "Not Found", 1, 3)),
        (EndCause.CALLER_FAILED, 408, Outcome(ev.DISPOSITION_FAILED, 408, "Busy Here", 102, 3)),
        (EndCause.SYSTEM_HANGUP, 0, Outcome(ev.DISPOSITION_CANCELLED, 480, "Temporarily Unavailable", 16, 3)),
        (EndCause.SHUTDOWN, 0, Outcome(ev.DISPOSITION_FAILED, 503, "Service Unavailable", 41, 3)),
    ],
)
def test_unanswered_outcomes(cause: EndCause, status: int, expected: Outcome) -> None:
    assert events.outcome(
        cause, direction=INBOUND, answered=False, sip_status=status, sip_reason="Busy Here"
    ) == (expected)


@pytest.mark.parametrize(
    ("cause", "by"),
    [
        (EndCause.CALLER_HANGUP, ev.HANGUP_BY_CALLER),
        (EndCause.CALLEE_HANGUP, ev.HANGUP_BY_CALLEE),
        (EndCause.SYSTEM_HANGUP, ev.HANGUP_BY_SYSTEM),
        (EndCause.SHUTDOWN, ev.HANGUP_BY_SYSTEM),
    ],
)
def test_answered_calls_end_answered_whoever_hangs_up(cause: EndCause, by: int) -> None:
    result = events.outcome(cause, direction=INBOUND, answered=True, sip_status=200)
    assert result == Outcome(ev.DISPOSITION_ANSWERED, 200, "OK", 16, by)


def test_internal_calls_cancelled_by_the_caller_are_missed_too() -> None:
    result = events.outcome(EndCause.CALLER_HANGUP, direction=ev.DIRECTION_INTERNAL, answered=False)
    assert result.disposition == ev.DISPOSITION_MISSED


@pytest.mark.parametrize(
    ("agent", "caller"), [(486, 486), (603, 603), (404, 404), (503, 500), (487, 480), (0, 480)]
)
def test_what_the_caller_hears_when_the_agent_leg_fails(agent: int, caller: int) -> None:
    assert events.caller_status_for_callee_failure(agent) == caller


def test_parties_get_their_e164_form() -> None:
    assert events.party("5557654321", "US") == PartyInfo("5557654321", "+15557654321")
    assert events.party("101", "US", extension="101") == PartyInfo("101", "", "", "101")
    assert events.party("anonymous", "US").e164 == ""


def test_every_event_repeats_the_call_header() -> None:
    built = [
        events.offered(header(), sequence=1, at=T0),
        events.ringing(header(), sequence=2, at=T0, extension="101", leg_id="leg@x"),
        events.answered(header(), sequence=3, at=T0, extension="101", leg_id="leg@x", started_at=T0),
        events.ended(
            header(),
            sequence=4,
            at=T0,
            result=events.outcome(EndCause.CALLER_HANGUP, direction=INBOUND, answered=True),
            started_at=T0,
            answered_at=T0,
            answered_extension="101",
        ),
    ]
    assert [call_event_subject(e) for e in built] == [
        "tel.call.offered",
        "tel.call.ringing",
        "tel.call.answered",
        "tel.call.ended",
    ]
    assert len({e.event_id for e in built}) == 4
    for sequence, event in enumerate(built, start=1):
        assert event.sequence == sequence
        assert event.call_id == "c-1"
        assert event.direction == INBOUND
        assert (event.caller.number, event.caller.e164, event.caller.display_name) == (
            "+15557654321",
            "+15557654321",
            "Ann",
        )
        assert (event.callee.extension, event.callee.display_name) == ("101", "Alice")
        assert (event.line, event.extension, event.employee_id) == ("+15551230000", "101", "emp-1")
        assert (event.sip_call_id, event.source) == ("abc@host", "sip-gateway/test")
        assert event.occurred_at.ToDatetime(tzinfo=UTC) == T0
    assert built[0].offered.request_uri == "sip:+15551230000@gw"
    assert (built[1].ringing.extension, built[1].ringing.leg_id) == ("101", "leg@x")
    assert built[2].answered.started_at.ToDatetime(tzinfo=UTC) == T0


def test_ended_repeats_start_and_answer_times() -> None:
    answered_at = T0 + timedelta(seconds=3)
    ended = events.ended(
        header(),
        sequence=4,
        at=T0 + timedelta(seconds=10),
        result=events.outcome(EndCause.CALLEE_HANGUP, direction=INBOUND, answered=True),
        started_at=T0,
        answered_at=answered_at,
        answered_extension="101",
    ).ended
    assert ended.started_at.ToDatetime(tzinfo=UTC) == T0
    assert ended.answered_at.ToDatetime(tzinfo=UTC) == answered_at
    assert (ended.answered_extension, ended.hangup_by, ended.sip_status) == ("101", ev.HANGUP_BY_CALLEE, 200)


def test_unanswered_calls_have_no_answer_time() -> None:
    event = events.ended(
        header(),
        sequence=2,
        at=T0,
        result=events.outcome(EndCause.NO_ROUTE, direction=INBOUND, answered=False),
        started_at=T0,
        answered_at=None,
        answered_extension="",
    )
    assert not event.ended.HasField("answered_at")
    assert event.ended.HasField("started_at")
