"""Sessions of the desktop: the user's tokens stay on the server, the browser holds a random id.

The browser gets only an opaque session id in a ``Secure; HttpOnly; SameSite=Lax`` cookie: no script
can read a token, and a stolen page cannot replay one. The access token is refreshed with crm's
``/auth/refresh`` shortly before it expires (one refresh at a time per session: a refresh token is
single-use, and crm ends the whole session when one is presented twice). A session ends on log-out,
when it has not been used for ``idle_seconds``, or when crm refuses the refresh.

A session opened through the enterprise identity provider (:mod:`telecrm_web.sso`) holds the provider's
tokens instead, and its :class:`TokenSource` is the provider: refresh and log-out go there, not to crm.

The store is in memory, per process: several replicas of the web service need sticky sessions in
front (or a shared store, later).
"""

from __future__ import annotations

import asyncio
import logging
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field, replace
from typing import Protocol

from telecrm_common.auth import Principal, TokenError, TokenVerifier
from telecrm_web.errors import SessionExpired
from telecrm_web.upstream import Refused, TokenPair, Upstream

log = logging.getLogger(__name__)

# Refresh this many seconds before crm's access token expires, so a request never carries a dead one.
REFRESH_MARGIN_SECONDS = 30.0


class TokenSource(Protocol):
    """Where a session's tokens come from: crm (:class:`Upstream`) or the identity provider."""

    async def refresh(self, refresh_token: str) -> TokenPair:
        """New tokens for a refresh token; raises Refused when it is no longer good."""
        ...

    async def logout(self, refresh_token: str) -> None:
        """End the refresh token's session at its issuer."""
        ...


@dataclass
class Session:
    id: str
    csrf_token: str
    principal: Principal
    access_token: str
    refresh_token: str
    access_expires_at: float  # time.monotonic()
    last_seen: float
    lock: asyncio.Lock = field(default_factory=asyncio.Lock, repr=False)
    ended: bool = False
    # None: crm issued the tokens (password log-in); else who refreshes them (the identity provider).
    source: TokenSource | None = field(default=None, repr=False)
    id_token: str = field(default="", repr=False)  # the provider's, for its log-out (id_token_hint)

    @property
    def employee_id(self) -> str | None:
        return self.principal.employee_id


class SessionStore:
    """The sessions of this process, least recently used first."""

    def __init__(
        self,
        upstream: Upstream,
        verifier: TokenVerifier,
        *,
        idle_seconds: float,
        max_sessions: int,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._upstream = upstream
        self._verifier = verifier
        self._idle = idle_seconds
        self._max = max_sessions
        self._clock = clock
        self._sessions: OrderedDict[str, Session] = OrderedDict()

    def __len__(self) -> int:
        return len(self._sessions)

    def __iter__(self) -> Iterator[Session]:
        return iter(list(self._sessions.values()))

    async def open(self, pair: TokenPair, *, source: TokenSource | None = None, name: str = "") -> Session:
        """A new session for the tokens of a successful log-in: crm's, or ``source``'s (the identity
        provider's). ``name`` is shown when the access token names nobody (the provider's ID token
        may carry the name its access token lacks)."""
        principal = await self._principal(pair.access_token, source)
        if name and not principal.name:
            principal = replace(principal, name=name)
        now = self._clock()
        session = Session(
            id=secrets.token_urlsafe(32),
            csrf_token=secrets.token_urlsafe(32),
            principal=principal,
            access_token=pair.access_token,
            refresh_token=pair.refresh_token,
            access_expires_at=now + pair.expires_in,
            last_seen=now,
            source=source,
            id_token=pair.id_token,
        )
        self._sessions[session.id] = session
        while len(self._sessions) > self._max:
            _, oldest = self._sessions.popitem(last=False)
            oldest.ended = True
        return session

    def get(self, session_id: str | None, *, touch: bool = True) -> Session | None:
        """The live session of this id, or None (unknown, ended or idle too long)."""
        if not session_id:
            return None
        session = self._sessions.get(session_id)
        if session is None:
            return None
        now = self._clock()
        if now - session.last_seen > self._idle:
            self._end(session)
            return None
        if touch:
            session.last_seen = now
            self._sessions.move_to_end(session_id)
        return session

    def expire(self, session: Session) -> None:
        """End a session here (crm refused its refresh token, or the user logged out)."""
        self._end(session)

    def expire_idle(self) -> int:
        """End the sessions idle for too long; how many ended."""
        now = self._clock()
        idle = [s for s in self._sessions.values() if now - s.last_seen > self._idle]
        for session in idle:
            self._end(session)
        return len(idle)

    def of_employee(self, employee_id: str) -> list[Session]:
        """The live sessions of an employee, most recently used first."""
        return [s for s in reversed(self._sessions.values()) if s.employee_id == employee_id]

    async def access_token(self, session: Session, *, force_refresh: bool = False) -> str:
        """A valid access token of the session, refreshed when it (nearly) expired or ``force_refresh``;
        raises SessionExpired when crm (or the identity provider) refuses the refresh."""
        if session.ended:
            raise SessionExpired("the session has ended")
        stale = session.access_token
        if not force_refresh and self._clock() < session.access_expires_at - REFRESH_MARGIN_SECONDS:
            return stale
        async with session.lock:
            # Another request may have refreshed it while this one waited.
            if session.access_token != stale and not session.ended:
                return session.access_token
            if session.ended:
                raise SessionExpired("the session has ended")
            try:
                pair = await self._source(session).refresh(session.refresh_token)
            except Refused as exc:
                log.info("session ended: its refresh was refused (%s)", exc)
                self._end(session)
                raise SessionExpired("the session has ended; log in again") from None
            principal = await self._principal(pair.access_token, session.source)
            if not principal.name:
                principal = replace(principal, name=session.principal.name)
            session.principal = principal
            session.access_token = pair.access_token
            session.id_token = pair.id_token or session.id_token
            session.refresh_token = pair.refresh_token
            session.access_expires_at = self._clock() + pair.expires_in
            return session.access_token

    async def close(self, session: Session) -> None:
        """Log out: crm (or the provider) ends the refresh token's session; this one ends here whatever
        it says."""
        self._end(session)
        await self._source(session).logout(session.refresh_token)

    def _source(self, session: Session) -> TokenSource:
        return session.source if session.source is not None else self._upstream

    def _end(self, session: Session) -> None:
        session.ended = True
        self._sessions.pop(session.id, None)

    async def _principal(self, access_token: str, source: TokenSource | None = None) -> Principal:
        try:
            return await self._verifier.verify_async(access_token)
        except TokenError as exc:
            if source is not None:
                raise SessionExpired(
                    f"the identity provider's access token does not verify here ({exc}): are "
                    "TELECRM_AUTH_OIDC_ISSUER, _JWKS_URL and _AUDIENCE set on web as on the services?"
                ) from None
            # crm signs with TELECRM_AUTH_SECRET; a web service with another key cannot read the token.
            raise SessionExpired(
                f"the access token from crm does not verify here ({exc}): is TELECRM_AUTH_SECRET the "
                "same on web and crm?"
            ) from None
