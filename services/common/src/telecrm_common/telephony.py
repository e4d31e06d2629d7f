"""Telephony vocabulary, mapped explicitly in one place: SIP statuses, Q.850 causes, dispositions.

The tables follow RFC 3398 (SIP status -> ISDN cause), the Q.850 cause values that Asterisk and
FreeSWITCH report as HANGUPCAUSE, and the call statuses CRMs show (answered, missed, busy...).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass

import phonenumbers

from telecrm.events.v1 import call_events_pb2 as ev

# Q.850 cause values used by the suite.
Q850_UNALLOCATED_NUMBER = 1
Q850_NORMAL_CLEARING = 16
Q850_USER_BUSY = 17
Q850_NO_USER_RESPONDING = 18
Q850_NO_ANSWER = 19
Q850_CALL_REJECTED = 21
Q850_NUMBER_CHANGED = 22
Q850_EXCHANGE_ROUTING_ERROR = 25
Q850_DESTINATION_OUT_OF_ORDER = 27
Q850_INVALID_NUMBER_FORMAT = 28
Q850_NORMAL_UNSPECIFIED = 31
Q850_NO_CIRCUIT_AVAILABLE = 34
Q850_NETWORK_OUT_OF_ORDER = 38
Q850_TEMPORARY_FAILURE = 41
Q850_SWITCHING_EQUIPMENT_CONGESTION = 42
Q850_SERVICE_UNAVAILABLE = 63
Q850_BEARER_NOT_IMPLEMENTED = 65
Q850_SERVICE_NOT_IMPLEMENTED = 79
Q850_INCOMPATIBLE_DESTINATION = 88
Q850_RECOVERY_ON_TIMER_EXPIRY = 102
Q850_INTERWORKING = 127

# RFC 3398 section 8.2.6.1: SIP final response -> Q.850 cause.
SIP_TO_Q850: dict[int, int] = {
    200: Q850_NORMAL_CLEARING,
    400: Q850_TEMPORARY_FAILURE,
    401: Q850_CALL_REJECTED,
    402: Q850_CALL_REJECTED,
    403: Q850_CALL_REJECTED,
    404: Q850_UNALLOCATED_NUMBER,
    405: Q850_SERVICE_UNAVAILABLE,
    406: Q850_SERVICE_NOT_IMPLEMENTED,
    407: Q850_CALL_REJECTED,
    408: Q850_RECOVERY_ON_TIMER_EXPIRY,
    410: Q850_NUMBER_CHANGED,
    413: Q850_INTERWORKING,
    414: Q850_INTERWORKING,
    415: Q850_SERVICE_NOT_IMPLEMENTED,
    416: Q850_INTERWORKING,
    420: Q850_INTERWORKING,
    421: Q850_INTERWORKING,
    423: Q850_INTERWORKING,
    480: Q850_NO_USER_RESPONDING,
    481: Q850_TEMPORARY_FAILURE,
    482: Q850_EXCHANGE_ROUTING_ERROR,  # loop detected
    483: Q850_EXCHANGE_ROUTING_ERROR,  # too many hops
    484: Q850_INVALID_NUMBER_FORMAT,
    485: Q850_UNALLOCATED_NUMBER,
    486: Q850_USER_BUSY,
    487: Q850_NORMAL_CLEARING,  # the originator cancelled: a normal end from the network's view
    488: Q850_INCOMPATIBLE_DESTINATION,
    500: Q850_TEMPORARY_FAILURE,
    501: Q850_SERVICE_NOT_IMPLEMENTED,
    502: Q850_NETWORK_OUT_OF_ORDER,
    503: Q850_TEMPORARY_FAILURE,
    504: Q850_RECOVERY_ON_TIMER_EXPIRY,
    505: Q850_INTERWORKING,
    513: Q850_INTERWORKING,
    600: Q850_USER_BUSY,
    603: Q850_CALL_REJECTED,
    604: Q850_UNALLOCATED_NUMBER,
    606: Q850_INCOMPATIBLE_DESTINATION,
}


def q850_for_sip_status(status: int) -> int:
    """The Q.850 cause for a SIP final status (RFC 3398), falling back by status class."""
    if status in SIP_TO_Q850:
        return SIP_TO_Q850[status]
    if 200 <= status < 300:
        return Q850_NORMAL_CLEARING
    if 400 <= status < 500:
        return Q850_INTERWORKING
    if 500 <= status < 600:
        return Q850_TEMPORARY_FAILURE
    if status >= 600:
        return Q850_NORMAL_UNSPECIFIED
    return Q850_NORMAL_UNSPECIFIED


def disposition_for_unanswered(
    direction: ev.Direction.ValueType,
    sip_status: int,
    *,
    cancelled_by_caller: bool = False,
    timed_out: bool = False,
) -> ev.Disposition.ValueType:
    """What an unanswered call (or leg) is called in the call log.

    | situation                                   | inbound / internal | outbound   |
    |---------------------------------------------|--------------------|------------|
    | the caller hung up while it rang            | missed             | cancelled  |
    | nobody answered before the ring timeout     | missed             | no_answer  |
    | 486 Busy Here, 600 Busy Everywhere          | busy               | busy       |
    | 603 Decline                                 | rejected           | rejected   |
    | 480, 408 (the phone did not pick up)        | missed             | no_answer  |
    | anything else (404, 5xx, 488...)            | failed             | failed     |
    """
    inbound = direction != ev.DIRECTION_OUTBOUND
    if cancelled_by_caller:
        return ev.DISPOSITION_MISSED if inbound else ev.DISPOSITION_CANCELLED
    if sip_status in (486, 600):
        return ev.DISPOSITION_BUSY
    if sip_status == 603:
        return ev.DISPOSITION_REJECTED
    if timed_out or sip_status in (480, 408):
        return ev.DISPOSITION_MISSED if inbound else ev.DISPOSITION_NO_ANSWER
    return ev.DISPOSITION_FAILED


DISPOSITION_NAMES: dict[ev.Disposition.ValueType, str] = {
    ev.DISPOSITION_ANSWERED: "answered",
    ev.DISPOSITION_MISSED: "missed",
    ev.DISPOSITION_BUSY: "busy",
    ev.DISPOSITION_NO_ANSWER: "no_answer",
    ev.DISPOSITION_FAILED: "failed",
    ev.DISPOSITION_CANCELLED: "cancelled",
    ev.DISPOSITION_REJECTED: "rejected",
}
DISPOSITION_BY_NAME = {name: value for value, name in DISPOSITION_NAMES.items()}


@dataclass(frozen=True)
class DispositionCodes:
    """How one disposition of ours is written by the PBXs and CRMs our users come from."""

    q850: int  # the usual ITU-T Q.850 cause (the call's own cause wins when it has one)
    asterisk_cdr: str  # Asterisk CDR(disposition)
    asterisk_dialstatus: str  # Asterisk ${DIALSTATUS} after Dial()
    bitrix24: str  # Bitrix24 telephony.externalcall.finish STATUS_CODE (its call codes table)
    planfix: str  # Planfix VoIP API call status (it takes Asterisk's DIALSTATUS words)


# The one table of disposition codes. Bitrix24 has no "busy" for outgoing and "missed" for incoming
# alike: 304 is its missed call, 486 busy, 603 declined, 603-S cancelled, 480/404/503 failures.
DISPOSITION_CODES: dict[ev.Disposition.ValueType, DispositionCodes] = {
    ev.DISPOSITION_ANSWERED: DispositionCodes(Q850_NORMAL_CLEARING, "ANSWERED", "ANSWER", "200", "ANSWER"),
    ev.DISPOSITION_MISSED: DispositionCodes(Q850_NO_ANSWER, "NO ANSWER", "NOANSWER", "304", "NOANSWER"),
    ev.DISPOSITION_NO_ANSWER: DispositionCodes(Q850_NO_ANSWER, "NO ANSWER", "NOANSWER", "304", "NOANSWER"),
    ev.DISPOSITION_BUSY: DispositionCodes(Q850_USER_BUSY, "BUSY", "BUSY", "486", "BUSY"),
    ev.DISPOSITION_REJECTED: DispositionCodes(Q850_CALL_REJECTED, "BUSY", "BUSY", "603", "BUSY"),
    ev.DISPOSITION_CANCELLED: DispositionCodes(
        Q850_NORMAL_CLEARING, "NO ANSWER", "CANCEL", "603-S", "CANCEL"
    ),
    ev.DISPOSITION_FAILED: DispositionCodes(
        Q850_TEMPORARY_FAILURE, "FAILED", "CHANUNAVAIL", "503", "CHANUNAVAIL"
    ),
}
# Failures Bitrix24 tells apart by the SIP status of the attempt.
_BITRIX24_FAILURES = {403: "403", 404: "404", 484: "484", 480: "480", 402: "402", 423: "423", 503: "503"}


def bitrix24_status(disposition: ev.Disposition.ValueType, sip_status: int = 0) -> str:
    """Bitrix24's STATUS_CODE for a call: its table, refined by the SIP status for failures."""
    if disposition == ev.DISPOSITION_FAILED and sip_status in _BITRIX24_FAILURES:
        return _BITRIX24_FAILURES[sip_status]
    codes = DISPOSITION_CODES.get(disposition)
    return codes.bitrix24 if codes is not None else "OTHER"


def is_missed_call(direction: ev.Direction.ValueType, disposition: ev.Disposition.ValueType) -> bool:
    """Whether the call log counts a call as missed.

    Inbound and internal: nobody answered it (missed, no_answer). Outbound: the external call did not get
    through at all (no answer, busy, rejected, failed, cancelled) - a "missed outgoing call". An inbound
    call refused busy or declined by the agent is not a missed call: it reached someone who said no.
    """
    if disposition in (ev.DISPOSITION_UNSPECIFIED, ev.DISPOSITION_ANSWERED):
        return False
    if direction == ev.DIRECTION_OUTBOUND:
        return True
    return disposition in (ev.DISPOSITION_MISSED, ev.DISPOSITION_NO_ANSWER)


DIRECTION_NAMES: dict[ev.Direction.ValueType, str] = {
    ev.DIRECTION_INBOUND: "inbound",
    ev.DIRECTION_OUTBOUND: "outbound",
    ev.DIRECTION_INTERNAL: "internal",
}
DIRECTION_BY_NAME = {name: value for value, name in DIRECTION_NAMES.items()}
HANGUP_BY_NAMES: dict[ev.HangupBy.ValueType, str] = {
    ev.HANGUP_BY_CALLER: "caller",
    ev.HANGUP_BY_CALLEE: "callee",
    ev.HANGUP_BY_SYSTEM: "system",
}


def normalize_number(raw: str, default_region: str = "US") -> str:
    """E.164 form of a dialled or presented number, or "" when it is internal or not a phone number.

    Understands the usual masks ("+7 (499) 369-04-39", "00 359 2 ...", national numbers in the
    default region) and strips SIP decorations such as ``;phone-context``.
    """
    number = raw.strip()
    if number[:4].lower() in ("sip:", "tel:") or number[:5].lower() == "sips:":
        number = number.split(":", 1)[1].split("@", 1)[0]  # sip:+12125550100@host -> +12125550100
    number = number.split(";", 1)[0].strip()
    if not number or sum(ch.isdigit() for ch in number) < 5:
        return ""
    if number.startswith("00"):
        number = "+" + number[2:]
    try:
        parsed = phonenumbers.parse(number, None if number.startswith("+") else default_region)
    except phonenumbers.NumberParseException:
        return ""
    if not phonenumbers.is_possible_number(parsed):
        return ""
    return phonenumbers.format_number(parsed, phonenumbers.PhoneNumberFormat.E164)


@functools.lru_cache(maxsize=65536)
def digits(raw: str) -> str:
    """Only the digits of a number, for partial matches ("369-04" -> "36904").

    Cached: ingestion asks for the digits of the same few numbers a dozen times per call."""
    return raw if raw.isdigit() else "".join(filter(str.isdigit, raw))
