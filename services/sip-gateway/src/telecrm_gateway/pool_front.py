"""The pool's front door: one REST and one gRPC address for the gateway's API, whichever worker holds
the call.

SIP reaches the workers through Kamailio; everything else (the desktop's click-to-call and call buttons,
other services' gRPC ``CallControl``, the providers' webhooks) reaches the pool supervisor, which passes
each request on, as it is, to the worker it belongs to:

- a request about a call (``/calls/{call_id}/...``, gRPC ``Hangup``, ``Hold``, ``Transfer``...) goes to
  the worker whose events carry that call id (the supervisor follows ``tel.call.>``; a click-to-call it
  placed itself is known from the answer, before its first event arrives). No live call: 404 /
  NOT_FOUND, as a single gateway answers;
- click-to-call (``POST /calls/dial``, gRPC ``Dial``) goes to a ready worker with room (fewest live
  calls first). A worker that answers 503 / RESOURCE_EXHAUSTED (full, draining) is skipped for the next
  one; the same idempotency key within its window goes to the worker that took it first, so repeated
  clicks stay one call;
- ``GET /calls/active`` asks every ready worker and joins their answers;
- the providers' API (``/provider/...``) goes to one worker (the first ready one): their events are
  idempotent without memory, and one worker keeps the small memory of live provider calls whole;
- the admin API (``/admin/...``: routes and ring groups, trunk settings) goes to that worker too: the
  workers share one routes file and each follows its changes.

The user's ``Authorization`` (and every other end-to-end header or gRPC metadata) is passed on: each
worker checks the token itself. A worker that does not answer gives 502 / UNAVAILABLE.
"""

from __future__ import annotations

import asyncio
import json
import logging
import time
from collections import OrderedDict
from collections.abc import Awaitable, Callable, Sequence
from typing import TYPE_CHECKING

import grpc
import httpx
from fastapi import APIRouter, Request, Response
from fastapi.responses import JSONResponse

from telecrm.gateway.v1 import gateway_pb2

if TYPE_CHECKING:
    from telecrm_gateway.pool import PoolSupervisor, Worker

log = logging.getLogger(__name__)

IDEMPOTENCY_WINDOW = 60.0  # seconds a dial's key keeps pointing at its worker (the gateway's is 10)
MAX_REMEMBERED = 10_000
_HOP_BY_HOP = {
    "host",
    "connection",
    "keep-alive",
    "transfer-encoding",
    "te",
    "trailer",
    "upgrade",
    "proxy-authorization",
    "proxy-authenticate",
    "content-length",
}
GRPC_SERVICE = gateway_pb2.DESCRIPTOR.services_by_name["CallControl"].full_name


class _Expiring:
    """A bounded map whose entries are forgotten after ``ttl`` seconds."""

    def __init__(self, ttl: float) -> None:
        self.ttl = ttl
        self._items: OrderedDict[str, tuple[str, float]] = OrderedDict()

    def get(self, key: str) -> str | None:
        item = self._items.get(key)
        if item is None or item[1] < time.monotonic():
            return None
        return item[0]

    def put(self, key: str, value: str) -> None:
        self._items[key] = (value, time.monotonic() + self.ttl)
        self._items.move_to_end(key)
        while len(self._items) > MAX_REMEMBERED:
            self._items.popitem(last=False)


class PoolFront:
    """Chooses the worker of each request and passes the request on (REST and gRPC)."""

    def __init__(self, supervisor: PoolSupervisor, *, timeout: float = 15.0) -> None:
        self.supervisor = supervisor
        self.timeout = timeout
        self._http = httpx.AsyncClient(timeout=timeout, limits=httpx.Limits(max_connections=200))
        self._channels: dict[str, grpc.aio.Channel] = {}
        self._placed = _Expiring(3600.0)  # call id -> worker, for calls placed through here
        self._keys = _Expiring(IDEMPOTENCY_WINDOW)  # idempotency key -> worker

    async def close(self) -> None:
        await self._http.aclose()
        for channel in self._channels.values():
            await channel.close()
        self._channels.clear()

    # --- choosing

    def ready_workers(self) -> list[Worker]:
        return [w for w in self.supervisor.workers if w.state == "ready"]

    def _by_name(self, name: str | None) -> Worker | None:
        return next((w for w in self.ready_workers() if w.spec.name == name), None) if name else None

    def worker_of_call(self, call_id: str) -> Worker | None:
        source = self.supervisor.calls.source_of(call_id)
        if source is not None:
            return next((w for w in self.ready_workers() if w.spec.source == source), None)
        return self._by_name(self._placed.get(call_id))

    def dial_candidates(self, key: str) -> list[Worker]:
        """Workers to try for a click-to-call, in order: the one that took this key, else the least busy
        with room first (the others after them: the events may lag behind a call that just ended)."""
        earlier = self._by_name(self._keys.get(key)) if key else None
        if earlier is not None:
            return [earlier]
        calls, room = self.supervisor.calls, self.supervisor.settings.max_calls
        ready = sorted(self.ready_workers(), key=lambda w: (calls.count(w.spec.source), w.spec.index))
        return [w for w in ready if calls.count(w.spec.source) < room] + [
            w for w in ready if calls.count(w.spec.source) >= room
        ]

    def any_worker(self) -> Worker | None:
        ready = self.ready_workers()
        return ready[0] if ready else None

    def placed(self, worker: Worker, call_id: str, key: str) -> None:
        if call_id:
            self._placed.put(call_id, worker.spec.name)
        if key:
            self._keys.put(key, worker.spec.name)

    # --- REST

    def _url(self, worker: Worker, path: str, query: str) -> str:
        host = self.supervisor.settings.http_host
        host = "127.0.0.1" if host in ("0.0.0.0", "") else host
        return f"http://{host}:{worker.spec.http_port}{path}" + (f"?{query}" if query else "")

    async def forward(self, worker: Worker, request: Request, body: bytes) -> Response:
        headers = {k: v for k, v in request.headers.items() if k.lower() not in _HOP_BY_HOP}
        try:
            answer = await self._http.request(
                request.method,
                self._url(worker, request.url.path, request.url.query),
                headers=headers,
                content=body,
            )
        except httpx.HTTPError as exc:
            log.warning("worker %s did not answer %s: %s", worker.spec.name, request.url.path, exc)
            return JSONResponse(
                {"detail": f"gateway worker {worker.spec.name} did not answer"}, status_code=502
            )
        passed = {k: v for k, v in answer.headers.items() if k.lower() not in _HOP_BY_HOP}
        passed.pop("content-encoding", None)  # httpx gave us the decoded body
        return Response(answer.content, status_code=answer.status_code, headers=passed)

    # --- gRPC

    def _channel(self, worker: Worker) -> grpc.aio.Channel:
        channel = self._channels.get(worker.spec.name)
        if channel is None:
            host = self.supervisor.settings.grpc_host
            host = "127.0.0.1" if host in ("0.0.0.0", "") else host
            channel = self._channels[worker.spec.name] = grpc.aio.insecure_channel(
                f"{host}:{worker.spec.grpc_port}"
            )
        return channel

    async def grpc_call(
        self, worker: Worker, method: str, request: bytes, context: grpc.aio.ServicerContext
    ) -> bytes:
        """The worker's answer to the raw request; its error (or UNAVAILABLE) raised as AioRpcError."""
        metadata = tuple(
            (key, value)
            for key, value in context.invocation_metadata() or ()
            if not key.startswith(":") and key != "user-agent"
        )
        remaining = context.time_remaining()
        timeout = min(remaining, self.timeout) if remaining is not None else self.timeout
        answer: bytes = await self._channel(worker).unary_unary(method)(
            request, metadata=metadata, timeout=timeout
        )
        return answer


def front_router(front: PoolFront) -> APIRouter:
    router = APIRouter(tags=["calls"])

    @router.post("/calls/dial", summary="Click-to-call, placed by a worker with room")
    async def dial(request: Request) -> Response:
        body = await request.body()
        key = request.headers.get("idempotency-key", "")
        if not key:
            try:
                parsed = await request.json()
                key = str(parsed.get("idempotency_key") or "") if isinstance(parsed, dict) else ""
            except ValueError:
                key = ""
        candidates = front.dial_candidates(key)
        if not candidates:
            return _no_worker()
        answer: Response = _no_worker()
        for worker in candidates:
            answer = await front.forward(worker, request, body)
            if answer.status_code != 503:
                break
        if answer.status_code in (200, 201):
            call_id = _json_field(answer.body, "call_id")
            front.placed(worker, call_id, key)
        return answer

    @router.get("/calls/active", summary="Calls in progress on every worker of the pool")
    async def active(request: Request) -> Response:
        workers = front.ready_workers()
        answers = await asyncio.gather(*(front.forward(w, request, b"") for w in workers))
        for answer in answers:
            if answer.status_code != 200:
                return answer  # 401/403 are the same on every worker: the first one tells
        bodies = [json.loads(bytes(answer.body)) for answer in answers]
        items = [item for body in bodies for item in body.get("items", [])]
        accepting = any(body.get("accepting") for body in bodies)
        return JSONResponse(
            {
                "items": items,
                "accepting": accepting,
                "max_calls": front.supervisor.settings.max_calls * len(workers),
            }
        )

    @router.api_route(
        "/calls/{call_id}/{action:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        summary="Control a live call (passed to the worker that holds it)",
    )
    async def control(call_id: str, action: str, request: Request) -> Response:
        worker = front.worker_of_call(call_id)
        if worker is None:
            return JSONResponse({"detail": f"no live call with id {call_id}"}, status_code=404)
        return await front.forward(worker, request, await request.body())

    @router.api_route(
        "/provider/{rest:path}",
        methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
        summary="The telephony API for providers (passed to one worker)",
        tags=["provider"],
    )
    async def provider(rest: str, request: Request) -> Response:
        return await to_any_worker(request)

    @router.api_route(
        "/admin/{rest:path}",
        methods=["GET", "PUT", "POST", "PATCH", "DELETE"],
        summary="The gateway's admin API (routes, trunk): every worker reads the same routes file",
        tags=["admin"],
    )
    async def admin(rest: str, request: Request) -> Response:
        return await to_any_worker(request)

    async def to_any_worker(request: Request) -> Response:
        """Requests any worker answers alike (they share the routes file and the bus): the first ready."""
        worker = front.any_worker()
        if worker is None:
            return _no_worker()
        return await front.forward(worker, request, await request.body())

    return router


def _no_worker() -> Response:
    return JSONResponse(
        {"detail": "no gateway worker is ready"}, status_code=503, headers={"Retry-After": "5"}
    )


def _json_field(body: bytes | memoryview, name: str) -> str:
    try:
        value = json.loads(bytes(body)).get(name)
    except (ValueError, AttributeError):
        return ""
    return str(value) if value else ""


class _Handler(grpc.GenericRpcHandler):  # type: ignore[misc]
    """``CallControl``'s methods with raw bytes in and out: parsed only to find the worker."""

    def __init__(self, front: PoolFront) -> None:
        self.front = front

    def service(self, handler_call_details: grpc.HandlerCallDetails) -> grpc.RpcMethodHandler | None:
        method: str = handler_call_details.method
        service, _, name = method.strip("/").partition("/")
        if service != GRPC_SERVICE:
            return None
        behaviour = self._dial(method) if name == "Dial" else self._control(method)
        return grpc.unary_unary_rpc_method_handler(behaviour)

    def _dial(self, method: str) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
        async def dial(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            key = gateway_pb2.DialRequest.FromString(request).idempotency_key
            candidates = self.front.dial_candidates(key)
            if not candidates:
                await context.abort(grpc.StatusCode.UNAVAILABLE, "no gateway worker is ready")
            for index, worker in enumerate(candidates):
                try:
                    answer = await self.front.grpc_call(worker, method, request, context)
                except grpc.aio.AioRpcError as exc:
                    full = exc.code() == grpc.StatusCode.RESOURCE_EXHAUSTED
                    if full and index + 1 < len(candidates):
                        continue  # this worker is full: the next one
                    await context.abort(exc.code(), exc.details() or "")
                    raise AssertionError("abort returned") from None
                self.front.placed(worker, gateway_pb2.DialResponse.FromString(answer).call_id, key)
                return answer
            raise AssertionError("unreachable: the last candidate answers or aborts")

        return dial

    def _control(self, method: str) -> Callable[[bytes, grpc.aio.ServicerContext], Awaitable[bytes]]:
        async def control(request: bytes, context: grpc.aio.ServicerContext) -> bytes:
            call_id = _call_id_of(request)
            if not call_id:
                await context.abort(grpc.StatusCode.INVALID_ARGUMENT, "call_id is required")
            worker = self.front.worker_of_call(call_id)
            if worker is None:
                await context.abort(grpc.StatusCode.NOT_FOUND, f"no live call with id {call_id}")
                raise AssertionError("abort returned")
            try:
                return await self.front.grpc_call(worker, method, request, context)
            except grpc.aio.AioRpcError as exc:
                await context.abort(exc.code(), exc.details() or "")
                raise AssertionError("abort returned") from None

        return control


def _call_id_of(request: bytes) -> str:
    """Every control request of ``CallControl`` has ``string call_id = 1``."""
    try:
        return gateway_pb2.HangupRequest.FromString(request).call_id
    except Exception:  # not a message of ours: no call id
        return ""


def add_front_to_server(server: grpc.aio.Server, front: PoolFront) -> None:
    server.add_generic_rpc_handlers((_Handler(front),))


__all__: Sequence[str] = ["GRPC_SERVICE", "PoolFront", "add_front_to_server", "front_router"]
