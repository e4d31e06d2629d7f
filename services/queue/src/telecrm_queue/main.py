"""Wires the queue service: a skeleton with health, OpenAPI and gRPC health until its issue fills it."""

from telecrm_common.app import Context, ServiceDefinition, Wiring
from telecrm_common.app import run as run_service
from telecrm_queue.settings import QueueSettings


def wire(context: Context) -> Wiring:
    return Wiring(
        title="telecrm queue",
        description="the electronic walk-in queue and the routing of calls to free agents (skeleton)",
    )


DEFINITION = ServiceDefinition(
    settings_factory=QueueSettings, wire=wire, migrations="telecrm_queue:migrations"
)


def run() -> None:
    run_service(DEFINITION)
