"""The fold of a call's events into its record: outcomes, any order, duplicates, missing events."""

from __future__ import annotations

import itertools
import random
import typing

import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls import schemas
from telecrm_calls.service import build_record
from telecrm_calls.testing import T0, CallScript, record_values
from telecrm_common.telephony import DIRECTION_NAMES, DISPOSITION_NAMES, HANGUP_BY_NAMES


def test_answered_inbound_call() -> None:
    call = CallScript("c-answered", employee_id="emp-7")
    record = build_record(call.answered_call(ring=5, talk=60))

    assert record.state == "ended"
    assert record.direction == "inbound"
    assert record.disposition == "answered"
    assert record.started_at == T0
    assert record.answered_at == call.at(5)
    assert record.ended_at == call.at(65)
    assert (record.ring_ms, record.talk_ms) == (5000, 60000)
    assert (record.sip_status, record.q850_cause, record.hangup_by) == (200, 16, "caller")
    assert record.incomplete is False
    assert record.caller_e164 == "+74993690439"
    assert record.extension == "101"
    assert record.employee_id == "emp-7"
    assert record.sip_call_id == "sip-c-answered"
    assert record.last_sequence == 4


def test_missed_inbound_call() -> None:
    record = build_record(CallScript("c-missed").missed_call(ring=20))

    assert record.disposition == "missed"
    assert record.answered_at is None
    assert (record.ring_ms, record.talk_ms) == (20000, 0)
    assert (record.sip_status, record.hangup_by) == (487, "caller")


def test_cancelled_outbound_call() -> None:
    call = CallScript("c-cancel", direction=ev.DIRECTION_OUTBOUND, caller="101", callee="+74993690439")
    events = [
        call.offered(),
        call.ringing(1),
        call.ended(9, ev.DISPOSITION_CANCELLED, sip_status=487, hangup_by=ev.HANGUP_BY_CALLER),
    ]
    record = build_record(events)

    assert (record.direction, record.disposition, record.ring_ms, record.talk_ms) == (
        "outbound",
        "cancelled",
        9000,
        0,
    )
    assert record.callee_e164 == "+74993690439"
    assert record.caller_e164 is None  # "101" is internal: no E.164


def test_busy_call() -> None:
    call = CallScript("c-busy", direction=ev.DIRECTION_OUTBOUND)
    record = build_record(
        [call.offered(), call.ended(2, ev.DISPOSITION_BUSY, sip_status=486, q850=17, reason="Busy Here")]
    )
    assert (record.disposition, record.sip_status, record.sip_reason, record.q850_cause) == (
        "busy",
        486,
        "Busy Here",
        17,
    )
    assert record.ring_ms == 2000


def test_failed_call_404() -> None:
    call = CallScript("c-404", direction=ev.DIRECTION_OUTBOUND, callee="+15550000000")
    record = build_record(
        [call.offered(), call.ended(0.35, ev.DISPOSITION_FAILED, sip_status=404, q850=1, reason="Not Found")]
    )
    assert (record.disposition, record.sip_status, record.q850_cause, record.state) == (
        "failed",
        404,
        1,
        "ended",
    )
    assert (record.ring_ms, record.talk_ms) == (350, 0)


@pytest.mark.parametrize(
    ("direction", "sip_status", "hangup_by", "disposition", "q850"),
    [
        (ev.DIRECTION_OUTBOUND, 486, ev.HANGUP_BY_UNSPECIFIED, "busy", 17),
        (ev.DIRECTION_OUTBOUND, 603, ev.HANGUP_BY_CALLEE, "rejected", 21),
        (ev.DIRECTION_OUTBOUND, 480, ev.HANGUP_BY_SYSTEM, "no_answer", 18),
        (ev.DIRECTION_INBOUND, 480, ev.HANGUP_BY_SYSTEM, "missed", 18),
        (ev.DIRECTION_INBOUND, 487, ev.HANGUP_BY_CALLER, "missed", 16),
        (ev.DIRECTION_OUTBOUND, 487, ev.HANGUP_BY_CALLER, "cancelled", 16),
        (ev.DIRECTION_OUTBOUND, 404, ev.HANGUP_BY_SYSTEM, "failed", 1),
    ],
)
def test_disposition_and_cause_derived_when_the_gateway_left_them_out(
    direction: ev.Direction.ValueType,
    sip_status: int,
    hangup_by: ev.HangupBy.ValueType,
    disposition: str,
    q850: int,
) -> None:
    call = CallScript("c-derived", direction=direction)
    record = build_record([call.offered(), call.ended(3, sip_status=sip_status, hangup_by=hangup_by)])
    assert (record.disposition, record.q850_cause) == (disposition, q850)


def test_answered_disposition_derived_from_the_answer() -> None:
    call = CallScript("c-derived-answer")
    record = build_record([call.offered(), call.answered(4), call.ended(10, sip_status=200)])
    assert (record.disposition, record.ring_ms, record.talk_ms) == ("answered", 4000, 6000)


SCENARIOS = {
    "answered": lambda: CallScript("c-any").answered_call(),
    "missed": lambda: CallScript("c-any").missed_call(),
    "held": lambda: (lambda c: [c.offered(), c.answered(3), c.held(10), c.ended(30, sip_status=200)])(
        CallScript("c-any")
    ),
}


@pytest.mark.parametrize("scenario", sorted(SCENARIOS))
def test_every_order_gives_the_same_record(scenario: str) -> None:
    events = SCENARIOS[scenario]()
    expected = record_values(build_record(events))
    for order in itertools.permutations(events):
        assert record_values(build_record(order)) == expected


def test_duplicates_give_the_same_record() -> None:
    events = CallScript("c-dup").answered_call()
    expected = record_values(build_record(events))
    rng = random.Random(7)
    for _ in range(50):
        batch = events + [ev.CallEvent.FromString(e.SerializeToString()) for e in rng.choices(events, k=5)]
        rng.shuffle(batch)
        assert record_values(build_record(batch)) == expected


def test_missing_offer_gives_an_incomplete_record_with_the_repeated_start() -> None:
    call = CallScript("c-late-consumer")
    events = call.answered_call(ring=5, talk=60)
    record = build_record(events[2:])  # answered and ended only

    assert record.incomplete is True
    assert record.started_at == T0  # repeated by answered and ended
    assert (record.ring_ms, record.talk_ms, record.disposition) == (5000, 60000, "answered")
    # The same record, but for the leg's ring time (its ringing event was not seen).
    complete = record_values(build_record(events))
    assert complete | {"incomplete": True, "legs": record.legs} == record_values(record)
    assert [(leg["extension"], leg["disposition"], leg["rang_at"]) for leg in record.legs] == [
        ("101", "answered", None)
    ]


def test_lone_ended_without_repeated_times_starts_at_its_own_time() -> None:
    call = CallScript("c-lone")
    ended = call.ended(30, ev.DISPOSITION_MISSED, sip_status=487)
    ended.ended.ClearField("started_at")
    record = build_record([ended])

    assert record.incomplete is True
    assert record.started_at == call.at(30)
    assert (record.state, record.ring_ms, record.talk_ms) == ("ended", 0, 0)


def test_answered_without_a_known_answer_time_is_incomplete() -> None:
    call = CallScript("c-no-answer-time")
    record = build_record([call.offered(), call.ended(30, ev.DISPOSITION_ANSWERED, sip_status=200)])
    assert record.incomplete is True
    assert (record.ring_ms, record.talk_ms, record.answered_at) == (None, None, None)


def test_late_events_after_ended_do_not_reopen_the_call() -> None:
    call = CallScript("c-late")
    events = call.answered_call()
    stray = [call.ringing(66, extension="102"), call.held(67)]  # reported after the end
    record = build_record(events + stray)

    assert record.state == "ended"
    assert record_values(record) == record_values(build_record(events)) | {"last_sequence": 6}


def test_live_states() -> None:
    call = CallScript("c-live")
    offered, ringing, answered = call.offered(), call.ringing(1), call.answered(4)

    ringing_record = build_record([offered, ringing])
    assert (ringing_record.state, ringing_record.ring_ms, ringing_record.disposition) == (
        "ringing",
        None,
        None,
    )

    talking = build_record([answered, offered, ringing])
    assert (talking.state, talking.ring_ms, talking.talk_ms, talking.ended_at) == (
        "answered",
        4000,
        None,
        None,
    )


def test_ring_group_is_one_call_for_the_extension_that_answered() -> None:
    call = CallScript("c-group", extension="600")
    events = [
        call.offered(),
        call.ringing(0.1, extension="101"),
        call.ringing(0.1, extension="102"),
        call.ringing(0.1, extension="103"),
        call.answered(7, extension="102"),
        call.ended(40, ev.DISPOSITION_ANSWERED, sip_status=200, answered_at=7, answered_extension="102"),
    ]
    record = build_record(events)
    assert (record.extension, record.disposition, record.ring_ms) == ("102", "answered", 7000)

    missed = CallScript("c-group-missed", extension="600")
    record = build_record([missed.offered(), missed.ringing(0.1, "101"), missed.ended(30, sip_status=487)])
    assert record.extension == "600"


def test_outbound_keeps_the_calling_extension() -> None:
    call = CallScript("c-out", direction=ev.DIRECTION_OUTBOUND, caller="101", extension="101")
    record = build_record(
        [call.offered(), call.answered(3, extension=""), call.ended(9, sip_status=200, answered_at=3)]
    )
    assert record.extension == "101"


def test_header_fields_learnt_later_are_kept() -> None:
    call = CallScript("c-names")
    offered = call.offered()
    answered = call.answered(2)
    answered.caller.display_name = "Ivan Petrov"
    answered.employee_id = "emp-1"
    answered.context["contact_id"] = "42"
    answered.sip_call_id = "sip-other-leg"
    record = build_record([answered, offered])

    assert (record.caller_name, record.employee_id, record.context) == (
        "Ivan Petrov",
        "emp-1",
        {"contact_id": "42"},
    )
    assert record.sip_call_id == "sip-c-names"  # the offered leg's


def test_events_of_several_calls_are_refused() -> None:
    with pytest.raises(ValueError, match="several calls"):
        build_record([CallScript("a").offered(), CallScript("b").offered()])
    with pytest.raises(ValueError, match="at least one"):
        build_record([])


def test_rest_names_are_the_telephony_names() -> None:
    assert set(typing.get_args(schemas.DispositionName)) == set(DISPOSITION_NAMES.values())
    assert set(typing.get_args(schemas.DirectionName)) == set(DIRECTION_NAMES.values())
    assert set(typing.get_args(schemas.HangupByName)) == set(HANGUP_BY_NAMES.values())
