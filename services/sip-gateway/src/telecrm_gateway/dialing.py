"""Click-to-call: ring the agent's extension first, then the customer (gRPC ``Dial``, ``POST /calls/dial``).

Two ways to place the call:

- the extension is served by a provider PBX (``GATEWAY_PROVIDER_PBXS``): the gateway POSTs
  ``{"call_id", "extension", "number", "caller_id", "context"}`` to the PBX's make-call URL
  (``Authorization: Bearer <make_call_secret>``, ``Idempotency-Key: <call_id>``); any 2xx is accepted.
  The PBX then reports the call through the provider API; its events belong to our call (and carry the
  click's context) when they echo ``crm_call_id``, or when the make-call answer named the PBX's own id
  (``{"call_id": "..."}``);
- otherwise the SIP backend (``sip_dialer``), which the SIP side plugs in; while there is none, such a
  dial fails with :class:`DialNotAvailable` (HTTP 501, gRPC UNIMPLEMENTED).

Repeated clicks within ``window`` seconds with the same idempotency key (else the same extension and
number) are one call: concurrent ones wait for the first, later ones get its call id without a second
request. A request that failed may be retried within the window: it goes out again with the same call id
(the PBX can tell the retry by its Idempotency-Key).
"""

from __future__ import annotations

import asyncio
import logging
import re
import time
import uuid
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any

import httpx

from telecrm_common.telephony import digits, normalize_number
from telecrm_gateway.errors import GatewayError
from telecrm_gateway.provider import ProviderCalls
from telecrm_gateway.settings import ProviderPbx

log = logging.getLogger(__name__)

_EXTENSION = re.compile(r"[A-Za-z0-9*#+._-]{1,32}")
_NUMBER = re.compile(r"[0-9+*#()\s.\-]{1,64}")
MAX_CONTEXT_ITEMS = 20


class DialError(GatewayError):
    """Base of click-to-call errors."""


class InvalidDial(DialError):
    """The request is not a call we can place (HTTP 422, gRPC INVALID_ARGUMENT)."""

    def __init__(self, field_name: str, message: str) -> None:
        super().__init__(f"{field_name}: {message}")
        self.field = field_name
        self.message = message


class DialConflict(DialError):
    """The idempotency key was used for another extension or number within the window (HTTP 409)."""


class DialNotAvailable(DialError):
    """No backend can place this call (HTTP 501, gRPC UNIMPLEMENTED)."""


class DialFailed(DialError):
    """The PBX refused the call or could not be reached (HTTP 502, gRPC UNAVAILABLE)."""


class DialBusy(DialFailed):
    """This gateway process has no room for another call now, or is draining: another process of the
    pool, or this one a moment later, can place it (HTTP 503 + Retry-After, gRPC RESOURCE_EXHAUSTED)."""


@dataclass(frozen=True, slots=True)
class DialCommand:
    """A click-to-call to place: what a backend gets."""

    call_id: str
    extension: str
    number: str  # as the user gave it
    e164: str  # "" when it does not parse (an internal number)
    context: Mapping[str, str] = field(default_factory=dict)
    caller_id: str = ""


@dataclass(frozen=True, slots=True)
class DialResult:
    call_id: str
    via: str  # "provider/<pbx>" or "sip"
    repeated: bool = False  # an earlier click's call (the same idempotency key within the window)


SipDialer = Callable[[DialCommand], Awaitable[None]]


@dataclass(slots=True)
class _Click:
    command: DialCommand
    expires_at: float
    task: asyncio.Task[DialResult] | None = None
    result: DialResult | None = None


class DialService:
    """Places click-to-calls through a provider PBX or the SIP backend (see the module)."""

    def __init__(
        self,
        pbxs: Mapping[str, ProviderPbx],
        *,
        region: str = "US",
        window: float = 10.0,
        timeout: float = 5.0,
        sip_dialer: SipDialer | None = None,
        provider_calls: ProviderCalls | None = None,
        max_clicks: int = 10_000,
    ) -> None:
        self.pbxs = dict(pbxs)
        self.region = region
        self.window = window
        self.timeout = timeout
        self.sip_dialer = sip_dialer
        self.provider_calls = provider_calls
        self._max_clicks = max_clicks
        self._clicks: OrderedDict[str, _Click] = OrderedDict()
        self._http: httpx.AsyncClient | None = None

    def pbx_for(self, extension: str) -> str | None:
        """The name of the PBX that serves ``extension`` (the first configured), None for SIP."""
        return next((name for name, pbx in self.pbxs.items() if pbx.serves(extension)), None)

    async def dial(
        self,
        extension: str,
        number: str,
        *,
        idempotency_key: str = "",
        context: Mapping[str, str] | None = None,
        caller_id: str = "",
    ) -> DialResult:
        """Place the call (or return the earlier click's); raises a :class:`DialError`."""
        command = self._command(extension, number, idempotency_key, context or {}, caller_id)
        key = idempotency_key or f"{command.extension}\x1f{command.e164 or digits(command.number)}"
        now = time.monotonic()
        self._forget_expired(now)
        click = self._clicks.get(key) if self.window > 0 else None
        if click is not None:
            earlier = click.command
            if (earlier.extension, earlier.e164 or earlier.number) != (
                command.extension,
                command.e164 or command.number,
            ):
                raise DialConflict(
                    f"idempotency_key {idempotency_key!r} was used for another call within "
                    f"{self.window:g} s (extension {earlier.extension}, number {earlier.number})"
                )
            if click.result is not None:
                return DialResult(click.result.call_id, click.result.via, repeated=True)
            if click.task is not None and not click.task.done():
                result = await asyncio.shield(click.task)
                return DialResult(result.call_id, result.via, repeated=True)
            # The earlier attempt failed: again (with this click's context), under the same call id.
            command = click.command = replace(command, call_id=click.command.call_id)
        else:
            click = _Click(command=command, expires_at=now + self.window)
            if self.window > 0:
                self._clicks[key] = click
                while len(self._clicks) > self._max_clicks:
                    self._clicks.popitem(last=False)
        task = asyncio.get_running_loop().create_task(self._place(command), name=f"dial {command.call_id}")
        click.task = task
        result = await asyncio.shield(task)
        click.result = result
        return result

    async def close(self) -> None:
        for click in self._clicks.values():
            if click.task is not None and not click.task.done():
                click.task.cancel()
        self._clicks.clear()
        if self._http is not None:
            await self._http.aclose()
            self._http = None

    # --- inside ------------------------------------------------------------------------------------

    def _command(
        self,
        extension: str,
        number: str,
        idempotency_key: str,
        context: Mapping[str, str],
        caller_id: str,
    ) -> DialCommand:
        extension, number, caller_id = extension.strip(), number.strip(), caller_id.strip()
        if not extension:
            raise InvalidDial("extension", "required (the agent's extension, rung first)")
        if not _EXTENSION.fullmatch(extension):
            raise InvalidDial("extension", "1-32 letters, digits or * # + . _ -")
        if not number:
            raise InvalidDial("number", "required (the number to call)")
        if not _NUMBER.fullmatch(number) or not digits(number):
            raise InvalidDial("number", f"{number[:64]!r} is not a phone number")
        if caller_id and not _NUMBER.fullmatch(caller_id):
            raise InvalidDial("caller_id", f"{caller_id[:64]!r} is not a phone number")
        if len(idempotency_key) > 200:
            raise InvalidDial("idempotency_key", "at most 200 characters")
        if len(context) > MAX_CONTEXT_ITEMS:
            raise InvalidDial("context", f"at most {MAX_CONTEXT_ITEMS} items")
        for name, value in context.items():
            if not name or len(name) > 64 or len(value) > 200:
                raise InvalidDial("context", f"{name[:64]!r}: keys 1-64 characters, values at most 200")
        return DialCommand(
            call_id=str(uuid.uuid4()),
            extension=extension,
            number=number,
            e164=normalize_number(number, self.region),
            context=dict(context),
            caller_id=caller_id,
        )

    def _forget_expired(self, now: float) -> None:
        while self._clicks:
            key, click = next(iter(self._clicks.items()))
            if click.expires_at > now:
                return
            if click.task is not None and not click.task.done():
                return  # still being placed: keep it (and the younger ones) until it settles
            del self._clicks[key]

    async def _place(self, command: DialCommand) -> DialResult:
        pbx = self.pbx_for(command.extension)
        if pbx is not None:
            await self._make_call(pbx, self.pbxs[pbx], command)
            return DialResult(command.call_id, f"provider/{pbx}")
        if self.sip_dialer is None:
            raise DialNotAvailable(
                f"click-to-call over SIP is not available in this version of the gateway, and extension "
                f"{command.extension} is not served by a provider PBX (GATEWAY_PROVIDER_PBXS)"
            )
        await self.sip_dialer(command)
        return DialResult(command.call_id, "sip")

    def _client(self) -> httpx.AsyncClient:
        if self._http is None:
            self._http = httpx.AsyncClient(timeout=self.timeout, follow_redirects=False)
        return self._http

    async def _make_call(self, name: str, pbx: ProviderPbx, command: DialCommand) -> None:
        if self.provider_calls is not None:
            self.provider_calls.remember_dial(command.call_id, command.context)
        body = {
            "call_id": command.call_id,
            "extension": command.extension,
            "number": command.e164 or command.number,
            "caller_id": command.caller_id,
            "context": dict(command.context),
        }
        headers = {"Idempotency-Key": command.call_id}
        secret = pbx.make_call_secret.get_secret_value()
        if secret:
            headers["Authorization"] = f"Bearer {secret}"
        try:
            response = await self._client().post(pbx.make_call_url, json=body, headers=headers)
        except httpx.TimeoutException:
            raise DialFailed(
                f"PBX {name} did not answer the make-call request within {self.timeout:g} s"
            ) from None
        except httpx.HTTPError as exc:
            raise DialFailed(f"PBX {name} cannot be reached: {exc or type(exc).__name__}") from None
        if not response.is_success:
            raise DialFailed(
                f"PBX {name} refused the call: HTTP {response.status_code} {response.text[:200]!r}"
            )
        their_id = _their_call_id(response)
        if their_id and self.provider_calls is not None:
            self.provider_calls.link(name, their_id, command.call_id)
        log.info(
            "click-to-call sent to a provider PBX",
            extra={"pbx": name, "call_id": command.call_id, "extension": command.extension},
        )


def _their_call_id(response: httpx.Response) -> str:
    """The PBX's own id of the call, when its answer is JSON naming one."""
    try:
        payload: Any = response.json()
    except ValueError:
        return ""
    if not isinstance(payload, dict):
        return ""
    value = payload.get("call_id") or payload.get("id") or ""
    return value[:200] if isinstance(value, str) else ""


__all__ = [
    "DialBusy",
    "DialCommand",
    "DialConflict",
    "DialError",
    "DialFailed",
    "DialNotAvailable",
    "DialResult",
    "DialService",
    "InvalidDial",
    "SipDialer",
]
