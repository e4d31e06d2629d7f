"""The standard assembly of a service process, so each service's ``main`` only says what is its own.

``python -m telecrm_<service>`` serves; ``python -m telecrm_<service> migrate`` runs its Alembic
migrations and exits. Serving waits for the database and NATS (clear one-line retries, exit code 2
when they stay away), optionally migrates, ensures the streams, then runs HTTP + gRPC + consumers
under :class:`~telecrm_common.service.ServiceRunner` until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import grpc
from fastapi import APIRouter, FastAPI

from telecrm_common.bus import Bus, BusError, StreamSpec
from telecrm_common.db import Database, DatabaseUnavailable, redacted, upgrade_async
from telecrm_common.events import STREAMS
from telecrm_common.grpc import GrpcServer
from telecrm_common.health import health_router
from telecrm_common.logging import setup_logging
from telecrm_common.service import Background, ServiceRunner, Shutdown
from telecrm_common.settings import ServiceSettings
from telecrm_common.telemetry import setup_telemetry

log = logging.getLogger(__name__)

EXIT_DEPENDENCY_UNAVAILABLE = 2


@dataclass
class Context:
    """What a service's wiring function receives: its settings and open connections."""

    settings: ServiceSettings
    db: Database | None
    bus: Bus


@dataclass
class Wiring:
    """What a service contributes: REST routers, gRPC servicers, background tasks (bus consumers)."""

    title: str
    routers: Sequence[APIRouter] = ()
    grpc_services: dict[str, Callable[[grpc.aio.Server], None]] = field(default_factory=dict)
    background: Sequence[Background] = ()
    on_shutdown: Sequence[Shutdown] = ()
    description: str = ""


@dataclass(frozen=True)
class ServiceDefinition:
    settings_factory: Callable[[], ServiceSettings]
    wire: Callable[[Context], Wiring]
    migrations: str | None = None  # Alembic script location, e.g. "telecrm_calls:migrations"
    streams: Sequence[StreamSpec] = STREAMS
    migrate_on_start: Callable[[ServiceSettings], bool] = lambda s: bool(getattr(s, "migrate_on_start", True))


def build_http_app(context: Context, wiring: Wiring) -> FastAPI:
    app = FastAPI(title=wiring.title, description=wiring.description, version="0.1.0")
    checks = {"nats": context.bus.check}
    if context.db is not None:
        checks["database"] = context.db.check
    app.include_router(health_router(checks))
    for router in wiring.routers:
        app.include_router(router)
    app.state.context = context
    return app


async def serve(definition: ServiceDefinition, settings: ServiceSettings) -> int:
    db: Database | None = None
    if definition.migrations is not None:
        db = Database(settings.database_url)
        try:
            await db.wait_until_reachable(settings.startup_timeout)
            if definition.migrate_on_start(settings):
                await upgrade_async(settings.database_url, definition.migrations)
        except DatabaseUnavailable as exc:
            log.error("cannot start: %s", exc)
            await db.dispose()
            return EXIT_DEPENDENCY_UNAVAILABLE
    try:
        bus = await Bus.connect(
            settings.nats_url, name=settings.service_name, timeout=settings.startup_timeout
        )
        await bus.ensure_streams(definition.streams)
    except BusError as exc:
        log.error("cannot start: %s", exc)
        if db is not None:
            await db.dispose()
        return EXIT_DEPENDENCY_UNAVAILABLE
    context = Context(settings=settings, db=db, bus=bus)
    wiring = definition.wire(context)
    checks = {"nats": bus.check, **({"database": db.check} if db else {})}
    grpc_server = GrpcServer(settings, service_names=list(wiring.grpc_services), checks=checks)
    for register in wiring.grpc_services.values():
        register(grpc_server.server)

    async def close_bus() -> None:
        await bus.close()

    async def close_db() -> None:
        if db is not None:
            await db.dispose()

    runner = ServiceRunner(
        settings,
        http_app=build_http_app(context, wiring),
        grpc=grpc_server,
        background=wiring.background,
        on_shutdown=[*wiring.on_shutdown, close_bus, close_db],
    )
    return await runner.run()


async def migrate(definition: ServiceDefinition, settings: ServiceSettings) -> int:
    if definition.migrations is None:
        log.info("%s has no database", settings.service_name)
        return 0
    db = Database(settings.database_url)
    try:
        await db.wait_until_reachable(settings.startup_timeout)
    except DatabaseUnavailable as exc:
        log.error("cannot migrate: %s", exc)
        return EXIT_DEPENDENCY_UNAVAILABLE
    finally:
        await db.dispose()
    await upgrade_async(settings.database_url, definition.migrations)
    log.info("migrated", extra={"database": redacted(settings.database_url)})
    return 0


def main(definition: ServiceDefinition, argv: Sequence[str] | None = None) -> int:
    """Console entry point: ``serve`` (default) or ``migrate``."""
    parser = argparse.ArgumentParser()
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
    settings = definition.settings_factory()
    setup_logging(settings)
    setup_telemetry(settings)
    try:
        if args.command == "migrate":
            return asyncio.run(migrate(definition, settings))
        return asyncio.run(serve(definition, settings))
    except KeyboardInterrupt:
        return 130


def run(definition: ServiceDefinition) -> None:
    sys.exit(main(definition))
