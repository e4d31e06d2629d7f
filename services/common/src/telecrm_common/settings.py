"""Typed settings shared by every service; each service subclasses with its own env prefix."""

from __future__ import annotations

import socket
import uuid
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict


def _default_instance_id() -> str:
    return f"{socket.gethostname()}-{uuid.uuid4().hex[:6]}"


class ServiceSettings(BaseSettings):
    """Settings every service has. Subclasses set ``env_prefix`` (``CALLS_``, ``GATEWAY_``...)."""

    model_config = SettingsConfigDict(env_prefix="TELECRM_", extra="ignore")

    service_name: str = "service"
    instance_id: str = Field(default_factory=_default_instance_id)
    nats_url: str = "nats://127.0.0.1:4222"
    database_url: str = "sqlite:///var/service.sqlite3"
    http_host: str = "127.0.0.1"
    http_port: int = 8000
    grpc_host: str = "127.0.0.1"
    grpc_port: int = 50050
    log_level: str = "INFO"
    log_format: Literal["json", "text"] = "json"
    otel_traces: Literal["none", "console"] = "none"
    # How long start-up keeps retrying an unreachable database or NATS before giving up (seconds).
    startup_timeout: float = 60.0
    # Seconds a SIGTERM leaves in-flight work to finish before the process exits.
    shutdown_grace: float = 10.0
