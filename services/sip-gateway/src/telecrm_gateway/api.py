"""REST API of the gateway: live calls, hang up, health. OpenAPI at ``/docs``."""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from enum import StrEnum
from typing import TypeVar

from fastapi import APIRouter, Depends, FastAPI, HTTPException, status
from fastapi.responses import JSONResponse

from telecrm_common.auth import Access, Principal
from telecrm_common.health import Check, health_router
from telecrm_gateway.access import may_dial_from, may_see
from telecrm_gateway.admin_api import admin_router, routes_reloader
from telecrm_gateway.calls import CallControlError, LiveCall
from telecrm_gateway.crm_lookup import CrmLookup
from telecrm_gateway.dialing import DialService
from telecrm_gateway.errors import CallNotFoundError
from telecrm_gateway.provider import ProviderCalls
from telecrm_gateway.provider_api import dial_router, provider_router
from telecrm_gateway.routes_admin import RoutesReloader
from telecrm_gateway.schemas import (
    ActiveCallOut,
    ActiveCallsOut,
    ControlOut,
    DtmfIn,
    HangupOut,
    RecordingOut,
    TransferIn,
)
from telecrm_gateway.service import GatewayService
from telecrm_gateway.sip.engine import DtmfMethod

T = TypeVar("T")

_CONTROL_ERRORS: dict[int | str, dict[str, object]] = {
    403: {"description": "The call is not one of the user's (agents act on their own calls only)"},
    404: {"description": "No live call with this id"},
    409: {"description": "The call is not in a state for this (not answered, not on hold, not recorded...)"},
    422: {"description": "Bad input (an unknown extension, digits that are not DTMF)"},
}


class RecordAction(StrEnum):
    START = "start"
    STOP = "stop"
    PAUSE = "pause"
    RESUME = "resume"


def _owned_call(gateway: GatewayService, call_id: str, user: Principal) -> LiveCall:
    """The live call, 404 when there is none, 403 when the user may not act on it."""
    live = gateway.calls.get(call_id)
    if live is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no live call with id {call_id}")
    if not may_see(live, user):
        raise HTTPException(status.HTTP_403_FORBIDDEN, f"call {call_id} is not one of your calls")
    return live


async def _control(
    gateway: GatewayService, call_id: str, user: Principal, action: Callable[[], Awaitable[T]]
) -> T:
    """Run a control on the user's live call: 404 / 403 as :func:`_owned_call`, then the call's
    refusals as 409 (not in a state for it) or 422 naming the field."""
    _owned_call(gateway, call_id, user)
    try:
        return await action()
    except CallNotFoundError:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no live call with id {call_id}") from None
    except CallControlError as exc:
        if exc.kind == "invalid":
            loc = ["body", exc.field] if exc.field else ["body"]
            detail = [{"loc": loc, "msg": exc.message, "type": "value_error"}]
            raise HTTPException(422, detail) from None
        raise HTTPException(status.HTTP_409_CONFLICT, exc.message) from None


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
        responses={code: _CONTROL_ERRORS[code] for code in (403, 404)},
    )
    async def hangup(call_id: str, user: Principal = reader) -> HangupOut:
        # As every control: 404 when there is no such live call, 403 when it is not the user's.
        _owned_call(gateway, call_id, user)
        try:
            gateway.hangup(call_id)
        except CallNotFoundError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no live call with id {call_id}") from None
        return HangupOut(call_id=call_id)

    @router.post(
        "/{call_id}/hold",
        summary="Put the customer on hold (a sendonly re-INVITE); publishes tel.call.held",
        response_model=ControlOut,
        responses=_CONTROL_ERRORS,
    )
    async def hold(call_id: str, user: Principal = reader) -> ControlOut:
        await _control(gateway, call_id, user, lambda: gateway.calls.hold(call_id))
        return ControlOut(call_id=call_id, status="held")

    @router.post(
        "/{call_id}/resume",
        summary="Take the customer back from hold; publishes tel.call.resumed",
        response_model=ControlOut,
        responses=_CONTROL_ERRORS,
    )
    async def resume(call_id: str, user: Principal = reader) -> ControlOut:
        await _control(gateway, call_id, user, lambda: gateway.calls.resume(call_id))
        return ControlOut(call_id=call_id, status="resumed")

    @router.post(
        "/{call_id}/transfer",
        summary="Transfer to another extension: blind, or attended (the customer on hold meanwhile)",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=ControlOut,
        responses=_CONTROL_ERRORS,
    )
    async def transfer(call_id: str, body: TransferIn, user: Principal = reader) -> ControlOut:
        await _control(
            gateway,
            call_id,
            user,
            lambda: gateway.calls.transfer(call_id, body.extension, attended=body.attended),
        )
        return ControlOut(call_id=call_id, status="consulting" if body.attended else "transferring")

    @router.post(
        "/{call_id}/transfer/complete",
        summary="Attended transfer: hand the customer over to the consulted extension",
        response_model=ControlOut,
        responses=_CONTROL_ERRORS,
    )
    async def complete_transfer(call_id: str, user: Principal = reader) -> ControlOut:
        await _control(gateway, call_id, user, lambda: gateway.calls.complete_transfer(call_id))
        return ControlOut(call_id=call_id, status="transferred")

    @router.post(
        "/{call_id}/transfer/cancel",
        summary="Attended transfer: drop the consulted extension and take the customer back",
        response_model=ControlOut,
        responses=_CONTROL_ERRORS,
    )
    async def cancel_transfer(call_id: str, user: Principal = reader) -> ControlOut:
        await _control(gateway, call_id, user, lambda: gateway.calls.cancel_transfer(call_id))
        return ControlOut(call_id=call_id, status="resumed")

    @router.post(
        "/{call_id}/dtmf",
        summary="Send DTMF digits to the customer (RFC 2833 or SIP INFO)",
        response_model=ControlOut,
        responses=_CONTROL_ERRORS,
    )
    async def dtmf(call_id: str, body: DtmfIn, user: Principal = reader) -> ControlOut:
        method = DtmfMethod(body.method)
        await _control(gateway, call_id, user, lambda: gateway.calls.send_dtmf(call_id, body.digits, method))
        return ControlOut(call_id=call_id, status="dtmf_sent")

    @router.post(
        "/{call_id}/recording/{action}",
        summary="Start, stop, pause or resume the call's recording (tel.recording.ready once complete)",
        response_model=RecordingOut,
        responses=_CONTROL_ERRORS,
    )
    async def record(call_id: str, action: RecordAction, user: Principal = reader) -> RecordingOut:
        recording = await _control(
            gateway, call_id, user, lambda: gateway.calls.record(call_id, action.value)
        )
        return RecordingOut(call_id=call_id, recording_id=recording.recording_id, state=recording.state.value)

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
    reloader: RoutesReloader | None = None,
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
                dialer,
                access,
                lambda user, extension: may_dial_from(gateway.routes, user, extension),
                retry_after=gateway.settings.retry_after,
            )
        )
    if provider is not None:
        app.include_router(
            provider_router(provider, lookup or CrmLookup(None), gateway.settings.provider_keys)
        )
    app.include_router(health_router(checks))
    app.include_router(trunk_router(gateway))
    if reloader is None:  # nobody runs one for this app: watch the routes file on the loop it is built on
        reloader = routes_reloader(gateway)
        reloader.start()
    app.include_router(admin_router(gateway, access, reloader))
    return app
