"""Demo data for `make run`: teams, the employees behind the demo phones, a demo customer, extensions.

Everything goes through the services' own APIs, as an admin would do it: crm (logged in as the first
admin) creates the teams, the four employees and one customer whose number is the one `make call`
presents, and publishes them on the bus; the call log learns the employees from those events and gets
extensions 101-104 registered in its numbers registry. Running it again changes nothing (each create
answers 409 for what exists).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

import httpx


@dataclass(frozen=True)
class DemoEmployee:
    employee_id: str
    name: str
    extension: str
    team_id: str
    email: str


TEAMS = (("team-sales", "Sales"), ("team-support", "Support"))
# The same ids as the gateway's demo routes (launcher.ROUTES_TEMPLATE).
EMPLOYEES = (
    DemoEmployee("emp-101", "Alice Ivanova", "101", "team-sales", "alice@example.com"),
    DemoEmployee("emp-102", "Bob Petrov", "102", "team-sales", "bob@example.com"),
    DemoEmployee("emp-103", "Carol Popescu", "103", "team-support", "carol@example.com"),
    DemoEmployee("emp-104", "Dave Shevchenko", "104", "team-support", "dave@example.com"),
)
# `make call` presents +15550001234: the call lands on this customer's card and in their journal.
CUSTOMER_NUMBER = "+1 555 000 1234"
CUSTOMER: dict[str, Any] = {
    "kind": "person",
    "name": "Demo Customer (make call)",
    "phones": [{"number": CUSTOMER_NUMBER, "kind": "mobile"}],
    "responsible_employee_id": "emp-101",
    "owner_team_id": "team-sales",
}


def _created(response: httpx.Response, what: str) -> None:
    if response.status_code not in (200, 201, 409):
        raise RuntimeError(f"creating {what}: {response.status_code} {response.text}")


def _login(crm: httpx.Client, login: str, password: str) -> dict[str, str]:
    response = crm.post("/auth/login", json={"login": login, "password": password})
    if response.status_code != 200:
        raise RuntimeError(f"logging in to crm as {login}: {response.status_code} {response.text}")
    return {"Authorization": f"Bearer {response.json()['access_token']}"}


def seed_crm(crm_url: str, login: str, password: str) -> None:
    with httpx.Client(base_url=crm_url, timeout=10.0) as crm:
        crm.headers.update(_login(crm, login, password))
        for team_id, name in TEAMS:
            _created(crm.post("/teams", json={"id": team_id, "name": name}), f"team {name}")
        for e in EMPLOYEES:
            body: dict[str, Any] = {
                "id": e.employee_id,
                "name": e.name,
                "extension": e.extension,
                "team_id": e.team_id,
                "email": e.email,
            }
            _created(crm.post("/employees", json=body), f"employee {e.name}")
        known = crm.get("/contacts/lookup", params={"number": CUSTOMER_NUMBER})
        if known.status_code == 200 and (known.json().get("contact") or {}).get("contact_id"):
            return
        _created(crm.post("/contacts", json=CUSTOMER), "the demo customer")


def admin_headers(crm_url: str, login: str, password: str) -> dict[str, str]:
    """The admin's crm token, which every service of the suite accepts."""
    with httpx.Client(base_url=crm_url, timeout=10.0) as crm:
        return _login(crm, login, password)


def register_extensions(calls_url: str, headers: dict[str, str], *, timeout: float = 30.0) -> None:
    """POST each extension (as the admin); the employees reach the registry through the bus, so retry
    a while."""
    deadline = time.monotonic() + timeout
    with httpx.Client(base_url=calls_url, timeout=5.0, headers=headers) as client:
        for employee in EMPLOYEES:
            body = {"number": employee.extension, "employee_id": employee.employee_id, "label": employee.name}
            while True:
                response = client.post("/numbers", json=body)
                if response.status_code in (201, 409):
                    break
                if time.monotonic() > deadline:
                    raise RuntimeError(f"registering extension {employee.extension}: {response.text}")
                time.sleep(0.3)  # the employee has not reached the read model yet


def seed(calls_url: str, crm_url: str, admin_login: str, admin_password: str) -> None:
    seed_crm(crm_url, admin_login, admin_password)
    register_extensions(calls_url, admin_headers(crm_url, admin_login, admin_password))
