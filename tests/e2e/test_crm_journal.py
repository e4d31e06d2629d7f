"""End to end: a real inbound call reaches the customer's card and journal in crm.

sipp (customer) -> sip-gateway -> agent phone 101; gateway -> tel.call.* -> calls (the contact comes
from crm's crm.contact.* events) -> calls.record.created -> crm's journal. The test sees what an agent
would: the screen pop finds the customer by any format of the number, and the journal shows the
answered incoming call on that customer, once, with the agent who took it.
"""

from __future__ import annotations

import time
import uuid
from typing import Any

import pytest

from tests.e2e.conftest import Suite
from tests.sipp.runner import run_uac

pytestmark = [pytest.mark.e2e, pytest.mark.sip]


def _wait(fetch: Any, timeout: float = 30.0) -> Any:
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = fetch()
        if last:
            return last
        time.sleep(0.3)
    raise AssertionError(f"never happened; last seen: {last}")


def test_an_inbound_call_becomes_a_journal_event_on_the_callers_contact(suite: Suite) -> None:
    digits = f"{uuid.uuid4().int % 10_000_000:07d}"
    caller = f"+1555{digits}"
    crm = suite.crm()
    try:
        created = crm.post(
            "/contacts",
            json={
                "kind": "person",
                "name": "Olena Kovalenko",
                # Typed the way people type numbers; the call signals it as E.164.
                "phones": [{"number": f"+1 (555) {digits[:3]}-{digits[3:]}", "kind": "work"}],
            },
        )
        assert created.status_code == 201, created.text
        contact_id = created.json()["id"]
        # The call log links a call to a contact it learned from crm's events: wait until it has.
        with suite.calls() as calls:
            _wait(lambda: calls.get("/numbers", params={"number": caller}).json().get("items"))

        result = run_uac(
            "uac_answered.xml",
            "127.0.0.1",
            suite.sip_port,
            service="101",
            keys={"caller": caller, "caller_name": "Olena"},
            duration_ms=800,
            timeout=60,
        )
        assert result.ok, result.explain()

        events = _wait(lambda: crm.get("/journal/events", params={"contact_id": contact_id}).json()["items"])
        assert len(events) == 1
        event = events[0]
        assert event["type_code"] == "incoming_call"
        assert event["direction"] == "inbound"
        assert event["disposition"] == "answered"
        assert event["phone_e164"] == caller
        assert event["responsible_employee_id"] == "emp-101"
        call = suite.wait_for_calls(lambda items: len(items) == 1, number=caller)[0]
        assert event["call_id"] == call["call_id"]

        card = crm.get("/contacts/lookup", params={"number": f"00 1 555 {digits}"}).json()
        assert card["contact"]["contact_id"] == contact_id
        assert card["calls"]["total"] == 1
        assert card["calls"]["recent"][0]["call_id"] == call["call_id"]
    finally:
        crm.close()
