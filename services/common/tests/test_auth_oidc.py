"""An enterprise identity provider's tokens, accepted instead of (or beside) crm's: an RSA key of our own,
its JWKS served over HTTP from a local server, tokens signed with it. Accepted with the right issuer,
audience and key; refused when foreign, expired, for another audience, of an unknown key or forged."""

from __future__ import annotations

import json
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import httpx
import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from fastapi import Depends, FastAPI
from jwt.algorithms import RSAAlgorithm

from telecrm_common.auth import (
    AuthSettings,
    Principal,
    Role,
    TokenError,
    TokenIssuer,
    TokenVerifier,
    Visibility,
    default_rights,
    principal_dependency,
    require,
)

ISSUER = "https://idp.example.com/realms/acme"
AUDIENCE = "telecrm-api"


@dataclass
class IdentityProvider:
    """An RSA signing key and the JWKS endpoint that publishes it, as an enterprise IdP has."""

    url: str
    key: rsa.RSAPrivateKey
    kid: str
    fetches: list[str] = field(default_factory=list)

    def token(self, *, key: rsa.RSAPrivateKey | None = None, kid: str | None = None, **overrides: Any) -> str:
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": ISSUER,
            "aud": AUDIENCE,
            "sub": "8d1c2f0e-idp-user",
            "iat": now,
            "exp": now + 300,
            "preferred_username": "o.kovalenko",
            "roles": ["agent", "something-else"],
            "employee_id": "emp-42",
            "teams": ["team-sales"],
        }
        claims.update(overrides)
        return jwt.encode(claims, key or self.key, algorithm="RS256", headers={"kid": kid or self.kid})


@pytest.fixture(scope="module")
def idp() -> Iterator[IdentityProvider]:
    key = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    kid = uuid.uuid4().hex
    jwk = RSAAlgorithm.to_jwk(key.public_key(), as_dict=True)
    body = json.dumps({"keys": [{**jwk, "kid": kid, "use": "sig", "alg": "RS256"}]}).encode()
    fetches: list[str] = []

    class JWKS(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            fetches.append(self.path)
            if self.path != "/protocol/openid-connect/certs":
                self.send_error(404)
                return
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, format: str, *args: Any) -> None:  # quiet
            return

    server = ThreadingHTTPServer(("127.0.0.1", 0), JWKS)
    thread = threading.Thread(target=server.serve_forever, name="jwks", daemon=True)
    thread.start()
    url = f"http://127.0.0.1:{server.server_address[1]}/protocol/openid-connect/certs"
    try:
        yield IdentityProvider(url=url, key=key, kid=kid, fetches=fetches)
    finally:
        server.shutdown()
        server.server_close()
        thread.join(5)


def settings_for(idp: IdentityProvider, **overrides: Any) -> AuthSettings:
    values: dict[str, Any] = {
        "secret": "our-own-secret-of-at-least-32-bytes!",
        "oidc_issuer": ISSUER,
        "oidc_jwks_url": idp.url,
        "oidc_audience": AUDIENCE,
        **overrides,
    }
    return AuthSettings(**values)


def test_a_token_of_the_identity_provider_is_a_principal(idp: IdentityProvider) -> None:
    verifier = TokenVerifier(settings_for(idp))
    before = len(idp.fetches)
    principal = verifier.verify(idp.token())
    assert principal.subject == "8d1c2f0e-idp-user"
    assert (principal.employee_id, principal.name) == ("emp-42", "o.kovalenko")
    assert principal.roles == {Role.AGENT}  # roles the suite does not know are ignored
    assert principal.team_ids == {"team-sales"}
    assert principal.rights == default_rights([Role.AGENT])
    assert principal.visibility is Visibility.TEAM
    assert principal.may_see("emp-7", "team-sales")
    assert not principal.has("task.delete")

    supervisor = verifier.verify(
        idp.token(roles="supervisor", teams=["team-care"], supervised_teams=["team-sales", "team-night"])
    )
    assert supervisor.roles == {Role.SUPERVISOR}  # a space-separated string is read as a list too
    assert supervisor.supervised_team_ids == {"team-sales", "team-night"}
    assert supervisor.may_see("emp-9", "team-night")
    admin = verifier.verify(idp.token(roles=["admin"], employee_id=None))
    assert (admin.is_admin, admin.visibility, admin.employee_id) == (True, Visibility.ALL, None)
    assert len(idp.fetches) - before == 1  # the keys are fetched once, then cached

    # Our own tokens are still accepted beside the provider's.
    ours, _ = TokenIssuer(settings_for(idp)).issue(Principal(subject="u-1", roles=frozenset({Role.ADMIN})))
    assert verifier.verify(ours).subject == "u-1"


@pytest.mark.parametrize(
    ("make", "message"),
    [
        (lambda idp: idp.token(iss="https://evil.example.com/"), "issuer this installation does not trust"),
        (lambda idp: idp.token(exp=int(time.time()) - 3600, iat=int(time.time()) - 7200), "token expired"),
        (lambda idp: idp.token(aud="another-app"), "Audience doesn.t match"),
        (lambda idp: idp.token(kid="rotated-away-key"), "invalid token"),
        (
            lambda idp: idp.token(key=rsa.generate_private_key(public_exponent=65537, key_size=2048)),
            "Signature verification failed",
        ),
        (
            # Algorithm confusion: HS256 "signed" with the provider's public key as the secret.
            lambda idp: jwt.encode(
                {"iss": ISSUER, "aud": AUDIENCE, "sub": "x", "exp": int(time.time()) + 60},
                "not-the-idp-key-but-long-enough-for-hs256",
                algorithm="HS256",
                headers={"kid": idp.kid},
            ),
            "invalid token",
        ),
        (lambda idp: idp.token(sub=None), "invalid token"),
    ],
    ids=[
        "wrong-issuer",
        "expired",
        "wrong-audience",
        "unknown-key-id",
        "forged-signature",
        "hs256",
        "no-sub",
    ],
)
def test_a_token_the_provider_did_not_issue_for_us_is_refused(
    idp: IdentityProvider, make: Any, message: str
) -> None:
    verifier = TokenVerifier(settings_for(idp))
    token = make(idp)
    with pytest.raises(TokenError, match=message):
        verifier.verify(token)


def test_without_the_provider_configured_its_tokens_are_foreign(idp: IdentityProvider) -> None:
    verifier = TokenVerifier(AuthSettings(secret="our-own-secret-of-at-least-32-bytes!"))
    with pytest.raises(TokenError, match="issuer this installation does not trust"):
        verifier.verify(idp.token())


async def test_the_providers_tokens_pass_the_rights_checks_of_every_api(idp: IdentityProvider) -> None:
    verifier = TokenVerifier(settings_for(idp))
    current = principal_dependency(verifier)
    app = FastAPI()
    may_create = Depends(require(current, "task.create"))
    may_delete = Depends(require(current, "task.delete"))

    @app.post("/tasks")
    async def create(user: Principal = may_create) -> dict[str, str | None]:
        return {"employee": user.employee_id}

    @app.delete("/tasks/1")
    async def delete(user: Principal = may_delete) -> dict[str, str | None]:
        return {"employee": user.employee_id}

    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as client:
        headers = {"Authorization": f"Bearer {idp.token()}"}
        created = await client.post("/tasks", headers=headers)
        assert (created.status_code, created.json()) == (200, {"employee": "emp-42"})
        refused = await client.delete("/tasks/1", headers=headers)
        assert (refused.status_code, refused.json()["detail"]) == (403, "the right 'task.delete' is needed")
        expired = {"Authorization": f"Bearer {idp.token(exp=int(time.time()) - 3600)}"}
        answer = await client.post("/tasks", headers=expired)
        assert (answer.status_code, answer.headers["WWW-Authenticate"]) == (401, "Bearer")
