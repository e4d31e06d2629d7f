"""REST of the telephony API for providers (``/provider/v1``) and of click-to-call (``POST /calls/dial``).

Every ``/provider/v1`` route wants the PBX's API key (``GATEWAY_PROVIDER_KEYS``), as
``Authorization: Bearer <key>`` or ``X-Api-Key: <key>``: 401 without it or with a wrong one. Events are
JSON objects or form fields (``application/x-www-form-urlencoded``, as many PBX webhooks post them).
"""

from __future__ import annotations

import hmac
import json
import logging
from collections.abc import Callable, Mapping
from typing import Annotated, Any
from urllib.parse import parse_qsl

from fastapi import APIRouter, Depends, Header, HTTPException, Query, Request, Response, status
from fastapi.exceptions import RequestValidationError
from pydantic import BaseModel, Field, SecretStr, ValidationError

from telecrm_common.auth import Access, Principal
from telecrm_gateway.crm_lookup import CrmLookup
from telecrm_gateway.dialing import (
    DialBusy,
    DialConflict,
    DialFailed,
    DialNotAvailable,
    DialService,
    InvalidDial,
)
from telecrm_gateway.provider import (
    InvalidProviderEvent,
    ProviderCalls,
    ProviderEventIn,
    PublishFailed,
    RecordingIn,
)

log = logging.getLogger(__name__)

MAX_BODY = 64 * 1024
RETRY_AFTER_SECONDS = "5"


# --- shapes ------------------------------------------------------------------------------------------


class AcceptedOut(BaseModel):
    call_id: str  # our id of the call (the call log's)
    event_ids: list[str]  # what was published; the same again for a repeated post


class LookupOut(BaseModel):
    found: bool
    number: str
    contact_id: str = ""
    name: str = ""
    company: str = ""
    responsible_employee_id: str = ""
    responsible_extension: str = ""  # route the call to this extension when it is set


class DialIn(BaseModel):
    extension: str = Field(description="the agent's extension, rung first")
    number: str = Field(description="the customer's number, called when the agent answers")
    idempotency_key: str = Field(
        default="", description="repeated clicks with the same key within the window are one call"
    )
    context: dict[str, str] = Field(default_factory=dict, description="contact_id, task_id, ticket_id...")
    caller_id: str = Field(default="", description="the number presented to the customer (a line)")


class DialOut(BaseModel):
    call_id: str
    via: str  # provider/<pbx> or sip
    repeated: bool  # an earlier click's call


# --- authentication ----------------------------------------------------------------------------------


def _unauthorized(message: str) -> HTTPException:
    return HTTPException(
        status.HTTP_401_UNAUTHORIZED, message, headers={"WWW-Authenticate": 'Bearer realm="provider-api"'}
    )


def api_key_auth(keys: Mapping[str, SecretStr]) -> Any:
    """A dependency answering the name of the PBX whose key the request carries (else 401)."""
    known = [(name, key.get_secret_value().encode()) for name, key in keys.items()]

    async def pbx_name(
        authorization: Annotated[str, Header()] = "",
        x_api_key: Annotated[str, Header()] = "",
    ) -> str:
        given = x_api_key
        if not given and authorization:
            scheme, _, credentials = authorization.partition(" ")
            if scheme.lower() == "bearer":
                given = credentials.strip()
        if not given:
            raise _unauthorized("an API key is required (Authorization: Bearer <key> or X-Api-Key)")
        presented = given.encode()
        found = ""
        for name, key in known:  # every key compared in constant time, so timing names none
            if hmac.compare_digest(presented, key) and not found:
                found = name
        if not found:
            raise _unauthorized("unknown API key")
        return found

    return pbx_name


# --- bodies ------------------------------------------------------------------------------------------


async def _payload(request: Request) -> dict[str, Any]:
    """The body as a dict: a JSON object or form fields; a 422 naming the body otherwise."""
    body = await request.body()
    if len(body) > MAX_BODY:
        raise HTTPException(status.HTTP_413_REQUEST_ENTITY_TOO_LARGE, f"at most {MAX_BODY} bytes")
    kind = request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if kind == "application/x-www-form-urlencoded":
        try:
            return dict(parse_qsl(body.decode(), keep_blank_values=True))
        except UnicodeDecodeError:
            raise _invalid([(("body",), "form fields must be UTF-8")]) from None
    try:
        data = json.loads(body)
    except (ValueError, UnicodeDecodeError):
        raise _invalid([(("body",), "a JSON object (or form fields) is expected")]) from None
    if not isinstance(data, dict):
        raise _invalid([(("body",), "a JSON object is expected")])
    return data


def _invalid(problems: list[tuple[tuple[str, ...], str]]) -> RequestValidationError:
    return RequestValidationError(
        [{"type": "value_error", "loc": loc, "msg": message, "input": None} for loc, message in problems]
    )


def _validated(model: type[BaseModel], data: dict[str, Any]) -> Any:
    try:
        return model.model_validate(data)
    except ValidationError as exc:
        raise RequestValidationError(
            [
                {**error, "loc": ("body", *error["loc"])}
                for error in exc.errors(include_url=False, include_context=False)
            ]
        ) from None


def _unavailable(exc: PublishFailed) -> HTTPException:
    log.warning("provider events not stored: %s", exc)
    return HTTPException(
        status.HTTP_503_SERVICE_UNAVAILABLE,
        "the events could not be stored now; retry later",
        headers={"Retry-After": RETRY_AFTER_SECONDS},
    )


# --- routers -----------------------------------------------------------------------------------------


def provider_router(calls: ProviderCalls, lookup: CrmLookup, keys: Mapping[str, SecretStr]) -> APIRouter:
    """``/provider/v1``: call events, late recordings, the contact look-up."""
    router = APIRouter(prefix="/provider/v1", tags=["telephony API for providers"])
    authenticated = Depends(api_key_auth(keys))  # a default value: annotations here are strings
    unauthorized: dict[int | str, dict[str, Any]] = {401: {"description": "No API key, or an unknown one"}}

    @router.post(
        "/events",
        summary="One call event from a PBX (incoming, outgoing, accepted, completed, recording)",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=AcceptedOut,
        responses={
            **unauthorized,
            422: {"description": "A field is missing or invalid (named in detail[].loc)"},
            503: {"description": "NATS did not store the events: retry (Retry-After)"},
        },
        openapi_extra={
            "requestBody": {
                "content": {
                    "application/json": {"schema": ProviderEventIn.model_json_schema(by_alias=False)},
                    "application/x-www-form-urlencoded": {
                        "schema": ProviderEventIn.model_json_schema(by_alias=False)
                    },
                },
                "required": True,
            }
        },
    )
    async def post_event(request: Request, pbx: str = authenticated) -> AcceptedOut:
        event: ProviderEventIn = _validated(ProviderEventIn, await _payload(request))
        try:
            accepted = await calls.accept(pbx, event)
        except InvalidProviderEvent as exc:
            raise _invalid([(("body", name), message) for name, message in exc.problems]) from None
        except PublishFailed as exc:
            raise _unavailable(exc) from None
        log.info(
            "provider call event",
            extra={
                "pbx": pbx,
                "type": event.type,
                "their_call_id": event.call_id,
                "call_id": accepted.call_id,
            },
        )
        return AcceptedOut(call_id=accepted.call_id, event_ids=list(accepted.event_ids))

    @router.post(
        "/recordings",
        summary="A call's recording link, after the call",
        status_code=status.HTTP_202_ACCEPTED,
        response_model=AcceptedOut,
        responses={**unauthorized, 503: {"description": "Not stored: retry (Retry-After)"}},
        openapi_extra={
            "requestBody": {
                "content": {"application/json": {"schema": RecordingIn.model_json_schema(by_alias=False)}},
                "required": True,
            }
        },
    )
    async def post_recording(request: Request, pbx: str = authenticated) -> AcceptedOut:
        recording: RecordingIn = _validated(RecordingIn, await _payload(request))
        try:
            accepted = await calls.accept(pbx, recording.as_event())
        except PublishFailed as exc:
            raise _unavailable(exc) from None
        return AcceptedOut(call_id=accepted.call_id, event_ids=list(accepted.event_ids))

    @router.get(
        "/contacts/lookup",
        summary="Who has this number: the contact's name and the responsible employee's extension",
        response_model=LookupOut,
        responses=unauthorized,
    )
    async def lookup_contact(
        number: Annotated[str, Query(min_length=1, max_length=64, description="any format")],
        pbx: str = authenticated,
    ) -> LookupOut:
        card = await lookup.lookup(number)
        if card is None:
            return LookupOut(found=False, number=number)
        return LookupOut(
            found=True,
            number=number,
            contact_id=card.contact_id,
            name=card.name,
            company=card.company,
            responsible_employee_id=card.responsible_employee_id,
            responsible_extension=card.responsible_extension,
        )

    return router


def dial_router(
    dialer: DialService,
    access: Access,
    may_dial_from: Callable[[Principal, str], None],
    *,
    retry_after: int = 5,
) -> APIRouter:
    """``POST /calls/dial``: click-to-call, for a signed-in user from an extension they may call from
    (``may_dial_from`` answers 403 otherwise)."""
    router = APIRouter(prefix="/calls", tags=["calls"])
    reader = Depends(access.current)

    @router.post(
        "/dial",
        summary="Click-to-call: ring the agent's extension, then the customer",
        response_model=DialOut,
        responses={
            403: {"description": "The extension is not the user's"},
            409: {"description": "The idempotency key was used for another call within the window"},
            422: {"description": "A field is missing or invalid"},
            501: {"description": "No backend can call from this extension"},
            503: {"description": "This gateway process is full or draining: try again (Retry-After)"},
            502: {"description": "The PBX refused the call or could not be reached"},
        },
    )
    async def dial(
        body: DialIn,
        response: Response,
        idempotency_key: Annotated[str, Header(description="same as the body's idempotency_key")] = "",
        user: Principal = reader,
    ) -> DialOut:
        may_dial_from(user, body.extension)
        try:
            result = await dialer.dial(
                body.extension,
                body.number,
                idempotency_key=body.idempotency_key or idempotency_key,
                context=body.context,
                caller_id=body.caller_id,
            )
        except InvalidDial as exc:
            raise _invalid([(("body", exc.field), exc.message)]) from None
        except DialConflict as exc:
            raise HTTPException(status.HTTP_409_CONFLICT, str(exc)) from None
        except DialNotAvailable as exc:
            raise HTTPException(status.HTTP_501_NOT_IMPLEMENTED, str(exc)) from None
        except DialBusy as exc:
            raise HTTPException(
                status.HTTP_503_SERVICE_UNAVAILABLE, str(exc), headers={"Retry-After": str(retry_after)}
            ) from None
        except DialFailed as exc:
            raise HTTPException(status.HTTP_502_BAD_GATEWAY, str(exc)) from None
        response.status_code = status.HTTP_200_OK if result.repeated else status.HTTP_201_CREATED
        return DialOut(call_id=result.call_id, via=result.via, repeated=result.repeated)

    return router


__all__ = ["api_key_auth", "dial_router", "provider_router"]
