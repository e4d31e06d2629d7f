"""End to end: a ring group call is one record in the call log, with the leg that answered and the legs
that lost.

sipp (caller) -> sip-gateway rings 101, 102 and 103 at once -> 101 answers after 0.5 s, 102 is cancelled,
103 is busy -> tel.call.* -> calls -> GET /calls.
"""

from __future__ import annotations

import uuid

import pytest

from tests.e2e.conftest import Suite
from tests.sipp.runner import run_uac

pytestmark = [pytest.mark.e2e, pytest.mark.sip]

GROUP_LINE = "+15551230009"


def test_a_ring_group_call_is_one_record_with_its_legs(suite: Suite) -> None:
    caller = f"+1555{uuid.uuid4().int % 10_000_000:07d}"
    result = run_uac(
        "uac_answered.xml",
        "127.0.0.1",
        suite.sip_port,
        service=GROUP_LINE,
        keys={"caller": caller, "caller_name": "Group Caller"},
        duration_ms=500,
        timeout=60,
    )
    assert result.ok, result.explain()

    [record] = suite.wait_for_calls(
        lambda items: len(items) == 1 and items[0]["state"] == "ended", number=caller
    )
    assert (record["disposition"], record["line"], record["extension"], record["employee_id"]) == (
        "answered",
        GROUP_LINE,
        "101",
        "emp-101",
    )
    assert record["direction"] == "inbound"
    legs = {leg["extension"]: leg for leg in record["legs"]}
    assert set(legs) == {"101", "102", "103"}
    assert {extension: leg["disposition"] for extension, leg in legs.items()} == {
        "101": "answered",
        "102": "cancelled",
        "103": "busy",
    }
    assert legs["101"]["answered_at"] == record["answered_at"]
    assert legs["102"]["employee_id"] == "emp-102"
    assert all(leg["leg_id"] for leg in legs.values())
