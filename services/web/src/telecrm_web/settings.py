"""Settings of the web service (the agent desktop), read from ``WEB_*`` environment variables."""

from __future__ import annotations

from typing import Self

from pydantic import Field, SecretStr, model_validator
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
    # --- log-in through the enterprise identity provider (OpenID Connect) ---
    # The provider's issuer, exactly as its discovery document says (``<issuer>/.well-known/
    # openid-configuration`` is read from it). Empty: no "Log in with ..." button. The services must
    # accept its access tokens too (``TELECRM_AUTH_OIDC_*``, the same issuer).
    oidc_issuer: str = ""
    oidc_client_id: str = ""
    # Empty: a public client, which proves itself with PKCE only.
    oidc_client_secret: SecretStr = SecretStr("")
    oidc_scopes: str = "openid profile email"
    # The provider's name on the button ("Log in with Acme ID"); empty: "Log in with single sign-on".
    oidc_display_name: str = ""
    # The callback as registered at the provider (``https://crm.example.com/login/sso/callback``);
    # empty: this site's own address as the browser reached it. Log-out comes back to ``/login`` there.
    oidc_redirect_url: str = ""
    # How long the discovery document is trusted before it is read again.
    oidc_metadata_ttl_seconds: float = Field(default=3600.0, gt=0)
    # Seconds a request to the provider (discovery, keys, token endpoint) may take.
    oidc_timeout_seconds: float = Field(default=10.0, gt=0)
    # false: only the identity provider logs in (the login/password form is gone).
    password_login: bool = True

    @model_validator(mode="after")
    def _someone_can_log_in(self) -> Self:
        if self.oidc_issuer and not self.oidc_client_id:
            raise ValueError(
                "WEB_OIDC_ISSUER needs WEB_OIDC_CLIENT_ID (the desktop's client at the provider)"
            )
        if not self.password_login and not self.oidc_issuer:
            raise ValueError("WEB_PASSWORD_LOGIN=false needs WEB_OIDC_ISSUER: nobody could log in otherwise")
        return self
