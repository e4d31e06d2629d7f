"""Settings of the calls service, read from ``CALLS_*`` environment variables."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

from pydantic import Field, SecretStr
from pydantic_settings import SettingsConfigDict

from telecrm_common.settings import ServiceSettings

# Only for development: production sets CALLS_CURSOR_SECRET (the same value on every replica).
DEV_CURSOR_SECRET = "telecrm-calls-dev-cursor-secret"  # noqa: S105 - a documented development default


class CallsSettings(ServiceSettings):
    """Every field can be set as ``CALLS_<FIELD>`` (``CALLS_DATABASE_URL``, ``CALLS_NATS_URL``...)."""

    model_config = SettingsConfigDict(env_prefix="CALLS_", extra="ignore")

    service_name: str = "calls"
    database_url: str = "sqlite:///var/calls.sqlite3"
    http_port: int = 8010
    grpc_port: int = 50060
    # HMAC-SHA256 key that signs page cursors, so clients cannot forge positions. Every replica must
    # share it; changing it only invalidates the cursors in flight.
    cursor_secret: SecretStr = SecretStr(DEV_CURSOR_SECRET)
    # Run the Alembic migrations before serving. Convenient for `make run` and a single replica; with
    # several replicas on PostgreSQL set it to false and run `python -m telecrm_calls migrate` once
    # (a Kubernetes Job or init container) before rolling out.
    migrate_on_start: bool = True
    # The durable JetStream consumer that every replica of the service shares.
    consumer_durable: str = "calls"
    # Events fetched and stored per transaction (at most; a fetch returns what is there at once). Bigger
    # batches amortize the per-transaction statements: 500 ingested a third faster than 200 (PostgreSQL).
    consumer_batch_size: int = Field(default=500, ge=1, le=1000)
    # Batches in flight at once in this process (PostgreSQL; SQLite has one writer and always uses 1).
    # The ingest of a batch mostly waits on the database: with several in flight the process keeps
    # its core busy while PostgreSQL works on another one. Events of one call are serialized by
    # per-call locks, as they are between replicas.
    consumer_concurrency: int = Field(default=3, ge=1, le=16)
    # The durable consumer of crm's employee and contact events (the registry's read models).
    directory_consumer_durable: str = "calls-directory"
    # Region for numbers written without a country code (ISO 3166 alpha-2: "BG", "RO", "UA"...).
    default_region: str = Field(default="US", min_length=2, max_length=2)
    # --- call rules (telecrm_calls.rules) ---
    # Calls between two internal numbers: logged ("log") or not logged at all ("skip").
    internal_calls: Literal["log", "skip"] = "log"
    # Calls to an extension that is not in the numbers registry: logged as they are ("log"), logged as
    # internal calls ("internal", which then follow internal_calls), or not logged ("skip").
    unregistered_extensions: Literal["log", "internal", "skip"] = "log"
    # Numbers with fewer digits than this are internal (extensions), whatever the PBX reported.
    external_number_min_digits: int = Field(default=6, ge=1, le=15)
    # Where the gateway writes the recordings (a directory it shares with this service: local disk or a
    # mounted volume). Recording locations are paths under it (absolute, or relative to it); nothing
    # outside it is ever served or deleted.
    recordings_dir: Path = Path("var/recordings")
    # Recordings older than this many days are deleted (file and index entry); 0 keeps them forever.
    recordings_retention_days: int = Field(default=0, ge=0)
    # How often the retention sweep runs (seconds).
    recordings_sweep_interval_seconds: float = Field(default=3600.0, gt=0)
    # The reasons and results an agent picks from on a call's notes, as JSON lists
    # (CALLS_CALL_REASONS='["Order", "Complaint"]'); empty lets them type free text.
    call_reasons: list[str] = []
    call_results: list[str] = []
