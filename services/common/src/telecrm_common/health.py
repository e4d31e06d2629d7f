"""Health endpoints that check the service's dependencies for real.

``/healthz`` and ``/readyz`` both run every check (a ``SELECT 1`` on the database, a PING/PONG with NATS)
and answer 503 naming what failed; Kubernetes uses the first for liveness and the second for readiness.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping

from fastapi import APIRouter
from fastapi.responses import JSONResponse

Check = Callable[[], Awaitable[None]]


async def run_checks(checks: Mapping[str, Check], timeout: float = 3.0) -> dict[str, str]:
    """Run the checks concurrently; each result is "ok" or the error's message."""

    async def one(check: Check) -> str:
        try:
            async with asyncio.timeout(timeout):
                await check()
        except TimeoutError:
            return f"no answer within {timeout:g}s"
        except Exception as exc:
            return str(exc) or type(exc).__name__
        return "ok"

    results = await asyncio.gather(*(one(check) for check in checks.values()))
    return dict(zip(checks, results, strict=True))


def health_router(checks: Mapping[str, Check]) -> APIRouter:
    router = APIRouter(tags=["health"])

    async def respond() -> JSONResponse:
        results = await run_checks(checks)
        healthy = all(result == "ok" for result in results.values())
        return JSONResponse(
            {"status": "ok" if healthy else "unavailable", "checks": results},
            status_code=200 if healthy else 503,
        )

    @router.get("/healthz", summary="Liveness: the service and its dependencies answer")
    async def healthz() -> JSONResponse:
        return await respond()

    @router.get("/readyz", summary="Readiness: the database and NATS are reachable")
    async def readyz() -> JSONResponse:
        return await respond()

    return router
