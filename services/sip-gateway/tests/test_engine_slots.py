"""pjsua holds 4 call legs. An agent's leg placed while the slots are still held by legs that are ending
waits for one to free instead of failing the caller's call; when none frees in time the leg ends with
503 (the caller is asked to try again, which Kamailio does on another worker), never with 502."""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import AsyncIterator

import pytest

from telecrm_gateway.sip.engine import SLOT_WAIT, AnyFact, EngineConfig, SipEngine
from telecrm_gateway.sip.facts import LegEnded, LegProgress
from tests.sipp.runner import Sipp, free_port, start_uas


class Facts:
    def __init__(self) -> None:
        self.items: list[AnyFact] = []
        self.changed = asyncio.Event()

    def __call__(self, fact: AnyFact) -> None:
        self.items.append(fact)
        self.changed.set()

    async def first(self, kind: type, leg_id: str, timeout: float) -> AnyFact:
        deadline = time.monotonic() + timeout
        while True:
            for fact in self.items:
                if isinstance(fact, kind) and getattr(fact, "leg_id", None) == leg_id:
                    return fact
            left = deadline - time.monotonic()
            if left <= 0:
                raise AssertionError(f"no {kind.__name__} for {leg_id} in {timeout} s: {self.items}")
            self.changed.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.changed.wait(), left)


@pytest.fixture
async def phone() -> AsyncIterator[Sipp]:
    with start_uas("uas_ring_forever.xml", calls=10) as uas:
        yield uas


@pytest.fixture
async def engine() -> AsyncIterator[tuple[SipEngine, Facts]]:
    facts = Facts()
    engine = SipEngine(EngineConfig(port=free_port(), rtp_port=0, pjsip_log_level=1, max_calls=2, tcp=False))
    await asyncio.to_thread(engine.start, asyncio.get_running_loop(), facts)
    try:
        yield engine, facts
    finally:
        await asyncio.to_thread(engine.stop)


async def test_a_leg_waits_for_a_slot_that_an_ending_leg_frees_and_gets_503_when_none_does(
    phone: Sipp, engine: tuple[SipEngine, Facts]
) -> None:
    sip, facts = engine
    uri = f"sip:201@127.0.0.1:{phone.port}"
    # Two calls of two ringing legs each: all four slots taken.
    for leg in ("a1", "b1"):
        await asyncio.wrap_future(sip.originate(leg, uri))
        await facts.first(LegProgress, leg, 10)
    for leg, group in (("a2", "a1"), ("b2", "b1")):
        await asyncio.wrap_future(sip.dial(leg, group, uri))
        await facts.first(LegProgress, leg, 10)

    # A fifth leg finds no slot: it is not refused at once...
    assert await asyncio.wrap_future(sip.dial("b3", "b1", uri)) == ""
    await asyncio.sleep(0.3)
    assert not [f for f in facts.items if getattr(f, "leg_id", "") == "b3"]
    # ...and rings as soon as a cancelled leg has let go of its slot.
    await asyncio.wrap_future(sip.hangup("a2"))
    await facts.first(LegEnded, "a2", 10)
    progress = await facts.first(LegProgress, "b3", 10)
    assert isinstance(progress, LegProgress)
    assert progress.status == 180

    # With every slot held and nothing ending, the wait is bounded and ends in 503.
    started = time.monotonic()
    await asyncio.wrap_future(sip.dial("b4", "b1", uri))
    ended = await facts.first(LegEnded, "b4", SLOT_WAIT + 5)
    assert isinstance(ended, LegEnded)
    assert ended.status == 503
    assert not ended.connected
    assert time.monotonic() - started >= SLOT_WAIT - 0.5

    # A leg hung up while it waits is simply gone (nothing was sent for it).
    await asyncio.wrap_future(sip.dial("b5", "b1", uri))
    await asyncio.wrap_future(sip.hangup("b5"))
    gone = await facts.first(LegEnded, "b5", 5)
    assert isinstance(gone, LegEnded)
    assert gone.status == 487
