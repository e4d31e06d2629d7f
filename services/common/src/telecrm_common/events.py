"""Event contracts on the bus: which protobuf travels on which subject, declared once.

Every ``tel.call.*`` subject carries a :class:`CallEvent`; the member of its ``kind`` oneof names the
subject; likewise every ``calls.missed.*`` subject carries a :class:`MissedCallEvent` (created, updated,
resolved). Decoders reject payloads that parse as protobuf but are not a usable event (protobuf parses
many random byte strings without complaint), so such payloads are dead-lettered, not stored.
"""

from __future__ import annotations

from typing import TypeVar

from google.protobuf.message import DecodeError, Message

from telecrm.calls.v1 import call_log_events_pb2 as record_pb
from telecrm.calls.v1 import missed_calls_pb2 as missed_pb
from telecrm.crm.v1 import directory_events_pb2 as directory_pb
from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.bus import ConsumerSpec, InvalidMessage, StreamSpec

CALL_SUBJECT_PREFIX = "tel.call"
CALL_SUBJECTS = {
    kind: f"{CALL_SUBJECT_PREFIX}.{kind}"
    for kind in (
        "offered",
        "ringing",
        "answered",
        "held",
        "resumed",
        "transferred",
        "ended",
        "leg_ended",
        "dtmf",
    )
}
RECORDING_READY_SUBJECT = "tel.recording.ready"
# Published by the call log (on the CALLS stream): the member of MissedCallEvent's ``kind`` names it.
MISSED_CALL_SUBJECT_PREFIX = "calls.missed"
MISSED_CALL_SUBJECTS = {
    kind: f"{MISSED_CALL_SUBJECT_PREFIX}.{kind}" for kind in ("created", "updated", "resolved")
}

# Published by the call log: the member of CallRecordEvent's ``kind`` names it.
CALL_RECORD_SUBJECT_PREFIX = "calls.record"
CALL_RECORD_SUBJECTS = {kind: f"{CALL_RECORD_SUBJECT_PREFIX}.{kind}" for kind in ("created", "updated")}
# Published by crm about its employees and contacts (read models elsewhere).
EMPLOYEE_SUBJECT_PREFIX = "crm.employee"
CONTACT_SUBJECT_PREFIX = "crm.contact"
DIRECTORY_KINDS = ("created", "updated", "deleted")
EMPLOYEE_SUBJECTS = {kind: f"{EMPLOYEE_SUBJECT_PREFIX}.{kind}" for kind in DIRECTORY_KINDS}
CONTACT_SUBJECTS = {kind: f"{CONTACT_SUBJECT_PREFIX}.{kind}" for kind in DIRECTORY_KINDS}

T = TypeVar("T", bound=Message)

TEL_STREAM = StreamSpec(name="TEL", subjects=("tel.>",))
CALLS_STREAM = StreamSpec(name="CALLS", subjects=("calls.>",))
CRM_STREAM = StreamSpec(name="CRM", subjects=("crm.>",))
STREAMS: tuple[StreamSpec, ...] = (TEL_STREAM, CALLS_STREAM, CRM_STREAM)


def call_event_subject(event: ev.CallEvent) -> str:
    """The subject a call event is published on: ``tel.call.<kind>``."""
    kind = event.WhichOneof("kind")
    if kind is None:
        raise ValueError("a CallEvent needs its kind set (offered, ringing, ... ended)")
    return CALL_SUBJECTS[kind]


def decode_call_event(subject: str, data: bytes) -> ev.CallEvent:
    """Decode and validate a CallEvent; raise InvalidMessage when it cannot be handled."""
    event = _parse(ev.CallEvent, data)
    kind = event.WhichOneof("kind")
    if not event.event_id or not event.call_id or kind is None:
        missing = {"event_id": not event.event_id, "call_id": not event.call_id, "kind": kind is None}
        raise InvalidMessage(f"CallEvent without {', '.join(name for name, gone in missing.items() if gone)}")
    if subject.startswith(CALL_SUBJECT_PREFIX + ".") and subject != CALL_SUBJECTS.get(kind):
        raise InvalidMessage(f"a {kind} event on {subject}")
    return event


def decode_recording_ready(subject: str, data: bytes) -> ev.RecordingReady:
    event = _parse(ev.RecordingReady, data)
    if not event.event_id or not event.call_id or not event.location:
        raise InvalidMessage("RecordingReady without event_id, call_id or location")
    return event


def decode_tel_event(subject: str, data: bytes) -> ev.CallEvent | ev.RecordingReady:
    """Decoder for a consumer of ``tel.>``: call events and recording-ready events."""
    if subject == RECORDING_READY_SUBJECT:
        return decode_recording_ready(subject, data)
    if subject.startswith(CALL_SUBJECT_PREFIX + "."):
        return decode_call_event(subject, data)
    raise InvalidMessage(f"no event type is declared for {subject}")


def tel_consumer(durable: str, **overrides: object) -> ConsumerSpec[ev.CallEvent | ev.RecordingReady]:
    """A durable consumer of every telephony event (call events and recordings)."""
    return ConsumerSpec(
        stream=TEL_STREAM.name,
        durable=durable,
        filter_subjects=(f"{CALL_SUBJECT_PREFIX}.>", RECORDING_READY_SUBJECT),
        decode=decode_tel_event,
        **overrides,  # type: ignore[arg-type]
    )


def missed_call_subject(event: missed_pb.MissedCallEvent) -> str:
    """The subject a missed-call event is published on: ``calls.missed.<kind>``."""
    kind = event.WhichOneof("kind")
    if kind is None:
        raise ValueError("a MissedCallEvent needs its kind set (created, updated or resolved)")
    return MISSED_CALL_SUBJECTS[kind]


def decode_missed_call_event(subject: str, data: bytes) -> missed_pb.MissedCallEvent:
    """Decode and validate a MissedCallEvent; raise InvalidMessage when it cannot be handled."""
    event = _parse(missed_pb.MissedCallEvent, data)
    kind = event.WhichOneof("kind")
    if not event.event_id or kind is None:
        raise InvalidMessage("MissedCallEvent without event_id or kind")
    if not getattr(event, kind).id:
        raise InvalidMessage("MissedCallEvent without the missed call's id")
    if subject.startswith(MISSED_CALL_SUBJECT_PREFIX + ".") and subject != MISSED_CALL_SUBJECTS[kind]:
        raise InvalidMessage(f"a {kind} missed-call event on {subject}")
    return event


def missed_calls_consumer(durable: str, **overrides: object) -> ConsumerSpec[missed_pb.MissedCallEvent]:
    """A durable consumer of the missed-call events (``calls.missed.*``), for crm and reports."""
    return ConsumerSpec(
        stream=CALLS_STREAM.name,
        durable=durable,
        filter_subjects=(f"{MISSED_CALL_SUBJECT_PREFIX}.>",),
        decode=decode_missed_call_event,
        **overrides,  # type: ignore[arg-type]
    )


def call_record_subject(event: record_pb.CallRecordEvent) -> str:
    """The subject a call-record event is published on: ``calls.record.<kind>``."""
    kind = event.WhichOneof("kind")
    if kind is None:
        raise ValueError("a CallRecordEvent needs its kind set (created or updated)")
    return CALL_RECORD_SUBJECTS[kind]


def decode_call_record_event(subject: str, data: bytes) -> record_pb.CallRecordEvent:
    """Decode and validate a CallRecordEvent; raise InvalidMessage when it cannot be handled."""
    event = _parse(record_pb.CallRecordEvent, data)
    kind = event.WhichOneof("kind")
    if not event.event_id or kind is None or not getattr(event, kind).call_id:
        raise InvalidMessage("CallRecordEvent without event_id, kind or call_id")
    if subject.startswith(CALL_RECORD_SUBJECT_PREFIX + ".") and subject != CALL_RECORD_SUBJECTS[kind]:
        raise InvalidMessage(f"a {kind} call-record event on {subject}")
    return event


def call_records_consumer(durable: str, **overrides: object) -> ConsumerSpec[record_pb.CallRecordEvent]:
    """A durable consumer of the call log's record events (``calls.record.*``), for crm's journal."""
    return ConsumerSpec(
        stream=CALLS_STREAM.name,
        durable=durable,
        filter_subjects=(f"{CALL_RECORD_SUBJECT_PREFIX}.>",),
        decode=decode_call_record_event,
        **overrides,  # type: ignore[arg-type]
    )


DirectoryEvent = directory_pb.EmployeeEvent | directory_pb.ContactEvent


def directory_event_subject(event: DirectoryEvent) -> str:
    """``crm.employee.<kind>`` or ``crm.contact.<kind>``."""
    kind = event.WhichOneof("kind")
    if kind is None:
        raise ValueError(f"a {type(event).__name__} needs its kind set (created, updated or deleted)")
    subjects = EMPLOYEE_SUBJECTS if isinstance(event, directory_pb.EmployeeEvent) else CONTACT_SUBJECTS
    return subjects[kind]


def decode_directory_event(subject: str, data: bytes) -> DirectoryEvent:
    """Decoder for a consumer of crm's employee and contact events."""
    event: DirectoryEvent
    if subject.startswith(EMPLOYEE_SUBJECT_PREFIX + "."):
        event, subjects, key = _parse(directory_pb.EmployeeEvent, data), EMPLOYEE_SUBJECTS, "employee_id"
    elif subject.startswith(CONTACT_SUBJECT_PREFIX + "."):
        event, subjects, key = _parse(directory_pb.ContactEvent, data), CONTACT_SUBJECTS, "contact_id"
    else:
        raise InvalidMessage(f"no event type is declared for {subject}")
    kind = event.WhichOneof("kind")
    if not event.event_id or kind is None or not getattr(getattr(event, kind), key):
        raise InvalidMessage(f"{type(event).__name__} without event_id, kind or {key}")
    if subject != subjects[kind]:
        raise InvalidMessage(f"a {kind} {type(event).__name__} on {subject}")
    return event


def directory_consumer(durable: str, **overrides: object) -> ConsumerSpec[DirectoryEvent]:
    """A durable consumer of crm's employee and contact events (``crm.employee.*``, ``crm.contact.*``)."""
    return ConsumerSpec(
        stream=CRM_STREAM.name,
        durable=durable,
        filter_subjects=(f"{EMPLOYEE_SUBJECT_PREFIX}.>", f"{CONTACT_SUBJECT_PREFIX}.>"),
        decode=decode_directory_event,
        **overrides,  # type: ignore[arg-type]
    )


def _parse(cls: type[T], data: bytes) -> T:
    message = cls()
    try:
        message.ParseFromString(data)
    except DecodeError as exc:
        raise InvalidMessage(f"not a {cls.DESCRIPTOR.full_name}: {exc}") from exc
    return message
