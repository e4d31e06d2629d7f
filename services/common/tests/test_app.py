"""The shared HTTP application: invalid input is a 422 naming the field, whatever the bytes."""

from __future__ import annotations

import httpx
from fastapi import APIRouter, Request
from pydantic import BaseModel

from telecrm_common.app import http_app


class Body(BaseModel):
    name: str
    count: int = 0
    tags: list[str] = []
    extra: dict[str, str] = {}


def _app() -> httpx.AsyncClient:
    router = APIRouter()

    @router.post("/things")
    async def create(body: Body) -> dict[str, str]:
        return {"name": body.name}

    @router.post("/raw")
    async def raw(request: Request) -> dict[str, int]:
        return {"bytes": len(await request.body())}

    transport = httpx.ASGITransport(app=http_app("t", "", [router], {}), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://t")


JSON = {"content-type": "application/json"}


async def test_a_lone_surrogate_in_a_refused_field_is_a_422_naming_it_not_a_500() -> None:
    async with _app() as client:
        # Valid JSON, but no UTF-8 text: "\ud800" alone is half of a surrogate pair. FastAPI's own
        # handler echoed it and could not encode it (500).
        response = await client.post("/things", content=b'{"name": "x", "count": "\\ud800"}', headers=JSON)
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "count"]


async def test_text_that_cannot_be_stored_is_refused_wherever_it_is() -> None:
    """A lone surrogate passes every schema (it is a valid str) and then failed the database write
    with a 500; it is refused before the route runs, naming where it is."""
    cases = {
        b'{"name": "a\\ud800b"}': ["body", "name"],
        b'{"name": "x", "tags": ["ok", "\\uDC00"]}': ["body", "tags", 1],
        b'{"name": "x", "extra": {"k": "\\ud83d"}}': ["body", "extra", "k"],  # half an emoji
        b'{"name": "x", "extra": {"\\udfff": "v"}}': ["body", "extra", "\udfff"],  # in a key
    }
    async with _app() as client:
        for body, location in cases.items():
            response = await client.post("/things", content=body, headers=JSON)
            assert response.status_code == 422, body
            (error,) = response.json()["detail"]
            assert (error["loc"], error["type"]) == (location, "string_unicode"), body
            assert "lone surrogate" in error["msg"]


async def test_valid_text_and_other_bodies_pass_untouched() -> None:
    async with _app() as client:
        emoji = await client.post("/things", content=b'{"name": "\\ud83d\\ude00"}', headers=JSON)
        assert (emoji.status_code, emoji.json()) == (200, {"name": "\U0001f600"})  # a whole pair
        escaped = await client.post("/things", content=b'{"name": "\\\\ud800"}', headers=JSON)
        assert escaped.json() == {"name": "\\ud800"}  # a backslash, then the letters: just text
        broken = await client.post("/things", content=b'{"name": "\\ud800', headers=JSON)
        assert broken.status_code == 422  # not JSON at all: FastAPI's own error
        assert broken.json()["detail"][0]["type"] == "json_invalid"
        plain = await client.post("/raw", content=b"\\ud800", headers={"content-type": "text/plain"})
        assert plain.json() == {"bytes": 6}  # not JSON: not ours to judge
        big = await client.post("/raw", json={"blob": "x" * 1_000_000})
        assert big.json() == {"bytes": len(b'{"blob":"') + 1_000_000 + len(b'"}')}


async def test_ordinary_validation_errors_keep_fastapis_shape() -> None:
    async with _app() as client:
        response = await client.post("/things", json={"name": "Олена", "count": "many"})
        ok = await client.post("/things", json={"name": "Олена"})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "count"]]
    assert ok.json() == {"name": "Олена"}
