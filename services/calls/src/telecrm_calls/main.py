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
from telecrm_calls import numbers_grpc, reports_grpc
from telecrm_calls.access import CallsAccess
from telecrm_calls.api import DESCRIPTION, TITLE, calls_router
from telecrm_calls.directory import DirectoryEventsConsumer, DirectoryReadModel, directory_consumer_spec
from telecrm_calls.events import TelEventsConsumer, consumer_spec
from telecrm_calls.missed import MissedCallLog
from telecrm_calls.missed_api import missed_calls_router
from telecrm_calls.notes import CallNotesService
from telecrm_calls.notes_api import notes_router
from telecrm_calls.numbers import NumbersRegistry
from telecrm_calls.numbers_api import numbers_router
from telecrm_calls.outbox import OutboxPublisher
from telecrm_calls.recordings import RecordingFiles, RecordingService
from telecrm_calls.recordings_api import recordings_router
from telecrm_calls.reports import CallReportService
from telecrm_calls.reports_api import reports_router
from telecrm_calls.rules import CallRules
from telecrm_calls.service import CallLogService
from telecrm_calls.settings import DEV_CURSOR_SECRET, CallsSettings
from telecrm_common import app
from telecrm_common.app import Context, ServiceDefinition, Wiring
from telecrm_common.auth import Access, AuthSettings

log = logging.getLogger("telecrm_calls")

MIGRATIONS = "telecrm_calls:migrations"


def wire(context: Context) -> Wiring:
    settings = context.settings
    assert isinstance(settings, CallsSettings)
    assert context.db is not None
    if settings.cursor_secret.get_secret_value() == DEV_CURSOR_SECRET:
        log.warning("CALLS_CURSOR_SECRET is not set: page cursors are signed with the development key")
    secret = settings.cursor_secret.get_secret_value()
    publisher = OutboxPublisher(context.db, context.bus)
    call_rules = CallRules(
        internal_calls=settings.internal_calls,
        unregistered_extensions=settings.unregistered_extensions,
        external_number_min_digits=settings.external_number_min_digits,
    )
    service = CallLogService(
        context.db, cursor_secret=secret, on_missed_events=publisher.wake, call_rules=call_rules
    )
    # The suite's tokens (TELECRM_AUTH_*, the same settings as crm's): every REST route checks them.
    auth = AuthSettings()
    auth.warn_if_development_key(log)
    access = CallsAccess(Access.from_settings(auth), service)
    missed = MissedCallLog(context.db, cursor_secret=secret)
    consumer = TelEventsConsumer(context.bus, service, consumer_spec(settings, service))
    notes = CallNotesService(
        context.db, reasons=settings.call_reasons, results=settings.call_results, on_published=publisher.wake
    )
    registry = NumbersRegistry(context.db, cursor_secret=secret)
    reports = CallReportService(context.db)
    read_model = DirectoryReadModel(
        context.db, default_region=settings.default_region, on_outbox=publisher.wake
    )
    directory = DirectoryEventsConsumer(
        context.bus,
        read_model,
        directory_consumer_spec(
            settings.directory_consumer_durable, read_model, batch_size=settings.consumer_batch_size
        ),
    )
    recordings = RecordingService(
        context.db,
        RecordingFiles(settings.recordings_dir),
        retention=timedelta(days=settings.recordings_retention_days),
        sweep_interval=settings.recordings_sweep_interval_seconds,
    )
    return Wiring(
        title=TITLE,
        description=DESCRIPTION,
        # notes_router before calls_router: its /calls/notes/options must not be taken for a call id.
        routers=[
            notes_router(notes, access),
            calls_router(service, access),
            recordings_router(recordings, access),
            missed_calls_router(missed, access),
            numbers_router(registry, access),
            reports_router(reports, access),
        ],
        grpc_services={
            calls_grpc.SERVICE_NAME: lambda server: calls_grpc.add_to_server(server, service, missed, notes),
            numbers_grpc.SERVICE_NAME: lambda server: numbers_grpc.add_to_server(server, registry),
            reports_grpc.SERVICE_NAME: lambda server: reports_grpc.add_to_server(server, reports),
        },
        background=[
            consumer.consume_tel_events,
            directory.consume_directory_events,
            recordings.run_sweeper,
            publisher.run,
        ],
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
