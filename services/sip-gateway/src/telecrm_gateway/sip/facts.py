"""Plain facts the SIP engine reports to asyncio, and the header a command may carry.

Facts are immutable snapshots taken inside pjsua2 callbacks; they hold no pjsua2 object, so they can
cross threads and be tested without a SIP stack.
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import datetime
from typing import TypeAlias


@dataclass(frozen=True, slots=True)
class IncomingCall:
    """An INVITE the engine admitted; the call manager must answer or reject its leg."""

    leg_id: str
    sip_call_id: str
    request_uri: str
    request_user: str  # user part of the request URI: the DID or extension that was called
    from_uri: str
    from_user: str
    from_display: str
    to_uri: str
    source: str  # "ip:port" the INVITE came from
    transport: str  # "UDP" / "TCP"
    at: datetime


@dataclass(frozen=True, slots=True)
class LegProgress:
    """A provisional response (18x) on an outgoing leg."""

    leg_id: str
    sip_call_id: str
    status: int
    reason: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LegAnswered:
    """A leg reached CONFIRMED: 200 OK and ACK exchanged."""

    leg_id: str
    sip_call_id: str
    at: datetime


@dataclass(frozen=True, slots=True)
class LegEnded:
    """A leg is gone (DISCONNECTED), or an outgoing leg could not even be created.

    ``status`` is the last SIP status pjsua saw on it (487 after CANCEL, 200 after BYE, 486 busy...);
    ``connected`` tells whether it had been answered.
    """

    leg_id: str
    sip_call_id: str
    status: int
    reason: str
    connected: bool
    at: datetime


@dataclass(frozen=True, slots=True)
class CallRefused:
    """An INVITE the engine answered itself without admitting it (capacity, shutdown)."""

    sip_call_id: str
    status: int
    reason: str
    request_uri: str
    from_uri: str
    at: datetime


EngineFact: TypeAlias = IncomingCall | LegProgress | LegAnswered | LegEnded | CallRefused
