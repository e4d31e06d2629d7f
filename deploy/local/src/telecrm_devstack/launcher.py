"""`make run`: the whole suite on this machine, with embedded defaults.

Starts nats-server (JetStream, data under var/nats, on a free port) unless NATS_URL is set, runs each
service's migrations (SQLite files under var/ unless DATABASE_URL is set), starts every service and the
demo desk phones, prints where to look, and stops everything cleanly on Ctrl-C. The ports it chose are
written to var/devstack.json, which `make call` reads.

The SIP gateway runs as in production when Kamailio is installed (`make test-deps` installs Debian's):
Kamailio on the SIP port in front of a pool of ``GATEWAY_POOL_SIZE`` (default 2) pjsua2 workers, whose
supervisor serves the gateway's REST and gRPC API. Without Kamailio, or with ``GATEWAY_POOL_SIZE=0``,
one gateway process takes the SIP port itself (2 calls at a time).
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import secrets
import signal
import subprocess
import sys
import threading
from collections.abc import Mapping
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path

from telecrm_devstack import demo_data
from telecrm_devstack.databases import ensure_database, service_database_url
from telecrm_devstack.processes import (
    ManagedProcess,
    NatsServer,
    free_port,
    free_sip_port,
    port_is_free,
    wait_http_ok,
)
from telecrm_gateway.pool import RTP_PORTS_PER_WORKER
from telecrm_gateway.pool_kamailio import kamailio_binary
from telecrm_gateway.pool_testing import DEPLOY_CONFIG, EPHEMERAL, free_ports

log = logging.getLogger("devstack")

STATE_FILE = "devstack.json"


@dataclass(frozen=True)
class ServiceSpec:
    name: str  # folder under services/
    module: str  # python -m <module>
    env_prefix: str
    http_port: int  # preferred; a free one is taken when it is busy
    grpc_port: int
    has_database: bool = True


SERVICES = (
    ServiceSpec("calls", "telecrm_calls", "CALLS_", 8010, 50060),
    ServiceSpec("crm", "telecrm_crm", "CRM_", 8020, 50070),
    ServiceSpec("messaging", "telecrm_messaging", "MESSAGING_", 8030, 50080),
    ServiceSpec("queue", "telecrm_queue", "QUEUE_", 8040, 50090),
    ServiceSpec("sip-gateway", "telecrm_gateway", "GATEWAY_", 8000, 50050, has_database=False),
    ServiceSpec("web", "telecrm_web", "WEB_", 8080, 50100, has_database=False),
)

ROUTES_TEMPLATE = """\
# Written by make run: the demo desk phones behind the extensions (telecrm_devstack.phones).
[extensions."101"]
name = "Alice (answers)"
employee_id = "emp-101"
contact = "sip:101@127.0.0.1:{phones}"
ring_timeout = 20
record = true  # her calls are recorded: playable from the call log

[extensions."102"]
name = "Bob (never answers)"
employee_id = "emp-102"
contact = "sip:102@127.0.0.1:{phones}"
ring_timeout = 8

[extensions."103"]
name = "Carol (busy)"
employee_id = "emp-103"
contact = "sip:103@127.0.0.1:{phones}"
ring_timeout = 20

[extensions."104"]
name = "Dave (hangs up after 5 s)"
employee_id = "emp-104"
contact = "sip:104@127.0.0.1:{phones}"
ring_timeout = 20

[lines."+15551230000"]
extension = "101"
"""


def _port(preferred: int) -> int:
    return preferred if port_is_free(preferred) else free_port()


@dataclass
class Stack:
    """The processes of one local suite and how to reach them."""

    root: Path
    nats_url: str = ""
    database_url: str | None = None
    sip_port: int = 0
    phones_port: int = 0
    http_ports: dict[str, int] = field(default_factory=dict)
    grpc_ports: dict[str, int] = field(default_factory=dict)
    nats: NatsServer | None = None
    processes: list[ManagedProcess] = field(default_factory=list)
    # crm's first admin (created when crm has no user yet; later runs keep the users they find).
    admin_login: str = "admin"
    admin_password: str = ""
    # The key crm signs access tokens with and every service checks them with (TELECRM_AUTH_SECRET).
    auth_secret: str = ""
    # Gateway workers behind Kamailio (0: one gateway process on the SIP port, no Kamailio).
    gateway_pool: int = 0
    pool_env: dict[str, str] = field(default_factory=dict)

    @property
    def var(self) -> Path:
        return self.root / "var"

    def service_env(self, spec: ServiceSpec) -> dict[str, str]:
        p = spec.env_prefix
        env = {
            "TELECRM_AUTH_SECRET": self.auth_secret,
            f"{p}NATS_URL": self.nats_url,
            f"{p}HTTP_PORT": str(self.http_ports[spec.name]),
            f"{p}GRPC_PORT": str(self.grpc_ports[spec.name]),
            f"{p}LOG_FORMAT": os.environ.get("LOG_FORMAT", "json"),
            f"{p}DATABASE_URL": (
                service_database_url(self.database_url, spec.name)
                if self.database_url
                else f"sqlite:///{self.var / f'{spec.name}.sqlite3'}"
            ),
        }
        if spec.name == "calls":
            env["CALLS_RECORDINGS_DIR"] = str(self.var / "recordings")  # where the gateway writes them
        if spec.name == "crm":
            env.update(
                CRM_BOOTSTRAP_ADMIN_LOGIN=self.admin_login,
                CRM_BOOTSTRAP_ADMIN_PASSWORD=self.admin_password,
                CRM_ATTACHMENTS_DIR=str(self.var / "crm-attachments"),
                CRM_CALLS_GRPC_TARGET=f"127.0.0.1:{self.grpc_ports['calls']}",
            )
        if spec.name == "web":
            env.update(
                WEB_CRM_URL=f"http://127.0.0.1:{self.http_ports['crm']}",
                WEB_CALLS_URL=f"http://127.0.0.1:{self.http_ports['calls']}",
                WEB_CRM_GRPC_TARGET=f"127.0.0.1:{self.grpc_ports['crm']}",
                WEB_GATEWAY_URL=f"http://127.0.0.1:{self.http_ports['sip-gateway']}",  # click-to-call
                WEB_COOKIE_SECURE="false",  # http://127.0.0.1 only: production keeps Secure cookies
            )
        if spec.name == "sip-gateway":
            env.update(
                GATEWAY_SIP_PORT=str(self.sip_port),
                GATEWAY_ROUTES_FILE=str(self.var / "routes.toml"),
                GATEWAY_RECORDINGS_DIR=str(self.var / "recordings"),
                # The caller's name on the agent's phone, from crm's contacts.
                GATEWAY_CRM_GRPC_TARGET=f"127.0.0.1:{self.grpc_ports['crm']}",
                **self.pool_env,
            )
        return env

    def module_of(self, spec: ServiceSpec) -> str:
        return "telecrm_gateway.pool" if spec.name == "sip-gateway" and self.gateway_pool else spec.module

    def plan_gateway_pool(self, size: int) -> None:
        """Kamailio on the SIP port, ``size`` workers on ports of their own (0 or no Kamailio: none)."""
        if size <= 0 or kamailio_binary() is None:
            self.gateway_pool, self.pool_env = 0, {}
            return
        self.gateway_pool = size
        self.pool_env = {
            "GATEWAY_POOL_SIZE": str(size),
            "GATEWAY_POOL_SIP_PORT": str(free_ports(size, high=EPHEMERAL)),
            "GATEWAY_POOL_HTTP_PORT": str(free_ports(size, udp=False, high=EPHEMERAL)),
            "GATEWAY_POOL_GRPC_PORT": str(free_ports(size, udp=False, high=EPHEMERAL)),
            "GATEWAY_POOL_LOG_DIR": str(self.var / "log" / "gateway-workers"),
            "GATEWAY_RTP_PORT": str(free_ports(size * RTP_PORTS_PER_WORKER, low=10000, high=20000)),
            "GATEWAY_RTP_PORT_RANGE": str(RTP_PORTS_PER_WORKER),
            "GATEWAY_KAMAILIO_CONFIG": str(DEPLOY_CONFIG),
            "GATEWAY_KAMAILIO_SIP_PORT": str(self.sip_port),
            "GATEWAY_KAMAILIO_RPC_PORT": str(free_ports(1, udp=False, high=EPHEMERAL)),
            "GATEWAY_KAMAILIO_RUN_DIR": str(self.var / "kamailio"),
        }

    def state(self) -> dict[str, object]:
        return {
            "nats_url": self.nats_url,
            "sip": f"sip:127.0.0.1:{self.sip_port}",
            "sip_port": self.sip_port,
            "phones_port": self.phones_port,
            "http": {name: f"http://127.0.0.1:{port}" for name, port in self.http_ports.items()},
            "grpc": {name: f"127.0.0.1:{port}" for name, port in self.grpc_ports.items()},
        }


def _local_secret(var: Path, name: str, size: int) -> str:
    """A secret of the local suite: made once, kept in var/ (never in the repository)."""
    path = var / name
    if not path.exists():
        path.write_text(secrets.token_urlsafe(size))
        path.chmod(0o600)
    return path.read_text().strip()


def python_module(module: str, *args: str) -> list[str]:
    return [sys.executable, "-m", module, *args]


def migrate(stack: Stack, spec: ServiceSpec) -> None:
    env = {**os.environ, **stack.service_env(spec)}
    result = subprocess.run(
        python_module(spec.module, "migrate"),
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    if result.returncode != 0:
        raise RuntimeError(f"migrations of {spec.name} failed:\n{result.stdout}{result.stderr}")


def start(root: Path, *, env: Mapping[str, str] = os.environ) -> Stack:
    stack = Stack(root=root)
    stack.var.mkdir(parents=True, exist_ok=True)
    logs = stack.var / "log"
    if env.get("NATS_URL"):
        stack.nats_url = env["NATS_URL"]
        log.info("using NATS at %s (NATS_URL)", stack.nats_url)
    else:
        stack.nats = NatsServer(data_dir=stack.var / "nats", log_path=logs / "nats-server.log").start()
        stack.nats_url = stack.nats.url
        log.info("nats-server with JetStream on %s (data in var/nats)", stack.nats_url)
    stack.database_url = env.get("DATABASE_URL") or None
    stack.admin_password = env.get("CRM_BOOTSTRAP_ADMIN_PASSWORD") or _local_secret(
        stack.var, "admin-password", 12
    )
    stack.auth_secret = env.get("TELECRM_AUTH_SECRET") or _local_secret(stack.var, "auth-secret", 32)
    stack.sip_port = int(env.get("SIP_PORT", "0")) or (5060 if port_is_free(5060) else free_sip_port())
    stack.phones_port = free_sip_port()
    for spec in SERVICES:
        stack.http_ports[spec.name] = _port(spec.http_port)
        stack.grpc_ports[spec.name] = _port(spec.grpc_port)
    (stack.var / "routes.toml").write_text(ROUTES_TEMPLATE.format(phones=stack.phones_port))
    stack.plan_gateway_pool(int(env.get("GATEWAY_POOL_SIZE", "2") or "0"))
    if stack.gateway_pool:
        log.info("SIP: Kamailio on %d in front of %d gateway workers", stack.sip_port, stack.gateway_pool)
    else:
        log.info("SIP: one gateway process on %d (no kamailio, or GATEWAY_POOL_SIZE=0)", stack.sip_port)

    try:
        with_database = [spec for spec in SERVICES if spec.has_database]
        if stack.database_url:
            for spec in with_database:
                ensure_database(service_database_url(stack.database_url, spec.name))
        log.info("migrating %s", ", ".join(spec.name for spec in with_database))
        with ThreadPoolExecutor(len(with_database)) as pool:
            list(pool.map(lambda spec: migrate(stack, spec), with_database))
        phones = ManagedProcess(
            "phones",
            python_module("telecrm_devstack.phones", "--port", str(stack.phones_port)),
            log_path=logs / "phones.log",
        ).start()
        stack.processes.append(phones)
        for spec in SERVICES:
            proc = ManagedProcess(
                spec.name,
                python_module(stack.module_of(spec)),
                env=stack.service_env(spec),
                log_path=logs / f"{spec.name}.log",
            ).start()
            stack.processes.append(proc)
        for spec, proc in zip(SERVICES, stack.processes[1:], strict=True):
            wait_http_ok(f"http://127.0.0.1:{stack.http_ports[spec.name]}/readyz", 90, proc)
        log.info("demo teams, employees, a customer and extensions 101-104")
        demo_data.seed(
            f"http://127.0.0.1:{stack.http_ports['calls']}",
            f"http://127.0.0.1:{stack.http_ports['crm']}",
            stack.admin_login,
            stack.admin_password,
        )
    except BaseException:
        stop(stack)
        raise
    (stack.var / STATE_FILE).write_text(json.dumps(stack.state(), indent=2))
    return stack


def stop(stack: Stack) -> None:
    for proc in reversed(stack.processes):
        proc.stop()
    if stack.nats is not None:
        stack.nats.stop()
    (stack.var / STATE_FILE).unlink(missing_ok=True)


def banner(stack: Stack) -> str:
    h = stack.http_ports
    day = datetime.now(UTC).date()
    today = f"from={day.isoformat()}&to={(day + timedelta(days=1)).isoformat()}"
    lines = [
        "",
        "telecrm is running. Ctrl-C stops everything.",
        "",
        f"  agent desktop    http://127.0.0.1:{h['web']}/   "
        f"(log in as {stack.admin_login} / {stack.admin_password})",
        f"  SIP gateway      sip:127.0.0.1:{stack.sip_port} (UDP and TCP; "
        + (
            f"Kamailio in front of {stack.gateway_pool} gateway workers)"
            if stack.gateway_pool
            else "one gateway process: install kamailio for the pool)"
        ),
        f"  call log         http://127.0.0.1:{h['calls']}/calls       (API docs: /docs)",
        f"  sip-gateway API  http://127.0.0.1:{h['sip-gateway']}/docs",
        f"  crm              http://127.0.0.1:{h['crm']}/docs",
        f"                   log in as {stack.admin_login} / {stack.admin_password} (var/admin-password)",
        f"  messaging        http://127.0.0.1:{h['messaging']}/docs",
        f"  queue            http://127.0.0.1:{h['queue']}/docs",
        f"  NATS             {stack.nats_url}",
        f"  demo phones      sip:127.0.0.1:{stack.phones_port}: 101 answers, 102 never answers, 103 is busy",
        f"  logs             {stack.var / 'log'}/*.log",
        "",
        "  Place a test call:   make call            (or make call EXT=102 for a missed call)",
        "  Every API wants a token from crm (15 minutes; log in again for a new one):",
        f"  Log in:              TOKEN=$(curl -s -X POST http://127.0.0.1:{h['crm']}/auth/login "
        f"-H 'content-type: application/json' "
        f'-d \'{{"login": "{stack.admin_login}", "password": "{stack.admin_password}"}}\' '
        "| python3 -c 'import json,sys; print(json.load(sys.stdin)[\"access_token\"])')",
        f'  Then look:           curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:{h["calls"]}/calls',
        f'  Missed calls:        curl -s -H "Authorization: Bearer $TOKEN" '
        f"http://127.0.0.1:{h['calls']}/missed-calls",
        f'  Today\'s report:      curl -s -H "Authorization: Bearer $TOKEN" '
        f"'http://127.0.0.1:{h['calls']}/reports/summary.svg?{today}' > var/today.svg",
        f'  Per employee:        curl -s -H "Authorization: Bearer $TOKEN" '
        f"'http://127.0.0.1:{h['calls']}/reports/employees.svg?{today}' > var/employees.svg",
        f'  Numbers registry:    curl -s -H "Authorization: Bearer $TOKEN" http://127.0.0.1:{h["calls"]}/numbers',
        f'  Screen pop:          curl -s -H "Authorization: Bearer $TOKEN" '
        f"'http://127.0.0.1:{h['crm']}/contacts/lookup?number=%2B15550001234'",
        f'  Customer\'s journal:  curl -s -H "Authorization: Bearer $TOKEN" '
        f"'http://127.0.0.1:{h['crm']}/journal/events?phone=%2B15550001234'",
        "",
    ]
    return "\n".join(lines)


def run(root: Path) -> int:
    stopping = threading.Event()

    def on_signal(signum: int, _frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGINT, on_signal)
    signal.signal(signal.SIGTERM, on_signal)
    try:
        stack = start(root)
    except (RuntimeError, TimeoutError, OSError) as exc:
        log.error("the suite did not start: %s", exc)
        return 1
    print(banner(stack), flush=True)
    exit_code = 0
    while not stopping.wait(1.0):
        dead = [p for p in stack.processes if not p.running]
        if dead:
            for proc in dead:
                log.error("%s exited unexpectedly; last lines of its log:\n%s", proc.name, proc.log_tail(20))
            exit_code = 1
            break
    log.info("stopping")
    stop(stack)
    log.info("stopped")
    return exit_code


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("command", nargs="?", default="run", choices=["run"])
    parser.add_argument("--root", type=Path, default=Path.cwd(), help="where var/ goes (default: here)")
    args = parser.parse_args()
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s", datefmt="%H:%M:%S")
    logging.getLogger("httpx").setLevel(logging.WARNING)
    sys.exit(run(args.root.resolve()))


if __name__ == "__main__":
    main()
