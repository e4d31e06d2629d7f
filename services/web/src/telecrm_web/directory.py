"""Whose extension rings: crm's ``People.ResolveExtension`` over gRPC, for the few ringing events
that name an extension but no employee (the gateway usually knows the employee from its routes).

No user rights are involved (an extension's employee is what the gateway asks too), so this is the
one gRPC call of the desktop. Answers are cached a minute; a short deadline keeps a slow crm from
holding up the events behind it, and an error answers None (no card rather than a late one).
"""

from __future__ import annotations

import logging
import time

import grpc

from telecrm.crm.v1 import people_pb2, people_pb2_grpc
from telecrm_common.grpc import channel as traced_channel

log = logging.getLogger(__name__)


class ExtensionDirectory:
    def __init__(self, target: str, *, deadline: float = 0.5, cache_ttl: float = 60.0) -> None:
        self._channel = traced_channel(target)
        self._stub = people_pb2_grpc.PeopleStub(self._channel)
        self._deadline = deadline
        self._ttl = cache_ttl
        self._cache: dict[str, tuple[str | None, float]] = {}

    async def employee_of(self, extension: str) -> str | None:
        """The active employee behind ``extension``, or None (nobody, inactive, or crm did not answer)."""
        now = time.monotonic()
        cached = self._cache.get(extension)
        if cached is not None and cached[1] > now:
            return cached[0]
        try:
            record = await self._stub.ResolveExtension(
                people_pb2.ResolveExtensionRequest(extension=extension), timeout=self._deadline
            )
        except grpc.aio.AioRpcError as exc:
            if exc.code() != grpc.StatusCode.NOT_FOUND:
                log.warning("crm did not resolve extension %s: %s", extension, exc.code().name)
                return None
            employee = None
        else:
            employee = record.employee_id if record.active and record.employee_id else None
        if len(self._cache) > 10_000:
            self._cache.clear()
        self._cache[extension] = (employee, now + self._ttl)
        return employee

    async def close(self) -> None:
        await self._channel.close()
