"""Settings of the crm service (environment variables prefixed CRM_)."""

from pydantic_settings import SettingsConfigDict

from telecrm_common.settings import ServiceSettings


class CRMSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    service_name: str = "crm"
    database_url: str = "sqlite:///var/crm.sqlite3"
    http_port: int = 8020
    grpc_port: int = 50070
    migrate_on_start: bool = True
