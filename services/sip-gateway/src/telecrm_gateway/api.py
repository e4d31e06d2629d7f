"""REST API of the gateway: live calls, hang up, health. OpenAPI at ``/docs``."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import APIRouter, FastAPI, HTTPException, status

from telecrm_common.health import Check, health_router
from telecrm_gateway.errors import CallNotFoundError
from telecrm_gateway.schemas import ActiveCallOut, ActiveCallsOut, HangupOut
from telecrm_gateway.service import GatewayService


def calls_router(gateway: GatewayService) -> APIRouter:
    router = APIRouter(prefix="/calls", tags=["calls"])

    @router.get("/active", summary="Calls in progress on this gateway process", response_model=ActiveCallsOut)
    async def active_calls() -> ActiveCallsOut:
        return ActiveCallsOut(
            items=[ActiveCallOut.of(call) for call in gateway.active_calls()],
            accepting=not gateway.calls.draining,
            max_calls=gateway.settings.max_calls,
        )

    @router.post(
        "/{call_id}/hangup",
        summary="End a live call (hangup_by system)",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=HangupOut,
        responses={404: {"description": "No live call with this id"}},
    )
    async def hangup(call_id: str) -> HangupOut:
        try:
            gateway.hangup(call_id)
        except CallNotFoundError:
            raise HTTPException(status.HTTP_404_NOT_FOUND, f"no live call with id {call_id}") from None
        return HangupOut(call_id=call_id)

    return router


def create_app(gateway: GatewayService, checks: Mapping[str, Check]) -> FastAPI:
    """The HTTP application: live calls, ``/healthz`` and ``/readyz``; OpenAPI at ``/docs``."""
    app = FastAPI(
        title="telecrm sip-gateway",
        version="1",
        description="The SIP side of the suite: takes calls, rings extensions, publishes call events.",
    )
    app.include_router(calls_router(gateway))
    app.include_router(health_router(checks))
    return app
