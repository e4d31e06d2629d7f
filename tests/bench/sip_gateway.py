"""Benchmark: what the SIP gateway pool holds on this machine, behind Kamailio.

sipp caller -> Kamailio (dispatcher, call load) -> pool of pjsua2 workers (B2BUA, audio bridged) -> sipp
agent phone answering after a 200 ms ring. One pool per per-worker call limit (GATEWAY_MAX_CALLS 1 and
2), sized for ``calls`` concurrent calls (one pjsua2 process holds at most 2 bridged calls):

- held: calls start at 10 a second up to ``calls`` at once, each talking long enough that all of them are
  up together for ``hold`` seconds; the run passes when every call succeeded (answered, BYE answered).
  CPU is read from /proc (utime + stime of the workers, Kamailio's processes and the supervisor) while
  all calls are up, and at rest before: % of one core, and per call above the idle pool;
- setup rate: calls of 1 s talk at 20, 30, 40, 60 a second for ``step`` seconds each; the highest rate
  with zero failed calls, then run again to confirm;
- memory: RSS and PSS (shared pages counted once) per worker, and the whole pool per call it can hold.

Rows give medians over ``repeats`` held runs. sipp (the load) runs on the same 2 cores: the figures are
what the machine does with the load generator beside it.
"""

from __future__ import annotations

import os
import re
import statistics
import tempfile
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

from telecrm_devstack.processes import NatsServer
from telecrm_gateway.pool_testing import PoolProcess
from tests.bench.report import Row
from tests.sipp.runner import Sipp, SippResult, start_uas

RATES = (20, 30, 40, 60)
RAMP_RATE = 10  # new calls a second while filling up to the held concurrency
RATE_TALK_MS = 1000
RING_MS = 200  # the agent's phone rings this long before it answers
TICKS = os.sysconf("SC_CLK_TCK")


@dataclass
class Held:
    ok: bool
    calls: int
    failed: int
    busy_cores: float  # % of one core used by the pool while every call is up
    idle_cores: float  # % of one core used by the idle pool


def _ticks(pids: Sequence[int]) -> int:
    total = 0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except (OSError, IndexError):
            continue
        total += int(fields[11]) + int(fields[12])  # utime, stime
    return total


def _memory_kb(pid: int) -> tuple[int, int]:
    """(RSS, PSS) of one process in kB."""
    rss = pss = 0
    try:
        for line in Path(f"/proc/{pid}/smaps_rollup").read_text().splitlines():
            if line.startswith("Rss:"):
                rss = int(line.split()[1])
            elif line.startswith("Pss:"):
                pss = int(line.split()[1])
    except OSError:
        pass
    return rss, pss


def _pool_pids(pool: PoolProcess) -> list[int]:
    supervisor = [pool.process.pid] if pool.process is not None else []
    return supervisor + pool.worker_pids() + pool.kamailio_pids()


def _cpu_percent(pids: Callable[[], list[int]], seconds: float) -> float:
    watched = pids()
    before, start = _ticks(watched), time.monotonic()
    time.sleep(seconds)
    return 100.0 * (_ticks(watched) - before) / TICKS / (time.monotonic() - start)


def _held(pool: PoolProcess, calls: int, hold: float, say: Callable[[str], None]) -> Held:
    """``calls`` at once for ``hold`` seconds; CPU while they are all up."""
    idle = _cpu_percent(lambda: _pool_pids(pool), 5)
    ramp = calls / RAMP_RATE
    talk_ms = int((ramp + hold + 4) * 1000)
    caller = Sipp(
        "uac_answered.xml",
        remote=f"127.0.0.1:{pool.sip_port}",
        service="101",
        duration_ms=talk_ms,
        rate=RAMP_RATE,
        calls=calls,
        max_concurrent=calls,
        recv_timeout_ms=30_000,
    ).start()
    deadline = time.monotonic() + ramp + 30
    while time.monotonic() < deadline and caller.running:
        if sum(w["live_calls"] for w in pool.status()["workers"]) >= calls:
            break
        time.sleep(0.2)
    busy = _cpu_percent(lambda: _pool_pids(pool), max(hold - 2, 1))
    result = caller.wait(talk_ms / 1000 + ramp + 60)
    failed = result.failed_calls or calls - result.successful_calls
    say(f"  held {calls}: {result.successful_calls} ok, {failed} failed; CPU {busy:.0f}% (idle {idle:.0f}%)")
    return Held(result.ok and failed == 0, calls, failed, busy, idle)


def _why_failed(result: SippResult) -> str:
    """The kinds of failure in a sipp run's error trace, most frequent first ("received 503 x3")."""
    reasons: Counter[str] = Counter()
    for line in result.errors.splitlines():
        unexpected = re.search(r"while expecting '([^']+)'.*?received '(\S+ \S+)", line)
        if unexpected:
            reasons[f"expected {unexpected[1]}, got {unexpected[2].removeprefix('SIP/2.0 ')}"] += 1
        elif "timeout" in line.lower() or "timed out" in line.lower():
            reasons["timeout"] += 1
    return ", ".join(f"{what} x{n}" for what, n in reasons.most_common(3)) or "no reason traced"


def _rate_step(pool: PoolProcess, rate: int, seconds: float) -> tuple[bool, int, int, str]:
    calls = int(rate * seconds)
    caller = Sipp(
        "uac_answered.xml",
        remote=f"127.0.0.1:{pool.sip_port}",
        service="101",
        duration_ms=RATE_TALK_MS,
        rate=rate,
        calls=calls,
        recv_timeout_ms=10_000,
    ).start()
    result = caller.wait(seconds * 3 + 60)
    failed = result.failed_calls or calls - result.successful_calls
    ok = result.ok and failed == 0
    return ok, calls, failed, "" if ok else _why_failed(result)


def _setup_rate(
    pool: PoolProcess, seconds: float, confirm: int, say: Callable[[str], None]
) -> tuple[int, str]:
    best, note = 0, ""
    for rate in RATES:
        ok, calls, failed, why = _rate_step(pool, rate, seconds)
        say(f"  {rate} calls/s for {seconds:g} s: {calls - failed}/{calls} ok{f' ({why})' if why else ''}")
        if not ok:
            note = f"{rate} calls/s: {failed} of {calls} failed ({why})"
            break
        best = rate
        time.sleep(3)  # the last calls' BYEs
    confirmed = 0
    for _ in range(confirm if best else 0):
        time.sleep(3)
        ok, _, _, _ = _rate_step(pool, best, seconds)
        confirmed += ok
    return best, f"clean again in {confirmed}/{confirm} reruns; " + (note or f"{RATES[-1]} calls/s passed")


def _pool_memory(pool: PoolProcess) -> tuple[float, float, int]:
    """(median worker RSS MB, median worker PSS MB, whole pool PSS MB)."""
    workers = [_memory_kb(pid) for pid in pool.worker_pids()]
    everything = sum(_memory_kb(pid)[1] for pid in _pool_pids(pool))
    return (
        statistics.median(r for r, _ in workers) / 1024,
        statistics.median(p for _, p in workers) / 1024,
        everything // 1024,
    )


def run(
    repeats: int = 3,
    calls: int = 100,
    hold: float = 30.0,
    step: float = 30.0,
    limits: Sequence[int] = (1, 2),
    say: Callable[[str], None] = print,
) -> list[Row]:
    rows: list[Row] = []
    cores = os.cpu_count() or 1
    machine_ram = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") // 2**30
    for max_calls in limits:
        size = -(-calls // max_calls)
        with tempfile.TemporaryDirectory() as tmp:
            root = Path(tmp)
            nats = NatsServer(data_dir=root / "nats", log_path=root / "nats.log").start()
            phone = start_uas("uas_answer.xml", duration_ms=RING_MS, calls=10_000_000)
            routes = root / "routes.toml"
            routes.write_text(f'[extensions."101"]\ncontact = "sip:101@127.0.0.1:{phone.port}"\n')
            pool = PoolProcess(
                root,
                nats_url=nats.url,
                routes_file=routes,
                size=size,
                max_calls=max_calls,
                ping_interval=5,
                env={
                    "GATEWAY_LOG_LEVEL": "WARNING",
                    "GATEWAY_PJSIP_LOG_LEVEL": "1",
                    "GATEWAY_SHUTDOWN_GRACE": "60",
                },
            )
            try:
                started = time.monotonic()
                pool.start()
                pool.wait_ready(timeout=60 + size * 6)  # workers start one per core at a time
                start_s = time.monotonic() - started
                say(f"pool of {size} workers (max {max_calls} calls each) ready in {start_s:.0f} s")
                worker_rss, worker_pss, pool_pss = _pool_memory(pool)
                held = []
                for _ in range(repeats):
                    held.append(_held(pool, calls, hold, say))
                    time.sleep(5)
                best, rate_note = _setup_rate(pool, step, max(repeats - 1, 0), say)
            finally:
                pool.stop(timeout=90)
                phone.stop()
                nats.stop()
        label = f"{size} workers x {max_calls} call(s)"
        busy = statistics.median(h.busy_cores for h in held)
        idle = statistics.median(h.idle_cores for h in held)
        clean = sum(h.ok for h in held)
        rows += [
            Row(
                f"SIP calls held at once through Kamailio, 0 failed ({label})",
                f"{calls if clean == len(held) else 0}",
                f"{clean}/{len(held)} runs with every call answered and ended; failed per run: "
                f"{[h.failed for h in held]}; ramp {RAMP_RATE} calls/s, all up together >= {hold:g} s",
            ),
            Row(
                f"SIP call setup rate sustained {step:g} s, 0 failed ({label})",
                f"{best}",
                f"calls/s, {RATE_TALK_MS / 1000:g} s talk; steps {list(RATES)}; {rate_note}",
            ),
            Row(
                f"CPU per held call, % of a core ({label})",
                f"{(busy - idle) / calls:.2f}",
                f"pool (workers + kamailio + supervisor) {busy:.0f}% of a core with {calls} calls up, "
                f"{idle:.0f}% idle; median of {len(held)}"
                + (
                    f"; the {cores} cores were saturated (sipp included): a lower bound"
                    if busy >= 85 * cores
                    else ""
                ),
            ),
            Row(
                f"memory per call the pool holds, MB PSS ({label})",
                f"{pool_pss / (size * max_calls):.1f}",
                f"whole pool {pool_pss} MB PSS; per worker RSS {worker_rss:.0f} MB, PSS {worker_pss:.0f} MB; "
                f"machine {machine_ram} GB; pool ready in {start_s:.0f} s",
            ),
        ]
    return rows
