"""Wires the SIP gateway: settings, logging, telemetry, routes, NATS, the SIP engine, gRPC and HTTP.

``telecrm-sip-gateway`` (or ``python -m telecrm_gateway``) serves until SIGTERM/SIGINT, then refuses new
calls with 503, hangs up the live ones (publishing their ended events), flushes the events and exits.
Exit codes: 0 after a clean stop, 1 when a part failed (the SIP port is taken...), 2 when the settings
or routes are invalid or NATS could not be reached within ``GATEWAY_STARTUP_TIMEOUT`` seconds.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import sys
from collections.abc import Sequence

from pydantic import ValidationError

from telecrm_common.bus import Bus, BusError
from telecrm_common.events import STREAMS
from telecrm_common.grpc import GrpcServer
from telecrm_common.logging import setup_logging
from telecrm_common.service import ServiceRunner
from telecrm_common.telemetry import setup_telemetry
from telecrm_gateway import grpc as gateway_grpc
from telecrm_gateway.admin_api import routes_reloader
from telecrm_gateway.api import create_app
from telecrm_gateway.crm_lookup import CrmLookup
from telecrm_gateway.dialing import DialService
from telecrm_gateway.errors import GatewayError, RoutingConfigError
from telecrm_gateway.provider import BusSink, ProviderCalls
from telecrm_gateway.publisher import bus_publisher
from telecrm_gateway.routing import load_routes
from telecrm_gateway.service import GatewayService
from telecrm_gateway.settings import GatewaySettings
from telecrm_gateway.sip.engine import legs_per_call

log = logging.getLogger("telecrm_gateway")

EXIT_FAILED = 1
EXIT_UNAVAILABLE = 2


async def serve(settings: GatewaySettings) -> int:
    """Serve until SIGTERM/SIGINT."""
    try:
        routes = load_routes(
            settings.routes_file, settings.default_region, max_legs=legs_per_call(settings.max_calls)
        )
    except RoutingConfigError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_UNAVAILABLE
    log.info(
        "routes loaded",
        extra={
            "routes_file": str(settings.routes_file or "default"),
            "extensions": sorted(routes.extensions),
        },
    )
    try:
        bus = await Bus.connect(
            settings.nats_url, name=settings.instance_id, timeout=settings.startup_timeout
        )
    except BusError as exc:
        log.error("cannot start: %s", exc)
        return EXIT_UNAVAILABLE
    # Caller names on the agents' phones; no crm target: calls ring without asking.
    lookup = CrmLookup(
        settings.crm_grpc_target,
        deadline=settings.crm_lookup_deadline,
        cache_ttl=settings.crm_lookup_cache_ttl,
    )
    gateway = GatewayService(settings, routes, bus_publisher(bus), lookup if lookup.enabled else None)
    # The telephony API for providers (PBXs posting call events) and click-to-call.
    provider = ProviderCalls(
        BusSink(bus, timeout=settings.provider_publish_timeout), region=settings.default_region
    )
    dialer = DialService(
        settings.provider_pbxs,
        region=settings.default_region,
        window=settings.dial_idempotency_window,
        timeout=settings.provider_make_call_timeout,
        provider_calls=provider,
        sip_dialer=gateway.dial,
    )
    try:
        await bus.ensure_streams(STREAMS)
        await gateway.start()
        checks = {"nats": bus.check, "sip": gateway.check_sip}
        grpc_server = GrpcServer(settings, service_names=[gateway_grpc.SERVICE_NAME], checks=checks)
        gateway_grpc.add_to_server(grpc_server.server, gateway, dialer)
    except (GatewayError, OSError, BusError) as exc:
        log.error("cannot start: %s", exc, exc_info=log.isEnabledFor(logging.DEBUG))
        await gateway.stop(timeout=2.0)
        await lookup.close()
        await dialer.close()
        await bus.close()
        return EXIT_FAILED
    reloader = routes_reloader(gateway)  # routes edited by hand or by another worker are followed
    runner = ServiceRunner(
        settings,
        http_app=create_app(
            gateway, checks, provider=provider, lookup=lookup, dialer=dialer, reloader=reloader
        ),
        grpc=grpc_server,
        background=[gateway.run, reloader.run],
        # gateway.stop again in case its task was cancelled mid-drain; it returns at once otherwise.
        on_shutdown=[gateway.stop, lookup.close, dialer.close, bus.close],
    )
    return await runner.run()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="telecrm-sip-gateway", description="The SIP gateway (settings from GATEWAY_* variables)."
    )
    parser.parse_args(argv)
    try:
        settings = GatewaySettings()
    except ValidationError as exc:
        print(f"telecrm-sip-gateway: invalid settings (GATEWAY_* variables):\n{exc}", file=sys.stderr)
        return EXIT_UNAVAILABLE
    setup_logging(settings)
    setup_telemetry(settings)
    return asyncio.run(serve(settings))


def run() -> None:
    """Console-script entry point."""
    sys.exit(main())
