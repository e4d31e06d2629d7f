"""Settings of the queue service (environment variables prefixed QUEUE_)."""

from pydantic_settings import SettingsConfigDict

from telecrm_common.settings import ServiceSettings


class QueueSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="QUEUE_", extra="ignore")

    service_name: str = "queue"
    database_url: str = "sqlite:///var/queue.sqlite3"
    http_port: int = 8040
    grpc_port: int = 50090
    migrate_on_start: bool = True
