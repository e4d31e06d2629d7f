"""Wires the crm service: people and log-in, contacts and number look-up, the events journal, tasks,
projects and service tickets, over REST (OpenAPI at /docs) and gRPC, with their bus consumers.

``telecrm-crm`` (or ``python -m telecrm_crm``) serves; ``telecrm-crm migrate`` only runs the
migrations. Every change publishes its event through one outbox (``crm.>`` on the CRM stream).
"""

from __future__ import annotations

import asyncio
import logging
import sys
from collections.abc import Sequence
from datetime import timedelta

from telecrm_common import app
from telecrm_common.app import Context, ServiceDefinition, Wiring
from telecrm_common.auth import AuthSettings
from telecrm_common.errors import NotReadyError
from telecrm_crm import contacts_grpc, journal_grpc, people_grpc, tasks_grpc, tickets_grpc
from telecrm_crm.access import Access
from telecrm_crm.attachments import AttachmentStore
from telecrm_crm.audit import AuditLog
from telecrm_crm.bridges import CallLogHistory, ContactOpenTasks, EmployeeEmails, PeopleDirectory, TaskSources
from telecrm_crm.contacts import ContactService
from telecrm_crm.contacts_api import contacts_router
from telecrm_crm.journal import JournalService
from telecrm_crm.journal_api import journal_router
from telecrm_crm.journal_consumer import JournalConsumer, journal_consumer_spec
from telecrm_crm.login import LoginService
from telecrm_crm.login_api import login_router
from telecrm_crm.lookup import NumberLookup
from telecrm_crm.outbox import OutboxPublisher
from telecrm_crm.people import Passwords, PeopleService
from telecrm_crm.people_api import people_router
from telecrm_crm.projects import ProjectService
from telecrm_crm.projects_api import projects_router
from telecrm_crm.settings import DEV_CURSOR_SECRET, CRMSettings
from telecrm_crm.task_automation import TaskCallAutomation, TaskCallConsumer, task_calls_consumer_spec
from telecrm_crm.task_schedule import TaskScheduler
from telecrm_crm.tasks import TaskService
from telecrm_crm.tasks_api import tasks_router
from telecrm_crm.tickets import TicketService
from telecrm_crm.tickets_api import tickets_router

log = logging.getLogger("telecrm_crm")

MIGRATIONS = "telecrm_crm:migrations"
TITLE = "telecrm crm"
DESCRIPTION = (
    "People and access, contacts and number look-up, the events journal, tasks, projects and service "
    "tickets. Every request but log-in carries `Authorization: Bearer <access token>` from `/auth/login`."
)


def wire(context: Context) -> Wiring:
    s = context.settings
    assert isinstance(s, CRMSettings)
    db = context.db
    assert db is not None
    if s.cursor_secret.get_secret_value() == DEV_CURSOR_SECRET:
        log.warning("CRM_CURSOR_SECRET is not set: page cursors are signed with the development key")
    auth = AuthSettings()
    auth.warn_if_development_key(log)
    access = Access.from_settings(auth)
    secret = s.cursor_secret.get_secret_value().encode()
    publisher = OutboxPublisher(db, context.bus)
    audit = AuditLog(s.audit_level)
    files = AttachmentStore(s.attachments_dir, max_bytes=s.attachment_max_bytes)

    passwords = Passwords(min_length=s.password_min_length)
    people = PeopleService(
        db, audit=audit, cursor_secret=secret, passwords=passwords, on_outbox=publisher.wake
    )
    logins = LoginService(
        db,
        auth_settings=auth,
        passwords=passwords,
        audit=audit,
        max_failures=s.login_max_failures,
        lockout=timedelta(minutes=s.login_lockout_minutes),
    )
    tasks = TaskService(
        db,
        audit=audit,
        attachments=files,
        cursor_secret=secret,
        on_outbox=publisher.wake,
        source_lookup=TaskSources(db),
    )
    call_log = CallLogHistory(s.calls_grpc_target) if s.calls_grpc_target else None
    lookup = NumberLookup(
        db,
        default_region=s.default_region,
        suffix_digits=s.lookup_suffix_digits,
        cache_ttl=s.lookup_cache_ttl_seconds,
        details_timeout=s.lookup_details_timeout_seconds,
        pool_size=s.lookup_pool_size,
        employees=PeopleDirectory(people),
        tasks=ContactOpenTasks(tasks),
        calls=call_log,
    )
    contacts = ContactService(
        db,
        audit=audit,
        cursor_secret=secret,
        default_region=s.default_region,
        auto_responsible=s.contacts_auto_responsible,
        on_outbox=publisher.wake,
        on_change=lookup.invalidate,
    )
    journal = JournalService(
        db,
        audit=audit,
        attachments=files,
        cursor_secret=secret,
        on_outbox=publisher.wake,
        default_region=s.default_region,
        log_internal_calls=s.journal_log_internal_calls,
    )
    projects = ProjectService(
        db, audit=audit, attachments=files, cursor_secret=secret, on_outbox=publisher.wake
    )
    tickets = TicketService(
        db, audit=audit, attachments=files, cursor_secret=secret, on_outbox=publisher.wake
    )

    journal_consumer = JournalConsumer(
        context.bus,
        journal,
        journal_consumer_spec(journal, s.journal_consumer_durable, batch_size=s.consumer_batch_size),
    )
    automation = TaskCallAutomation(tasks, rule=s.task_call_rule, template_id=s.task_call_template_id or None)
    task_calls = TaskCallConsumer(
        context.bus,
        automation,
        task_calls_consumer_spec(s.task_calls_durable, automation, batch_size=s.consumer_batch_size),
    )
    scheduler = TaskScheduler(tasks, interval=s.task_sweep_interval_seconds, email_lookup=EmployeeEmails(db))

    bootstrapped = asyncio.Event()

    async def bootstrap_admin(stop: asyncio.Event) -> None:
        """Create the first admin when there is no user (a one-shot task; its failure stops crm)."""
        await people.bootstrap_admin(s.bootstrap_admin_login, s.bootstrap_admin_password.get_secret_value())
        bootstrapped.set()

    async def first_admin_ready() -> None:
        # Not ready until there is someone who can log in: a client that waits for /readyz can.
        if not bootstrapped.is_set():
            raise NotReadyError("the first admin is being created")

    async def close_call_log() -> None:
        if call_log is not None:
            await call_log.close()

    return Wiring(
        title=TITLE,
        description=DESCRIPTION,
        routers=[
            login_router(logins),
            people_router(people, access),
            contacts_router(contacts, access, lookup),
            journal_router(journal, access),
            tasks_router(tasks, access),
            projects_router(projects, access),
            tickets_router(tickets, access),
        ],
        grpc_services={
            people_grpc.SERVICE_NAME: lambda server: people_grpc.add_to_server(server, people),
            contacts_grpc.SERVICE_NAME: lambda server: contacts_grpc.add_to_server(server, contacts, lookup),
            journal_grpc.SERVICE_NAME: lambda server: journal_grpc.add_to_server(server, journal),
            tasks_grpc.SERVICE_NAME: lambda server: tasks_grpc.add_to_server(server, tasks),
            tickets_grpc.SERVICE_NAME: lambda server: tickets_grpc.add_to_server(server, tickets),
        },
        background=[
            bootstrap_admin,
            publisher.run,
            logins.run,
            journal_consumer.run,
            task_calls.consume_call_records,
            scheduler.run,
        ],
        on_shutdown=[lookup.close, close_call_log],
        checks={"first_admin": first_admin_ready},
    )


DEFINITION = ServiceDefinition(settings_factory=CRMSettings, wire=wire, migrations=MIGRATIONS)


def main(argv: Sequence[str] | None = None) -> int:
    return app.main(DEFINITION, argv, prog="telecrm-crm")


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
