"""Event contracts: which subject each call event travels on, and what the decoders refuse."""

from __future__ import annotations

import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.bus import InvalidMessage
from telecrm_common.events import (
    CALL_SUBJECTS,
    RECORDING_READY_SUBJECT,
    call_event_subject,
    decode_call_event,
    decode_tel_event,
    tel_consumer,
)

KINDS = [field.name for field in ev.CallEvent.DESCRIPTOR.oneofs_by_name["kind"].fields]


def event_of_kind(kind: str, **fields: object) -> ev.CallEvent:
    event = ev.CallEvent(event_id="e-1", call_id="c-1", sequence=1, **fields)  # type: ignore[arg-type]
    getattr(event, kind).SetInParent()
    return event


def test_every_kind_of_the_proto_has_a_subject() -> None:
    assert sorted(CALL_SUBJECTS) == sorted(KINDS)
    assert KINDS == [
        "offered",
        "ringing",
        "answered",
        "held",
        "resumed",
        "transferred",
        "ended",
        "leg_ended",
        "dtmf",
    ]


@pytest.mark.parametrize("kind", KINDS)
def test_call_event_subject_names_the_kind(kind: str) -> None:
    assert call_event_subject(event_of_kind(kind)) == f"tel.call.{kind}"


def test_call_event_subject_needs_a_kind() -> None:
    with pytest.raises(ValueError, match="kind"):
        call_event_subject(ev.CallEvent(event_id="e-1", call_id="c-1"))


@pytest.mark.parametrize("kind", KINDS)
def test_decode_tel_event_round_trips_each_kind_on_its_subject(kind: str) -> None:
    event = event_of_kind(kind, direction=ev.DIRECTION_INBOUND)
    decoded = decode_tel_event(call_event_subject(event), event.SerializeToString())
    assert decoded == event


@pytest.mark.parametrize(
    ("kind", "subject"),
    [("ended", "tel.call.offered"), ("offered", "tel.call.ended"), ("ringing", "tel.call.bogus")],
)
def test_decode_tel_event_rejects_a_kind_on_the_wrong_subject(kind: str, subject: str) -> None:
    with pytest.raises(InvalidMessage, match=f"a {kind} event on {subject}"):
        decode_tel_event(subject, event_of_kind(kind).SerializeToString())


@pytest.mark.parametrize("subject", ["tel.unknown", "tel.call", "tel.callx.offered", "tel.recording.done"])
def test_decode_tel_event_rejects_unknown_subjects(subject: str) -> None:
    with pytest.raises(InvalidMessage, match=f"no event type is declared for {subject}"):
        decode_tel_event(subject, event_of_kind("offered").SerializeToString())


@pytest.mark.parametrize(
    ("event", "missing"),
    [
        (ev.CallEvent(call_id="c", offered=ev.CallOffered()), "event_id"),
        (ev.CallEvent(event_id="e", offered=ev.CallOffered()), "call_id"),
        (ev.CallEvent(event_id="e", call_id="c"), "kind"),
        (ev.CallEvent(sequence=3), "event_id, call_id, kind"),
    ],
)
def test_decode_call_event_rejects_events_missing_what_consumers_need(
    event: ev.CallEvent, missing: str
) -> None:
    with pytest.raises(InvalidMessage, match=f"CallEvent without {missing}$"):
        decode_call_event("tel.call.offered", event.SerializeToString())


def test_decode_call_event_rejects_bytes_that_are_not_protobuf() -> None:
    with pytest.raises(InvalidMessage, match=r"not a telecrm\.events\.v1\.CallEvent"):
        decode_call_event("tel.call.offered", b"\xff\xff\xff\xff")


def test_recording_ready_is_decoded_on_its_subject_and_validated() -> None:
    ready = ev.RecordingReady(event_id="r-1", call_id="c-1", location="/rec/c-1.wav")
    assert decode_tel_event(RECORDING_READY_SUBJECT, ready.SerializeToString()) == ready
    with pytest.raises(InvalidMessage, match="RecordingReady without"):
        decode_tel_event(RECORDING_READY_SUBJECT, ev.RecordingReady(event_id="r-1").SerializeToString())


def test_tel_consumer_covers_call_events_and_recordings() -> None:
    spec = tel_consumer("calls", max_deliver=4)
    assert spec.stream == "TEL"
    assert spec.durable == "calls"
    assert spec.filter_subjects == ("tel.call.>", RECORDING_READY_SUBJECT)
    assert spec.max_deliver == 4
    assert spec.decode is decode_tel_event
