"""Runs one service process: HTTP (uvicorn), gRPC and background tasks, with a graceful stop.

``main`` of each service builds its parts and hands them to :class:`ServiceRunner`. SIGTERM or SIGINT
sets the stop event: the HTTP and gRPC servers stop taking requests and finish those in flight,
background tasks (bus consumers) finish the batch in hand, then the ``on_shutdown`` callbacks close
the bus connection (draining it) and the database.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Awaitable, Callable, Iterator, Sequence

import uvicorn
from fastapi import FastAPI

from telecrm_common.grpc import GrpcServer
from telecrm_common.settings import ServiceSettings

log = logging.getLogger(__name__)

Background = Callable[[asyncio.Event], Awaitable[None]]
Shutdown = Callable[[], Awaitable[None]]


class _Uvicorn(uvicorn.Server):
    """uvicorn without its own signal handling: the runner owns the signals."""

    @contextlib.contextmanager
    def capture_signals(self) -> Iterator[None]:
        yield


class ServiceRunner:
    def __init__(
        self,
        settings: ServiceSettings,
        *,
        http_app: FastAPI | None = None,
        grpc: GrpcServer | None = None,
        background: Sequence[Background] = (),
        on_shutdown: Sequence[Shutdown] = (),
    ) -> None:
        self.settings = settings
        self.http_app = http_app
        self.grpc = grpc
        self.background = list(background)
        self.on_shutdown = list(on_shutdown)
        self.stop = asyncio.Event()

    async def run(self) -> int:
        """Serve until a signal (exit code 0) or until a part fails (exit code 1)."""
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, self._on_signal, sig)
        tasks: list[asyncio.Task[None]] = []
        http: _Uvicorn | None = None
        failed = False
        try:
            if self.grpc is not None:
                await self.grpc.start()
            if self.http_app is not None:
                http = _Uvicorn(
                    uvicorn.Config(
                        self.http_app,
                        host=self.settings.http_host,
                        port=self.settings.http_port,
                        log_config=None,
                        access_log=False,
                        lifespan="off",
                        # An open WebSocket or keep-alive connection must not hold the stop up.
                        timeout_graceful_shutdown=max(1, round(self.settings.shutdown_grace)),
                    )
                )
                tasks.append(asyncio.create_task(self._serve_http(http), name="http"))
                while not http.started and not tasks[0].done():  # noqa: ASYNC110 - uvicorn has no event
                    await asyncio.sleep(0.02)
                if tasks[0].done():
                    raise RuntimeError(f"HTTP server could not start on port {self.settings.http_port}")
            tasks.extend(
                asyncio.create_task(self._guard(fn), name=getattr(fn, "__name__", "task"))
                for fn in self.background
            )
            log.info(
                "service ready",
                extra={
                    "http": f"http://{self.settings.http_host}:{self.settings.http_port}" if http else None,
                    "grpc": f"{self.settings.grpc_host}:{self.grpc.port}" if self.grpc else None,
                },
            )
            await self.stop.wait()
        except Exception as exc:
            log.exception("service failed to start: %s", exc)
            failed = True
        finally:
            failed = await self._shutdown(http, tasks) or failed
        return 1 if failed or self._failed else 0

    _failed = False

    def _on_signal(self, sig: signal.Signals) -> None:
        if self.stop.is_set():
            return
        log.info("%s received; stopping", sig.name)
        self.stop.set()

    async def _serve_http(self, server: _Uvicorn) -> None:
        try:
            await server.serve()
        except SystemExit as exc:  # uvicorn exits when it cannot bind
            raise RuntimeError(f"HTTP server exited ({exc.code})") from None

    async def _guard(self, fn: Background) -> None:
        try:
            await fn(self.stop)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("background task %s failed; stopping the service", getattr(fn, "__name__", fn))
            self._failed = True
            self.stop.set()

    async def _shutdown(self, http: _Uvicorn | None, tasks: list[asyncio.Task[None]]) -> bool:
        self.stop.set()
        grace = self.settings.shutdown_grace
        if http is not None:
            http.should_exit = True
        if self.grpc is not None:
            await self.grpc.stop(grace)
        failed = False
        if tasks:
            done, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                log.warning("task %s did not stop within %.0fs; cancelling", task.get_name(), grace)
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
            for task in done:
                if not task.cancelled() and task.exception() is not None:
                    log.error("task %s failed: %s", task.get_name(), task.exception())
                    failed = True
        for callback in self.on_shutdown:
            try:
                await callback()
            except Exception:
                log.exception("shutdown step failed")
        log.info("service stopped")
        return failed
