"""Log-in, refresh and log-out: the short-lived access tokens every service accepts, and refresh tokens.

Why it is built this way:

- An access token (:class:`~telecrm_common.auth.TokenIssuer`, ``TELECRM_AUTH_ACCESS_TTL_SECONDS``) is
  validated by every service on its own, so it carries the claims a check needs, read from the database
  at log-in and at every refresh (:func:`~telecrm_crm.people.principal_of`): a change of rights reaches
  the user within one access-token lifetime, and disabling a user ends their sessions at once, because
  it revokes their refresh tokens.
- A refresh token is a random 256-bit string, stored only as its SHA-256, used once: each refresh marks
  it used and hands out the next of its family. A used (or revoked) token presented again means it was
  copied: the whole family is revoked, so the thief's and the user's sessions both end and the user
  logs in again. Marking "used" is a conditional UPDATE, so two refreshes racing with one token cannot
  both win.
- A failed log-in always answers the same (:class:`LoginFailed`): an unknown login, a wrong password,
  a locked or a disabled account look alike from outside (an unknown login still costs one argon2
  check). ``max_failures`` wrong passwords in a row lock the account for ``lockout``; a lock is lifted
  by time, by an admin (unlock or new password).
- A stored hash made with older argon2 parameters is replaced on the next successful log-in.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
import uuid
from dataclasses import dataclass
from datetime import datetime, timedelta

from sqlalchemy import delete, select, update
from sqlalchemy.ext.asyncio import AsyncSession

from telecrm_common.auth import AuthSettings, Principal, TokenIssuer
from telecrm_common.db import Database, utcnow
from telecrm_common.errors import TelecrmError
from telecrm_crm.audit import AuditLog
from telecrm_crm.people import InvalidField, Passwords, clean_login, principal_of, revoke_refresh_tokens
from telecrm_crm.people_models import RefreshToken, User

log = logging.getLogger(__name__)

MAX_CLIENT_LENGTH = 300
# Expired or revoked refresh tokens are kept this long (for reuse detection and the audit trail).
KEEP_DEAD_TOKENS = timedelta(days=7)


class LoginFailed(TelecrmError):
    """A log-in that did not succeed; deliberately the same whatever the reason."""

    def __init__(self) -> None:
        super().__init__(
            "log-in failed: the login or the password is wrong, or the account may not log in now"
        )


class RefreshFailed(TelecrmError):
    """A refresh token that is unknown, expired, revoked or already used: the user must log in."""

    def __init__(self) -> None:
        super().__init__("the refresh token is not valid (expired, revoked or already used): log in again")


@dataclass(frozen=True)
class TokenPair:
    access_token: str
    expires_in: int  # seconds
    refresh_token: str
    refresh_expires_in: int  # seconds
    principal: Principal


def _digest(token: str) -> str:
    return hashlib.sha256(token.encode("utf-8", "surrogatepass")).hexdigest()


class LoginService:
    """Log-in with login and password, refresh rotation with reuse detection, log-out."""

    def __init__(
        self,
        db: Database,
        *,
        auth_settings: AuthSettings,
        passwords: Passwords | None = None,
        audit: AuditLog | None = None,
        issuer: TokenIssuer | None = None,
        max_failures: int = 5,
        lockout: timedelta = timedelta(minutes=15),
    ) -> None:
        if max_failures < 1:
            raise ValueError("max_failures must be at least 1")
        self.db = db
        self.passwords = passwords or Passwords()
        self.audit = audit or AuditLog()
        self._issuer = issuer or TokenIssuer(auth_settings)
        self._refresh_ttl = timedelta(seconds=auth_settings.refresh_ttl_seconds)
        self.max_failures = max_failures
        self.lockout = lockout

    async def login(self, login: str, password: str, *, client: str | None = None) -> TokenPair:
        """Tokens for a user whose password matches; :class:`LoginFailed` otherwise."""
        try:
            name: str | None = clean_login(login)
        except InvalidField:
            name = None
        user = None
        if name is not None:
            async with self.db.session() as session:
                user = (await session.scalars(select(User).where(User.login == name))).first()
        # The password is checked whatever happens next, so every refusal takes as long.
        matches = await self.passwords.verify(user.password_hash if user is not None else None, password)
        now = utcnow()
        if user is None:
            log.info("log-in refused: unknown login")
            raise LoginFailed()
        if user.locked_until is not None and user.locked_until > now:
            log.info("log-in refused: locked", extra={"user_id": user.id})
            raise LoginFailed()
        if not matches:
            await self._failed(user.id)
            raise LoginFailed()
        if user.disabled:
            log.info("log-in refused: disabled", extra={"user_id": user.id})
            raise LoginFailed()
        assert user.password_hash is not None
        new_hash = None
        if self.passwords.needs_rehash(user.password_hash):
            new_hash = await self.passwords.hash(password)
        values: dict[str, object] = {"failed_logins": 0, "locked_until": None, "last_login_at": now}
        if new_hash is not None:
            values["password_hash"] = new_hash
        async with self.db.session() as session:
            # A write first: it takes SQLite's write lock at once (a read first could not be upgraded
            # after another writer) and PostgreSQL's row lock.
            await session.execute(update(User).where(User.id == user.id).values(**values))
            user = await session.get(User, user.id, populate_existing=True)
            if user is None or user.disabled:
                raise LoginFailed()
            if new_hash is not None:
                log.info("password rehashed with the current argon2 parameters", extra={"user_id": user.id})
            pair = await self._issue(session, user, family_id=uuid.uuid4().hex, client=client)
        log.info("logged in", extra={"user_id": user.id})
        return pair

    async def _failed(self, user_id: str) -> None:
        """Count a wrong password; the ``max_failures``-th in a row locks the account."""
        async with self.db.session() as session:
            await session.execute(
                update(User).where(User.id == user_id).values(failed_logins=User.failed_logins + 1)
            )
            user = await session.get(User, user_id, populate_existing=True)
            if user is None or user.failed_logins < self.max_failures:
                return
            user.locked_until = utcnow() + self.lockout
            user.failed_logins = 0
            await self.audit.record(
                session, "system:login", "user", user_id, "lock", {"locked_until": [None, user.locked_until]}
            )
        log.warning(
            "account locked after failed log-ins",
            extra={
                "user_id": user_id,
                "failures": self.max_failures,
                "minutes": self.lockout.total_seconds() / 60,
            },
        )

    async def _issue(
        self, session: AsyncSession, user: User, *, family_id: str, client: str | None
    ) -> TokenPair:
        """A new access token and the next refresh token of ``family_id`` (in the caller's transaction)."""
        principal = await principal_of(session, user)
        access_token, expires_in = self._issuer.issue(principal)
        refresh_token = secrets.token_urlsafe(32)
        now = utcnow()
        session.add(
            RefreshToken(
                id=uuid.uuid4().hex,
                user_id=user.id,
                family_id=family_id,
                token_hash=_digest(refresh_token),
                created_at=now,
                expires_at=now + self._refresh_ttl,
                client=(client or "")[:MAX_CLIENT_LENGTH] or None,
            )
        )
        return TokenPair(
            access_token=access_token,
            expires_in=expires_in,
            refresh_token=refresh_token,
            refresh_expires_in=int(self._refresh_ttl.total_seconds()),
            principal=principal,
        )

    async def refresh(self, refresh_token: str, *, client: str | None = None) -> TokenPair:
        """Rotate: the token is used up and the next one is returned with a fresh access token.

        A token used or revoked before revokes its whole family (reuse of a copied token), as does a
        token of a user who was disabled or deleted; then :class:`RefreshFailed`. The token is claimed
        by the transaction's first statement (a conditional UPDATE), so of two refreshes racing with
        one token exactly one wins, on PostgreSQL and on SQLite alike.
        """
        digest = _digest(refresh_token)
        now = utcnow()
        async with self.db.session() as session:
            claimed = await session.execute(
                update(RefreshToken)
                .where(
                    RefreshToken.token_hash == digest,
                    RefreshToken.used_at.is_(None),
                    RefreshToken.revoked_at.is_(None),
                    RefreshToken.expires_at > now,
                )
                .values(used_at=now)
            )
            row = (
                await session.scalars(select(RefreshToken).where(RefreshToken.token_hash == digest))
            ).first()
            if row is None:
                raise RefreshFailed()
            if getattr(claimed, "rowcount", 0) == 1:
                user = await session.get(User, row.user_id)
                if user is not None and not user.disabled:
                    return await self._issue(session, user, family_id=row.family_id, client=client)
                reason = "disabled"
            elif row.used_at is None and row.revoked_at is None:
                raise RefreshFailed()  # expired: nothing to revoke
            else:
                reason = "reuse"  # used before (or a moment ago by another refresh), or revoked
            count = await revoke_refresh_tokens(session, reason, family_id=row.family_id)
        log.warning(
            "refresh token refused, its family revoked",
            extra={"family_id": row.family_id, "reason": reason, "revoked": count},
        )
        raise RefreshFailed()

    async def logout(self, refresh_token: str) -> bool:
        """End the session of ``refresh_token`` (its family); False when it was not a live one."""
        async with self.db.session() as session:
            row = (
                await session.scalars(
                    select(RefreshToken).where(RefreshToken.token_hash == _digest(refresh_token))
                )
            ).first()
            if row is None:
                return False
            return await revoke_refresh_tokens(session, "logout", family_id=row.family_id) > 0

    async def purge(self, now: datetime | None = None) -> int:
        """Delete the refresh tokens expired or revoked for longer than a week."""
        cutoff = (now or utcnow()) - KEEP_DEAD_TOKENS
        async with self.db.session() as session:
            result = await session.execute(
                # A used token is kept until it would have expired, so that its reuse is still caught.
                delete(RefreshToken).where(
                    (RefreshToken.expires_at < cutoff) | (RefreshToken.revoked_at < cutoff)
                )
            )
        return int(getattr(result, "rowcount", 0) or 0)

    async def run(self, stop: asyncio.Event, *, interval: float = 3600.0) -> None:
        """Purge dead refresh tokens every ``interval`` seconds until ``stop`` is set (a background task)."""
        while not stop.is_set():
            try:
                purged = await self.purge()
            except Exception as exc:
                log.warning("purging refresh tokens failed: %s", exc)
            else:
                if purged:
                    log.info("purged dead refresh tokens", extra={"count": purged})
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), timeout=interval)
