"""Settings of the crm service (environment variables prefixed CRM_)."""

from typing import Literal

from pydantic import SecretStr
from pydantic_settings import SettingsConfigDict

from telecrm_common.settings import ServiceSettings

DEV_CURSOR_SECRET = "crm-development-cursor-secret"  # noqa: S105 - the documented dev default


class CRMSettings(ServiceSettings):
    model_config = SettingsConfigDict(env_prefix="CRM_", extra="ignore")

    service_name: str = "crm"
    database_url: str = "sqlite:///var/crm.sqlite3"
    http_port: int = 8020
    grpc_port: int = 50070
    migrate_on_start: bool = True
    cursor_secret: SecretStr = SecretStr(DEV_CURSOR_SECRET)
    # Region for numbers written without a country code ("0888 123 456" in BG, "(495) 123-45-67" in RU).
    default_region: str = "BG"
    # Attachments: kept outside any served directory, under a random name, never executed.
    attachments_dir: str = "var/crm-attachments"
    attachment_max_bytes: int = 20 * 1024 * 1024
    # Operation log: nothing, only creations/deletions/status changes, or every change with its fields.
    audit_level: Literal["none", "writes", "changes"] = "changes"
    consumer_batch_size: int = 200
