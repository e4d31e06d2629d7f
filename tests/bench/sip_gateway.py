"""Benchmark: SIP calls per second one gateway process answers with zero failed calls.

A real gateway process (pjsua2) bridges sipp callers to a sipp agent phone that answers at once; each
call is INVITE -> 180 -> 200 -> ACK -> BYE from the caller straight away (no talk time), so the figure is
call setup and teardown through the B2BUA. The rate climbs step by step; a step passes when every one of
its calls succeeded. The highest passing rate is reported, for each per-process call limit.
"""

from __future__ import annotations

import statistics
import sys
import tempfile
from pathlib import Path

from telecrm_devstack.processes import ManagedProcess, NatsServer, free_port, free_sip_port, wait_http_ok
from tests.bench.report import Row
from tests.sipp.runner import run_uac, start_uas

RATES = (2, 5, 10, 15, 20, 30, 40, 60)
STEP_SECONDS = 5


def _highest_clean_rate(sip_port: int) -> tuple[int, int, int]:
    """(highest rate with zero failures, calls placed at that rate, failures at the next rate)."""
    best, placed, failures_above = 0, 0, 0
    for rate in RATES:
        calls = rate * STEP_SECONDS
        result = run_uac(
            "uac_answered.xml",
            "127.0.0.1",
            sip_port,
            service="101",
            duration_ms=0,
            rate=rate,
            calls=calls,
            timeout=STEP_SECONDS * 6 + 30,
            recv_timeout_ms=10_000,
        )
        if result.ok and result.successful_calls == calls:
            best, placed = rate, calls
            continue
        failures_above = result.failed_calls or calls - result.successful_calls
        break
    return best, placed, failures_above


def _gateway(root: Path, nats_url: str, phone_port: int, max_calls: int) -> tuple[ManagedProcess, int, int]:
    routes = root / "routes.toml"
    routes.write_text(f'[extensions."101"]\ncontact = "sip:101@127.0.0.1:{phone_port}"\n')
    http, sip = free_port(), free_sip_port()
    env = {
        "GATEWAY_NATS_URL": nats_url,
        "GATEWAY_HTTP_PORT": str(http),
        "GATEWAY_GRPC_PORT": str(free_port()),
        "GATEWAY_SIP_PORT": str(sip),
        "GATEWAY_ROUTES_FILE": str(routes),
        "GATEWAY_MAX_CALLS": str(max_calls),
        "GATEWAY_LOG_LEVEL": "WARNING",
        "GATEWAY_PJSIP_LOG_LEVEL": "1",
    }
    log_path = root / f"gw-{sip}.log"
    gateway = ManagedProcess(
        "sip-gateway", [sys.executable, "-m", "telecrm_gateway"], env=env, log_path=log_path
    )
    return gateway.start(), http, sip


def run(repeats: int = 3) -> list[Row]:
    """A fresh gateway process per run: an overloaded one may not survive (see the crash column)."""
    rows: list[Row] = []
    for max_calls in (1, 2):
        results: list[tuple[int, int, int]] = []
        crashes = 0
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            nats = NatsServer(data_dir=root / "nats", log_path=root / "nats.log").start()
            phone = start_uas("uas_answer.xml", duration_ms=0, calls=100_000)
            try:
                for _ in range(repeats):
                    gateway, http, sip = _gateway(root, nats.url, phone.port, max_calls)
                    try:
                        wait_http_ok(f"http://127.0.0.1:{http}/readyz", 60, gateway)
                        results.append(_highest_clean_rate(sip))
                        crashes += not gateway.running
                    finally:
                        gateway.stop()
            finally:
                phone.stop()
                nats.stop()
        rates = [r[0] for r in results]
        rows.append(
            Row(
                f"SIP calls/s answered with 0 failures (1 gateway process, max {max_calls} call(s))",
                f"{statistics.median(rates):g}",
                f"runs: {rates}; {STEP_SECONDS} s per step of {list(RATES)} cps; failures at the next "
                f"step: {[r[2] for r in results]}; gateway died in the overload step in {crashes} of "
                f"{repeats} runs",
            )
        )
    return rows
