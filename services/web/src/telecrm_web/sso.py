"""Log-in through the enterprise identity provider: OpenID Connect's authorization code flow with PKCE.

``GET /login/sso?next=...`` sends the browser to the provider with a fresh ``state``, ``nonce`` and PKCE
challenge (S256). They stay here, in memory, bound to the browser by a random ``HttpOnly`` cookie that
only the two ``/login/sso`` routes see, and are good for :data:`PENDING_SECONDS` and one use: a callback
with a state this browser did not start (another browser's, a replayed or a forged one) signs nobody in.

``GET /login/sso/callback`` exchanges the code at the provider's token endpoint (with the PKCE verifier
and, for a confidential client, its secret), then checks the ID token: signature by the provider's
published keys (JWKS), issuer, audience (this client), expiry and the nonce. Only then does the desktop
open the same kind of session the password log-in opens, holding the provider's access token (the token
the services verify, ``TELECRM_AUTH_OIDC_*``) and its refresh token; the session refreshes at the
provider's token endpoint. Log-out ends the provider's session too when it publishes an
``end_session_endpoint`` (the browser goes there, then comes back to ``/login``).

The provider is found through its discovery document (``<issuer>/.well-known/openid-configuration``),
read at first use and again after ``WEB_OIDC_METADATA_TTL_SECONDS``; its keys are read again when an ID
token names a key not seen yet (the provider rotated them), at most once a minute.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import logging
import re
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any
from urllib.parse import quote_plus, urlencode, urlsplit

import httpx
import jwt
from fastapi import APIRouter, Request, Response
from fastapi.responses import RedirectResponse

from telecrm_web.errors import SessionExpired, UpstreamUnavailable, WebError
from telecrm_web.i18n import Translator
from telecrm_web.pages import Pages, safe_next
from telecrm_web.sessions import Session
from telecrm_web.settings import WebSettings
from telecrm_web.upstream import Refused, TokenPair

log = logging.getLogger(__name__)

PROVIDER = "the identity provider"
LOGIN_PATH = "/login/sso"
CALLBACK_PATH = "/login/sso/callback"
BROWSER_COOKIE = "telecrm_sso"
PENDING_SECONDS = 600  # from the button to the callback: the provider's log-in page, a second factor...
MAX_PENDING = 10_000
KEYS_REFETCH_SECONDS = 60.0
RETRY_SECONDS = 60.0  # a discovery document that could not be read again is tried again after this
DEFAULT_ACCESS_SECONDS = 300  # a token answer without expires_in (nor a readable exp): refresh early
# The ID token must be signed with the provider's published key: an HMAC (the client secret as key) or
# "none" is refused, so a token cannot be made by anyone who merely knows the client's secret.
SIGNING_ALGORITHMS = frozenset(
    {"RS256", "RS384", "RS512", "PS256", "PS384", "PS512", "ES256", "ES384", "ES512"}
)
_ERROR_CODE = re.compile(r"[a-z0-9_.-]{1,64}")


class SignInFailed(WebError):
    """The provider's answer does not sign anybody in; ``reason`` is the message the log-in page shows
    (a key of the ``sso`` catalogue) and ``status`` its HTTP status."""

    def __init__(self, reason: str, detail: str, *, status: int = 401) -> None:
        super().__init__(detail)
        self.reason = reason
        self.status = status


@dataclass(frozen=True)
class ProviderMetadata:
    """What the desktop uses of the provider's discovery document."""

    issuer: str
    authorization_endpoint: str
    token_endpoint: str
    jwks_uri: str
    end_session_endpoint: str = ""
    revocation_endpoint: str = ""
    token_auth_methods: tuple[str, ...] = ("client_secret_basic",)

    @classmethod
    def of(cls, body: Mapping[str, Any], issuer: str) -> ProviderMetadata:
        """The metadata of a discovery document; ValueError when it lacks an endpoint or names another
        issuer (a document served for someone else must not be trusted)."""
        if body.get("issuer") != issuer:
            raise ValueError(
                f"the discovery document names the issuer {body.get('issuer')!r}, not {issuer!r}"
            )
        missing = [
            name for name in ("authorization_endpoint", "token_endpoint", "jwks_uri") if not body.get(name)
        ]
        if missing:
            raise ValueError(f"the discovery document has no {', '.join(missing)}")
        methods = body.get("token_endpoint_auth_methods_supported") or ["client_secret_basic"]
        return cls(
            issuer=issuer,
            authorization_endpoint=_http_url(body["authorization_endpoint"]),
            token_endpoint=_http_url(body["token_endpoint"]),
            jwks_uri=_http_url(body["jwks_uri"]),
            end_session_endpoint=_http_url(body.get("end_session_endpoint") or ""),
            revocation_endpoint=_http_url(body.get("revocation_endpoint") or ""),
            token_auth_methods=tuple(str(method) for method in methods),
        )


def _http_url(value: object) -> str:
    text = str(value)
    if text and urlsplit(text).scheme not in ("http", "https"):
        raise ValueError(f"{text!r} is not an http(s) URL")
    return text


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return f"{parts.scheme}://{parts.netloc}"


def _with_query(url: str, params: Mapping[str, str]) -> str:
    return f"{url}{'&' if '?' in url else '?'}{urlencode(params)}"


def pkce_challenge(verifier: str) -> str:
    """The S256 code challenge of a PKCE verifier (RFC 7636)."""
    digest = hashlib.sha256(verifier.encode("ascii")).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode("ascii")


class OidcProvider:
    """The provider over HTTP: discovery, keys, the token endpoint, revocation and log-out addresses.

    It is the :class:`~telecrm_web.sessions.TokenSource` of the sessions it opened."""

    def __init__(
        self,
        *,
        issuer: str,
        client_id: str,
        client_secret: str = "",
        timeout: float,
        leeway: float,
        metadata_ttl: float,
        transport: httpx.AsyncBaseTransport | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.issuer = issuer
        self.client_id = client_id
        self._secret = client_secret
        self._leeway = leeway
        self._ttl = metadata_ttl
        self._clock = clock
        self._http = httpx.AsyncClient(timeout=timeout, transport=transport, follow_redirects=False)
        self._metadata: ProviderMetadata | None = None
        self._metadata_at = 0.0
        self._metadata_lock = asyncio.Lock()
        self._keys: dict[str, jwt.PyJWK] = {}
        self._keys_at: float | None = None
        self._keys_lock = asyncio.Lock()

    async def close(self) -> None:
        await self._http.aclose()

    @property
    def cached_metadata(self) -> ProviderMetadata | None:
        return self._metadata

    # --- discovery and keys -------------------------------------------------------------------------

    async def metadata(self) -> ProviderMetadata:
        """The discovery document, read at first use and again once it is older than the TTL (a
        provider that does not answer then is used with what was read before, for a while)."""
        if self._metadata is not None and self._clock() - self._metadata_at < self._ttl:
            return self._metadata
        async with self._metadata_lock:
            if self._metadata is not None and self._clock() - self._metadata_at < self._ttl:
                return self._metadata
            url = f"{self.issuer.rstrip('/')}/.well-known/openid-configuration"
            try:
                body = await self._get_json(url)
                metadata = ProviderMetadata.of(body, self.issuer)
            except (UpstreamUnavailable, ValueError) as exc:
                if self._metadata is not None:
                    log.warning("the identity provider's discovery was not read again (%s): kept", exc)
                    self._metadata_at = self._clock() - self._ttl + RETRY_SECONDS  # try again soon
                    return self._metadata
                if isinstance(exc, ValueError):
                    log.error("the identity provider's discovery document (%s) is not usable: %s", url, exc)
                    raise UpstreamUnavailable(
                        PROVIDER, f"has an unusable discovery document ({exc})"
                    ) from None
                raise
            self._metadata, self._metadata_at = metadata, self._clock()
            return metadata

    async def _signing_key(self, kid: str | None) -> jwt.PyJWK:
        """The provider's key named ``kid`` (its only key when the token names none); the keys are read
        again for a key not seen yet, at most once every :data:`KEYS_REFETCH_SECONDS`."""
        key = self._pick_key(kid)
        if key is not None:
            return key
        async with self._keys_lock:
            key = self._pick_key(kid)
            fresh = self._keys_at is not None and self._clock() - self._keys_at < KEYS_REFETCH_SECONDS
            if key is None and not fresh:
                metadata = await self.metadata()
                body = await self._get_json(metadata.jwks_uri)
                try:
                    keys = jwt.PyJWKSet.from_dict(dict(body)).keys
                except jwt.PyJWTError as exc:
                    raise UpstreamUnavailable(PROVIDER, f"publishes no usable keys ({exc})") from None
                self._keys = {str(k.key_id or ""): k for k in keys if k.public_key_use in (None, "sig")}
                self._keys_at = self._clock()
                key = self._pick_key(kid)
        if key is None:
            raise SignInFailed(
                "sso_invalid", f"the ID token is signed with a key the provider does not publish ({kid})"
            )
        return key

    def _pick_key(self, kid: str | None) -> jwt.PyJWK | None:
        if kid:
            return self._keys.get(kid)
        return next(iter(self._keys.values())) if len(self._keys) == 1 else None

    # --- the flow -------------------------------------------------------------------------------------

    def authorization_url(
        self,
        metadata: ProviderMetadata,
        *,
        redirect_uri: str,
        scopes: str,
        state: str,
        nonce: str,
        code_verifier: str,
        language: str,
    ) -> str:
        return _with_query(
            metadata.authorization_endpoint,
            {
                "response_type": "code",
                "client_id": self.client_id,
                "redirect_uri": redirect_uri,
                "scope": scopes,
                "state": state,
                "nonce": nonce,
                "code_challenge": pkce_challenge(code_verifier),
                "code_challenge_method": "S256",
                "ui_locales": language,
            },
        )

    async def exchange(self, code: str, *, code_verifier: str, redirect_uri: str) -> TokenPair:
        """The tokens for an authorization code; SignInFailed when the provider refuses the code."""
        metadata = await self.metadata()
        try:
            body = await self._token_request(
                metadata,
                {
                    "grant_type": "authorization_code",
                    "code": code,
                    "redirect_uri": redirect_uri,
                    "code_verifier": code_verifier,
                },
            )
        except Refused as exc:
            raise SignInFailed("sso_invalid", f"the token endpoint refused the code: {exc}") from None
        pair = _token_pair(body)
        if not pair.id_token:
            raise SignInFailed(
                "sso_invalid", "the token endpoint answered no ID token (is 'openid' a scope?)"
            )
        return pair

    async def verify_id_token(self, id_token: str, *, nonce: str) -> dict[str, Any]:
        """The claims of an ID token this client asked for; SignInFailed for any other."""
        try:
            header = jwt.get_unverified_header(id_token)
        except jwt.PyJWTError as exc:
            raise SignInFailed("sso_invalid", f"the ID token is malformed: {exc}") from None
        algorithm = header.get("alg")
        if algorithm not in SIGNING_ALGORITHMS:
            raise SignInFailed("sso_invalid", f"the ID token is signed with {algorithm!r}")
        key = await self._signing_key(header.get("kid"))
        try:
            claims: dict[str, Any] = jwt.decode(
                id_token,
                key.key,
                algorithms=[str(algorithm)],
                audience=self.client_id,
                issuer=self.issuer,
                leeway=self._leeway,
                options={"require": ["iss", "sub", "aud", "exp", "iat"]},
            )
        except jwt.PyJWTError as exc:
            raise SignInFailed("sso_invalid", f"the ID token does not verify: {exc}") from None
        audiences = claims["aud"] if isinstance(claims["aud"], list) else [claims["aud"]]
        if claims.get("azp", self.client_id) != self.client_id or (
            len(audiences) > 1 and "azp" not in claims
        ):
            raise SignInFailed("sso_invalid", "the ID token was issued to another client (azp)")
        if not hmac.compare_digest(str(claims.get("nonce", "")), nonce):
            raise SignInFailed("sso_invalid", "the ID token's nonce is not the one this log-in sent")
        return claims

    # --- TokenSource of the sessions ------------------------------------------------------------------

    async def refresh(self, refresh_token: str) -> TokenPair:
        """New tokens for the session (the provider may keep the refresh token: then it stays)."""
        if not refresh_token:
            raise Refused("the identity provider gave no refresh token")
        metadata = await self.metadata()
        body = await self._token_request(
            metadata, {"grant_type": "refresh_token", "refresh_token": refresh_token}
        )
        pair = _token_pair(body)
        if not pair.refresh_token:
            pair = TokenPair(
                access_token=pair.access_token,
                refresh_token=refresh_token,
                expires_in=pair.expires_in,
                refresh_expires_in=pair.refresh_expires_in,
                id_token=pair.id_token,
            )
        return pair

    async def logout(self, refresh_token: str) -> None:
        """Revoke the refresh token where the provider offers it (RFC 7009); its session itself ends by
        the browser's visit to the end-session endpoint."""
        metadata = await self.metadata()
        if not metadata.revocation_endpoint or not refresh_token:
            return
        data = {"token": refresh_token, "token_type_hint": "refresh_token"}
        response = await self._post_form(metadata, metadata.revocation_endpoint, data)
        if response.status_code >= 500:
            raise UpstreamUnavailable(PROVIDER, f"answered {response.status_code} to the revocation")
        if response.status_code >= 400:
            log.warning("the identity provider did not revoke the refresh token: %s", response.text[:200])

    def end_session_url(self, *, id_token: str, post_logout_redirect_uri: str) -> str | None:
        """Where the browser ends its session at the provider (RP-initiated log-out), or None when the
        provider has no end-session endpoint (or was never read)."""
        metadata = self._metadata
        if metadata is None or not metadata.end_session_endpoint:
            return None
        params = {"client_id": self.client_id, "post_logout_redirect_uri": post_logout_redirect_uri}
        if id_token:
            params["id_token_hint"] = id_token
        return _with_query(metadata.end_session_endpoint, params)

    # --- HTTP ---------------------------------------------------------------------------------------

    async def _token_request(self, metadata: ProviderMetadata, form: Mapping[str, str]) -> Mapping[str, Any]:
        response = await self._post_form(metadata, metadata.token_endpoint, form)
        if response.status_code >= 500:
            raise UpstreamUnavailable(PROVIDER, f"answered {response.status_code} at its token endpoint")
        body = _json(response)
        if response.status_code >= 400:
            error = body.get("error") if isinstance(body, Mapping) else None
            raise Refused(str(error or response.status_code))
        if not isinstance(body, Mapping) or not body.get("access_token"):
            raise UpstreamUnavailable(PROVIDER, "answered its token endpoint without an access token")
        token_type = str(body.get("token_type") or "Bearer")
        if token_type.lower() != "bearer":
            raise UpstreamUnavailable(PROVIDER, f"gave a {token_type!r} token, not a bearer token")
        return body

    async def _post_form(
        self, metadata: ProviderMetadata, url: str, form: Mapping[str, str]
    ) -> httpx.Response:
        """A POST to the token (or revocation) endpoint with the client's credentials: HTTP Basic for a
        confidential client unless the provider only takes them in the form; a public client's id only."""
        data = dict(form)
        auth: httpx.BasicAuth | None = None
        if not self._secret:
            data["client_id"] = self.client_id
        elif "client_secret_basic" in metadata.token_auth_methods or (
            "client_secret_post" not in metadata.token_auth_methods
        ):
            # RFC 6749 2.3.1: the id and secret are form-encoded before they go into the Basic header.
            auth = httpx.BasicAuth(quote_plus(self.client_id), quote_plus(self._secret))
        else:
            data.update(client_id=self.client_id, client_secret=self._secret)
        return await self._send("POST", url, data=data, auth=auth)

    async def _get_json(self, url: str) -> Mapping[str, Any]:
        response = await self._send("GET", url)
        if response.status_code != 200:
            raise UpstreamUnavailable(PROVIDER, f"answered {response.status_code} for {url}")
        body = _json(response)
        if not isinstance(body, Mapping):
            raise UpstreamUnavailable(PROVIDER, f"answered {url} with something that is not a JSON object")
        return body

    async def _send(self, method: str, url: str, **kwargs: Any) -> httpx.Response:
        try:
            return await self._http.request(method, url, headers={"Accept": "application/json"}, **kwargs)
        except httpx.TimeoutException as exc:
            raise UpstreamUnavailable(PROVIDER, "did not answer in time", timeout=True) from exc
        except httpx.HTTPError as exc:
            raise UpstreamUnavailable(PROVIDER, f"cannot be reached ({type(exc).__name__})") from exc


def _json(response: httpx.Response) -> Any:
    try:
        return response.json()
    except ValueError:
        raise UpstreamUnavailable(PROVIDER, f"answered {response.status_code} without JSON") from None


def _token_pair(body: Mapping[str, Any]) -> TokenPair:
    access_token = str(body["access_token"])
    return TokenPair(
        access_token=access_token,
        refresh_token=str(body.get("refresh_token") or ""),
        expires_in=_lifetime(body.get("expires_in"), access_token),
        refresh_expires_in=int(body.get("refresh_expires_in") or 0),
        id_token=str(body.get("id_token") or ""),
    )


def _lifetime(expires_in: Any, access_token: str) -> int:
    """Seconds the access token lives: ``expires_in``, else its own ``exp`` (when it is a JWT), else
    :data:`DEFAULT_ACCESS_SECONDS`."""
    if isinstance(expires_in, int | float) and not isinstance(expires_in, bool) and expires_in >= 0:
        return int(expires_in)
    if isinstance(expires_in, str) and expires_in.strip().isdigit():
        return int(expires_in)
    try:
        exp = jwt.decode(access_token, options={"verify_signature": False}).get("exp")
    except jwt.PyJWTError:
        exp = None
    if isinstance(exp, int | float):
        return max(0, int(exp - time.time()))
    return DEFAULT_ACCESS_SECONDS


@dataclass(frozen=True)
class PendingLogin:
    """A log-in sent to the provider and not back yet."""

    browser: str  # SHA-256 of the browser's cookie: the log-in finishes in the browser it started in
    nonce: str
    code_verifier: str
    redirect_uri: str
    next_path: str
    started: float


class PendingLogins:
    """The log-ins under way, by ``state``: each used once, within ``ttl`` seconds, by its browser."""

    def __init__(
        self,
        *,
        ttl: float = PENDING_SECONDS,
        limit: int = MAX_PENDING,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._ttl = ttl
        self._limit = limit
        self._clock = clock
        self._pending: OrderedDict[str, PendingLogin] = OrderedDict()

    def __len__(self) -> int:
        return len(self._pending)

    def add(self, browser: str, *, redirect_uri: str, next_path: str) -> tuple[str, PendingLogin]:
        """A new log-in of ``browser`` (its cookie's value); its state and what the callback needs."""
        now = self._clock()
        while self._pending and (
            len(self._pending) >= self._limit or now - next(iter(self._pending.values())).started > self._ttl
        ):
            self._pending.popitem(last=False)
        pending = PendingLogin(
            browser=_digest(browser),
            nonce=secrets.token_urlsafe(24),
            code_verifier=secrets.token_urlsafe(64),
            redirect_uri=redirect_uri,
            next_path=next_path,
            started=now,
        )
        state = secrets.token_urlsafe(24)
        self._pending[state] = pending
        return state, pending

    def take(self, state: str, browser: str | None) -> PendingLogin | None:
        """The log-in of ``state`` if ``browser`` started it and it is recent (it is used up then); None
        otherwise (another browser's state stays for its own browser)."""
        pending = self._pending.get(state) if state else None
        if pending is None or not browser or not hmac.compare_digest(pending.browser, _digest(browser)):
            return None
        del self._pending[state]
        if self._clock() - pending.started > self._ttl:
            return None
        return pending


def _digest(value: str) -> str:
    return hashlib.sha256(value.encode()).hexdigest()


class SingleSignOn:
    """The desktop's side of the provider: the button, the two routes' work and the log-out address."""

    def __init__(
        self,
        provider: OidcProvider,
        *,
        scopes: str,
        display_name: str = "",
        redirect_url: str = "",
        pending: PendingLogins | None = None,
    ) -> None:
        self.provider = provider
        self.scopes = scopes
        self.display_name = display_name
        self.redirect_url = redirect_url
        self.pending = pending or PendingLogins()

    @classmethod
    def from_settings(cls, settings: WebSettings, *, leeway: float) -> SingleSignOn:
        provider = OidcProvider(
            issuer=settings.oidc_issuer,
            client_id=settings.oidc_client_id,
            client_secret=settings.oidc_client_secret.get_secret_value(),
            timeout=settings.oidc_timeout_seconds,
            leeway=leeway,
            metadata_ttl=settings.oidc_metadata_ttl_seconds,
        )
        return cls(
            provider,
            scopes=settings.oidc_scopes,
            display_name=settings.oidc_display_name,
            redirect_url=settings.oidc_redirect_url,
        )

    async def close(self) -> None:
        await self.provider.close()

    def button_label(self, t: Translator) -> str:
        return t("sso_button", name=self.display_name) if self.display_name else t("sso_button_generic")

    def redirect_uri(self, request: Request) -> str:
        return self.redirect_url or f"{str(request.base_url).rstrip('/')}{CALLBACK_PATH}"

    def post_logout_uri(self, request: Request) -> str:
        """``/login`` of this site, at the address the callback is registered with."""
        if self.redirect_url:
            return f"{_origin(self.redirect_url)}/login"
        return f"{str(request.base_url).rstrip('/')}/login"

    def form_action_origins(self) -> list[str]:
        """Where the log-out form may lead besides this site (the Content-Security-Policy's form-action
        otherwise stops the browser on its way to the provider's end-session endpoint)."""
        origins = {_origin(self.provider.issuer)}
        metadata = self.provider.cached_metadata
        if metadata is not None and metadata.end_session_endpoint:
            origins.add(_origin(metadata.end_session_endpoint))
        return sorted(origins)

    async def start(self, request: Request, browser: str, next_path: str, language: str) -> str:
        """The provider's authorization address for a new log-in of ``browser``."""
        metadata = await self.provider.metadata()
        redirect_uri = self.redirect_uri(request)
        state, pending = self.pending.add(browser, redirect_uri=redirect_uri, next_path=next_path)
        return self.provider.authorization_url(
            metadata,
            redirect_uri=redirect_uri,
            scopes=self.scopes,
            state=state,
            nonce=pending.nonce,
            code_verifier=pending.code_verifier,
            language=language,
        )

    async def finish(self, code: str, pending: PendingLogin) -> tuple[TokenPair, dict[str, Any]]:
        """The tokens and the verified ID token's claims of a log-in the provider sent back."""
        pair = await self.provider.exchange(
            code, code_verifier=pending.code_verifier, redirect_uri=pending.redirect_uri
        )
        claims = await self.provider.verify_id_token(pair.id_token, nonce=pending.nonce)
        return pair, claims

    def logout_url(self, session: Session, request: Request) -> str | None:
        """Where the browser goes to end its provider session after log-out (None: not ours, or the
        provider has no end-session endpoint)."""
        if session.source is not self.provider:
            return None
        return self.provider.end_session_url(
            id_token=session.id_token, post_logout_redirect_uri=self.post_logout_uri(request)
        )


def user_name(claims: Mapping[str, Any]) -> str:
    """The user's name as the ID token gives it."""
    for claim in ("name", "preferred_username", "email"):
        if value := claims.get(claim):
            return str(value)
    return ""


def sso_router(pages: Pages, sso: SingleSignOn) -> APIRouter:
    router = APIRouter(include_in_schema=False)
    guard = pages.guard

    def failed(request: Request, reason: str, next_path: str, status_code: int, **values: object) -> Response:
        t = Translator(pages.language(request))
        return pages.login_page(
            request, next_path=next_path, error=t(reason, **values), status_code=status_code
        )

    @router.get(LOGIN_PATH)
    async def start(request: Request, next: str | None = None) -> Response:
        next_path = safe_next(next)
        browser = request.cookies.get(BROWSER_COOKIE) or ""
        if not re.fullmatch(r"[A-Za-z0-9_-]{32,64}", browser):
            browser = secrets.token_urlsafe(32)
        try:
            target = await sso.start(request, browser, next_path, pages.language(request))
        except UpstreamUnavailable as exc:
            log.warning("log-in through the identity provider cannot start: %s", exc)
            return failed(request, "sso_unavailable", next_path, 503)
        response = RedirectResponse(target, status_code=303, headers={"Cache-Control": "no-store"})
        # Only the two routes of the flow see it; SameSite=Lax still sends it on the provider's redirect
        # back (a top-level GET).
        response.set_cookie(
            BROWSER_COOKIE,
            browser,
            max_age=PENDING_SECONDS,
            path=LOGIN_PATH,
            secure=guard.cookies.secure,
            httponly=True,
            samesite="lax",
        )
        return response

    @router.get(CALLBACK_PATH)
    async def callback(
        request: Request,
        state: str = "",
        code: str = "",
        error: str = "",
        iss: str = "",
    ) -> Response:
        pending = sso.pending.take(state, request.cookies.get(BROWSER_COOKIE))
        if pending is None:
            log.info("an identity provider callback with a state this browser did not start was refused")
            return failed(request, "sso_bad_state", safe_next(None), 400)
        if error:
            code_name = error if _ERROR_CODE.fullmatch(error) else "error"
            log.info("the identity provider did not sign the user in: %s", code_name)
            return failed(request, "sso_refused", pending.next_path, 401, error=code_name)
        if iss and iss != sso.provider.issuer:  # RFC 9207: the answer of another provider
            return failed(request, "sso_invalid", pending.next_path, 401)
        if not code:
            return failed(request, "sso_invalid", pending.next_path, 401)
        try:
            pair, claims = await sso.finish(code, pending)
            session = await guard.store.open(pair, source=sso.provider, name=user_name(claims))
        except SignInFailed as exc:
            log.warning("log-in through the identity provider refused: %s", exc)
            return failed(request, exc.reason, pending.next_path, exc.status)
        except UpstreamUnavailable as exc:
            log.warning("log-in through the identity provider failed: %s", exc)
            return failed(request, "sso_unavailable", pending.next_path, 503)
        except SessionExpired as exc:
            log.error("log-in through the identity provider: %s", exc)
            return failed(request, "sso_not_accepted", pending.next_path, 503)
        previous = guard.session_of(request)
        if previous is not None:  # a second log-in in the same browser replaces the first session
            guard.store.expire(previous)
        response = RedirectResponse(pending.next_path, status_code=303, headers={"Cache-Control": "no-store"})
        guard.cookies.set_session(response, session)
        return response

    return router
