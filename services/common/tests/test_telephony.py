"""Telephony vocabulary: SIP status -> Q.850 (RFC 3398), dispositions of unanswered calls, numbers."""

from __future__ import annotations

import pytest

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_common.telephony import (
    DISPOSITION_BY_NAME,
    DISPOSITION_CODES,
    DISPOSITION_NAMES,
    bitrix24_status,
    digits,
    disposition_for_unanswered,
    is_missed_call,
    normalize_number,
    q850_for_sip_status,
)

# RFC 3398 section 8.2.6.1, "Response received" -> "Cause value in the REL", written out from the RFC.
RFC_3398 = {
    400: 41,  # Bad Request -> Temporary failure
    401: 21,  # Unauthorized -> Call rejected
    402: 21,  # Payment required -> Call rejected
    403: 21,  # Forbidden -> Call rejected
    404: 1,  # Not found -> Unallocated number
    405: 63,  # Method not allowed -> Service or option unavailable
    406: 79,  # Not acceptable -> Service/option not implemented
    407: 21,  # Proxy authentication required -> Call rejected
    408: 102,  # Request timeout -> Recovery on timer expiry
    410: 22,  # Gone -> Number changed
    413: 127,  # Request Entity too long -> Interworking
    414: 127,  # Request-URI too long -> Interworking
    415: 79,  # Unsupported media type -> Service/option not implemented
    416: 127,  # Unsupported URI Scheme -> Interworking
    420: 127,  # Bad extension -> Interworking
    421: 127,  # Extension Required -> Interworking
    423: 127,  # Interval Too Brief -> Interworking
    480: 18,  # Temporarily unavailable -> No user responding
    481: 41,  # Call/Transaction Does not Exist -> Temporary failure
    482: 25,  # Loop Detected -> Exchange routing error
    483: 25,  # Too many hops -> Exchange routing error
    484: 28,  # Address incomplete -> Invalid Number Format
    485: 1,  # Ambiguous -> Unallocated number
    486: 17,  # Busy here -> User busy
    500: 41,  # Server internal error -> Temporary failure
    501: 79,  # Not implemented -> Service/option not implemented
    502: 38,  # Bad gateway -> Network out of order
    503: 41,  # Service unavailable -> Temporary failure
    504: 102,  # Server time-out -> Recovery on timer expiry
    505: 127,  # Version Not Supported -> Interworking
    513: 127,  # Message Too Large -> Interworking
    600: 17,  # Busy everywhere -> User busy
    603: 21,  # Decline -> Call rejected
    604: 1,  # Does not exist anywhere -> Unallocated number
}


@pytest.mark.parametrize(("status", "cause"), sorted(RFC_3398.items()))
def test_q850_follows_rfc_3398(status: int, cause: int) -> None:
    assert q850_for_sip_status(status) == cause


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (200, 16),  # answered and hung up: normal clearing
        (487, 16),  # RFC 3398: no mapping; the caller cancelled, a normal end
        (488, 88),  # RFC 3398: "by Warning header"; incompatible destination
        (606, 88),  # likewise
    ],
)
def test_q850_for_the_statuses_rfc_3398_leaves_open(status: int, cause: int) -> None:
    assert q850_for_sip_status(status) == cause


@pytest.mark.parametrize(
    ("status", "cause"),
    [
        (202, 16),  # other 2xx: normal clearing
        (409, 127),  # unlisted 4xx: interworking
        (422, 127),
        (499, 127),
        (580, 41),  # unlisted 5xx: temporary failure
        (599, 41),
        (607, 31),  # unlisted 6xx: normal, unspecified
        (699, 31),
        (0, 31),  # no final response at all
        (183, 31),
        (302, 31),
    ],
)
def test_q850_falls_back_by_status_class(status: int, cause: int) -> None:
    assert q850_for_sip_status(status) == cause


INBOUND = ev.DIRECTION_INBOUND
INTERNAL = ev.DIRECTION_INTERNAL
OUTBOUND = ev.DIRECTION_OUTBOUND


@pytest.mark.parametrize(
    ("situation", "kwargs", "inbound", "outbound"),
    [
        ("caller hung up (487)", {"sip_status": 487, "cancelled_by_caller": True}, "missed", "cancelled"),
        ("caller hung up, no status", {"sip_status": 0, "cancelled_by_caller": True}, "missed", "cancelled"),
        ("ring timeout", {"sip_status": 0, "timed_out": True}, "missed", "no_answer"),
        ("ring timeout with 408", {"sip_status": 408, "timed_out": True}, "missed", "no_answer"),
        ("486 Busy Here", {"sip_status": 486}, "busy", "busy"),
        ("600 Busy Everywhere", {"sip_status": 600}, "busy", "busy"),
        ("603 Decline", {"sip_status": 603}, "rejected", "rejected"),
        ("480 Temporarily Unavailable", {"sip_status": 480}, "missed", "no_answer"),
        ("408 Request Timeout", {"sip_status": 408}, "missed", "no_answer"),
        ("404 Not Found", {"sip_status": 404}, "failed", "failed"),
        ("484 Address Incomplete", {"sip_status": 484}, "failed", "failed"),
        ("488 Not Acceptable Here", {"sip_status": 488}, "failed", "failed"),
        ("500 Server Internal Error", {"sip_status": 500}, "failed", "failed"),
        ("503 Service Unavailable", {"sip_status": 503}, "failed", "failed"),
        ("604 Does Not Exist Anywhere", {"sip_status": 604}, "failed", "failed"),
    ],
)
def test_disposition_for_unanswered_follows_its_table(
    situation: str, kwargs: dict[str, object], inbound: str, outbound: str
) -> None:
    flags = {k: v for k, v in kwargs.items() if k != "sip_status"}
    for direction, expected in ((INBOUND, inbound), (INTERNAL, inbound), (OUTBOUND, outbound)):
        got = disposition_for_unanswered(direction, kwargs["sip_status"], **flags)  # type: ignore[arg-type]
        assert DISPOSITION_NAMES[got] == expected, f"{situation}, {ev.Direction.Name(direction)}"


def test_cancelled_by_caller_wins_over_the_status() -> None:
    """The caller gave up: whatever the phones answered meanwhile (a late 486), the call is missed."""
    assert disposition_for_unanswered(INBOUND, 486, cancelled_by_caller=True) == ev.DISPOSITION_MISSED


def test_every_disposition_has_a_name_and_the_codes_of_each_system() -> None:
    named = {value for value in ev.Disposition.values() if value != ev.DISPOSITION_UNSPECIFIED}
    assert set(DISPOSITION_NAMES) == named
    assert set(DISPOSITION_CODES) == named
    assert {DISPOSITION_BY_NAME[name] for name in DISPOSITION_NAMES.values()} == named
    codes = DISPOSITION_CODES.values()
    # The vocabularies as the systems define them: nothing of our own invention in these columns.
    assert {c.asterisk_cdr for c in codes} <= {"ANSWERED", "NO ANSWER", "BUSY", "FAILED", "CONGESTION"}
    dialstatus = {"ANSWER", "BUSY", "NOANSWER", "CANCEL", "CONGESTION", "CHANUNAVAIL", "DONTCALL", "TORTURE"}
    assert {c.asterisk_dialstatus for c in codes} <= dialstatus
    assert {c.bitrix24 for c in codes} <= {
        "200",
        "304",
        "603",
        "603-S",
        "403",
        "404",
        "486",
        "484",
        "503",
        "480",
    }
    assert all(1 <= c.q850 <= 127 for c in codes)


@pytest.mark.parametrize(
    ("disposition", "sip_status", "status"),
    [
        (ev.DISPOSITION_ANSWERED, 200, "200"),
        (ev.DISPOSITION_MISSED, 487, "304"),
        (ev.DISPOSITION_BUSY, 486, "486"),
        (ev.DISPOSITION_REJECTED, 603, "603"),
        (ev.DISPOSITION_CANCELLED, 487, "603-S"),
        (ev.DISPOSITION_FAILED, 404, "404"),
        (ev.DISPOSITION_FAILED, 484, "484"),
        (ev.DISPOSITION_FAILED, 500, "503"),
        (ev.DISPOSITION_UNSPECIFIED, 0, "OTHER"),
    ],
)
def test_bitrix24_status_codes(disposition: ev.Disposition.ValueType, sip_status: int, status: str) -> None:
    assert bitrix24_status(disposition, sip_status) == status


@pytest.mark.parametrize(
    ("direction", "disposition", "missed"),
    [
        (ev.DIRECTION_INBOUND, ev.DISPOSITION_MISSED, True),
        (ev.DIRECTION_INBOUND, ev.DISPOSITION_NO_ANSWER, True),
        (ev.DIRECTION_INBOUND, ev.DISPOSITION_BUSY, False),  # it reached an agent who was busy
        (ev.DIRECTION_INBOUND, ev.DISPOSITION_ANSWERED, False),
        (ev.DIRECTION_INTERNAL, ev.DISPOSITION_MISSED, True),
        (ev.DIRECTION_OUTBOUND, ev.DISPOSITION_NO_ANSWER, True),  # a missed outgoing call
        (ev.DIRECTION_OUTBOUND, ev.DISPOSITION_BUSY, True),
        (ev.DIRECTION_OUTBOUND, ev.DISPOSITION_FAILED, True),
        (ev.DIRECTION_OUTBOUND, ev.DISPOSITION_CANCELLED, True),
        (ev.DIRECTION_OUTBOUND, ev.DISPOSITION_ANSWERED, False),
        (ev.DIRECTION_OUTBOUND, ev.DISPOSITION_UNSPECIFIED, False),  # still going on
    ],
)
def test_what_counts_as_a_missed_call(
    direction: ev.Direction.ValueType, disposition: ev.Disposition.ValueType, missed: bool
) -> None:
    assert is_missed_call(direction, disposition) is missed


@pytest.mark.parametrize(
    ("raw", "region", "e164"),
    [
        ("+7 (499) 369-04-39", "US", "+74993690439"),
        ("+74993690439", "US", "+74993690439"),
        ("8 (499) 369-04-39", "RU", "+74993690439"),
        ("00359 2 123 4567", "US", "+35921234567"),
        ("0035921234567", "US", "+35921234567"),
        ("(212) 555-0100", "US", "+12125550100"),
        ("212-555-0100", "US", "+12125550100"),
        ("1 212 555 0100", "US", "+12125550100"),
        ("+1 212 555 0100;phone-context=+1", "US", "+12125550100"),
        (" +44 20 7946 0958 ", "US", "+442079460958"),
        ("sip:+12125550100@pbx.example.com;user=phone", "US", "+12125550100"),
        ("tel:+7-499-369-04-39", "US", "+74993690439"),
    ],
)
def test_normalize_number_understands_the_usual_masks(raw: str, region: str, e164: str) -> None:
    assert normalize_number(raw, region) == e164


@pytest.mark.parametrize(
    "raw",
    [
        "101",
        "2001",
        "sip:101@pbx",
        "",
        "   ",
        "anonymous",
        "unknown",
        "abc12345",
        "+999 1234567",
        "12-34",
        "*97",
        "++",
    ],
)
def test_normalize_number_gives_empty_for_internal_numbers_and_garbage(raw: str) -> None:
    assert normalize_number(raw) == ""


def test_digits_keeps_only_digits() -> None:
    assert digits("+7 (499) 369-04-39") == "74993690439"
    assert digits("369-04") == "36904"
    assert digits("anonymous") == ""
