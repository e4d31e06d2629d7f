"""Log-in through an enterprise identity provider (OpenID Connect) against real crm, calls and NATS.

No real provider runs here (Keycloak is not packaged), so :class:`FakeIdentityProvider` plays one on a
loopback port: discovery, JWKS (an RSA key made in the test), an authorize endpoint that approves a
configured user at once, the token endpoint (authorization code with PKCE, refresh), revocation and
end-session. crm and calls run as their own processes trusting its tokens (``TELECRM_AUTH_OIDC_*``), so
a page that calls crm proves the provider's access token works all the way.

Covered: the button and the whole flow, a state this browser did not start, ID tokens that must not
verify, the provider's refusal and absence, refresh at the provider, log-out at the provider, ``next``
that points elsewhere, and the button clicked in Chromium.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import hashlib
import json
import secrets
import sys
import time
import uuid
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlencode, urlsplit

import httpx
import jwt
import pytest
import uvicorn
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import FastAPI, Form, Header, Request, Response
from fastapi.responses import JSONResponse, RedirectResponse
from jwt.algorithms import RSAAlgorithm

from telecrm_common.auth import AuthSettings, Role
from telecrm_common.bus import Bus
from telecrm_common.events import STREAMS
from telecrm_devstack.processes import ManagedProcess, NatsServer, free_port, wait_http_ok
from telecrm_devstack.testing import TEST_AUTH_SECRET
from telecrm_web.main import build
from telecrm_web.sso import BROWSER_COOKIE, CALLBACK_PATH

from .conftest import ADMIN_PASSWORD, RunningDesktop, Services, serve, web_settings

REALM = "/realms/acme"
CLIENT_ID = "telecrm-desktop"
CLIENT_SECRET = "fake-idp-client-secret"
AUDIENCE = "telecrm-api"  # what the services expect in the provider's access tokens
OIDC = "/protocol/openid-connect"


@dataclass
class IdpUser:
    sub: str = "idp-user-olga"
    name: str = "Olga Kovalenko"
    username: str = "o.kovalenko"
    employee_id: str = "sso-emp-olga"
    roles: tuple[str, ...] = ("agent",)
    teams: tuple[str, ...] = ("sso-team",)


@dataclass
class FakeIdentityProvider:
    """A small OpenID provider for the tests: every log-in is approved at once for :attr:`user`.

    Knobs a test turns: :attr:`error` (the authorize endpoint answers it instead of a code),
    :attr:`tamper` (how the ID token is spoiled), :attr:`token_status` (the token endpoint fails)."""

    port: int
    key: rsa.RSAPrivateKey = field(default_factory=lambda: rsa.generate_private_key(65537, 2048))
    kid: str = field(default_factory=lambda: uuid.uuid4().hex)
    user: IdpUser = field(default_factory=IdpUser)
    access_seconds: int = 300  # the access tokens' lifetime
    error: str = ""
    tamper: str = ""
    token_status: int = 200
    public_client: bool = False  # the desktop proves itself with PKCE only, no secret
    discovery_reads: int = 0
    authorizations: list[dict[str, str]] = field(default_factory=list)
    grants: list[str] = field(default_factory=list)
    logouts: list[dict[str, str]] = field(default_factory=list)
    codes: dict[str, dict[str, str]] = field(default_factory=dict)
    refresh_tokens: set[str] = field(default_factory=set)
    revoked: set[str] = field(default_factory=set)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def issuer(self) -> str:
        return f"{self.url}{REALM}"

    def reset(self) -> None:
        """Back to a provider that approves and answers well (its server, key and tokens stay)."""
        self.user = IdpUser()
        self.error = self.tamper = ""
        self.token_status = 200
        self.public_client = False
        self.discovery_reads = 0
        for record in (self.authorizations, self.grants, self.logouts):
            record.clear()

    # --- tokens ---------------------------------------------------------------------------------------

    def sign(self, claims: dict[str, Any], key: rsa.RSAPrivateKey | None = None) -> str:
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": self.kid})

    def access_token(self) -> str:
        now = int(time.time())
        return self.sign(
            {
                "iss": self.issuer,
                "aud": AUDIENCE,
                "azp": CLIENT_ID,
                "sub": self.user.sub,
                "iat": now,
                "exp": now + self.access_seconds,
                "jti": uuid.uuid4().hex,
                "roles": list(self.user.roles),
                "employee_id": self.user.employee_id,
                "teams": list(self.user.teams),
            }
        )

    def id_token(self, nonce: str) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "aud": CLIENT_ID,
            "azp": CLIENT_ID,
            "sub": self.user.sub,
            "iat": now,
            "exp": now + 300,
            "nonce": nonce,
            "name": self.user.name,
            "preferred_username": self.user.username,
        }
        match self.tamper:
            case "forged key":  # signed by someone else's key under the provider's key id
                return self.sign(claims, rsa.generate_private_key(65537, 2048))
            case "edited claims":  # the provider's signature over other claims
                header, _, signature = self.sign(claims).split(".")
                edited = {**claims, "sub": "idp-user-admin", "name": "Admin"}
                body = base64.urlsafe_b64encode(json.dumps(edited).encode()).rstrip(b"=").decode()
                return f"{header}.{body}.{signature}"
            case "unsigned":
                return jwt.encode(claims, "", algorithm="none")
            case "other nonce":
                claims["nonce"] = "a-nonce-of-another-log-in"
            case "other client":
                claims["aud"] = claims["azp"] = "another-client"
            case "other issuer":
                claims["iss"] = "https://idp.example.com/realms/acme"
            case "expired":
                claims["iat"], claims["exp"] = now - 3600, now - 1800
        return self.sign(claims)

    def tokens(self, nonce: str) -> dict[str, Any]:
        refresh = secrets.token_urlsafe(24)
        self.refresh_tokens.add(refresh)
        return {
            "access_token": self.access_token(),
            "token_type": "Bearer",
            "expires_in": self.access_seconds,
            "refresh_token": refresh,
            "refresh_expires_in": 1800,
            "id_token": self.id_token(nonce),
            "scope": "openid profile email",
        }

    # --- the endpoints --------------------------------------------------------------------------------

    def app(self) -> FastAPI:
        app = FastAPI()

        @app.get(f"{REALM}/.well-known/openid-configuration")
        async def discovery() -> dict[str, Any]:
            self.discovery_reads += 1
            return {
                "issuer": self.issuer,
                "authorization_endpoint": f"{self.issuer}{OIDC}/auth",
                "token_endpoint": f"{self.issuer}{OIDC}/token",
                "jwks_uri": f"{self.issuer}{OIDC}/certs",
                "end_session_endpoint": f"{self.issuer}{OIDC}/logout",
                "revocation_endpoint": f"{self.issuer}{OIDC}/revoke",
                "response_types_supported": ["code"],
                "code_challenge_methods_supported": ["S256"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "token_endpoint_auth_methods_supported": ["client_secret_basic", "client_secret_post"],
            }

        @app.get(f"{REALM}{OIDC}/certs")
        async def certs() -> dict[str, Any]:
            jwk = RSAAlgorithm.to_jwk(self.key.public_key(), as_dict=True)
            return {"keys": [{**jwk, "kid": self.kid, "use": "sig", "alg": "RS256"}]}

        @app.get(f"{REALM}{OIDC}/auth")
        async def authorize(request: Request) -> Response:
            query = dict(request.query_params)
            self.authorizations.append(query)
            redirect_uri = query.get("redirect_uri", "")
            registered = redirect_uri.startswith("http://127.0.0.1:") and redirect_uri.endswith(CALLBACK_PATH)
            if query.get("client_id") != CLIENT_ID or not registered:
                return Response("unknown client or redirect_uri", status_code=400)
            if query.get("response_type") != "code" or "openid" not in query.get("scope", "").split():
                return Response("not an OpenID code request", status_code=400)
            if query.get("code_challenge_method") != "S256" or not query.get("code_challenge"):
                return Response("PKCE (S256) is required", status_code=400)
            answer = {"state": query.get("state", ""), "iss": self.issuer}
            if self.error:
                answer["error"] = self.error
            else:
                code = secrets.token_urlsafe(16)
                self.codes[code] = query
                answer["code"] = code
            return RedirectResponse(f"{redirect_uri}?{urlencode(answer)}", status_code=302)

        @app.post(f"{REALM}{OIDC}/token")
        async def token(request: Request, authorization: str = Header("")) -> Response:
            form = dict(await request.form())
            if not self.client_authenticated(authorization, form):
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            if self.token_status != 200:
                return JSONResponse({"error": "temporarily_unavailable"}, status_code=self.token_status)
            grant = str(form.get("grant_type"))
            self.grants.append(grant)
            if grant == "authorization_code":
                asked = self.codes.pop(str(form.get("code")), None)
                verifier = str(form.get("code_verifier", ""))
                challenge = base64.urlsafe_b64encode(hashlib.sha256(verifier.encode()).digest()).rstrip(b"=")
                if (
                    asked is None
                    or asked["redirect_uri"] != form.get("redirect_uri")
                    or challenge.decode() != asked["code_challenge"]
                ):
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                return JSONResponse(self.tokens(asked.get("nonce", "")))
            if grant == "refresh_token":
                presented = str(form.get("refresh_token"))
                if presented not in self.refresh_tokens or presented in self.revoked:
                    return JSONResponse({"error": "invalid_grant"}, status_code=400)
                self.revoked.add(presented)  # rotated: each refresh token is good once
                tokens = self.tokens("")
                del tokens["id_token"]
                return JSONResponse(tokens)
            return JSONResponse({"error": "unsupported_grant_type"}, status_code=400)

        @app.post(f"{REALM}{OIDC}/revoke")
        async def revoke(
            request: Request, token: str = Form(""), authorization: str = Header("")
        ) -> Response:
            if not self.client_authenticated(authorization, dict(await request.form())):
                return JSONResponse({"error": "invalid_client"}, status_code=401)
            self.revoked.add(token)
            return Response(status_code=200)

        @app.get(f"{REALM}{OIDC}/logout")
        async def end_session(request: Request) -> Response:
            query = dict(request.query_params)
            jwt.decode(  # a hint this provider did not sign is an error page at a real one
                query["id_token_hint"],
                self.key.public_key(),
                algorithms=["RS256"],
                audience=CLIENT_ID,
                options={"verify_exp": False},
            )
            self.logouts.append(query)
            return RedirectResponse(query["post_logout_redirect_uri"], status_code=302)

        return app

    def client_authenticated(self, authorization: str, form: dict[str, Any]) -> bool:
        if self.public_client:
            return not authorization and "client_secret" not in form and form.get("client_id") == CLIENT_ID
        scheme, _, credentials = authorization.partition(" ")
        if scheme.lower() == "basic":
            client_id, _, secret = base64.b64decode(credentials).decode().partition(":")
            return (client_id, secret) == (CLIENT_ID, CLIENT_SECRET)
        return (form.get("client_id"), form.get("client_secret")) == (CLIENT_ID, CLIENT_SECRET)


@pytest.fixture(scope="module")
async def idp_server() -> AsyncIterator[FakeIdentityProvider]:
    idp = FakeIdentityProvider(port=free_port())
    server = uvicorn.Server(
        uvicorn.Config(idp.app(), host="127.0.0.1", port=idp.port, log_config=None, access_log=False)
    )
    serving = asyncio.create_task(server.serve())
    while not server.started:
        if serving.done():
            serving.result()
        await asyncio.sleep(0.01)
    yield idp
    server.should_exit = True
    await serving


@pytest.fixture
def fake_idp(idp_server: FakeIdentityProvider) -> FakeIdentityProvider:
    idp_server.reset()
    return idp_server


@pytest.fixture(scope="module")
def sso_services(
    idp_server: FakeIdentityProvider,
    tmp_path_factory: pytest.TempPathFactory,
    database_factory: Callable[[str], str],
) -> Iterator[Services]:
    """crm and calls of their own, trusting the fake provider's tokens besides crm's."""
    root = tmp_path_factory.mktemp("sso-services")
    nats = NatsServer(data_dir=root / "nats", log_path=root / "nats.log").start()
    calls_http, calls_grpc, crm_http, crm_grpc = free_port(), free_port(), free_port(), free_port()
    common = {"TELECRM_AUTH_SECRET": TEST_AUTH_SECRET, **oidc_env(idp_server)}
    calls = service(
        "calls",
        root,
        common,
        nats,
        database_factory("sso-calls"),
        calls_http,
        calls_grpc,
        CALLS_RECORDINGS_DIR=str(root / "rec"),
    )
    crm = service(
        "crm",
        root,
        common,
        nats,
        database_factory("sso-crm"),
        crm_http,
        crm_grpc,
        CRM_BOOTSTRAP_ADMIN_PASSWORD=ADMIN_PASSWORD,
        CRM_ATTACHMENTS_DIR=str(root / "attachments"),
        CRM_CALLS_GRPC_TARGET=f"127.0.0.1:{calls_grpc}",
    )
    try:
        crm_url, calls_url = f"http://127.0.0.1:{crm_http}", f"http://127.0.0.1:{calls_http}"
        wait_http_ok(f"{calls_url}/readyz", 90, calls)
        wait_http_ok(f"{crm_url}/readyz", 90, crm)
        login = httpx.post(
            f"{crm_url}/auth/login", json={"login": "admin", "password": ADMIN_PASSWORD}, timeout=10
        )
        yield Services(
            root=root,
            nats=nats,
            crm_url=crm_url,
            calls_url=calls_url,
            crm_grpc=f"127.0.0.1:{crm_grpc}",
            admin_token=str(login.raise_for_status().json()["access_token"]),
        )
    finally:
        crm.stop()
        calls.stop()
        nats.stop()


def oidc_env(idp: FakeIdentityProvider) -> dict[str, str]:
    return {
        "TELECRM_AUTH_OIDC_ISSUER": idp.issuer,
        "TELECRM_AUTH_OIDC_JWKS_URL": f"{idp.issuer}{OIDC}/certs",
        "TELECRM_AUTH_OIDC_AUDIENCE": AUDIENCE,
    }


def service(
    name: str,
    root: Path,
    common: dict[str, str],
    nats: NatsServer,
    database_url: str,
    http_port: int,
    grpc_port: int,
    **extra: str,
) -> ManagedProcess:
    prefix = name.upper()
    env = {
        **common,
        f"{prefix}_NATS_URL": nats.url,
        f"{prefix}_DATABASE_URL": database_url,
        f"{prefix}_HTTP_PORT": str(http_port),
        f"{prefix}_GRPC_PORT": str(grpc_port),
        f"{prefix}_LOG_FORMAT": "text",
        **extra,
    }
    return ManagedProcess(
        name, [sys.executable, "-m", f"telecrm_{name}"], env=env, log_path=root / f"{name}.log"
    ).start()


@contextlib.asynccontextmanager
async def sso_desktop(
    services: Services, idp: FakeIdentityProvider, *, trusted: bool = True, **overrides: Any
) -> AsyncIterator[RunningDesktop]:
    """The desktop with the fake provider set up (``overrides`` change its WEB_* settings); not
    ``trusted``: its TELECRM_AUTH_* do not name the provider (a set-up mistake)."""
    values: dict[str, Any] = {
        "oidc_issuer": idp.issuer,
        "oidc_client_id": CLIENT_ID,
        "oidc_client_secret": CLIENT_SECRET,
        "oidc_display_name": "Acme ID",
        **overrides,
    }
    settings = web_settings(services, **values)
    auth = AuthSettings(secret=TEST_AUTH_SECRET)
    if trusted:
        auth = AuthSettings(
            secret=TEST_AUTH_SECRET,
            oidc_issuer=idp.issuer,
            oidc_jwks_url=f"{idp.issuer}{OIDC}/certs",
            oidc_audience=AUDIENCE,
        )
    bus = await Bus.connect(services.nats.url, name=f"sso-tests-{uuid.uuid4().hex[:6]}", timeout=10)
    await bus.ensure_streams(STREAMS)
    parts = build(settings, bus, auth=auth)
    server, serving = await serve(parts, free_port())
    try:
        yield RunningDesktop(url=f"http://127.0.0.1:{server.config.port}", parts=parts, bus=bus)
    finally:
        server.should_exit = True
        await serving
        for shutdown in parts.wiring.on_shutdown:
            await shutdown()
        await bus.close()


@pytest.fixture
async def desktop(sso_services: Services, fake_idp: FakeIdentityProvider) -> AsyncIterator[RunningDesktop]:
    async with sso_desktop(sso_services, fake_idp) as running:
        yield running


async def through_provider(client: httpx.AsyncClient, start: str) -> httpx.Response:
    """Follow a log-in from ``start`` (``/login/sso?...``) through the provider; the callback's answer."""
    response = await client.get(start)
    assert response.status_code == 303, response.text
    at_provider = await client.get(response.headers["location"])
    assert at_provider.status_code == 302, at_provider.text
    callback = at_provider.headers["location"]
    assert urlsplit(callback).path == CALLBACK_PATH
    return await client.get(callback)


def signed_in(desktop: RunningDesktop, client: httpx.AsyncClient) -> Any:
    return desktop.parts.store.get(client.cookies.get("telecrm_session"), touch=False)


def csrf_of(desktop: RunningDesktop, client: httpx.AsyncClient) -> str:
    session = signed_in(desktop, client)
    assert session is not None
    return str(session.csrf_token)


# --- the log-in page ----------------------------------------------------------------------------------


async def test_the_log_in_page_offers_the_provider_beside_the_password_form(
    desktop: RunningDesktop, fake_idp: FakeIdentityProvider
) -> None:
    async with desktop.client() as client:
        page = await client.get("/login", params={"next": "/tickets?status=open"})
        bulgarian = await client.get("/login", params={"lang": "bg"})
    assert page.status_code == 200
    assert 'href="/login/sso?next=/tickets%3Fstatus%3Dopen"' in page.text
    assert "Log in with Acme ID" in page.text
    assert 'id="login-form"' in page.text  # the password form stays
    assert "Вход с Acme ID" in bulgarian.text  # noqa: RUF001 - Bulgarian
    assert fake_idp.discovery_reads == 0  # the provider is read when someone uses it, not before
    # The log-out form may lead to the provider (its end-session endpoint), and nowhere else.
    assert f"form-action 'self' {fake_idp.url};" in page.headers["content-security-policy"]


async def test_with_password_log_in_turned_off_only_the_provider_logs_in(
    sso_services: Services, fake_idp: FakeIdentityProvider
) -> None:
    async with (
        sso_desktop(sso_services, fake_idp, password_login=False, oidc_display_name="") as desktop,
        desktop.client() as client,
    ):
        page = await client.get("/login")
        form = await client.post(
            "/login", data={"login": "admin", "password": ADMIN_PASSWORD}, headers={"Origin": desktop.url}
        )
    assert "Log in with your organisation&#39;s account" in page.text
    assert 'id="login-form"' not in page.text
    assert form.status_code == 403
    assert "Log-in with a password is turned off here" in form.text
    assert client.cookies.get("telecrm_session") is None


# --- the flow -------------------------------------------------------------------------------------------


async def test_logging_in_at_the_provider_opens_a_session_the_services_accept(
    desktop: RunningDesktop, fake_idp: FakeIdentityProvider
) -> None:
    async with desktop.client() as client:
        done = await through_provider(client, "/login/sso?next=/contacts")
        assert done.status_code == 303
        assert done.headers["location"] == "/contacts"
        session = signed_in(desktop, client)
        assert session is not None
        csrf = session.csrf_token
        # crm takes the provider's access token: the user creates a contact and finds it.
        name = f"SSO customer {uuid.uuid4().hex[:6]}"
        created = await client.post(
            "/api/contacts",
            json={"kind": "person", "name": name, "phones": [{"number": "+15550109999", "kind": "mobile"}]},
            params={"allow_duplicate": "true"},
            headers={"X-CSRF-Token": csrf, "Origin": desktop.url},
        )
        found = await client.get("/api/contacts", params={"q": name})
        desktop_page = await client.get("/desktop")
        # A second log-in in the same browser uses the discovery document read for the first.
        again = await through_provider(client, "/login/sso")
    assert created.status_code == 201, created.text
    assert [c["name"] for c in found.json()["items"]] == [name]
    # Who the user is comes from the provider's tokens: the employee and roles from the access token,
    # the name (which this access token lacks) from the ID token.
    assert session.principal.employee_id == "sso-emp-olga"
    assert session.principal.roles == {Role.AGENT}
    assert session.principal.name == "Olga Kovalenko"
    assert session.access_token != session.refresh_token
    assert "Signed in as Olga Kovalenko" in desktop_page.text
    # The request to the provider: PKCE S256, a state and a nonce, this client and its callback.
    asked = fake_idp.authorizations[0]
    assert asked["code_challenge_method"] == "S256"
    assert len(asked["code_challenge"]) == 43
    assert asked["state"]
    assert asked["nonce"]
    assert asked["state"] != asked["nonce"]
    assert asked["redirect_uri"] == f"{desktop.url}{CALLBACK_PATH}"
    assert asked["scope"] == "openid profile email"
    assert again.status_code == 303
    assert fake_idp.discovery_reads == 1
    assert fake_idp.authorizations[1]["state"] != asked["state"]


async def test_a_state_this_browser_did_not_start_signs_nobody_in(
    desktop: RunningDesktop, fake_idp: FakeIdentityProvider
) -> None:
    async with desktop.client() as victim, desktop.client() as attacker:
        # The attacker starts a log-in and gives the victim the callback (a "log-in CSRF").
        started = await attacker.get("/login/sso")
        callback = (await attacker.get(started.headers["location"])).headers["location"]
        forced = await victim.get(callback)
        unknown = await victim.get(CALLBACK_PATH, params={"state": "made-up", "code": "made-up"})
        # The attacker's own browser still finishes it, once; a replay of the callback does not.
        finished = await attacker.get(callback)
        attacker.cookies.delete("telecrm_session")
        replayed = await attacker.get(callback)
    for refused in (forced, unknown, replayed):
        assert refused.status_code == 400
        assert "This sign-in was not started in this browser" in refused.text
        assert "telecrm_session=" not in refused.headers.get("set-cookie", "")
    assert victim.cookies.get("telecrm_session") is None
    assert finished.status_code == 303
    assert fake_idp.grants == ["authorization_code"]  # refused callbacks never reached the provider


@pytest.mark.parametrize(
    "tamper",
    ["forged key", "edited claims", "unsigned", "other nonce", "other client", "other issuer", "expired"],
)
async def test_an_id_token_that_does_not_verify_signs_nobody_in(
    desktop: RunningDesktop, fake_idp: FakeIdentityProvider, tamper: str
) -> None:
    fake_idp.tamper = tamper
    async with desktop.client() as client:
        answer = await through_provider(client, "/login/sso?next=/missed")
    assert answer.status_code == 401
    assert "could not be verified, so you are not signed in" in answer.text
    assert 'href="/login/sso?next=/missed"' in answer.text  # next is kept for the next try
    assert client.cookies.get("telecrm_session") is None
    assert len(desktop.parts.store) == 0


async def test_the_providers_refusal_lands_on_the_log_in_page(
    desktop: RunningDesktop, fake_idp: FakeIdentityProvider
) -> None:
    fake_idp.error = "access_denied"
    async with desktop.client() as client:
        answer = await through_provider(client, "/login/sso?next=/tickets")
    assert answer.status_code == 401
    assert "The identity provider did not sign you in (access_denied)" in answer.text
    assert 'name="next" value="/tickets"' in answer.text
    assert fake_idp.grants == []
    assert len(desktop.parts.store) == 0


async def test_a_provider_that_does_not_answer_is_said_so(
    sso_services: Services, fake_idp: FakeIdentityProvider, desktop: RunningDesktop
) -> None:
    # The token endpoint fails after the provider approved the log-in.
    fake_idp.token_status = 503
    async with desktop.client() as client:
        failed_exchange = await through_provider(client, "/login/sso?next=/missed")
        assert client.cookies.get("telecrm_session") is None
    # A provider nobody answers for: the flow cannot even start.
    nobody = FakeIdentityProvider(port=free_port())
    async with sso_desktop(sso_services, nobody) as lonely, lonely.client() as client:
        cannot_start = await client.get("/login/sso", params={"next": "/missed"})
        assert client.cookies.get("telecrm_session") is None
    for answer in (failed_exchange, cannot_start):
        assert answer.status_code == 503
        assert "The identity provider does not answer" in answer.text
        assert 'href="/login/sso?next=/missed"' in answer.text
    assert len(desktop.parts.store) == 0


async def test_a_public_client_logs_in_with_pkce_alone(
    sso_services: Services, fake_idp: FakeIdentityProvider
) -> None:
    fake_idp.public_client = True
    async with (
        sso_desktop(sso_services, fake_idp, oidc_client_secret="") as desktop,
        desktop.client() as client,
    ):
        done = await through_provider(client, "/login/sso")
        listed = await client.get("/api/contacts")
    assert done.status_code == 303
    assert listed.status_code == 200
    assert fake_idp.grants == ["authorization_code"]


async def test_a_desktop_that_does_not_trust_the_provider_says_so_and_signs_nobody_in(
    sso_services: Services, fake_idp: FakeIdentityProvider
) -> None:
    async with sso_desktop(sso_services, fake_idp, trusted=False) as desktop, desktop.client() as client:
        answer = await through_provider(client, "/login/sso")
    assert answer.status_code == 503
    assert "this system does not accept its tokens" in answer.text
    assert client.cookies.get("telecrm_session") is None


@pytest.mark.parametrize(
    "next_path",
    ["https://evil.example/phish", "//evil.example/phish", "/\\evil.example", "javascript:alert(1)"],
)
async def test_next_never_leads_off_the_site(desktop: RunningDesktop, next_path: str) -> None:
    async with desktop.client() as client:
        done = await through_provider(client, f"/login/sso?{urlencode({'next': next_path})}")
    assert done.status_code == 303
    assert done.headers["location"] == "/desktop"


# --- after log-in ---------------------------------------------------------------------------------------


async def test_the_session_refreshes_at_the_provider_and_ends_when_it_refuses(
    desktop: RunningDesktop, fake_idp: FakeIdentityProvider
) -> None:
    async with desktop.client() as client:
        await through_provider(client, "/login/sso")
        session = signed_in(desktop, client)
        first_access, first_refresh = session.access_token, session.refresh_token
        session.access_expires_at = 0.0  # the access token is about to expire
        refreshed = await client.get("/api/contacts")
        assert refreshed.status_code == 200, refreshed.text
        assert fake_idp.grants == ["authorization_code", "refresh_token"]
        assert session.access_token != first_access
        assert session.refresh_token != first_refresh
        assert session.principal.name == "Olga Kovalenko"  # kept: the refreshed access token has none
        # The provider ends the user's session (an administrator, a password change): the next refresh
        # is refused and the desktop's session ends with it.
        fake_idp.revoked.add(session.refresh_token)
        session.access_expires_at = 0.0
        ended = await client.get("/api/contacts")
    assert ended.status_code == 401
    assert session.ended
    assert len(desktop.parts.store) == 0


async def test_log_out_ends_the_session_at_the_provider_too(
    desktop: RunningDesktop, fake_idp: FakeIdentityProvider
) -> None:
    async with desktop.client() as client:
        await through_provider(client, "/login/sso")
        session = signed_in(desktop, client)
        out = await client.post(
            "/logout", data={"csrf_token": session.csrf_token}, headers={"Origin": desktop.url}
        )
        target = urlsplit(out.headers["location"])
        back = await client.get(out.headers["location"])
    assert out.status_code == 303
    assert f"{target.scheme}://{target.netloc}{target.path}" == f"{fake_idp.issuer}{OIDC}/logout"
    query = {key: values[0] for key, values in parse_qs(target.query).items()}
    assert query["id_token_hint"] == session.id_token
    assert query["post_logout_redirect_uri"] == f"{desktop.url}/login"
    assert query["client_id"] == CLIENT_ID
    assert back.headers["location"] == f"{desktop.url}/login"  # the provider sends the browser back
    assert fake_idp.logouts
    assert session.refresh_token in fake_idp.revoked
    assert session.ended
    assert client.cookies.get("telecrm_session") is None


async def test_the_flows_cookie_is_only_seen_by_the_flow(desktop: RunningDesktop) -> None:
    async with desktop.client() as client:
        started = await client.get("/login/sso")
    cookie = started.headers["set-cookie"]
    assert cookie.startswith(f"{BROWSER_COOKIE}=")
    assert "Path=/login/sso" in cookie
    assert "HttpOnly" in cookie
    assert "SameSite=lax" in cookie
    assert "Max-Age=600" in cookie


# --- in a browser ---------------------------------------------------------------------------------------


@pytest.mark.browser
async def test_the_button_logs_in_at_the_provider_and_log_out_leaves_it_too(
    page: Any,
    desktop: RunningDesktop,
    fake_idp: FakeIdentityProvider,
) -> None:
    from playwright.async_api import expect

    await page.goto(f"{desktop.url}/desktop")
    await expect(page).to_have_url(f"{desktop.url}/login?next=/desktop")
    await page.get_by_role("link", name="Log in with Acme ID").click()
    await expect(page).to_have_url(f"{desktop.url}/desktop")
    await expect(page.locator("#who")).to_have_text("Signed in as Olga Kovalenko")
    await expect(page.locator("#live-status")).to_have_text("Live: connected")
    await page.get_by_role("button", name="Log out").click()
    await expect(page).to_have_url(f"{desktop.url}/login")  # by way of the provider's end-session
    assert len(fake_idp.logouts) == 1
    assert len(desktop.parts.store) == 0
