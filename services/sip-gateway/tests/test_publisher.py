"""The event publisher: order kept, nothing lost while the bus is away, a bounded buffer."""

from __future__ import annotations

import asyncio

from telecrm.events.v1 import call_events_pb2 as ev
from telecrm_gateway.publisher import EventPublisher


def event(n: int) -> ev.CallEvent:
    return ev.CallEvent(event_id=f"e{n}", call_id="c", sequence=n, offered=ev.CallOffered())


class FlakyBus:
    """Publishes fail while ``down`` is set, as when NATS restarts."""

    def __init__(self) -> None:
        self.down = False
        self.published: list[int] = []
        self.attempts = 0

    async def publish(self, e: ev.CallEvent) -> None:
        self.attempts += 1
        await asyncio.sleep(0)
        if self.down:
            raise ConnectionError("nats is down")
        self.published.append(e.sequence)


async def test_events_are_published_in_order() -> None:
    bus = FlakyBus()
    publisher = EventPublisher(bus.publish)
    task = asyncio.create_task(publisher.run())
    for n in range(1, 51):
        publisher.emit(event(n))
    assert await publisher.flush(2.0)
    assert bus.published == list(range(1, 51))
    publisher.close()
    await asyncio.wait_for(task, 1.0)


async def test_events_wait_in_order_while_the_bus_is_down() -> None:
    bus = FlakyBus()
    publisher = EventPublisher(bus.publish)
    task = asyncio.create_task(publisher.run())
    publisher.emit(event(1))
    assert await publisher.flush(1.0)
    bus.down = True
    for n in range(2, 6):
        publisher.emit(event(n))
    await asyncio.sleep(0.5)
    assert bus.published == [1]
    assert publisher.pending == 4
    assert not await publisher.flush(0.1)
    bus.down = False
    assert await publisher.flush(5.0)
    assert bus.published == [1, 2, 3, 4, 5]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)


async def test_a_full_buffer_drops_new_events_not_old_ones() -> None:
    bus = FlakyBus()
    bus.down = True
    publisher = EventPublisher(bus.publish, max_buffer=3)
    for n in range(1, 6):
        publisher.emit(event(n))
    assert publisher.pending == 3
    assert publisher.dropped == 2
    bus.down = False
    task = asyncio.create_task(publisher.run())
    assert await publisher.flush(2.0)
    assert bus.published == [1, 2, 3]
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
