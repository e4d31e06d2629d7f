"""Wires the calls service: the call log's REST and gRPC APIs and its consumer of call events.

``telecrm-calls`` (or ``python -m telecrm_calls``) serves; ``telecrm-calls migrate`` only runs the
migrations. Exit codes: 0 after a clean stop, 1 when a part failed, 2 when the database or NATS could
not be reached within ``CALLS_STARTUP_TIMEOUT`` seconds or the settings are invalid.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence
from datetime import timedelta

from telecrm_calls import grpc as calls_grpc
from telecrm_calls.api import DESCRIPTION, TITLE, calls_router
from telecrm_calls.events import TelEventsConsumer, consumer_spec
from telecrm_calls.missed import MissedCallLog
from telecrm_calls.missed_api import missed_calls_router
from telecrm_calls.outbox import OutboxPublisher
from telecrm_calls.recordings import RecordingFiles, RecordingService
from telecrm_calls.recordings_api import recordings_router
from telecrm_calls.service import CallLogService
from telecrm_calls.settings import DEV_CURSOR_SECRET, CallsSettings
from telecrm_common import app
from telecrm_common.app import Context, ServiceDefinition, Wiring

log = logging.getLogger("telecrm_calls")

MIGRATIONS = "telecrm_calls:migrations"


def wire(context: Context) -> Wiring:
    settings = context.settings
    assert isinstance(settings, CallsSettings)
    assert context.db is not None
    if settings.cursor_secret.get_secret_value() == DEV_CURSOR_SECRET:
        log.warning("CALLS_CURSOR_SECRET is not set: page cursors are signed with the development key")
    publisher = OutboxPublisher(context.db, context.bus)
    service = CallLogService(
        context.db, cursor_secret=settings.cursor_secret.get_secret_value(), on_missed_events=publisher.wake
    )
    missed = MissedCallLog(context.db, cursor_secret=settings.cursor_secret.get_secret_value())
    consumer = TelEventsConsumer(context.bus, service, consumer_spec(settings, service))
    recordings = RecordingService(
        context.db,
        RecordingFiles(settings.recordings_dir),
        retention=timedelta(days=settings.recordings_retention_days),
        sweep_interval=settings.recordings_sweep_interval_seconds,
    )
    return Wiring(
        title=TITLE,
        description=DESCRIPTION,
        routers=[calls_router(service), recordings_router(recordings), missed_calls_router(missed)],
        grpc_services={
            calls_grpc.SERVICE_NAME: lambda server: calls_grpc.add_to_server(server, service, missed)
        },
        background=[consumer.consume_tel_events, recordings.run_sweeper, publisher.run],
    )


DEFINITION = ServiceDefinition(settings_factory=CallsSettings, wire=wire, migrations=MIGRATIONS)


async def serve(settings: CallsSettings) -> int:
    """Serve until SIGTERM/SIGINT."""
    return await app.serve(DEFINITION, settings)


async def migrate(settings: CallsSettings) -> int:
    """Bring the database schema to the latest revision."""
    return await app.migrate(DEFINITION, settings)


def main(argv: Sequence[str] | None = None) -> int:
    return app.main(DEFINITION, argv, prog="telecrm-calls")


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
