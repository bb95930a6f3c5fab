"""`digest serve`: the published output (and, later, a few dynamic routes) over HTTP.

:func:`create_app` builds the ASGI application from :class:`Settings`;
:func:`serve` runs it on uvicorn until SIGINT or SIGTERM (in the main
thread), or until a ``stop`` event is set (in any thread: this is how
``digest run --serve`` runs it beside the scheduler). Routes passed in
(Starlette routes, e.g. the subscription endpoints) are tried first; every
other request is answered from the output folder by
:class:`digest.serve_static.StaticApp`.

HTTP is parsed by httptools, with the per-connection limits of
:mod:`digest.serve_limits` (header size and time, body time); uvicorn picks
uvloop when it is installed, asyncio otherwise; the start-up log line says
which.
"""

from __future__ import annotations

import contextlib
import importlib.util
import logging
import signal
import socket
import threading
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from types import FrameType

import uvicorn
from starlette.applications import Starlette
from starlette.routing import BaseRoute, Match
from starlette.types import Lifespan

from digest.errors import ServeError
from digest.settings import Settings
from digest.web.files import CACHE_BUDGET, MAX_CACHED_FILE, OutputFiles
from digest.web.limits import LimitedHttpToolsProtocol
from digest.web.static import Message, Receive, Scope, Send, StaticApp, log_access

logger = logging.getLogger("digest.serve")

GRACEFUL_SHUTDOWN_SECONDS = 5


@dataclass(frozen=True)
class ServeConfig:
    """What the web server needs from Settings."""

    output_dir: Path
    host: str
    port: int
    max_cached_file: int = MAX_CACHED_FILE
    cache_budget: int = CACHE_BUDGET

    @classmethod
    def from_settings(cls, settings: Settings) -> ServeConfig:
        return cls(output_dir=settings.output_dir, host=settings.serve_host,
                   port=settings.serve_port)


class DigestApp:
    """Dynamic routes first, then the published files."""

    def __init__(
        self,
        static: StaticApp,
        routes: Sequence[BaseRoute] = (),
        lifespan: Lifespan[Starlette] | None = None,
    ) -> None:
        self.static = static
        self._routes = tuple(routes)
        self._dynamic = Starlette(routes=list(routes), lifespan=lifespan)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] == "http":
            if not self._routes:
                await self.static(scope, receive, send)
                return
            for route in self._routes:
                match, _ = route.matches(scope)
                if match is not Match.NONE:
                    await self._logged(scope, receive, send)
                    return
            await self.static(scope, receive, send)
        else:
            await self._dynamic(scope, receive, send)  # lifespan, websocket

    async def _logged(self, scope: Scope, receive: Receive, send: Send) -> None:
        status = 500
        size = 0

        async def sending(message: Message) -> None:
            nonlocal status, size
            if message["type"] == "http.response.start":
                status = message["status"]
            elif message["type"] == "http.response.body":
                size += len(message.get("body", b""))
            await send(message)

        try:
            await self._dynamic(scope, receive, sending)
        finally:
            log_access(scope, status, size)


def create_app(
    settings: Settings,
    routes: Sequence[BaseRoute] = (),
    *,
    lifespan: Lifespan[Starlette] | None = None,
) -> DigestApp:
    """The ASGI app: `routes` (matched first), then files from settings.output_dir."""
    config = ServeConfig.from_settings(settings)
    files = OutputFiles(
        str(config.output_dir),
        max_cached_file=config.max_cached_file,
        cache_budget=config.cache_budget,
    )
    return DigestApp(StaticApp(files), routes, lifespan)


def build_server(app: DigestApp,
                 protocol: type[LimitedHttpToolsProtocol] = LimitedHttpToolsProtocol,
                 ) -> uvicorn.Server:
    """A uvicorn server for `app`, configured as `digest serve` runs it.

    `protocol` is the HTTP protocol class (tests pass one with shorter limits).
    It logs through the application's logging setup (uvicorn's own config is
    not applied) and leaves access logging to ``digest.serve``.
    """
    config = uvicorn.Config(
        app,
        http=protocol,
        loop="auto",
        lifespan="on",
        log_config=None,
        access_log=False,
        server_header=False,
        # X-Forwarded-For is not trusted (it costs a middleware per request): behind
        # a reverse proxy the access log shows the proxy's address.
        proxy_headers=False,
        timeout_graceful_shutdown=GRACEFUL_SHUTDOWN_SECONDS,
    )
    return uvicorn.Server(config)


def listen(host: str, port: int) -> socket.socket:
    """A socket bound to host:port, or ServeError saying why not."""
    try:
        infos = socket.getaddrinfo(
            host or None, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
        )
    except socket.gaierror as exc:
        raise ServeError(f"cannot listen on {host}:{port}: {exc.strerror}",
                         "set SERVE_HOST to an address of this machine, e.g. 127.0.0.1") from exc
    family, kind, proto, _, address = infos[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
    except OSError as exc:
        sock.close()
        raise ServeError(
            f"cannot listen on {host}:{port}: {exc.strerror}",
            "set SERVE_PORT to a free port, or stop the program that uses this one",
        ) from exc
    return sock


def implementation() -> str:
    """The HTTP parser and the event loop uvicorn's "auto" picks here."""
    http = "httptools"
    loop = "uvloop" if importlib.util.find_spec("uvloop") else "asyncio"
    return f"uvicorn {uvicorn.__version__}, http={http}, loop={loop}"


class _Terminated(Exception):
    """Raised by our SIGTERM handler once uvicorn has shut down and re-raised the signal."""


def _terminate(signum: int, frame: FrameType | None) -> None:
    raise _Terminated


@contextlib.contextmanager
def _return_on_signals() -> Iterator[None]:
    """Let serve() return normally after uvicorn's graceful shutdown on SIGINT/SIGTERM.

    uvicorn handles both signals while it runs, then re-raises them for the
    handlers that were installed before it: ours make that a normal return.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        yield
    except (KeyboardInterrupt, _Terminated):
        logger.info("digest serve stopped")
    finally:
        signal.signal(signal.SIGTERM, previous)


def serve(
    settings: Settings,
    routes: Sequence[BaseRoute] = (),
    *,
    lifespan: Lifespan[Starlette] | None = None,
    stop: threading.Event | None = None,
    on_ready: Callable[[tuple[str, int]], None] | None = None,
) -> None:
    """Serve the output folder on settings.serve_host:serve_port.

    Runs in the calling thread until SIGINT or SIGTERM (main thread only) or
    until `stop` is set, then shuts down gracefully and returns. `on_ready` is
    called with the bound (host, port) once requests are answered.
    """
    config = ServeConfig.from_settings(settings)
    if not config.output_dir.is_dir():
        logger.warning("%s does not exist yet; pages will be 404 until the first publish",
                       config.output_dir)
    sock = listen(config.host, config.port)
    server = build_server(create_app(settings, routes, lifespan=lifespan))
    host, port = sock.getsockname()[:2]
    shown = f"[{host}]" if ":" in host else host
    logger.info("serving %s on http://%s:%d/ (%s)", config.output_dir, shown, port,
                implementation())
    finished = threading.Event()
    if stop is not None or on_ready is not None:
        threading.Thread(target=_watch, args=(server, stop, finished, on_ready, (host, port)),
                         name="digest-serve-watch", daemon=True).start()
    try:
        with _return_on_signals():
            server.run(sockets=[sock])
    except SystemExit as exc:
        raise ServeError(
            "the web server stopped during start-up",
            "see the log lines above for the reason",
        ) from exc
    finally:
        finished.set()
        sock.close()


def _watch(server: uvicorn.Server, stop: threading.Event | None, finished: threading.Event,
           on_ready: Callable[[tuple[str, int]], None] | None, address: tuple[str, int]) -> None:
    """Report readiness once, then ask the server to exit when `stop` is set."""
    while not finished.is_set():
        if on_ready is not None and server.started:
            on_ready(address)
            on_ready = None
        if stop is not None and stop.is_set():
            server.should_exit = True
            return
        if stop is None and on_ready is None:
            return
        finished.wait(0.05)
