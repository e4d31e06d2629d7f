"""The shared HTTP application: invalid input is a 422 naming the field, whatever the bytes."""

from __future__ import annotations

import httpx
from fastapi import APIRouter
from pydantic import BaseModel

from telecrm_common.app import http_app


class Body(BaseModel):
    name: str
    count: int = 0


def _app() -> httpx.AsyncClient:
    router = APIRouter()

    @router.post("/things")
    async def create(body: Body) -> dict[str, str]:
        return {"name": body.name}

    transport = httpx.ASGITransport(app=http_app("t", "", [router], {}), raise_app_exceptions=False)
    return httpx.AsyncClient(transport=transport, base_url="http://t")


async def test_a_lone_surrogate_in_a_refused_field_is_a_422_naming_it_not_a_500() -> None:
    async with _app() as client:
        # Valid JSON, but no UTF-8 text: "\ud800" alone is half of a surrogate pair. The error echoes
        # the input, which FastAPI's own handler could not encode (500).
        response = await client.post(
            "/things",
            content=b'{"name": "x", "count": "\\ud800"}',
            headers={"content-type": "application/json"},
        )
    assert response.status_code == 422
    (error,) = response.json()["detail"]
    assert error["loc"] == ["body", "count"]
    assert error["input"] == "\ud800"


async def test_ordinary_validation_errors_keep_fastapis_shape() -> None:
    async with _app() as client:
        response = await client.post("/things", json={"name": "Олена", "count": "many"})
        ok = await client.post("/things", json={"name": "Олена"})
    assert response.status_code == 422
    assert [e["loc"] for e in response.json()["detail"]] == [["body", "count"]]
    assert ok.json() == {"name": "Олена"}
