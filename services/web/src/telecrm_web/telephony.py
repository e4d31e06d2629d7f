"""The telephony admin page (``/admin/telephony``, admins) and the JSON API it uses.

Routes (extensions, lines, ring groups, queues) are the sip-gateway's: its routes file, read and
replaced whole through its admin API with the file's version as ``ETag`` / ``If-Match``, so an edit made
on an old copy is refused (409 ``stale``) rather than undoing someone else's. The gateway checks them
as it does at start and names the bad entry (422); the page shows that on the entry. The trunk, the
provider API and the capacity are set in the gateway's deployment (``GATEWAY_*`` variables) and only
shown here. Every request goes to the gateway (``WEB_GATEWAY_URL``) with the user's own token, so the
gateway decides; ``/api/admin/telephony...`` also answers 403 itself to a user who is not an admin.
"""

from __future__ import annotations

from typing import Annotated, Any

import httpx
from fastapi import APIRouter, Body, Depends, Header, HTTPException, Request, Response

from telecrm_web.api import Forwarder
from telecrm_web.pages import Pages
from telecrm_web.sessions import Session

MAX_IF_MATCH = 100


def telephony_router(pages: Pages, forwarder: Forwarder) -> APIRouter:
    router = APIRouter()
    guard = pages.guard
    upstream = forwarder.upstream
    is_admin = Depends(guard.admin_session)

    def gateway() -> httpx.AsyncClient:
        if upstream.gateway is None:
            raise HTTPException(503, "the telephony admin needs the sip-gateway (WEB_GATEWAY_URL)")
        return upstream.gateway

    @router.get("/admin/telephony", include_in_schema=False)
    async def telephony_page(request: Request) -> Response:
        return pages.signed_in_page(
            request,
            "telephony.html",
            "admin",
            "telephony_title",
            admins_only=True,
            gateway_configured=upstream.gateway is not None,
        )

    @router.get(
        "/api/admin/telephony",
        tags=["admin"],
        summary="Trunk, provider API and capacity as the gateway's deployment set them (read-only)",
    )
    async def telephony(session: Session = is_admin) -> Response:
        return await forwarder.forward(session, gateway(), "GET", "/admin/telephony")

    @router.get(
        "/api/admin/telephony/routes",
        tags=["admin"],
        summary="The gateway's routes, with their version as ETag (the gateway's GET /admin/routes)",
    )
    async def get_routes(session: Session = is_admin) -> Response:
        return await forwarder.forward(session, gateway(), "GET", "/admin/routes")

    @router.put(
        "/api/admin/telephony/routes",
        tags=["admin"],
        summary="Replace the gateway's routes (the gateway's PUT /admin/routes)",
        description="The whole set, as `routes` of the GET, with `If-Match` (its ETag). 409 `stale` when "
        "they changed meanwhile, 409 `read_only` when the gateway has no file to write, 422 naming the "
        "entry (`loc`: body, section, key, field), 428 without If-Match.",
    )
    async def put_routes(
        routes: Annotated[dict[str, Any], Body()],
        if_match: Annotated[str | None, Header(max_length=MAX_IF_MATCH)] = None,
        session: Session = is_admin,
    ) -> Response:
        headers = {"If-Match": if_match} if if_match else None
        return await forwarder.forward(
            session, gateway(), "PUT", "/admin/routes", json=routes, headers=headers
        )

    return router
