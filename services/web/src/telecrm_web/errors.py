"""The web service's errors (one base, as in every service)."""

from __future__ import annotations

from telecrm_common.errors import TelecrmError


class WebError(TelecrmError):
    """Base of the web service's errors."""


class SessionExpired(WebError):
    """No session, or it ended (idle too long, logged out, refresh refused): the user logs in again."""


class UpstreamUnavailable(WebError):
    """crm or calls did not answer (or answered 5xx): the page shows it and can retry."""

    def __init__(self, service: str, what: str, *, timeout: bool = False) -> None:
        super().__init__(f"{service} {what}")
        self.service = service
        self.timeout = timeout
