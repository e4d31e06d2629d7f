"""REST API of log-in: ``POST /auth/login``, ``POST /auth/refresh`` and ``POST /auth/logout``.

These take no access token (they are how one is obtained). Every failed log-in answers the same 401,
whatever the reason, so that the answers do not tell which logins exist; token answers are never cached.
"""

from __future__ import annotations

from typing import Annotated, Literal

from fastapi import APIRouter, Header, HTTPException, Response
from pydantic import BaseModel, ConfigDict, Field

from telecrm_crm.login import LoginFailed, LoginService, RefreshFailed, TokenPair
from telecrm_crm.people import MAX_LOGIN_LENGTH, MAX_PASSWORD_LENGTH
from telecrm_crm.people_api import ErrorOut

NO_STORE = {"Cache-Control": "no-store", "Pragma": "no-cache"}
MAX_REFRESH_TOKEN_LENGTH = 200


class LoginIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    login: str = Field(min_length=1, max_length=MAX_LOGIN_LENGTH)
    password: str = Field(min_length=1, max_length=MAX_PASSWORD_LENGTH)


class RefreshIn(BaseModel):
    model_config = ConfigDict(extra="forbid")

    refresh_token: str = Field(min_length=1, max_length=MAX_REFRESH_TOKEN_LENGTH)


class TokenOut(BaseModel):
    access_token: str = Field(description="Send as `Authorization: Bearer <token>` to every service")
    token_type: Literal["bearer"] = "bearer"  # noqa: S105 - the OAuth 2 token type, not a secret
    expires_in: int = Field(description="Seconds the access token is valid")
    refresh_token: str = Field(description="Use once, with POST /auth/refresh, for the next pair")
    refresh_expires_in: int = Field(description="Seconds the refresh token is valid")

    @classmethod
    def of(cls, pair: TokenPair) -> TokenOut:
        return cls(
            access_token=pair.access_token,
            expires_in=pair.expires_in,
            refresh_token=pair.refresh_token,
            refresh_expires_in=pair.refresh_expires_in,
        )


UserAgent = Annotated[str | None, Header(alias="User-Agent", include_in_schema=False)]


def _unauthorized(exc: Exception) -> HTTPException:
    return HTTPException(status_code=401, detail=str(exc), headers=NO_STORE)


def login_router(service: LoginService) -> APIRouter:
    router = APIRouter(prefix="/auth", tags=["auth"])

    @router.post(
        "/login",
        summary="Log in with login and password",
        description="An access token (short-lived, accepted by every service) and a refresh token. "
        "Wrong passwords in a row lock the account for a while; every refusal is the same 401.",
        responses={401: {"model": ErrorOut, "description": "Log-in failed (no reason is given)"}},
    )
    async def login(body: LoginIn, response: Response, user_agent: UserAgent = None) -> TokenOut:
        try:
            pair = await service.login(body.login, body.password, client=user_agent)
        except LoginFailed as exc:
            raise _unauthorized(exc) from None
        response.headers.update(NO_STORE)
        return TokenOut.of(pair)

    @router.post(
        "/refresh",
        summary="Trade a refresh token for a new pair",
        description="The refresh token is used up. Presenting a used one again ends the whole session "
        "(it was copied): log in again. The new access token carries the user's current rights.",
        responses={401: {"model": ErrorOut, "description": "Unknown, expired, revoked or used token"}},
    )
    async def refresh(body: RefreshIn, response: Response, user_agent: UserAgent = None) -> TokenOut:
        try:
            pair = await service.refresh(body.refresh_token, client=user_agent)
        except RefreshFailed as exc:
            raise _unauthorized(exc) from None
        response.headers.update(NO_STORE)
        return TokenOut.of(pair)

    @router.post(
        "/logout",
        status_code=204,
        summary="End the session of a refresh token",
        description="Its refresh tokens stop working; access tokens already issued expire on their own. "
        "Answers 204 for an unknown or ended session too.",
    )
    async def logout(body: RefreshIn) -> Response:
        await service.logout(body.refresh_token)
        return Response(status_code=204)

    return router
