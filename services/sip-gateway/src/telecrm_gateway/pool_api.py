"""REST API of the pool supervisor: its workers and health, and the gateway's own API passed on to the
worker each request belongs to (:mod:`telecrm_gateway.pool_front`). OpenAPI at ``/docs``."""

from __future__ import annotations

from collections.abc import Mapping

from fastapi import FastAPI
from pydantic import BaseModel

from telecrm_common.health import Check, health_router
from telecrm_gateway.pool import PoolSupervisor
from telecrm_gateway.pool_front import PoolFront, front_router


class WorkerOut(BaseModel):
    name: str  # the worker's instance id (its events' source is "sip-gateway/<name>")
    sip: str  # its SIP URI, as in Kamailio's dispatcher list
    http_port: int
    state: str  # starting, ready, dead (being replaced), stopping, stopped
    pid: int | None
    restarts: int
    last_exit: int | None  # exit code of its last process (negative: killed by that signal)
    live_calls: int  # calls its events show as not ended


class PoolOut(BaseModel):
    size: int
    ready: int
    max_calls_per_worker: int
    lost_calls: int  # calls the pool ended because their worker died
    kamailio_rpc: str | None
    workers: list[WorkerOut]


def create_app(
    supervisor: PoolSupervisor, checks: Mapping[str, Check], front: PoolFront | None = None
) -> FastAPI:
    app = FastAPI(
        title="telecrm sip-gateway pool",
        version="1",
        description="The SIP gateway's worker processes behind Kamailio: their state, restarts and calls.",
    )

    @app.get("/pool", summary="The workers of this pool", response_model=PoolOut, tags=["pool"])
    async def pool() -> PoolOut:
        return PoolOut.model_validate(supervisor.status())

    app.include_router(health_router(checks))
    if front is not None:
        app.include_router(front_router(front))
    return app
