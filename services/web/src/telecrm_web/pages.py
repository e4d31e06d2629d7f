"""The pages: log-in, log-out and the agent desktop, rendered on the server (Jinja2, autoescaped).

Log-in is a plain HTML form (it works without JavaScript): the desktop posts the login and password to
crm's ``/auth/login``, keeps the tokens in a server-side session and gives the browser only the
session's cookie. ``next`` brings the user back where a 401 sent them from (a path of this site only).
With an enterprise identity provider set up (:mod:`telecrm_web.sso`) the page also has its button, or
only the button when the password log-in is turned off.
Every page carries a strict Content-Security-Policy: scripts and styles from this site only, no inline
script, so text that slipped into a page unescaped still could not run.
"""

from __future__ import annotations

import logging
import re
import secrets
from importlib import resources
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import APIRouter, Form, Request, Response
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse
from jinja2 import Environment, PackageLoader, select_autoescape

from telecrm_web.errors import SessionExpired, UpstreamUnavailable
from telecrm_web.i18n import (
    LANGUAGE_COOKIE,
    LANGUAGES,
    TIME_ZONE_COOKIE,
    Translator,
    catalogue,
    language_names,
    pick_language,
)
from telecrm_web.security import LOGIN_CSRF_COOKIE, Guard, origin_allowed, same_token
from telecrm_web.sessions import Session
from telecrm_web.upstream import Refused, Upstream

if TYPE_CHECKING:
    from telecrm_web.sso import SingleSignOn

log = logging.getLogger(__name__)

SECURITY_HEADERS = {
    "Content-Security-Policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
    ),
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "same-origin",
    "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
DEFAULT_NEXT = "/desktop"
_STATIC = re.compile(r"^[a-z0-9_-]+\.(js|css|svg)$")
_MEDIA = {"js": "text/javascript", "css": "text/css", "svg": "image/svg+xml"}
MAX_LOGIN_LENGTH = 200
MAX_PASSWORD_LENGTH = 1024


def safe_next(value: str | None) -> str:
    """A path of this site to go to after log-in; anything else (another site, ``//host``) is ignored."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return DEFAULT_NEXT
    if any(ord(char) < 0x20 for char in value) or len(value) > 2000:
        return DEFAULT_NEXT
    return value


class Pages:
    def __init__(
        self,
        guard: Guard,
        upstream: Upstream,
        *,
        default_language: str,
        sso: SingleSignOn | None = None,
        password_login: bool = True,
    ) -> None:
        self.guard = guard
        self.upstream = upstream
        self.default_language = default_language
        self.sso = sso
        self.password_login = password_login
        self.env = Environment(
            loader=PackageLoader("telecrm_web", "templates"),
            autoescape=select_autoescape(["html"], default=True),
            trim_blocks=True,
            lstrip_blocks=True,
        )

    def language(self, request: Request) -> str:
        return pick_language(
            request.cookies.get(LANGUAGE_COOKIE),
            request.headers.get("accept-language"),
            self.default_language,
        )

    def render(self, name: str, request: Request, status_code: int = 200, **context: Any) -> HTMLResponse:
        language = context.pop("language", None) or self.language(request)
        html = self.env.get_template(name).render(
            t=Translator(language),
            language=language,
            languages=language_names(),
            messages=catalogue(language),
            **context,
        )
        return HTMLResponse(html, status_code=status_code, headers=self.security_headers())

    def security_headers(self) -> dict[str, str]:
        """:data:`SECURITY_HEADERS`; with an identity provider, the log-out form may also lead there."""
        if self.sso is None:
            return SECURITY_HEADERS
        targets = " ".join(["'self'", *self.sso.form_action_origins()])
        policy = SECURITY_HEADERS["Content-Security-Policy"].replace(
            "form-action 'self'", f"form-action {targets}"
        )
        return {**SECURITY_HEADERS, "Content-Security-Policy": policy}

    def signed_in_page(
        self,
        request: Request,
        template: str,
        current: str,
        heading: str,
        *,
        admins_only: bool = False,
        **context: Any,
    ) -> Response:
        """A page of the signed-in user (log-in first, and back here), with the desktop's context:
        ``current`` marks the page in the navigation, ``heading`` is a message key. An ``admins_only``
        page answers anyone else 403 with ``forbidden`` set, for the template to say so."""
        session = self.guard.session_of(request)
        if session is None:
            return RedirectResponse(f"/login?next={request.url.path}", status_code=303)
        t = Translator(self.language(request))
        forbidden = admins_only and not session.principal.is_admin
        return self.render(
            template,
            request,
            status_code=403 if forbidden else 200,
            **desktop_context(session, request),
            current=current,
            heading=t(heading),
            forbidden=forbidden,
            **context,
        )

    def login_page(
        self,
        request: Request,
        *,
        next_path: str,
        error: str | None = None,
        login: str = "",
        status_code: int = 200,
        language: str | None = None,
    ) -> HTMLResponse:
        token = secrets.token_urlsafe(24)
        t = Translator(language or self.language(request))
        response = self.render(
            "login.html",
            request,
            status_code=status_code,
            language=language,
            csrf_token=token,
            sso_label=self.sso.button_label(t) if self.sso is not None else "",
            password_login=self.password_login,
            next_path=next_path,
            error=error,
            login=login,
            expired=request.query_params.get("expired") == "1",
        )
        self.guard.cookies.set_plain(response, LOGIN_CSRF_COOKIE, token, max_age=3600)
        return response


def pages_router(pages: Pages) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    guard = pages.guard

    @router.get("/")
    async def root(request: Request) -> Response:
        target = DEFAULT_NEXT if guard.session_of(request) else "/login"
        return RedirectResponse(target, status_code=303)

    @router.get("/login")
    async def login_form(request: Request, next: str | None = None, lang: str | None = None) -> Response:
        language = lang if lang in LANGUAGES else None
        response = pages.login_page(request, next_path=safe_next(next), language=language)
        if language is not None:
            guard.cookies.set_plain(response, LANGUAGE_COOKIE, language)
        return response

    @router.post("/login")
    async def login(
        request: Request,
        login: Annotated[str, Form(max_length=MAX_LOGIN_LENGTH)] = "",
        password: Annotated[str, Form(max_length=MAX_PASSWORD_LENGTH)] = "",
        csrf_token: Annotated[str, Form(max_length=200)] = "",
        next: Annotated[str, Form(max_length=2000)] = DEFAULT_NEXT,
    ) -> Response:
        t = Translator(pages.language(request))
        next_path = safe_next(next)
        if not pages.password_login:
            return pages.login_page(
                request, next_path=next_path, error=t("sso_password_off"), status_code=403
            )
        if not origin_allowed(request.headers, guard.allowed_origins) or not same_token(
            csrf_token, request.cookies.get(LOGIN_CSRF_COOKIE)
        ):
            return pages.login_page(
                request, next_path=next_path, error=t("login_stale_form"), login=login, status_code=403
            )
        if not login.strip() or not password:
            return pages.login_page(
                request, next_path=next_path, error=t("login_failed"), login=login, status_code=401
            )
        try:
            pair = await pages.upstream.login(
                login.strip(), password, user_agent=request.headers.get("user-agent")
            )
            session = await guard.store.open(pair)
        except Refused:
            return pages.login_page(
                request, next_path=next_path, error=t("login_failed"), login=login, status_code=401
            )
        except (UpstreamUnavailable, SessionExpired) as exc:
            log.warning("log-in failed: %s", exc)
            return pages.login_page(
                request, next_path=next_path, error=t("login_unavailable"), login=login, status_code=503
            )
        previous = guard.session_of(request)
        if previous is not None:  # a second log-in in the same browser replaces the first session
            guard.store.expire(previous)
        response = RedirectResponse(next_path, status_code=303)
        guard.cookies.set_session(response, session)
        response.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
        return response

    @router.post("/logout")
    async def logout(request: Request, csrf_token: Annotated[str, Form(max_length=200)] = "") -> Response:
        session = guard.session_of(request)
        response = RedirectResponse("/login", status_code=303)
        if session is None:
            guard.cookies.clear_session(response)
            return response
        if not origin_allowed(request.headers, guard.allowed_origins) or not same_token(
            csrf_token, session.csrf_token
        ):
            return Response("log-out needs the page's token", status_code=403)
        if pages.sso is not None and (provider_logout := pages.sso.logout_url(session, request)):
            # The provider's session ends too, or its next log-in would sign the user in unasked.
            response = RedirectResponse(provider_logout, status_code=303)
        try:
            await guard.store.close(session)
        except UpstreamUnavailable as exc:
            log.warning("crm (or the identity provider) did not end the session's refresh token: %s", exc)
        guard.cookies.clear_session(response)
        return response

    @router.get("/desktop")
    async def desktop(request: Request) -> Response:
        session = guard.session_of(request)
        if session is None:
            return RedirectResponse(f"/login?next={DEFAULT_NEXT}", status_code=303)
        p = session.principal
        return pages.render(
            "desktop.html",
            request,
            **desktop_context(session, request),
            current="desktop",
            # The screen-pop card's "New task", "Remind me" (a task of mine) and "New event".
            can_create_task=p.has("task.create"),
            can_create_event=p.has("event.create"),
        )

    @router.get("/contacts")
    async def contacts(request: Request) -> Response:
        return pages.signed_in_page(request, "contacts.html", "contacts", "contacts_title")

    @router.get("/missed")
    async def missed(request: Request) -> Response:
        return pages.signed_in_page(request, "missed.html", "missed", "missed_title")

    @router.get("/tickets")
    async def tickets(request: Request) -> Response:
        return pages.signed_in_page(request, "tickets.html", "tickets", "tickets_title")

    @router.get("/static/{name}")
    async def static(name: str) -> Response:
        if not _STATIC.fullmatch(name):
            return Response(status_code=404)
        path = resources.files("telecrm_web").joinpath("static", name)
        if not path.is_file():
            return Response(status_code=404)
        return FileResponse(
            str(path),
            media_type=_MEDIA[name.rsplit(".", 1)[1]],
            headers={"Cache-Control": "no-cache", "X-Content-Type-Options": "nosniff"},
        )

    return router


def desktop_context(session: Session, request: Request) -> dict[str, Any]:
    p = session.principal
    return {
        "user_name": p.name or p.subject,
        "employee_id": p.employee_id or "",
        "csrf_token": session.csrf_token,
        "time_zone": request.cookies.get(TIME_ZONE_COOKIE, ""),
        "can_create_contact": p.has("contact.create"),
        "can_modify_contact": p.has("contact.modify"),
        "may_see_all": p.sees_all or p.is_supervisor,
        "has_team": bool(p.team_ids or p.supervised_team_ids),
        "can_modify_ticket": p.has("ticket.modify"),
        "is_admin": p.is_admin,
        "is_supervisor": p.is_supervisor,
    }
