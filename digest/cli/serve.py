"""Command: serve (the published site, unsubscribe links and the sign-up form over HTTP)."""

from __future__ import annotations

import dataclasses
import logging
import threading

import click

from digest.cli.support import Context, Reload, log_format_option, now, pass_ctx
from digest.mail.smtp import SMTPMailer
from digest.web.app import serve_site
from digest.web.signup import check_signup_settings


@click.command()
@click.option("--host", help="Address to listen on (default: SERVE_HOST, 127.0.0.1).")
@click.option("--port", type=click.IntRange(0, 65535),
              help="Port to listen on (default: SERVE_PORT, 8080; 0: any free port).")
@log_format_option
@pass_ctx
def serve(ctx: Context, host: str | None, port: int | None, log_format: str) -> None:
    """Serve OUTPUT_DIR over HTTP, with one-click unsubscribe and the sign-up form.

    Answers GET/HEAD for the published files (ETag, gzip), POST
    /unsubscribe for the digest's List-Unsubscribe links, and, with
    SUBSCRIBE_FORM=on, /subscribe and /confirm (double opt-in). Needs
    SECRET_KEY. Runs until Ctrl-C or SIGTERM; logs one line per request.
    SIGHUP checks .env, then restarts it in place with the new settings.
    """
    if host is not None and not host.strip():
        raise click.BadParameter("empty; give an address, e.g. --host 127.0.0.1 (this machine "
                                 "only) or --host 0.0.0.0 (every interface)",
                                 param_hint="'--host'")
    settings = ctx.settings
    if host is not None:
        settings = dataclasses.replace(settings, serve_host=host.strip())
    if port is not None:
        settings = dataclasses.replace(settings, serve_port=port)
    check_signup_settings(settings)
    level = ctx.setup_logging(log_format)
    logging.getLogger("uvicorn.error").setLevel(max(level, logging.WARNING))  # start-up chatter
    stop = threading.Event()
    reload = Reload(ctx, stop, logging.getLogger("digest.serve"),
                    "requests in progress are answered")
    with ctx.store() as store, reload.on_hangup():
        serve_site(settings, store, lambda: SMTPMailer(settings), now, stop=stop)
    reload.restart_if_asked()
