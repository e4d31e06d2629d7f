"""Wires the crm service: a skeleton with health, OpenAPI and gRPC health until its issue fills it."""

from telecrm_common.app import Context, ServiceDefinition, Wiring
from telecrm_common.app import run as run_service
from telecrm_crm.settings import CRMSettings

MIGRATIONS = "telecrm_crm:migrations"


def wire(context: Context) -> Wiring:
    return Wiring(
        title="telecrm crm",
        description="contacts, employees, events journal, tasks, projects and service tickets (skeleton)",
    )


DEFINITION = ServiceDefinition(settings_factory=CRMSettings, wire=wire, migrations=MIGRATIONS)


def run() -> None:
    run_service(DEFINITION)
