"""Wires the messaging service: a skeleton with health, OpenAPI and gRPC health until its issue fills it."""

from telecrm_common.app import Context, ServiceDefinition, Wiring
from telecrm_common.app import run as run_service
from telecrm_messaging.settings import MessagingSettings


def wire(context: Context) -> Wiring:
    return Wiring(
        title="telecrm messaging",
        description="fax, SMS and e-mail: send, receive, delivery reports (skeleton)",
    )


DEFINITION = ServiceDefinition(
    settings_factory=MessagingSettings, wire=wire, migrations="telecrm_messaging:migrations"
)


def run() -> None:
    run_service(DEFINITION)
