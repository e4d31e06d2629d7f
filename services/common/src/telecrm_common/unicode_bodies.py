"""Refuse JSON bodies whose text cannot be stored: a lone surrogate (``"\\ud800"``) is valid JSON and
a valid Python ``str``, so it passes every schema, but neither PostgreSQL nor SQLite can write it as
UTF-8: the write failed deep in a transaction and the client got a 500. This ASGI middleware answers 422
before the route runs, naming where in the body the bad text is, in FastAPI's error shape.

Only bodies that contain a ``\\ud`` escape are parsed a second time (raw surrogates cannot occur in
valid UTF-8, so an escape is the only way in); everything else passes through untouched.
"""

from __future__ import annotations

import json
from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

_BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
_MESSAGE = "text must be valid Unicode: a lone surrogate (\\ud800-\\udfff) cannot be stored"


def lone_surrogate_at(value: Any, location: tuple[str | int, ...] = ()) -> tuple[str | int, ...] | None:
    """Where the first string (or object key) holding a lone surrogate is, or None."""
    if isinstance(value, str):
        return location if _has_lone_surrogate(value) else None
    if isinstance(value, dict):
        for key, item in value.items():
            if _has_lone_surrogate(key):
                return (*location, key)
            found = lone_surrogate_at(item, (*location, key))
            if found is not None:
                return found
    elif isinstance(value, list):
        for index, item in enumerate(value):
            found = lone_surrogate_at(item, (*location, index))
            if found is not None:
                return found
    return None


def _has_lone_surrogate(text: str) -> bool:
    # json.loads joins a valid pair into one code point, so any surrogate left is a lone one.
    return any("\ud800" <= char <= "\udfff" for char in text)


def _is_json(scope: Scope) -> bool:
    for name, value in scope.get("headers", ()):
        if name == b"content-type":
            media: bytes = value.split(b";", 1)[0].strip().lower()
            return media == b"application/json" or media.endswith(b"+json")
    return False


class RejectUnstorableText:
    """ASGI middleware: 422 for a JSON body holding a lone surrogate anywhere (see the module)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or scope["method"] not in _BODY_METHODS or not _is_json(scope):
            await self.app(scope, receive, send)
            return
        chunks: list[bytes] = []
        while True:
            message = await receive()
            if message["type"] != "http.request":  # the client went away: nothing to answer
                return
            chunks.append(message.get("body", b""))
            if not message.get("more_body", False):
                break
        body = b"".join(chunks)
        if b"\\ud" in body or b"\\uD" in body:
            try:
                location = lone_surrogate_at(json.loads(body), ("body",))
            except ValueError:
                location = None  # not JSON at all: the route's own 422 says so
            if location is not None:
                await _refuse(send, location)
                return

        replayed = False

        async def replay() -> Message:
            nonlocal replayed
            if replayed:
                return await receive()
            replayed = True
            return {"type": "http.request", "body": body, "more_body": False}

        await self.app(scope, replay, send)


async def _refuse(send: Send, location: tuple[str | int, ...]) -> None:
    # ensure_ascii: an object key in the location may itself be the bad text.
    detail = [{"type": "string_unicode", "loc": list(location), "msg": _MESSAGE}]
    payload = json.dumps({"detail": detail}, ensure_ascii=True).encode()
    await send(
        {
            "type": "http.response.start",
            "status": 422,
            "headers": [
                (b"content-type", b"application/json"),
                (b"content-length", str(len(payload)).encode()),
            ],
        }
    )
    await send({"type": "http.response.body", "body": payload})
