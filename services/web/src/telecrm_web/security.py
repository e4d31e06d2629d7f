"""Who is asking and whether the request really comes from our page.

- The session cookie (``Secure; HttpOnly; SameSite=Lax``) names a server-side session.
- Every state-changing request of the JSON API (POST, PUT, PATCH, DELETE) carries the session's CSRF
  token in ``X-CSRF-Token`` (the page reads it from its ``<meta name="csrf-token">``); without it, or
  with another, the answer is 403. An ``Origin`` (or, without one, a ``Referer``) that is not the
  page's own host nor an allowed origin is refused too, and so is a ``Sec-Fetch-Site: cross-site``.
- The WebSocket handshake is checked the same way (a page of another site could open one otherwise).
- The log-in form, which has no session yet, carries a token of its own (a cookie and a hidden field
  that must match: the "double submit" pattern) besides the same origin check.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping, Sequence
from urllib.parse import urlsplit

from fastapi import HTTPException, Request, Response

from telecrm_web.sessions import Session, SessionStore

CSRF_HEADER = "X-CSRF-Token"
LOGIN_CSRF_COOKIE = "telecrm_login_csrf"
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})


class CookiePolicy:
    """How the desktop's cookies are set."""

    def __init__(self, *, name: str, secure: bool, max_age: int) -> None:
        self.name = name
        self.secure = secure
        self.max_age = max_age

    def set_session(self, response: Response, session: Session) -> None:
        response.set_cookie(
            self.name,
            session.id,
            max_age=self.max_age,
            path="/",
            secure=self.secure,
            httponly=True,
            samesite="lax",
        )

    def clear_session(self, response: Response) -> None:
        response.delete_cookie(self.name, path="/", secure=self.secure, httponly=True, samesite="lax")

    def set_plain(self, response: Response, name: str, value: str, *, max_age: int = 365 * 24 * 3600) -> None:
        """A preference (language, time zone) or the log-in form's token: HttpOnly, same policy."""
        response.set_cookie(
            name, value, max_age=max_age, path="/", secure=self.secure, httponly=True, samesite="lax"
        )


def same_token(a: str | None, b: str | None) -> bool:
    return bool(a) and bool(b) and hmac.compare_digest(str(a), str(b))


def origin_allowed(headers: Mapping[str, str], allowed_origins: Sequence[str]) -> bool:
    """Whether the request's Origin (or Referer) is the page's own host or an allowed origin.

    A request with neither (a non-browser client) passes: it cannot ride on a user's cookie from
    another site, and the CSRF token still has to be right.
    """
    if headers.get("sec-fetch-site", "").lower() == "cross-site":
        return False
    origin = headers.get("origin")
    if origin is None or origin == "null":
        referer = headers.get("referer")
        if origin is None and not referer:
            return True
        if origin == "null":
            return False
        parts = urlsplit(referer or "")
        origin = f"{parts.scheme}://{parts.netloc}"
    if origin.rstrip("/") in {o.rstrip("/") for o in allowed_origins}:
        return True
    host = headers.get("host", "")
    return bool(host) and urlsplit(origin).netloc.lower() == host.lower()


class Guard:
    """FastAPI dependencies of the JSON API: the session, and the CSRF/origin checks."""

    def __init__(self, store: SessionStore, cookies: CookiePolicy, allowed_origins: Sequence[str]) -> None:
        self.store = store
        self.cookies = cookies
        self.allowed_origins = list(allowed_origins)

    def session_of(self, request: Request) -> Session | None:
        return self.store.get(request.cookies.get(self.cookies.name))

    async def api_session(self, request: Request) -> Session:
        """The session of an API request: 401 without a live one; 403 for a forged state change."""
        if request.method in UNSAFE_METHODS and not origin_allowed(request.headers, self.allowed_origins):
            raise HTTPException(status_code=403, detail="the request does not come from this site")
        session = self.session_of(request)
        if session is None:
            raise HTTPException(
                status_code=401,
                detail="no session, or it has ended: log in again",
                headers={"Cache-Control": "no-store"},
            )
        if request.method in UNSAFE_METHODS and not same_token(
            request.headers.get(CSRF_HEADER), session.csrf_token
        ):
            raise HTTPException(status_code=403, detail=f"the {CSRF_HEADER} header is missing or wrong")
        return session

    async def admin_session(self, request: Request) -> Session:
        """:meth:`api_session` of an administrator: 403 for anyone else."""
        session = await self.api_session(request)
        if not session.principal.is_admin:
            raise HTTPException(status_code=403, detail="only administrators may do this")
        return session
