"""Settings of the SIP gateway, read from ``GATEWAY_*`` environment variables."""

from __future__ import annotations

import re
from pathlib import Path

from pydantic import BaseModel, Field, SecretStr, field_validator, model_validator
from pydantic_settings import SettingsConfigDict

from telecrm_common.settings import ServiceSettings
from telecrm_gateway.sip.engine import LEGS_PER_CALL, PJSUA_MAX_CALLS, EngineConfig, TrunkConfig

PBX_NAME = re.compile(r"[A-Za-z0-9._-]{1,64}")
EXTENSION_RANGE = re.compile(r"(\d+)-(\d+)")


class ProviderPbx(BaseModel):
    """A PBX that serves some extensions and takes click-to-call requests at its make-call URL."""

    extensions: list[str]  # "201", or a range of equally long numbers "300-399"
    make_call_url: str
    make_call_secret: SecretStr = SecretStr("")  # sent as "Authorization: Bearer <secret>"

    @field_validator("extensions")
    @classmethod
    def _extensions(cls, value: list[str]) -> list[str]:
        for item in value:
            bounds = EXTENSION_RANGE.fullmatch(item)
            if bounds is not None and (len(bounds[1]) != len(bounds[2]) or int(bounds[1]) > int(bounds[2])):
                raise ValueError(f"extension range {item!r}: two bounds of one length, low first")
            if not item or len(item) > 64:
                raise ValueError(f"extension {item!r}: 1-64 characters")
        return value

    @field_validator("make_call_url")
    @classmethod
    def _url(cls, value: str) -> str:
        if not value.startswith(("http://", "https://")):
            raise ValueError("make_call_url: an http:// or https:// URL")
        return value

    def serves(self, extension: str) -> bool:
        for item in self.extensions:
            bounds = EXTENSION_RANGE.fullmatch(item)
            if bounds is None:
                if item == extension:
                    return True
            elif (
                extension.isdigit()
                and len(extension) == len(bounds[1])
                and bounds[1] <= extension <= bounds[2]
            ):
                return True
        return False


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
    # Seconds ringing the agent may wait for crm to name the caller (an uncached number); later answers
    # only name the legs rung after them (the next ring-group member, the overflow).
    caller_name_wait: float = Field(default=0.15, ge=0, le=2)
    # Click-to-call over SIP: external numbers are called at sip:<number>@<trunk_uri's host;params>
    # ("sip:pbx.example.com:5060;transport=udp"; empty: only extensions can be called); the customer's
    # phone may ring dial_timeout seconds.
    trunk_uri: str = ""
    dial_timeout: float = Field(default=45.0, gt=0, le=600)
    # Trunk registration (with trunk_username set): REGISTER at trunk_uri as
    # sip:<trunk_username>@<trunk_domain, default trunk_uri's host> with digest authentication, refreshed
    # before it expires; calls to the trunk go through that account. Its state is the "trunk" health check.
    trunk_username: str = ""
    trunk_password: SecretStr = SecretStr("")
    trunk_domain: str = ""
    trunk_realm: str = "*"
    trunk_register_expires: int = Field(default=300, ge=10, le=86400)

    # Call events waiting for NATS, in order, before new ones are dropped (with an error log).
    event_buffer: int = Field(default=100_000, ge=100)

    # Caller names from crm (telecrm.crm.v1.Contacts/LookupNumber at this gRPC address; "" disables it):
    # each look-up waits at most crm_lookup_deadline seconds; answers are cached crm_lookup_cache_ttl.
    crm_grpc_target: str = ""
    crm_lookup_deadline: float = Field(default=0.3, gt=0, le=10)
    crm_lookup_cache_ttl: float = Field(default=60.0, ge=0)

    # Telephony API for providers (cloud PBXs posting call events over HTTP): the API key of each PBX,
    # as JSON {"pbx-name": "secret"}; the name is the events' source ("provider-api/<name>").
    provider_keys: dict[str, SecretStr] = {}
    # PBXs that serve some of our extensions: click-to-call for those is a POST to the PBX's make-call
    # URL. JSON {"pbx-name": {"extensions": ["201", "300-399"], "make_call_url": "https://...",
    # "make_call_secret": "..."}}.
    provider_pbxs: dict[str, ProviderPbx] = {}
    provider_publish_timeout: float = Field(default=5.0, gt=0, le=60)  # NATS ack, else HTTP 503
    provider_make_call_timeout: float = Field(default=5.0, gt=0, le=60)
    # Repeated clicks (same idempotency key, else same extension and number) within this many seconds
    # are one call: the same call_id, one make-call request.
    dial_idempotency_window: float = Field(default=10.0, ge=0, le=3600)

    # Call recordings: WAV files named <call id>.wav (both sides mixed), written here; the
    # RecordingReady event's location is the file's name in it (the calls service's
    # CALLS_RECORDINGS_DIR is the same directory, mounted wherever it likes).
    recordings_dir: Path = Path("var/recordings")

    @field_validator("trunk_uri")
    @classmethod
    def _trunk(cls, value: str) -> str:
        value = value.strip()
        if value and (not value.lower().startswith(("sip:", "sips:")) or "@" in value):
            raise ValueError(f"trunk_uri: a SIP URI without a user (sip:host:port;params), not {value!r}")
        return value

    @model_validator(mode="after")
    def _trunk_to_register_at(self) -> GatewaySettings:
        if self.trunk_username and not self.trunk_uri:
            raise ValueError("trunk_username is set but trunk_uri (where to register) is not")
        return self

    @field_validator("provider_keys", "provider_pbxs")
    @classmethod
    def _pbx_names(cls, value: dict[str, object]) -> dict[str, object]:
        for name in value:
            if not PBX_NAME.fullmatch(name):
                raise ValueError(f"PBX name {name!r}: 1-64 letters, digits, '.', '_' or '-'")
        return value

    @field_validator("provider_keys")
    @classmethod
    def _keys_not_empty(cls, value: dict[str, SecretStr]) -> dict[str, SecretStr]:
        for name, key in value.items():
            if len(key.get_secret_value()) < 16:
                raise ValueError(f"the API key of PBX {name!r} is shorter than 16 characters")
        return value

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
            trunk=self.trunk_config(),
            recordings_dir=str(self.recordings_dir.resolve()),
        )

    def trunk_config(self) -> TrunkConfig | None:
        """The trunk to register at, when ``trunk_username`` is set."""
        if not self.trunk_username or not self.trunk_uri:
            return None
        scheme, _, rest = self.trunk_uri.partition(":")
        hostport = rest.split(";", 1)[0]
        host = hostport.split("]")[0] + "]" if hostport.startswith("[") else hostport.split(":")[0]
        return TrunkConfig(
            registrar=self.trunk_uri,
            aor=f"{scheme.lower()}:{self.trunk_username}@{self.trunk_domain or host}",
            username=self.trunk_username,
            password=self.trunk_password.get_secret_value(),
            realm=self.trunk_realm,
            expires=self.trunk_register_expires,
        )
