"""What `digest serve` runs: the published output plus the subscription routes.

:func:`serve_site` is the one entry point, for ``digest serve`` and for
``digest run --serve`` alike::

    stop = threading.Event()
    web = threading.Thread(target=serve_site, name="digest-serve",
                           args=(settings, store, lambda: SMTPMailer(settings), now),
                           kwargs={"stop": stop})
    web.start()          # the scheduler runs in the main thread meanwhile
    ...
    stop.set(); web.join()

It refuses to start without SECRET_KEY (and, with SUBSCRIBE_FORM=on, without
DIGEST_FROM): ConfigError before the port is opened. The confirmation mails
are sent by a background thread that lives as long as the server.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import datetime

from starlette.applications import Starlette
from starlette.concurrency import run_in_threadpool
from starlette.routing import BaseRoute
from starlette.types import Lifespan

from digest.mail.smtp import Mailer
from digest.settings import Settings
from digest.store.database import Store
from digest.web.server import serve
from digest.web.signup import Signup, SignupLimits, check_signup_settings, limits_of
from digest.web.signup_routes import SignupRoutes

logger = logging.getLogger("digest.serve")


def site_routes(settings: Settings, store: Store, mailer_factory: Callable[[], Mailer],
                clock: Callable[[], datetime], limits: SignupLimits | None = None,
                ) -> tuple[list[BaseRoute], Lifespan[Starlette], Signup]:
    """The subscription routes, the lifespan that runs their mail worker, and the Signup."""
    signup = Signup(settings, store, mailer_factory, limits)
    routes = SignupRoutes(settings, signup, clock).routes()

    @asynccontextmanager
    async def lifespan(app: Starlette) -> AsyncIterator[None]:
        signup.start()
        try:
            yield
        finally:
            await run_in_threadpool(signup.stop)

    return routes, lifespan, signup


def serve_site(settings: Settings, store: Store, mailer_factory: Callable[[], Mailer],
               clock: Callable[[], datetime], *, stop: threading.Event | None = None,
               on_ready: Callable[[tuple[str, int]], None] | None = None,
               limits: SignupLimits | None = None) -> None:
    """Serve until SIGINT/SIGTERM (main thread) or until `stop` is set; see the module doc."""
    check_signup_settings(settings)
    routes, lifespan, signup = site_routes(settings, store, mailer_factory, clock, limits)
    if settings.subscribe_form:
        lim = signup.limits
        logger.info("sign-ups on: per client %s; per address %s; overall %s",
                    limits_of(lim.per_client), limits_of(lim.per_address), limits_of(lim.overall))
    else:
        logger.info("sign-ups off (SUBSCRIBE_FORM=off); unsubscribe links work")
    serve(settings, routes, lifespan=lifespan, stop=stop, on_ready=on_ready)
