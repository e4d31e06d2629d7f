"""Wires the web service: the agent desktop's pages, its JSON API and the live screen pops.

``telecrm-web`` (or ``python -m telecrm_web``) serves. It owns no data (no database, no migrations):
sessions live in memory, everything else is read from and written to crm and calls with the user's
own token, and the screen pops follow the call events on NATS.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import sys
from collections.abc import Sequence
from dataclasses import dataclass

import httpx

from telecrm_common import app
from telecrm_common.app import Context, ServiceDefinition, Wiring
from telecrm_common.auth import AuthSettings, TokenVerifier
from telecrm_common.bus import Bus
from telecrm_web.admin import admin_router
from telecrm_web.api import Forwarder, api_router
from telecrm_web.directory import ExtensionDirectory
from telecrm_web.insight import insight_router
from telecrm_web.live import CallerLookup, ScreenPops
from telecrm_web.pages import Pages, pages_router
from telecrm_web.security import CookiePolicy, Guard
from telecrm_web.sessions import SessionStore
from telecrm_web.settings import WebSettings
from telecrm_web.sso import SingleSignOn, sso_router
from telecrm_web.telephony import telephony_router
from telecrm_web.upstream import Upstream
from telecrm_web.work import work_router

log = logging.getLogger("telecrm_web")

TITLE = "telecrm web"
DESCRIPTION = (
    "The agent desktop (a backend-for-frontend): log-in, the call log, missed calls and live screen "
    "pops. Its JSON API (`/api/...`) serves the desktop's own pages: a session cookie and, on every "
    "change, the page's `X-CSRF-Token`."
)
SWEEP_INTERVAL_SECONDS = 60.0


@dataclass
class Desktop:
    """The parts of a running web service (the tests and the benchmark reach into them)."""

    settings: WebSettings
    upstream: Upstream
    store: SessionStore
    guard: Guard
    pops: ScreenPops
    wiring: Wiring
    sso: SingleSignOn | None = None  # log-in through the enterprise identity provider, when set up


def build(
    settings: WebSettings,
    bus: Bus,
    *,
    auth: AuthSettings | None = None,
    crm_transport: httpx.AsyncBaseTransport | None = None,
    calls_transport: httpx.AsyncBaseTransport | None = None,
) -> Desktop:
    auth = auth or AuthSettings()
    auth.warn_if_development_key(log)
    if not settings.cookie_secure:
        log.warning("WEB_COOKIE_SECURE is false: the session cookie also goes over plain HTTP (development)")
    upstream = Upstream(
        settings.crm_url,
        settings.calls_url,
        timeout=settings.upstream_timeout_seconds,
        crm_transport=crm_transport,
        calls_transport=calls_transport,
        gateway_url=settings.gateway_url,
    )
    store = SessionStore(
        upstream,
        TokenVerifier(auth),
        idle_seconds=settings.session_idle_seconds,
        max_sessions=settings.max_sessions,
    )
    cookies = CookiePolicy(
        name=settings.cookie_name, secure=settings.cookie_secure, max_age=settings.session_idle_seconds
    )
    guard = Guard(store, cookies, settings.allowed_origins)
    directory = ExtensionDirectory(settings.crm_grpc_target) if settings.crm_grpc_target else None
    pops = ScreenPops(
        CallerLookup(upstream, store, timeout=settings.lookup_timeout_seconds),
        resolve_extension=directory.employee_of if directory is not None else None,
        recent=settings.recent_cards,
        recent_seconds=settings.recent_cards_seconds,
    )
    sso = single_sign_on(settings, auth)
    pages = Pages(
        guard,
        upstream,
        default_language=settings.default_language,
        sso=sso,
        password_login=settings.password_login,
    )

    async def follow_calls(stop: asyncio.Event) -> None:
        await pops.follow(bus, stop)

    async def sweep_sessions(stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=SWEEP_INTERVAL_SECONDS)
            if ended := store.expire_idle():
                log.info("%d idle sessions ended", ended)

    async def close_directory() -> None:
        if directory is not None:
            await directory.close()

    async def close_sso() -> None:
        if sso is not None:
            await sso.close()

    forwarder = Forwarder(upstream, store)
    wiring = Wiring(
        title=TITLE,
        description=DESCRIPTION,
        routers=[
            pages_router(pages),
            api_router(guard, forwarder, pops, ping_interval=settings.ping_interval_seconds),
            work_router(pages, forwarder),
            admin_router(pages, forwarder),
            insight_router(pages, forwarder),
            telephony_router(pages, forwarder),
            *([sso_router(pages, sso)] if sso is not None else []),
        ],
        background=[follow_calls, sweep_sessions],
        on_shutdown=[upstream.close, close_directory, close_sso],
    )
    return Desktop(
        settings=settings, upstream=upstream, store=store, guard=guard, pops=pops, wiring=wiring, sso=sso
    )


def single_sign_on(settings: WebSettings, auth: AuthSettings) -> SingleSignOn | None:
    """The identity provider's log-in when ``WEB_OIDC_ISSUER`` is set."""
    if not settings.oidc_issuer:
        return None
    if auth.oidc_issuer != settings.oidc_issuer or not auth.oidc_jwks_url:
        # The desktop verifies the access token it gets as the services do: with TELECRM_AUTH_OIDC_*.
        log.warning(
            "WEB_OIDC_ISSUER is %r but TELECRM_AUTH_OIDC_ISSUER is %r (JWKS URL %r): the provider's access "
            "tokens will be refused until both name it",
            settings.oidc_issuer,
            auth.oidc_issuer,
            auth.oidc_jwks_url,
        )
    return SingleSignOn.from_settings(settings, leeway=auth.leeway_seconds)


def wire(context: Context) -> Wiring:
    settings = context.settings
    assert isinstance(settings, WebSettings)
    return build(settings, context.bus).wiring


DEFINITION = ServiceDefinition(settings_factory=WebSettings, wire=wire, migrations=None)


def main(argv: Sequence[str] | None = None) -> int:
    return app.main(DEFINITION, argv, prog="telecrm-web")


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
