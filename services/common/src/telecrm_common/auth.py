"""Who is asking, and may they: the tokens every service accepts and the rights they carry.

crm signs short-lived access tokens (JWT, HS256 with ``TELECRM_AUTH_SECRET``) when a user logs in; every
service validates them here without calling crm, because the token carries what a check needs: the
user, the employee behind it, roles, teams, supervised teams, per-document rights and how far an agent
sees. An installation may instead accept an enterprise identity provider's tokens (OIDC issuer + JWKS);
those carry roles and an employee id in claims, and the rights are the role's defaults.

Rights are strings ``<document>.<action>`` (``task.create``, ``contact.delete``...) plus ``task.status``
("may change task status"). Admins hold every right and see everything; supervisors see their own
data and that of the teams they supervise (and their own team); agents see their own, and their team's
when their visibility is ``team``.
"""

from __future__ import annotations

import asyncio
import logging
import time
import uuid
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass, field
from enum import StrEnum
from typing import Any

import jwt
from fastapi import Depends, HTTPException, Request
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from pydantic import SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

DEV_AUTH_SECRET = "telecrm-development-auth-secret-change-me"  # noqa: S105 - the documented dev default
ACCESS_TOKEN_TYPE = "access"  # noqa: S105 - a claim value, not a secret


class Role(StrEnum):
    ADMIN = "admin"
    SUPERVISOR = "supervisor"
    AGENT = "agent"


class Visibility(StrEnum):
    """How far an agent sees: only what is theirs, or their team's as well."""

    OWN = "own"
    TEAM = "team"
    ALL = "all"


DOCUMENT_KINDS: tuple[str, ...] = ("contact", "event", "task", "ticket", "project")
ACTIONS: tuple[str, ...] = ("create", "modify", "delete")
TASK_STATUS_RIGHT = "task.status"


def right(kind: str, action: str) -> str:
    """The right to ``action`` a document of ``kind``: ``right("task", "create") == "task.create"``."""
    if kind not in DOCUMENT_KINDS or action not in ACTIONS:
        raise ValueError(f"unknown right {kind}.{action}")
    return f"{kind}.{action}"


ALL_RIGHTS: frozenset[str] = frozenset(
    {right(kind, action) for kind in DOCUMENT_KINDS for action in ACTIONS} | {TASK_STATUS_RIGHT}
)

# What a role may do unless an admin gives a user other rights.
ROLE_DEFAULT_RIGHTS: dict[Role, frozenset[str]] = {
    Role.ADMIN: ALL_RIGHTS,
    Role.SUPERVISOR: ALL_RIGHTS,
    Role.AGENT: frozenset(
        {
            right(kind, action)
            for kind in ("contact", "event", "task", "ticket")
            for action in ("create", "modify")
        }
        | {TASK_STATUS_RIGHT}
    ),
}


def default_rights(roles: Iterable[Role]) -> frozenset[str]:
    rights: set[str] = set()
    for role in roles:
        rights |= ROLE_DEFAULT_RIGHTS[role]
    return frozenset(rights)


@dataclass(frozen=True)
class Principal:
    """The authenticated user of a request, as the token says."""

    subject: str  # the user's id
    employee_id: str | None = None
    name: str = ""
    roles: frozenset[Role] = frozenset()
    team_ids: frozenset[str] = frozenset()  # teams the employee is a member of
    supervised_team_ids: frozenset[str] = frozenset()
    rights: frozenset[str] = frozenset()
    visibility: Visibility = Visibility.OWN
    token_id: str = ""
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    @property
    def is_admin(self) -> bool:
        return Role.ADMIN in self.roles

    @property
    def is_supervisor(self) -> bool:
        return Role.SUPERVISOR in self.roles

    def has(self, right_name: str) -> bool:
        return self.is_admin or right_name in self.rights

    @property
    def sees_all(self) -> bool:
        return self.is_admin or self.visibility is Visibility.ALL

    @property
    def visible_team_ids(self) -> frozenset[str]:
        """Teams whose data this user sees besides their own (empty for an agent who sees only theirs)."""
        if self.is_supervisor:
            return self.supervised_team_ids | self.team_ids
        if self.visibility is Visibility.TEAM:
            return self.team_ids
        return frozenset()

    def may_see(self, employee_id: str | None, team_id: str | None = None) -> bool:
        """Whether a document owned by ``employee_id`` (in ``team_id``) is visible to this user."""
        if self.sees_all:
            return True
        if employee_id is not None and employee_id == self.employee_id:
            return True
        return team_id is not None and team_id in self.visible_team_ids


class AuthSettings(BaseSettings):
    """One set for the whole suite (``TELECRM_AUTH_*``): every service must validate the same tokens."""

    model_config = SettingsConfigDict(env_prefix="TELECRM_AUTH_", extra="ignore")

    secret: SecretStr = SecretStr(DEV_AUTH_SECRET)
    issuer: str = "telecrm"
    audience: str = "telecrm"
    access_ttl_seconds: int = 900
    refresh_ttl_seconds: int = 14 * 24 * 3600
    leeway_seconds: int = 30
    # An enterprise identity provider's tokens, accepted instead of (or as well as) ours.
    oidc_issuer: str = ""
    oidc_jwks_url: str = ""
    oidc_audience: str = ""
    oidc_roles_claim: str = "roles"
    oidc_employee_claim: str = "employee_id"
    oidc_teams_claim: str = "teams"
    oidc_supervised_teams_claim: str = "supervised_teams"  # a supervisor's teams, when the provider says
    # How long fetching the provider's keys may take (at first use and when it rotates its keys).
    oidc_jwks_timeout_seconds: float = 5.0

    def warn_if_development_key(self, log: logging.Logger) -> None:
        """Log a warning when tokens are signed with the published development key."""
        if self.secret.get_secret_value() == DEV_AUTH_SECRET:
            log.warning(
                "TELECRM_AUTH_SECRET is not set: access tokens are signed with the development key, "
                "which anyone can read in the source; set it (the same on every service) in production"
            )


class TokenError(Exception):
    """A token that is missing, malformed, expired, not ours, or of the wrong type."""


class TokenIssuer:
    """Signs access tokens (crm uses it at log-in and refresh; tests use it to act as a user)."""

    def __init__(self, settings: AuthSettings) -> None:
        self._settings = settings

    def issue(self, principal: Principal, *, now: float | None = None) -> tuple[str, int]:
        """An access token for ``principal`` and its lifetime in seconds."""
        issued = int(now if now is not None else time.time())
        ttl = self._settings.access_ttl_seconds
        claims: dict[str, Any] = {
            "iss": self._settings.issuer,
            "aud": self._settings.audience,
            "sub": principal.subject,
            "iat": issued,
            "exp": issued + ttl,
            "jti": principal.token_id or uuid.uuid4().hex,
            "typ": ACCESS_TOKEN_TYPE,
            "emp": principal.employee_id,
            "name": principal.name,
            "roles": sorted(principal.roles),
            "teams": sorted(principal.team_ids),
            "sup_teams": sorted(principal.supervised_team_ids),
            "rights": sorted(principal.rights),
            "vis": str(principal.visibility),
        }
        token = jwt.encode(claims, self._settings.secret.get_secret_value(), algorithm="HS256")
        return token, ttl


def _strings(value: Any, claim: str) -> frozenset[str]:
    if value is None:
        return frozenset()
    if isinstance(value, str):
        return frozenset(value.split())
    if isinstance(value, list) and all(isinstance(item, str) for item in value):
        return frozenset(value)
    raise TokenError(f"claim {claim!r} must be a list of strings")


def _roles(values: frozenset[str]) -> frozenset[Role]:
    return frozenset(Role(value) for value in values if value in Role._value2member_map_)


class TokenVerifier:
    """Validates a bearer token into a :class:`Principal`; raises :class:`TokenError` otherwise."""

    def __init__(self, settings: AuthSettings, *, jwks_client: jwt.PyJWKClient | None = None) -> None:
        self._settings = settings
        self._jwks = jwks_client
        if self._jwks is None and settings.oidc_jwks_url:
            self._jwks = jwt.PyJWKClient(
                settings.oidc_jwks_url,
                cache_keys=True,
                lifespan=3600,
                timeout=settings.oidc_jwks_timeout_seconds,
            )

    async def verify_async(self, token: str) -> Principal:
        """:meth:`verify` without stalling the event loop: with an identity provider configured, a token
        may need the provider's keys fetched over HTTP (blocking), so it is checked in a worker thread."""
        if self._jwks is None:
            return self.verify(token)
        return await asyncio.to_thread(self.verify, token)

    def verify(self, token: str) -> Principal:
        try:
            header = jwt.get_unverified_header(token)
            unverified = jwt.decode(token, options={"verify_signature": False})
        except jwt.PyJWTError as exc:
            raise TokenError(f"malformed token: {exc}") from None
        issuer = unverified.get("iss")
        if issuer == self._settings.issuer and header.get("alg") == "HS256":
            return self._ours(token)
        if self._settings.oidc_issuer and issuer == self._settings.oidc_issuer:
            return self._oidc(token)
        raise TokenError("token from an issuer this installation does not trust")

    def _ours(self, token: str) -> Principal:
        try:
            claims = jwt.decode(
                token,
                self._settings.secret.get_secret_value(),
                algorithms=["HS256"],
                audience=self._settings.audience,
                issuer=self._settings.issuer,
                leeway=self._settings.leeway_seconds,
                options={"require": ["exp", "iat", "sub"]},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from None
        if claims.get("typ") != ACCESS_TOKEN_TYPE:
            raise TokenError("not an access token")
        try:
            visibility = Visibility(claims.get("vis", Visibility.OWN))
        except ValueError:
            raise TokenError("claim 'vis' is not own, team or all") from None
        return Principal(
            subject=str(claims["sub"]),
            employee_id=claims.get("emp"),
            name=str(claims.get("name") or ""),
            roles=_roles(_strings(claims.get("roles"), "roles")),
            team_ids=_strings(claims.get("teams"), "teams"),
            supervised_team_ids=_strings(claims.get("sup_teams"), "sup_teams"),
            rights=_strings(claims.get("rights"), "rights"),
            visibility=visibility,
            token_id=str(claims.get("jti") or ""),
        )

    def _oidc(self, token: str) -> Principal:
        if self._jwks is None:
            raise TokenError("the identity provider's keys (TELECRM_AUTH_OIDC_JWKS_URL) are not configured")
        settings = self._settings
        try:
            key = self._jwks.get_signing_key_from_jwt(token)
            claims = jwt.decode(
                token,
                key.key,
                algorithms=["RS256", "RS384", "RS512", "ES256", "ES384", "PS256"],
                audience=settings.oidc_audience or None,
                issuer=settings.oidc_issuer,
                leeway=settings.leeway_seconds,
                options={"require": ["exp", "sub"], "verify_aud": bool(settings.oidc_audience)},
            )
        except jwt.ExpiredSignatureError:
            raise TokenError("token expired") from None
        except jwt.PyJWTError as exc:
            raise TokenError(f"invalid token: {exc}") from None
        roles = _roles(_strings(claims.get(settings.oidc_roles_claim), settings.oidc_roles_claim))
        employee = claims.get(settings.oidc_employee_claim)
        return Principal(
            subject=str(claims["sub"]),
            employee_id=str(employee) if employee is not None else None,
            name=str(claims.get("name") or claims.get("preferred_username") or ""),
            roles=roles,
            team_ids=_strings(claims.get(settings.oidc_teams_claim), settings.oidc_teams_claim),
            supervised_team_ids=_strings(
                claims.get(settings.oidc_supervised_teams_claim), settings.oidc_supervised_teams_claim
            ),
            rights=default_rights(roles),
            visibility=Visibility.ALL if Role.ADMIN in roles else Visibility.TEAM,
            token_id=str(claims.get("jti") or ""),
        )


def unauthorized(detail: str) -> HTTPException:
    return HTTPException(status_code=401, detail=detail, headers={"WWW-Authenticate": "Bearer"})


def forbidden(right_name: str) -> HTTPException:
    return HTTPException(status_code=403, detail=f"the right {right_name!r} is needed")


def bearer_token(request: Request) -> str:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise unauthorized("a bearer token is needed (Authorization: Bearer <token>)")
    return token.strip()


PrincipalDependency = Callable[..., Awaitable[Principal]]

# Declares the bearer scheme in the OpenAPI document (the "Authorize" button of /docs); the header is
# read and checked by bearer_token, which gives our own 401 and message.
BEARER_SCHEME = HTTPBearer(
    auto_error=False,
    scheme_name="crm access token",
    description="The access token from crm's `POST /auth/login` (or the identity provider's)",
)
_declared_bearer = Depends(BEARER_SCHEME)


def principal_dependency(verifier: TokenVerifier) -> PrincipalDependency:
    """A FastAPI dependency that yields the request's :class:`Principal` or answers 401."""

    async def current_principal(
        request: Request, _declared: HTTPAuthorizationCredentials | None = _declared_bearer
    ) -> Principal:
        try:
            return await verifier.verify_async(bearer_token(request))
        except TokenError as exc:
            raise unauthorized(str(exc)) from None

    return current_principal


def require(current: PrincipalDependency, right_name: str) -> Callable[..., Awaitable[Principal]]:
    """A dependency that answers 403 unless the user holds ``right_name``; yields the principal."""
    if right_name not in ALL_RIGHTS:
        raise ValueError(f"unknown right {right_name!r}")

    # A default, not ``Annotated[Principal, Depends(current)]``: annotations are strings here (PEP 563)
    # and FastAPI evaluates them in the module's globals, where this closure's ``current`` is not.
    authenticated = Depends(current)

    async def checked(principal: Principal = authenticated) -> Principal:
        if not principal.has(right_name):
            raise forbidden(right_name)
        return principal

    return checked


class Access:
    """What a service's routers need to authenticate and check rights: ``current`` (401 without a valid
    token) and ``require(right)`` (also 403 without the right), both FastAPI dependencies."""

    def __init__(self, verifier: TokenVerifier) -> None:
        self.verifier = verifier
        self.current: PrincipalDependency = principal_dependency(verifier)

    @classmethod
    def from_settings(cls, settings: AuthSettings | None = None) -> Access:
        return cls(TokenVerifier(settings or AuthSettings()))

    def require(self, right_name: str) -> Callable[..., Awaitable[Principal]]:
        return require(self.current, right_name)
