"""The call rules: what the call log makes of a call record once it knows the numbers registry.

CRMs differ here (Planfix, ISpro and bgERP each log internal calls their own way), so the choices are
settings (:class:`CallRules`, from ``CALLS_*``); everything else is fixed and tested:

- **Direction.** A number is internal when it is a registered extension, when the event says it is one
  of our extensions, or when it has fewer digits than ``external_number_min_digits`` (short numbers
  are extensions, whatever the PBX reported). A call between two internal numbers is ``internal``; a
  call without a direction is ``outbound`` when an internal number placed it, else ``inbound``.
- **Internal calls** are logged, or not at all (``internal_calls = log | skip``).
- **Calls to extensions nobody registered** (the extension an inbound or internal call was for is not
  in the registry) are logged as they are, logged as internal calls (and then follow the internal
  rule), or not logged (``unregistered_extensions = log | internal | skip``).
- **Missed.** A missed inbound or internal call (nobody answered), and an unsuccessful outgoing
  external call (no answer, busy, rejected, failed, cancelled) - a "missed outgoing call" - are
  missed (:func:`telecrm_common.telephony.is_missed_call`).
- **Who.** Every extension the call involved gets its employee (the event's, else the registry's) and
  that employee's team at the time of the call; the record's employee and team are those of its
  extension (the one that answered an inbound call, or placed an outbound one).
- **Contact.** The click-to-call context's contact, else the one contact that has the outside party's
  number (a number shared by several contacts links to none).
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Literal

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_calls.records import PARTY_ROLE_STRENGTH, CallRecord, PartyRef
from telecrm_calls.registry import RegistryView
from telecrm_common.telephony import DIRECTION_BY_NAME, DISPOSITION_BY_NAME, digits, is_missed_call

InternalCalls = Literal["log", "skip"]
UnregisteredExtensions = Literal["log", "internal", "skip"]


@dataclass(frozen=True)
class CallRules:
    internal_calls: InternalCalls = "log"
    unregistered_extensions: UnregisteredExtensions = "log"
    external_number_min_digits: int = 6

    def __post_init__(self) -> None:
        if self.internal_calls not in ("log", "skip"):
            raise ValueError(f"internal_calls must be log or skip, not {self.internal_calls!r}")
        if self.unregistered_extensions not in ("log", "internal", "skip"):
            raise ValueError(
                f"unregistered_extensions must be log, internal or skip, not {self.unregistered_extensions!r}"
            )
        if self.external_number_min_digits < 1:
            raise ValueError("external_number_min_digits must be at least 1")


def is_internal_number(number: str | None, view: RegistryView, rules: CallRules) -> bool:
    if not number:
        return False
    return view.registered(number) or is_short_number(number, rules)


def is_short_number(number: str | None, rules: CallRules) -> bool:
    """Internal by its length alone: only digits, fewer than ``external_number_min_digits``."""
    if not number:
        return False
    count = len(digits(number))
    return 0 < count < rules.external_number_min_digits and count == len(number.strip())


def _one_per_employee(parties: tuple[PartyRef, ...]) -> tuple[PartyRef, ...]:
    """An employee is named on one party of a call only, its strongest role (placed, answered,
    transferred, rang): an employee with two extensions on one call has the call once in their log."""
    named = [party.employee_id for party in parties if party.employee_id]
    if len(named) == len(set(named)):
        return parties  # nobody on two parties (nearly every call): nothing to drop
    seen: set[str] = set()
    kept: dict[str, PartyRef] = {}
    for party in sorted(parties, key=lambda p: (-PARTY_ROLE_STRENGTH[p.role], p.extension)):
        employee = party.employee_id if party.employee_id not in seen else None
        seen.update(x for x in (employee,) if x)
        kept[party.extension] = replace(party, employee_id=employee)
    return tuple(kept[party.extension] for party in parties)


def apply(record: CallRecord, view: RegistryView, rules: CallRules) -> CallRecord | None:
    """The record as the call log keeps it, or None when the rules say it is not logged."""
    caller_internal = bool(record.caller_extension) or is_internal_number(record.caller_number, view, rules)
    callee_internal = is_internal_number(record.callee_number, view, rules)
    direction = record.direction
    if caller_internal and callee_internal:
        direction = "internal"
    elif direction is None:
        direction = "outbound" if caller_internal else "inbound"

    destination = record.extension if direction != "outbound" else None
    if destination and not view.registered(destination):
        if rules.unregistered_extensions == "skip":
            return None
        if rules.unregistered_extensions == "internal":
            direction = "internal"
    if direction == "internal" and rules.internal_calls == "skip":
        return None

    parties = _one_per_employee(
        tuple(
            PartyRef(
                party.extension,
                party.role,
                employee := party.employee_id or view.employee_of(party.extension),
                view.team_of(employee),
            )
            for party in record.parties
        )
    )
    employee_id = record.employee_id or view.employee_of(record.extension)
    if direction == "outbound" and record.caller_extension:
        employee_id = record.employee_id or view.employee_of(record.caller_extension)

    contact_id = record.contact_id
    if contact_id is None and direction == "inbound":
        contact_id = view.contact_of(record.caller_number, record.caller_e164)
    elif contact_id is None and direction == "outbound":
        contact_id = view.contact_of(record.callee_number, record.callee_e164)

    missed = record.state == "ended" and is_missed_call(
        DIRECTION_BY_NAME.get(direction, ev.DIRECTION_INBOUND),
        DISPOSITION_BY_NAME.get(record.disposition or "", ev.DISPOSITION_UNSPECIFIED),
    )
    return replace(
        record,
        direction=direction,
        employee_id=employee_id,
        team_id=view.team_of(employee_id),
        contact_id=contact_id,
        missed=missed,
        parties=parties,
    )
