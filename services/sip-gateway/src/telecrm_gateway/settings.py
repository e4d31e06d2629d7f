"""Settings of the SIP gateway, read from ``GATEWAY_*`` environment variables."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from telecrm_common.settings import ServiceSettings
from telecrm_gateway.sip.engine import LEGS_PER_CALL, PJSUA_MAX_CALLS, EngineConfig


class GatewaySettings(ServiceSettings):
    """Every field can be set as ``GATEWAY_<FIELD>`` (``GATEWAY_SIP_PORT``, ``GATEWAY_ROUTES_FILE``...)."""

    model_config = SettingsConfigDict(env_prefix="GATEWAY_", extra="ignore")

    service_name: str = "sip-gateway"
    http_port: int = 8000
    grpc_port: int = 50050

    # SIP endpoint: UDP and TCP on one address and port.
    sip_host: str = "127.0.0.1"
    sip_port: int = Field(default=5060, ge=0, le=65535)
    sip_udp: bool = True
    sip_tcp: bool = True
    # Address written in Via/Contact/SDP when it differs from sip_host (0.0.0.0, NAT, a pod behind a proxy).
    sip_public_address: str = ""
    # RTP: bind address (default sip_host), first port and range (0: ports chosen by the OS).
    rtp_host: str = ""
    rtp_port: int = Field(default=0, ge=0, le=65535)
    rtp_port_range: int = Field(default=0, ge=0)
    # Calls one process admits (each takes two of pjsua2's four legs). 1 keeps two legs free so every
    # INVITE beyond capacity gets our 503 + Retry-After; with 2, pjsua itself answers 486 when all four
    # legs are busy. Put a proxy (Kamailio dispatcher) in front to spread calls over several processes.
    max_calls: int = Field(default=1, ge=1, le=PJSUA_MAX_CALLS // LEGS_PER_CALL)
    retry_after: int = Field(default=5, ge=1, le=3600)  # seconds, in the 503 Retry-After header
    # Audio codecs offered, in order of preference; the others are disabled.
    codecs: list[str] = ["PCMU/8000", "PCMA/8000", "G722/16000"]
    # pjsip's own log level, routed to Python logging: 1 errors, 2 warnings, 3 info, 4-5 SIP messages.
    pjsip_log_level: int = Field(default=2, ge=0, le=6)

    # Routing: which extension a called number rings (see routes.example.toml). Unset: the packaged
    # default_routes.toml (extension 101 on sip:101@127.0.0.1:5070).
    routes_file: Path | None = None
    # Region used to write numbers without a country code in E.164 ("US", "DE", "RU"...).
    default_region: str = "US"

    # Call events waiting for NATS, in order, before new ones are dropped (with an error log).
    event_buffer: int = Field(default=100_000, ge=100)

    def engine_config(self) -> EngineConfig:
        return EngineConfig(
            host=self.sip_host,
            port=self.sip_port,
            udp=self.sip_udp,
            tcp=self.sip_tcp,
            public_address=self.sip_public_address,
            rtp_host=self.rtp_host,
            rtp_port=self.rtp_port,
            rtp_port_range=self.rtp_port_range,
            max_calls=self.max_calls,
            retry_after=self.retry_after,
            user_agent=f"telecrm-sip-gateway/{self.instance_id}",
            pjsip_log_level=self.pjsip_log_level,
            codecs=tuple(self.codecs),
        )
