"""Settings of the crm service (environment variables prefixed CRM_)."""

from typing import Literal

from pydantic import Field, SecretStr
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
    consumer_batch_size: int = Field(default=200, ge=1, le=1000)

    # People and log-in. The first admin is created from these when no user exists yet.
    bootstrap_admin_login: str = "admin"
    bootstrap_admin_password: SecretStr = SecretStr("")
    login_max_failures: int = Field(default=5, ge=1)
    login_lockout_minutes: int = Field(default=15, ge=1)
    password_min_length: int = Field(default=10, ge=8)

    # Number look-up for screen pops: exact E.164, then the last N digits.
    lookup_suffix_digits: int = Field(default=9, ge=6, le=15)
    lookup_cache_ttl_seconds: float = Field(default=2.0, ge=0)
    lookup_details_timeout_seconds: float = Field(default=0.5, gt=0)
    lookup_pool_size: int = Field(default=4, ge=1)
    # The contact made from a caller's number gets the creating user as its responsible employee.
    contacts_auto_responsible: bool = True
    # The call log's gRPC address, for the last calls on the card (empty: cards show no calls).
    calls_grpc_target: str = "127.0.0.1:50060"

    # Events journal: internal calls (extension to extension) become events too when set.
    journal_log_internal_calls: bool = False
    journal_consumer_durable: str = "crm-journal"

    # Tasks: what a call does to tasks (Planfix's automation): nothing, attach it to the contact's
    # last active task, or make a new task per call from a template.
    task_call_rule: Literal["off", "last_active_task", "new_task"] = "off"
    task_call_template_id: str = ""
    task_calls_durable: str = "crm-task-calls"
    task_sweep_interval_seconds: float = Field(default=60.0, gt=0)
