"""Settings of the messaging service (environment variables prefixed MESSAGING_)."""

from pydantic_settings import SettingsConfigDict

from telecrm_common.settings import ServiceSettings


class MessagingSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="MESSAGING_", extra="ignore")

    service_name: str = "messaging"
    database_url: str = "sqlite:///var/messaging.sqlite3"
    http_port: int = 8030
    grpc_port: int = 50080
    migrate_on_start: bool = True
