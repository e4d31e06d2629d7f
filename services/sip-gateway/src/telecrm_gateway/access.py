"""Who may control which calls over the gateway's REST API, on the suite's tokens
(:mod:`telecrm_common.auth`: crm's access tokens, or the identity provider's).

Call control is a user's action: listing live calls, hanging one up and click-to-call need a token
(401 without). Admins and supervisors act on every call and dial from any extension; an agent sees and
hangs up only the calls that ring or reached one of their own extensions, and dials only from their
own extension (the routes file names the employee behind each extension). The telephony API for
providers authenticates PBXs with their own keys instead (:mod:`telecrm_gateway.provider_api`), and
gRPC is service-to-service.
"""

from __future__ import annotations

from fastapi import HTTPException, status

from telecrm_common.auth import Principal
from telecrm_gateway.calls import LiveCall
from telecrm_gateway.routing import RoutingTable


def acts_on_all(user: Principal) -> bool:
    return user.is_admin or user.is_supervisor


def owns_extension(routes: RoutingTable, user: Principal, extension: str) -> bool:
    known = routes.extensions.get(extension)
    return known is not None and bool(known.employee_id) and known.employee_id == user.employee_id


def may_dial_from(routes: RoutingTable, user: Principal, extension: str) -> None:
    """403 unless the user may start a click-to-call from ``extension``."""
    if acts_on_all(user) or owns_extension(routes, user, extension):
        return
    raise HTTPException(status.HTTP_403_FORBIDDEN, f"extension {extension!r} is not yours to call from")


def involves(call: LiveCall, user: Principal) -> bool:
    """Whether the call rang or reached one of the user's extensions."""
    if not user.employee_id:
        return False
    if call.header.employee_id == user.employee_id:
        return True
    return any(leg.extension.employee_id == user.employee_id for leg in call.agent_legs.values())


def may_see(call: LiveCall, user: Principal) -> bool:
    return acts_on_all(user) or involves(call, user)
