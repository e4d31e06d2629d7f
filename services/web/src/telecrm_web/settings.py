"""Settings of the web service (the agent desktop), read from ``WEB_*`` environment variables."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from telecrm_common.settings import ServiceSettings


class WebSettings(ServiceSettings):
    """Every field can be set as ``WEB_<FIELD>`` (``WEB_CRM_URL``, ``WEB_COOKIE_SECURE``...)."""

    model_config = SettingsConfigDict(env_prefix="WEB_", extra="ignore")

    service_name: str = "web"
    http_port: int = 8080
    # The gRPC server only carries the standard health and reflection services (web owns no data).
    grpc_port: int = 50100
    # The services the desktop talks to: REST with the user's own token (the services check the rights).
    crm_url: str = "http://127.0.0.1:8020"
    calls_url: str = "http://127.0.0.1:8010"
    # The sip-gateway's REST API (click-to-call, hang up, hold, transfer), with the user's own token.
    # Empty: no click-to-call (the buttons are absent and the API answers 503).
    gateway_url: str = ""
    # crm's gRPC (People.ResolveExtension), for a ringing event that names an extension but no employee.
    # Empty: only events that name the employee pop a card.
    crm_grpc_target: str = ""
    # Seconds a request to crm or calls may take before the desktop answers 504.
    upstream_timeout_seconds: float = Field(default=10.0, gt=0)
    # The screen pop's look-up of the caller (crm) and their open missed calls (calls): the card is sent
    # at once with the number and completed when they answer within this deadline.
    lookup_timeout_seconds: float = Field(default=2.0, gt=0)
    # --- sessions ---
    # The session cookie is Secure (sent over HTTPS only). Only a local http://127.0.0.1 development
    # setup turns it off (make run does); production keeps it on.
    cookie_secure: bool = True
    cookie_name: str = "telecrm_session"
    # A session unused for this long ends (the user logs in again); refresh tokens end it sooner.
    session_idle_seconds: int = Field(default=8 * 3600, ge=60)
    # Sessions held by this process at most; the oldest unused ones go first.
    max_sessions: int = Field(default=10_000, ge=1)
    # Origins allowed besides the page's own host (when a gateway serves it under another name),
    # as a JSON list: WEB_ALLOWED_ORIGINS='["https://crm.example.com"]'.
    allowed_origins: list[str] = []
    # --- live screen pops ---
    # Cards kept per employee for a tab that reconnects (or opens) to catch up, and for how long.
    recent_cards: int = Field(default=20, ge=1, le=500)
    recent_cards_seconds: float = Field(default=3600.0, gt=0)
    # Seconds between keep-alive pings on an idle WebSocket (the page reconnects after missing two).
    ping_interval_seconds: float = Field(default=20.0, gt=0)
    default_language: str = "en"
