"""The telephony admin's REST API: the routes (read and replace) and what the deployment configured.

Admins only (crm's tokens, 401 without, 403 for anyone else). ``GET /admin/routes`` answers the routes
file as JSON with its version as the ``ETag``; ``PUT /admin/routes`` replaces it whole, with ``If-Match``
(428 without, 409 ``stale`` when the file changed since, 409 ``read_only`` when there is no file this
process may write, 422 naming the bad entry): see :mod:`telecrm_gateway.routes_admin`, which also makes
every process sharing the file follow it. ``GET /admin/telephony`` shows the trunk, the provider API's
PBXs and the capacity, which come from the deployment's ``GATEWAY_*`` settings and are never changed
here; secrets are named, never shown. ``GET /healthz/routes`` (no token) is 503 while the routes file
does not load and the previous routes are still in use.

The reloader's watch (:func:`routes_reloader`) is a background task of the gateway's service runner;
an app built without one (tests) watches on the event loop it is built on.
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, Body, Depends, Header, HTTPException, Response, status
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from pydantic import BaseModel, Field

from telecrm_common.auth import Access, Principal
from telecrm_gateway.routes_admin import (
    RELOAD_INTERVAL,
    InvalidRoutes,
    RoutesFile,
    RoutesReadOnly,
    RoutesReloader,
    RoutesSnapshot,
    RoutesStale,
)
from telecrm_gateway.service import GatewayService
from telecrm_gateway.sip.engine import PJSUA_MAX_CALLS, legs_per_call


class RoutesOut(BaseModel):
    path: str | None = Field(description="The routes file (null: the packaged default)")
    writable: bool = Field(description="Whether PUT may replace it (false: 409 read_only)")
    version: str = Field(description="The file's version (also the ETag); send it back as If-Match")
    routes: dict[str, Any] = Field(
        description="registrar, extensions, groups, queues and lines in the file's shape, every key given"
    )
    error: str | None = Field(
        description="Why the file is not what the gateway uses (a bad hand edit): the routes shown are "
        "then those in use, when the file cannot be read at all"
    )
    active_version: str = Field(description="The version this process routes calls with")
    max_ring_all: int = Field(description="Members a ring-all group may ring at once in one process")


class ConflictOut(BaseModel):
    code: str = Field(description="stale or read_only")
    detail: str
    version: str | None = None


def _etag(version: str) -> str:
    return f'"{version}"'


def _version_in(if_match: str) -> str:
    tag = if_match.strip().removeprefix("W/")
    return tag[1:-1] if len(tag) >= 2 and tag[0] == tag[-1] == '"' else tag


def routes_reloader(gateway: GatewayService, interval: float = RELOAD_INTERVAL) -> RoutesReloader:
    """What keeps the gateway's routes in step with its routes file (run it as a background task)."""
    settings = gateway.settings
    file = RoutesFile(settings.routes_file, settings.default_region, legs_per_call(settings.max_calls))
    return RoutesReloader(gateway.routes, file, interval)


def admin_router(gateway: GatewayService, access: Access, reloader: RoutesReloader) -> APIRouter:
    settings = gateway.settings
    file = reloader.file
    max_legs = file.max_legs
    router = APIRouter(tags=["admin"])
    signed_in = Depends(access.current)

    async def admin(user: Principal = signed_in) -> Principal:
        if not user.is_admin:
            raise HTTPException(status.HTTP_403_FORBIDDEN, "only admins see and change the telephony set-up")
        return user

    admin_only = Depends(admin)

    def out(snapshot: RoutesSnapshot, response: Response) -> RoutesOut:
        response.headers["ETag"] = _etag(snapshot.version)
        response.headers["Cache-Control"] = "no-store"
        return RoutesOut(
            path=str(file.path) if file.path is not None else None,
            writable=file.writable(),
            version=snapshot.version,
            routes=snapshot.routes,
            error=snapshot.error or reloader.error,
            active_version=reloader.version,
            max_ring_all=max_legs - 1,
        )

    @router.get("/admin/routes", summary="The routes file (extensions, groups, queues, lines)")
    async def get_routes(response: Response, _user: Principal = admin_only) -> RoutesOut:
        reloader.check()
        return out(await asyncio.to_thread(file.snapshot, gateway.routes.to_mapping()), response)

    @router.put(
        "/admin/routes",
        response_model=RoutesOut,
        summary="Replace the routes (the whole set); every gateway process sharing the file follows it",
        responses={
            409: {"model": ConflictOut, "description": "stale: the file changed; read_only: none to write"},
            422: {"description": "A bad entry, named in loc (body, section, key, field)"},
            428: {"description": "No If-Match"},
        },
    )
    async def put_routes(
        response: Response,
        routes: Annotated[dict[str, Any], Body(description="The routes, as `routes` of GET")],
        if_match: Annotated[str | None, Header(description="The version the edit was made on")] = None,
        _user: Principal = admin_only,
    ) -> RoutesOut | JSONResponse:
        if not if_match:
            raise HTTPException(
                status.HTTP_428_PRECONDITION_REQUIRED, "send If-Match with the ETag of the routes you edited"
            )
        try:
            snapshot, table = await asyncio.to_thread(file.write, routes, _version_in(if_match))
        except RoutesReadOnly as exc:
            body = ConflictOut(code="read_only", detail=str(exc))
            return JSONResponse(body.model_dump(), status_code=status.HTTP_409_CONFLICT)
        except RoutesStale as exc:
            body = ConflictOut(code="stale", detail=str(exc), version=exc.current)
            return JSONResponse(
                body.model_dump(), status_code=status.HTTP_409_CONFLICT, headers={"ETag": _etag(exc.current)}
            )
        except InvalidRoutes as exc:
            raise RequestValidationError(exc.errors) from None
        reloader.after_write(table, snapshot.version)
        return out(snapshot, response)

    @router.get(
        "/admin/telephony",
        summary="Trunk, provider API and capacity as the deployment configured them (read-only)",
    )
    async def telephony(_user: Principal = admin_only) -> dict[str, Any]:
        trunk = gateway.engine.trunk_state()
        return {
            "instance_id": settings.instance_id,
            "settings_source": "environment (GATEWAY_* variables of the sip-gateway's deployment)",
            "trunk": {
                "uri": settings.trunk_uri or None,
                "username": settings.trunk_username or None,
                "domain": settings.trunk_domain or None,
                "password_set": bool(settings.trunk_password.get_secret_value()),
                "registration": trunk.configured,
                "registered": trunk.registered,
                "status": trunk.status or None,
                "reason": trunk.reason or None,
                "expires": trunk.expires or None,
                "changed_at": trunk.changed_at.isoformat() if trunk.changed_at else None,
            },
            "provider": {
                "api_keys": sorted(settings.provider_keys),
                "pbxs": [
                    {
                        "name": name,
                        "extensions": list(pbx.extensions),
                        "secret_set": bool(pbx.make_call_secret.get_secret_value()),
                    }
                    for name, pbx in sorted(settings.provider_pbxs.items())
                ],
            },
            "capacity": {
                "max_calls": settings.max_calls,
                "legs_per_process": PJSUA_MAX_CALLS,
                "legs_per_call": max_legs,
                "max_ring_all": max_legs - 1,
            },
            "routes": {
                "path": str(file.path) if file.path is not None else None,
                "writable": file.writable(),
                "version": reloader.version,
                "error": reloader.error,
            },
        }

    @router.get(
        "/healthz/routes",
        tags=["health"],
        summary="The routes file loads: 200; 503 while a bad edit keeps the previous routes in use",
    )
    async def routes_health() -> JSONResponse:
        reloader.start()
        body = {
            "path": str(file.path) if file.path is not None else None,
            "version": reloader.version,
            "error": reloader.error,
            "loaded_at": reloader.loaded_at.isoformat(),
            "checked_at": reloader.checked_at.isoformat() if reloader.checked_at else None,
        }
        return JSONResponse(body, status_code=503 if reloader.error else 200)

    return router
