"""The standard assembly of a service process, so each service's ``main`` only says what is its own.

``python -m telecrm_<service>`` serves; ``python -m telecrm_<service> migrate`` runs its Alembic
migrations and exits. Serving waits for the database and NATS (clear one-line retries, exit code 2
when they stay away), optionally migrates, ensures the streams, then runs HTTP + gRPC + consumers
under :class:`~telecrm_common.service.ServiceRunner` until SIGTERM.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import sys
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field

import grpc
from fastapi import APIRouter, FastAPI, Request, Response
from fastapi.encoders import jsonable_encoder
from fastapi.exceptions import RequestValidationError
from pydantic import ValidationError

from telecrm_common.bus import Bus, BusError, StreamSpec
from telecrm_common.db import Database, DatabaseUnavailable, redacted, upgrade_async
from telecrm_common.events import STREAMS
from telecrm_common.grpc import GrpcServer
from telecrm_common.health import Check, health_router
from telecrm_common.logging import setup_logging
from telecrm_common.service import Background, ServiceRunner, Shutdown
from telecrm_common.settings import ServiceSettings
from telecrm_common.telemetry import setup_telemetry
from telecrm_common.unicode_bodies import RejectUnstorableText

log = logging.getLogger(__name__)

EXIT_FAILED = 1
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
    # Readiness checks of the service's own (``/readyz`` and gRPC health), besides database and NATS.
    checks: Mapping[str, Check] = field(default_factory=dict)


@dataclass(frozen=True)
class ServiceDefinition:
    settings_factory: Callable[[], ServiceSettings]
    wire: Callable[[Context], Wiring]
    migrations: str | None = None  # Alembic script location, e.g. "telecrm_calls:migrations"
    streams: Sequence[StreamSpec] = STREAMS
    migrate_on_start: Callable[[ServiceSettings], bool] = lambda s: bool(getattr(s, "migrate_on_start", True))


async def _invalid_request(request: Request, exc: Exception) -> Response:
    """422 with the errors, as FastAPI's own handler answers, but encodable whatever the input was.

    FastAPI echoes the offending input; a JSON string with a lone surrogate ("\\ud800") is valid JSON
    but cannot be written as UTF-8, and the stock handler then crashed into a 500. Escaped ASCII
    JSON carries any input back unchanged.
    """
    assert isinstance(exc, RequestValidationError)
    body = json.dumps({"detail": jsonable_encoder(exc.errors())}, ensure_ascii=True)
    return Response(body, status_code=422, media_type="application/json")


def http_app(
    title: str, description: str, routers: Sequence[APIRouter], checks: Mapping[str, Check]
) -> FastAPI:
    """The service's FastAPI application: its routers, ``/healthz`` and ``/readyz``; OpenAPI at /docs."""
    app = FastAPI(title=title, description=description, version="0.1.0")
    app.add_exception_handler(RequestValidationError, _invalid_request)
    app.add_middleware(RejectUnstorableText)
    for router in routers:
        app.include_router(router)
    app.include_router(health_router(checks))
    return app


def _checks(context: Context) -> dict[str, Check]:
    checks: dict[str, Check] = {"nats": context.bus.check}
    if context.db is not None:
        checks["database"] = context.db.check
    return checks


async def _database(settings: ServiceSettings) -> Database | None:
    """The database once it answers, or None (one error line) when it did not within the timeout."""
    db = Database(settings.database_url)
    try:
        await db.wait_until_reachable(settings.startup_timeout)
    except DatabaseUnavailable as exc:
        log.error("cannot start: %s", exc)
        await db.dispose()
        return None
    log.info("database reachable", extra={"database": redacted(settings.database_url)})
    return db


async def _upgrade(settings: ServiceSettings, migrations: str) -> int:
    try:
        await upgrade_async(settings.database_url, migrations)
    except Exception:
        log.exception("migrations failed")
        return EXIT_FAILED
    log.info("migrations applied", extra={"database": redacted(settings.database_url)})
    return 0


async def serve(definition: ServiceDefinition, settings: ServiceSettings) -> int:
    """Serve until SIGTERM/SIGINT; the exit code says how it ended (0, 1 failed, 2 unavailable)."""
    db: Database | None = None
    if definition.migrations is not None:
        db = await _database(settings)
        if db is None:
            return EXIT_DEPENDENCY_UNAVAILABLE
        if definition.migrate_on_start(settings) and (
            code := await _upgrade(settings, definition.migrations)
        ):
            await db.dispose()
            return code
    try:
        bus = await Bus.connect(
            settings.nats_url,
            name=f"{settings.service_name}-{settings.instance_id}",
            timeout=settings.startup_timeout,
        )
    except BusError as exc:
        log.error("cannot start: %s", exc)
        if db is not None:
            await db.dispose()
        return EXIT_DEPENDENCY_UNAVAILABLE

    async def close_db() -> None:
        if db is not None:
            await db.dispose()

    try:
        await bus.ensure_streams(definition.streams)
        context = Context(settings=settings, db=db, bus=bus)
        wiring = definition.wire(context)
        checks = {**_checks(context), **wiring.checks}
        grpc_server = GrpcServer(settings, service_names=list(wiring.grpc_services), checks=checks)
        for register in wiring.grpc_services.values():
            register(grpc_server.server)
        app = http_app(wiring.title, wiring.description, wiring.routers, checks)
    except Exception as exc:
        log.error("cannot start: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        await bus.close()
        await close_db()
        return EXIT_FAILED
    runner = ServiceRunner(
        settings,
        http_app=app,
        grpc=grpc_server,
        background=wiring.background,
        on_shutdown=[*wiring.on_shutdown, bus.close, close_db],
    )
    return await runner.run()


async def migrate(definition: ServiceDefinition, settings: ServiceSettings) -> int:
    """Bring the service's schema to the latest revision and exit."""
    if definition.migrations is None:
        log.info("%s has no database", settings.service_name)
        return 0
    db = await _database(settings)
    if db is None:
        return EXIT_DEPENDENCY_UNAVAILABLE
    await db.dispose()
    return await _upgrade(settings, definition.migrations)


def main(definition: ServiceDefinition, argv: Sequence[str] | None = None, *, prog: str | None = None) -> int:
    """Console entry point: ``serve`` (default) or ``migrate``. Invalid settings exit 2 with one message."""
    parser = argparse.ArgumentParser(prog=prog)
    parser.add_argument("command", nargs="?", default="serve", choices=["serve", "migrate"])
    args = parser.parse_args(argv)
    try:
        settings = definition.settings_factory()
    except ValidationError as exc:
        print(f"{parser.prog}: invalid settings:\n{exc}", file=sys.stderr)
        return EXIT_DEPENDENCY_UNAVAILABLE
    setup_logging(settings)
    setup_telemetry(settings)
    try:
        if args.command == "migrate":
            return asyncio.run(migrate(definition, settings))
        return asyncio.run(serve(definition, settings))
    except KeyboardInterrupt:
        return 130


def run(definition: ServiceDefinition, prog: str | None = None) -> None:
    sys.exit(main(definition, prog=prog))
