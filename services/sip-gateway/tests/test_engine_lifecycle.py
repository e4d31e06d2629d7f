"""The pjsua2 Endpoint is a process singleton: engines started one after another in one process (a
failed start, then a good one) must each get a clean endpoint, never abort the process."""

from __future__ import annotations

import asyncio
import socket

import pytest

from telecrm_gateway.sip.engine import EngineConfig, SipEngine, SipEngineError
from tests.sipp.runner import free_port


def _config(port: int) -> EngineConfig:
    return EngineConfig(port=port, rtp_port=0, pjsip_log_level=1)


async def test_a_failed_start_then_a_good_one_in_the_same_process() -> None:
    loop = asyncio.get_running_loop()
    port = free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", port))
        for _ in range(3):  # each failure must release the endpoint completely
            failing = SipEngine(_config(port))
            with pytest.raises(SipEngineError, match="could not start"):
                await asyncio.to_thread(failing.start, loop, lambda fact: None)
            await asyncio.to_thread(failing.stop)

    for _ in range(2):
        engine = SipEngine(_config(free_port()))
        await asyncio.to_thread(engine.start, loop, lambda fact: None)
        assert engine.running
        await asyncio.to_thread(engine.stop)
        assert not engine.running
