"""REST API of the gateway: live calls, hang up, health. OpenAPI at ``/docs``."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, Depends, FastAPI, HTTPException, status
from fastapi.responses import JSONResponse

from telecrm_common.auth import Access, Principal
from telecrm_common.health import Check, health_router
from telecrm_gateway.access import may_dial_from, may_see
from telecrm_gateway.crm_lookup import CrmLookup
from telecrm_gateway.dialing import DialService
from telecrm_gateway.errors import CallNotFoundError
from telecrm_gateway.provider import ProviderCalls
from telecrm_gateway.provider_api import dial_router, provider_router
from telecrm_gateway.schemas import ActiveCallOut, ActiveCallsOut, HangupOut
from telecrm_gateway.service import GatewayService


def calls_router(gateway: GatewayService, access: Access) -> APIRouter:
    """Live calls and hang-up, for signed-in users (see :mod:`telecrm_gateway.access`)."""
    router = APIRouter(prefix="/calls", tags=["calls"])
    reader = Depends(access.current)

    @router.get(
        "/active",
        summary="Calls in progress on this gateway process (an agent's own; all for supervisors)",
        response_model=ActiveCallsOut,
    )
    async def active_calls(user: Principal = reader) -> ActiveCallsOut:
        return ActiveCallsOut(
            items=[ActiveCallOut.of(call) for call in gateway.active_calls() if may_see(call, user)],
            accepting=not gateway.calls.draining,
            max_calls=gateway.settings.max_calls,
        )

    @router.post(
        "/{call_id}/hangup",
        summary="End a live call (hangup_by system)",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=HangupOut,
        responses={404: {"description": "No live call with this id (or not one of the user's)"}},
    )
    async def hangup(call_id: str, user: Principal = reader) -> HangupOut:
        live = next((call for call in gateway.active_calls() if call.call_id == call_id), None)
        if live is not None and not may_see(live, user):
            live = None
        if live is None:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no live call with id {call_id}")
        try:
            gateway.hangup(call_id)
        except CallNotFoundError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no live call with id {call_id}") from None
        return HangupOut(call_id=call_id)

    return router


def trunk_router(gateway: GatewayService) -> APIRouter:
    router = APIRouter(tags=["health"])

    @router.get(
        "/healthz/trunk",
        summary="Registration at the trunk: 200 when registered (or none configured), else 503",
    )
    async def trunk() -> JSONResponse:
        # Not part of /healthz (liveness): restarting the gateway does not fix a provider or a password,
        # and would end the calls it still takes through Kamailio.
        state = gateway.engine.trunk_state()
        body = {
            "configured": state.configured,
            "registered": state.registered,
            "registrar": gateway.settings.trunk_uri if state.configured else None,
            "status": state.status or None,
            "reason": state.reason or None,
            "expires": state.expires or None,
            "changed_at": state.changed_at.isoformat() if state.changed_at else None,
        }
        healthy = state.registered or not state.configured
        return JSONResponse(body, status_code=200 if healthy else 503)

    return router


def create_app(
    gateway: GatewayService,
    checks: Mapping[str, Check],
    *,
    provider: ProviderCalls | None = None,
    lookup: CrmLookup | None = None,
    dialer: DialService | None = None,
    access: Access | None = None,
) -> FastAPI:
    """The HTTP application: live calls, ``/healthz`` and ``/readyz``; OpenAPI at ``/docs``; with
    ``provider`` the telephony API for providers (``/provider/v1``), with ``dialer`` ``POST /calls/dial``.
    Users' tokens are checked with ``access`` (by default the suite's ``TELECRM_AUTH_*`` settings)."""
    access = access or Access.from_settings()
    app = FastAPI(
        title="telecrm sip-gateway",
        version="1",
        description="The SIP side of the suite: takes calls, rings extensions, publishes call events.",
    )
    app.include_router(calls_router(gateway, access))
    if dialer is not None:
        app.include_router(
            dial_router(
                dialer, access, lambda user, extension: may_dial_from(gateway.routes, user, extension)
            )
        )
    if provider is not None:
        app.include_router(
            provider_router(provider, lookup or CrmLookup(None), gateway.settings.provider_keys)
        )
    app.include_router(health_router(checks))
    app.include_router(trunk_router(gateway))
    return app
