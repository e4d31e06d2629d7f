"""The services behind the desktop, over their REST APIs: crm (log-in, contacts, look-up), calls, and
the sip-gateway (click-to-call and the live call's buttons).

Every request but log-in carries the user's own access token, so crm and calls decide what the user
may see and do; the desktop adds no rights of its own. Errors are kept apart: a refusal of the service
(4xx) is passed to the page as it is, a service that does not answer is :class:`UpstreamUnavailable`.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import httpx

from telecrm_web.errors import UpstreamUnavailable


@dataclass(frozen=True)
class TokenPair:
    """What crm's ``/auth/login`` and ``/auth/refresh`` answer (or the identity provider's token endpoint,
    which adds an ID token and may give no refresh token: ``""``)."""

    access_token: str
    refresh_token: str
    expires_in: int
    refresh_expires_in: int
    id_token: str = ""

    @classmethod
    def of(cls, body: Mapping[str, Any]) -> TokenPair:
        return cls(
            access_token=str(body["access_token"]),
            refresh_token=str(body["refresh_token"]),
            expires_in=int(body["expires_in"]),
            refresh_expires_in=int(body["refresh_expires_in"]),
        )


class Refused(Exception):
    """crm refused a log-in or a refresh (401): wrong password, locked account, used refresh token."""


Params = Mapping[str, str | int | float | bool | list[str] | None]


class Upstream:
    """HTTP clients of crm and calls (connection pools kept for the life of the process)."""

    def __init__(
        self,
        crm_url: str,
        calls_url: str,
        *,
        timeout: float,
        crm_transport: httpx.AsyncBaseTransport | None = None,
        calls_transport: httpx.AsyncBaseTransport | None = None,
        gateway_url: str = "",
    ) -> None:
        limits = httpx.Limits(max_connections=100, max_keepalive_connections=20)
        self.crm = httpx.AsyncClient(
            base_url=crm_url, timeout=timeout, limits=limits, transport=crm_transport
        )
        self.calls = httpx.AsyncClient(
            base_url=calls_url, timeout=timeout, limits=limits, transport=calls_transport
        )
        # None when no gateway is configured: click-to-call then answers 503 (not configured).
        self.gateway = (
            httpx.AsyncClient(base_url=gateway_url, timeout=timeout, limits=limits) if gateway_url else None
        )

    async def close(self) -> None:
        await self.crm.aclose()
        await self.calls.aclose()
        if self.gateway is not None:
            await self.gateway.aclose()

    # --- log-in ------------------------------------------------------------------------------------

    async def login(self, login: str, password: str, *, user_agent: str | None) -> TokenPair:
        headers = {"User-Agent": user_agent[:300]} if user_agent else {}
        response = await self._send(
            self.crm, "POST", "/auth/login", json={"login": login, "password": password}, headers=headers
        )
        if response.status_code in (401, 422):
            raise Refused(_detail(response))
        _raise_for_server_error(response, "crm")
        return TokenPair.of(response.raise_for_status().json())

    async def refresh(self, refresh_token: str) -> TokenPair:
        response = await self._send(self.crm, "POST", "/auth/refresh", json={"refresh_token": refresh_token})
        if response.status_code in (401, 422):
            raise Refused(_detail(response))
        _raise_for_server_error(response, "crm")
        return TokenPair.of(response.raise_for_status().json())

    async def logout(self, refresh_token: str) -> None:
        response = await self._send(self.crm, "POST", "/auth/logout", json={"refresh_token": refresh_token})
        _raise_for_server_error(response, "crm")

    # --- with the user's token ----------------------------------------------------------------------

    async def request(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        token: str,
        params: Params | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        """One request as the user; a 5xx answer or no answer raises UpstreamUnavailable.

        ``data`` is sent as a form (crm's ticket notes take one). With ``stream`` the body is not
        read yet: the caller reads it (``aiter_bytes``) and closes the response."""
        all_headers = {"Authorization": f"Bearer {token}", **(headers or {})}
        clean = {key: value for key, value in (params or {}).items() if value not in (None, "", [])}
        response = await self._send(
            client,
            method,
            path,
            params=clean,
            json=json,
            data=data,
            headers=all_headers,
            timeout=timeout,
            stream=stream,
        )
        if response.status_code >= 500 and stream:
            await response.aclose()
        _raise_for_server_error(response, _name(client, self))
        return response

    async def _send(
        self,
        client: httpx.AsyncClient,
        method: str,
        path: str,
        *,
        params: Mapping[str, Any] | None = None,
        json: Any = None,
        data: Mapping[str, str] | None = None,
        headers: Mapping[str, str] | None = None,
        timeout: float | None = None,
        stream: bool = False,
    ) -> httpx.Response:
        name = _name(client, self)
        try:
            request = client.build_request(
                method,
                path,
                params=params,
                json=json,
                data=data,
                headers=headers,
                timeout=timeout if timeout is not None else httpx.USE_CLIENT_DEFAULT,
            )
            return await client.send(request, stream=stream)
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailable(name, "did not answer in time", timeout=True) from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(name, f"cannot be reached ({type(exc).__name__})") from exc


def _name(client: httpx.AsyncClient, upstream: Upstream) -> str:
    if client is upstream.crm:
        return "crm"
    return "calls" if client is upstream.calls else "sip-gateway"


def _raise_for_server_error(response: httpx.Response, name: str) -> None:
    if response.status_code >= 500:
        raise UpstreamUnavailable(name, f"answered {response.status_code}")


def _detail(response: httpx.Response) -> str:
    try:
        detail = response.json().get("detail")
    except ValueError:
        return response.text[:200]
    return str(detail)
