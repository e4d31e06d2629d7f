"""Who is calling: the caller's card from crm (``telecrm.crm.v1.Contacts/LookupNumber``), cached.

The gateway asks while a phone rings (the name on the agent's display) and when a provider PBX asks
whom to route a call to (the responsible employee's extension). A look-up must never hold a call up:

- every request has a short deadline (``deadline``, 0.3 s by default); a timeout, an unreachable crm or
  any other error answers None (logged once when crm starts failing, once when it answers again);
- answers are cached: a contact for ``cache_ttl`` seconds, "nobody has this number" for
  ``negative_ttl`` (errors are not cached: the next call asks again), at most ``cache_size`` numbers,
  least recently used first out;
- concurrent look-ups of one number share one request (a ring group rings five phones: one request);
- an ambiguous number (several contacts, none ranks first) answers None: no name beats a wrong name.

A ``None`` or empty target disables the look-up: every call answers None without I/O.
"""

from __future__ import annotations

import asyncio
import functools
import logging
import re
import time
from collections import OrderedDict
from dataclasses import dataclass

import grpc

from telecrm.crm.v1 import contacts_pb2, contacts_pb2_grpc
from telecrm_common.grpc import channel as traced_channel

log = logging.getLogger(__name__)

_FORMATTING = re.compile(r"[\s\-().]")
_DIGIT = re.compile(r"\d")
MAX_NUMBER_LENGTH = 200  # crm refuses longer numbers (INVALID_ARGUMENT)


@dataclass(frozen=True, slots=True)
class CallerCard:
    """What the gateway needs of the contact behind a number."""

    contact_id: str
    name: str  # the contact's display name ("Ivan Petrov", or the company name)
    company: str  # "" when none
    responsible_employee_id: str
    responsible_extension: str


@dataclass(slots=True)
class _Entry:
    card: CallerCard | None
    expires_at: float


def cache_key(number: str) -> str:
    """The number without the spaces, dashes, dots and brackets people write in it."""
    return _FORMATTING.sub("", number.strip())


def _card(response: contacts_pb2.LookupNumberResponse) -> CallerCard | None:
    if response.match not in (contacts_pb2.MATCH_KIND_EXACT, contacts_pb2.MATCH_KIND_SUFFIX):
        return None
    if not response.HasField("contact") or not response.contact.contact_id:
        return None
    contact = response.contact
    return CallerCard(
        contact_id=contact.contact_id,
        name=contact.name or contact.company_name,
        company=contact.company_name,
        responsible_employee_id=contact.responsible_employee_id,
        responsible_extension=contact.responsible_extension,
    )


class CrmLookup:
    """The caller's card by number, from crm's gRPC Contacts service (see the module's docstring)."""

    def __init__(
        self,
        target: str | None,
        *,
        deadline: float = 0.3,
        cache_ttl: float = 60.0,
        negative_ttl: float = 10.0,
        cache_size: int = 10_000,
    ) -> None:
        self.target = target or None
        self.deadline = deadline
        self.cache_ttl = cache_ttl
        self.negative_ttl = negative_ttl
        self.cache_size = max(1, cache_size)
        self._cache: OrderedDict[str, _Entry] = OrderedDict()
        self._inflight: dict[str, asyncio.Task[CallerCard | None]] = {}
        self._channel: grpc.aio.Channel | None = None
        self._stub: contacts_pb2_grpc.ContactsStub | None = None
        self._failing = False
        self._closed = False
        # Counters, for tests, benchmarks and a curious operator.
        self.requests = 0
        self.hits = 0
        self.errors = 0

    @property
    def enabled(self) -> bool:
        return self.target is not None and not self._closed

    def cached(self, number: str) -> CallerCard | None:
        """Only the cache, no I/O: the card when a fresh answer for this number is cached."""
        entry = self._fresh(cache_key(number))
        return entry.card if entry is not None else None

    async def lookup(self, number: str) -> CallerCard | None:
        """Never raises: None for unknown numbers, timeouts and errors (logged). Cached."""
        if not self.enabled:
            return None
        key = cache_key(number)
        if not _DIGIT.search(key) or len(key) > MAX_NUMBER_LENGTH:
            return None  # anonymous, a name, garbage: nothing crm could match
        entry = self._fresh(key)
        if entry is not None:
            self.hits += 1
            return entry.card
        task = self._inflight.get(key)
        if task is None:
            task = asyncio.get_running_loop().create_task(self._ask(key), name=f"crm-lookup {key}")
            self._inflight[key] = task
            task.add_done_callback(functools.partial(self._settled, key))
        # shield: one caller giving up (its call ended) does not cancel the others' answer.
        return await asyncio.shield(task)

    async def close(self) -> None:
        """Cancel the look-ups in flight and close the channel; later look-ups answer None."""
        self._closed = True
        tasks = list(self._inflight.values())
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        if self._channel is not None:
            await self._channel.close()
            self._channel = self._stub = None

    # --- inside ------------------------------------------------------------------------------------

    def _fresh(self, key: str) -> _Entry | None:
        entry = self._cache.get(key)
        if entry is None:
            return None
        if entry.expires_at <= time.monotonic():
            del self._cache[key]
            return None
        self._cache.move_to_end(key)
        return entry

    def _remember(self, key: str, card: CallerCard | None, ttl: float) -> None:
        if ttl <= 0:
            return
        self._cache[key] = _Entry(card, time.monotonic() + ttl)
        self._cache.move_to_end(key)
        while len(self._cache) > self.cache_size:
            self._cache.popitem(last=False)

    def _settled(self, key: str, task: asyncio.Task[CallerCard | None]) -> None:
        if self._inflight.get(key) is task:
            del self._inflight[key]

    def _client(self) -> contacts_pb2_grpc.ContactsStub:
        if self._stub is None:
            assert self.target is not None
            self._channel = traced_channel(self.target)
            self._stub = contacts_pb2_grpc.ContactsStub(self._channel)
        return self._stub

    async def _ask(self, key: str) -> CallerCard | None:
        self.requests += 1
        request = contacts_pb2.LookupNumberRequest(number=key, max_candidates=1)
        try:
            response = await self._client().LookupNumber(request, timeout=self.deadline)
        except asyncio.CancelledError:
            raise
        except grpc.aio.AioRpcError as exc:
            self._failed(key, f"{exc.code().name}: {exc.details()}")
            return None
        except Exception as exc:  # never let a look-up break a call
            self._failed(key, repr(exc))
            return None
        if self._failing:
            self._failing = False
            log.info("crm number look-up answers again", extra={"crm_target": self.target})
        card = _card(response)
        if card is None:
            self._remember(key, None, self.negative_ttl)
        elif response.incomplete and card.responsible_employee_id and not card.responsible_extension:
            # crm left the responsible employee out to answer in time: ask again soon for it.
            self._remember(key, card, min(self.cache_ttl, self.negative_ttl))
        else:
            self._remember(key, card, self.cache_ttl)
        return card

    def _failed(self, key: str, why: str) -> None:
        self.errors += 1
        if not self._failing:
            self._failing = True
            log.warning(
                "crm number look-up failed (%s); calls go on without caller names until it answers",
                why,
                extra={"crm_target": self.target},
            )
        else:
            log.debug("crm number look-up of %s failed: %s", key, why)


__all__ = ["CallerCard", "CrmLookup", "cache_key"]
