"""End to end: a cloud PBX reports its calls over the telephony API for providers.

A second gateway process (on the suite's NATS) takes the PBX's posts with its API key and asks the real
crm for contacts. The PBX's events for one call, posted twice and out of order, become one call record in
the call log (its REST API), with its recording; the contact look-up answers the contact's name and the
responsible employee's extension from crm.
"""

from __future__ import annotations

import json
import sys
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import httpx
import pytest

from telecrm_devstack.processes import ManagedProcess, free_port, free_sip_port, wait_http_ok
from telecrm_gateway.provider import event_id
from tests.e2e.conftest import Suite

pytestmark = [pytest.mark.e2e, pytest.mark.sip]

API_KEY = "e2e-provider-key-0123456789abcdef"


@pytest.fixture(scope="module")
def provider_gateway(suite: Suite) -> Iterator[str]:
    """The base URL of a gateway that takes the PBX "cloudpbx"'s events and asks crm for contacts."""
    http_port = free_port()
    env = {
        "GATEWAY_NATS_URL": suite.nats.url,
        "GATEWAY_HTTP_PORT": str(http_port),
        "GATEWAY_GRPC_PORT": str(free_port()),
        "GATEWAY_SIP_PORT": str(free_sip_port()),
        "GATEWAY_INSTANCE_ID": "provider-e2e",
        "GATEWAY_LOG_FORMAT": "text",
        "GATEWAY_PROVIDER_KEYS": json.dumps({"cloudpbx": API_KEY}),
        "GATEWAY_CRM_GRPC_TARGET": f"127.0.0.1:{suite.crm_proc.env['CRM_GRPC_PORT']}",
        "GATEWAY_CRM_LOOKUP_DEADLINE": "2",
    }
    proc = ManagedProcess(
        "provider-gateway",
        [sys.executable, "-m", "telecrm_gateway"],
        env=env,
        log_path=suite.root / "provider-gateway.log",
    ).start()
    try:
        wait_http_ok(f"http://127.0.0.1:{http_port}/readyz", 60, proc)
        yield f"http://127.0.0.1:{http_port}"
    finally:
        proc.stop()


def test_provider_events_out_of_order_and_twice_make_one_call_record(
    suite: Suite, provider_gateway: str
) -> None:
    their_id = f"pbx-{uuid.uuid4().hex[:10]}"
    customer = f"+1555{uuid.uuid4().int % 10_000_000:07d}"
    start = datetime.now(UTC).replace(microsecond=0) - timedelta(minutes=5)
    common = {"call_id": their_id, "extension": "101", "number": customer, "line": "+15551230000"}
    at = lambda seconds: (start + timedelta(seconds=seconds)).isoformat()  # noqa: E731
    posts = [
        # The completed event overtakes the others; the accepted one is retried.
        {"type": "hangup", "status": "ANSWERED", "duration": 42, "occurred_at": at(50), **common},
        {"type": "incoming", "occurred_at": at(0), **common},
        {"type": "answered", "occurred_at": at(8), **common},
        {"type": "answered", "occurred_at": at(8), **common},
        {"type": "completed", "status": "ANSWERED", "duration": 42, "occurred_at": at(50), **common},
    ]
    with httpx.Client(base_url=provider_gateway, headers={"X-Api-Key": API_KEY}, timeout=10) as pbx:
        call_ids = set()
        for post in posts:
            response = pbx.post("/provider/v1/events", json=post)
            assert response.status_code == 202, response.text
            call_ids.add(response.json()["call_id"])
        [call_id] = call_ids
        # The recording link arrives a while after the call.
        recording = pbx.post(
            "/provider/v1/recordings",
            json={"call_id": their_id, "recording_url": f"https://pbx.example/rec/{their_id}.mp3"},
        )
        assert recording.status_code == 202, recording.text

    calls = suite.wait_for_calls(
        lambda items: any(c["state"] == "ended" and c["has_recording"] for c in items), number=customer
    )
    assert len(calls) == 1, calls
    call = calls[0]
    assert call["call_id"] == call_id
    assert call["direction"] == "inbound"
    assert call["disposition"] == "answered"
    assert call["incomplete"] is False
    assert call["caller"]["e164"] == customer
    assert (call["line"], call["extension"]) == ("+15551230000", "101")
    assert call["started_at"].startswith(start.strftime("%Y-%m-%dT%H:%M:%S"))
    assert (call["ring_seconds"], call["talk_seconds"]) == (8, 42)
    assert call["missed"] is False
    with suite.calls() as client:
        recordings = client.get(f"/calls/{call_id}/recordings").raise_for_status().json()["items"]
    url = f"https://pbx.example/rec/{their_id}.mp3"
    assert [(r["recording_id"], r["content_type"]) for r in recordings] == [
        (event_id(call_id, f"recording\x1f{url}"), "audio/mpeg")
    ]


def test_the_contact_look_up_asks_the_real_crm(suite: Suite, provider_gateway: str) -> None:
    digits = f"{uuid.uuid4().int % 10_000_000:07d}"
    extension = f"7{uuid.uuid4().int % 10_000:04d}"
    with suite.crm() as crm:
        employee = crm.post("/employees", json={"name": "Maria Ionescu", "extension": extension})
        assert employee.status_code == 201, employee.text
        created = crm.post(
            "/contacts",
            json={
                "kind": "person",
                "name": "Andrei Popescu",
                "phones": [{"number": f"+1 (555) {digits[:3]}-{digits[3:]}", "kind": "work"}],
                "responsible_employee_id": employee.json()["id"],
            },
        )
        assert created.status_code == 201, created.text
    with httpx.Client(base_url=provider_gateway, headers={"X-Api-Key": API_KEY}, timeout=10) as pbx:
        found = pbx.get("/provider/v1/contacts/lookup", params={"number": f"1555{digits}"}).json()
        unknown = pbx.get("/provider/v1/contacts/lookup", params={"number": "+15550000001"}).json()
        denied = httpx.get(
            f"{provider_gateway}/provider/v1/contacts/lookup", params={"number": f"1555{digits}"}, timeout=10
        )
    assert found["contact_id"] == created.json()["id"]
    assert found["name"] == "Andrei Popescu"
    assert found["responsible_employee_id"] == employee.json()["id"]
    assert found["responsible_extension"] == extension
    assert unknown["found"] is False
    assert denied.status_code == 401
