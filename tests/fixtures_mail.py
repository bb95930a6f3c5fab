"""Real SMTP servers (aiosmtpd), TLS material (trustme) and stored articles for the tests.

The fixtures here (``smtp_servers``, ``tls``) are registered for every test by
``pytest_plugins`` in tests/conftest.py; test modules import only the helpers
(:class:`Behaviour`, :class:`SMTPServer`, :func:`sample_articles`, ...).
"""

from __future__ import annotations

import asyncio
import logging
import re
import socket
import ssl
import threading
from collections.abc import Callable, Iterator
from contextlib import closing
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from email import message_from_bytes, policy
from email.message import EmailMessage
from pathlib import Path
from typing import Any

import pytest
import trustme
from aiosmtpd.controller import Controller
from aiosmtpd.smtp import SMTP, AuthResult, Envelope, LoginPassword, Session

from digest.settings import ENV_NAMES
from digest.store.database import Store, StoredArticle
from tests.conftest import base_env

logging.getLogger("mail.log").setLevel(logging.ERROR)  # aiosmtpd's own chatter

USERNAME = "digest-user"
PASSWORD = "s3cret-Pa55word-never-logged"
NOW = datetime(2024, 5, 6, 7, 0, tzinfo=UTC)
_MESSAGE_ID = re.compile(rb"^Message-ID:\s*(<[^>]+>)", re.IGNORECASE | re.MULTILINE)


def free_port() -> int:
    with closing(socket.socket(socket.AF_INET, socket.SOCK_STREAM)) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


# -- TLS -------------------------------------------------------------------------------


@dataclass
class TLS:
    ca: trustme.CA
    ca_file: Path
    server_context: ssl.SSLContext

    def client_context(self) -> ssl.SSLContext:
        context = ssl.create_default_context()
        self.ca.configure_trust(context)
        return context


@pytest.fixture(scope="session")
def tls(tmp_path_factory: pytest.TempPathFactory) -> TLS:
    ca = trustme.CA()
    cert = ca.issue_cert("localhost", "127.0.0.1")
    server_context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(server_context)
    ca_file = tmp_path_factory.mktemp("tls") / "ca.pem"
    ca.cert_pem.write_to_path(str(ca_file))
    return TLS(ca, ca_file, server_context)


# -- SMTP server -----------------------------------------------------------------------


@dataclass
class Received:
    mail_from: str
    rcpt_to: str
    data: bytes

    @property
    def message_id(self) -> str:
        match = _MESSAGE_ID.search(self.data.split(b"\r\n\r\n", 1)[0])
        return match.group(1).decode() if match else ""

    def parsed(self) -> EmailMessage:
        message = message_from_bytes(self.data, policy=policy.default)
        assert isinstance(message, EmailMessage)
        return message


@dataclass
class Behaviour:
    """What the test server answers. Scripts are consumed one reply per attempt."""

    rcpt_replies: dict[str, list[str]] = field(default_factory=dict)  # address -> replies
    data_replies: list[str] = field(default_factory=list)  # next DATA replies, any recipient
    drop_on_data: int = 0  # close the connection on the next N DATA commands
    delay: float = 0.0  # seconds per accepted message
    reject_always: dict[str, str] = field(default_factory=dict)  # address -> 5xx reply
    # After the message is stored (received): wait this long before the 250 reply,
    reply_delay_after_storing: float = 0.0
    # or, for the next N messages to an address, drop the connection without a reply.
    lose_reply_after_storing: dict[str, int] = field(default_factory=dict)
    # More sessions at once than this (0: no limit) are greeted with "421 4.7.0 too many
    # connections" and closed, as Postfix's anvil does.
    max_connections: int = 0
    # Called with the envelope when DATA is accepted, before the message is stored
    # (e.g. to look at what exists at that moment).
    on_data: Callable[[Envelope], None] | None = None


class Handler:
    def __init__(self, behaviour: Behaviour) -> None:
        self.behaviour = behaviour
        self.received: list[Received] = []
        self.commands: list[str] = []
        self.connections = 0
        self.open_connections = 0  # sessions open now
        self.peak_connections = 0  # most sessions open at once
        self.refused_connections = 0  # greeted with "too many connections"
        self.auth_attempts: list[tuple[str, str]] = []
        self._lock = threading.Lock()

    async def handle_EHLO(self, server: SMTP, session: Session, envelope: Envelope,
                          hostname: str, responses: list[str]) -> list[str]:
        session.host_name = hostname
        self.commands.append("EHLO")
        return responses

    async def handle_RSET(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.commands.append("RSET")
        return "250 OK"

    async def handle_RCPT(self, server: SMTP, session: Session, envelope: Envelope,
                          address: str, rcpt_options: list[str]) -> str:
        self.commands.append("RCPT")
        b = self.behaviour
        if address in b.reject_always:
            return b.reject_always[address]
        script = b.rcpt_replies.get(address)
        if script:
            reply = script.pop(0)
            if reply.startswith("421"):
                server.transport.close()  # type: ignore[union-attr]
            return reply
        envelope.rcpt_tos.append(address)
        return "250 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        self.commands.append("DATA")
        b = self.behaviour
        if b.drop_on_data > 0:
            b.drop_on_data -= 1
            server.transport.close()  # type: ignore[union-attr]
            return "421 4.4.2 connection dropped by the test"
        if b.data_replies:
            return b.data_replies.pop(0)
        if b.delay:
            await asyncio.sleep(b.delay)
        data = envelope.original_content or b""
        assert isinstance(data, bytes)
        if b.on_data is not None:
            b.on_data(envelope)
        with self._lock:
            for rcpt in envelope.rcpt_tos:
                self.received.append(Received(str(envelope.mail_from), rcpt, data))
        for rcpt in envelope.rcpt_tos:
            if b.lose_reply_after_storing.get(rcpt, 0) > 0:
                b.lose_reply_after_storing[rcpt] -= 1
                server.transport.abort()  # type: ignore[union-attr]  # nothing more is written
                return "250 2.0.0 never seen by the client"
        if b.reply_delay_after_storing:
            await asyncio.sleep(b.reply_delay_after_storing)
        return "250 2.0.0 OK queued"

    def authenticate(self, server: SMTP, session: Session, envelope: Envelope, mechanism: str,
                     auth_data: Any) -> AuthResult:
        if isinstance(auth_data, LoginPassword):
            login = auth_data.login.decode()
            password = auth_data.password.decode()
            self.auth_attempts.append((login, password))
            if login == USERNAME and password == PASSWORD:
                return AuthResult(success=True)
        return AuthResult(success=False, handled=False)


class _LimitedSMTP(SMTP):
    """Counts open sessions; beyond Behaviour.max_connections, refuses them at the greeting."""

    async def _handle_client(self) -> None:
        handler = self.event_handler
        assert isinstance(handler, Handler)
        limit = handler.behaviour.max_connections
        if limit and handler.open_connections >= limit:
            handler.refused_connections += 1
            await self.push("421 4.7.0 localhost Error: too many connections from 127.0.0.1")
            assert self.transport is not None
            self.transport.close()
            return
        handler.open_connections += 1
        handler.peak_connections = max(handler.peak_connections, handler.open_connections)
        try:
            await super()._handle_client()
        finally:
            handler.open_connections -= 1


class _CountingController(Controller):
    def factory(self) -> SMTP:
        handler = self.handler
        assert isinstance(handler, Handler)
        handler.connections += 1
        return _LimitedSMTP(self.handler, **self.SMTP_kwargs)


@dataclass
class SMTPServer:
    """A running test SMTP server."""

    port: int
    security: str  # "none", "starttls" or "ssl"
    auth: bool
    handler: Handler
    controller: Controller

    @property
    def behaviour(self) -> Behaviour:
        return self.handler.behaviour

    @property
    def received(self) -> list[Received]:
        return self.handler.received

    def env(self) -> dict[str, str]:
        values = {"SMTP_HOST": "127.0.0.1" if self.security == "none" else "localhost",
                  "SMTP_PORT": str(self.port), "SMTP_SECURITY": self.security,
                  "SMTP_TIMEOUT": "10s"}
        if self.auth:
            values.update(SMTP_USERNAME=USERNAME, SMTP_PASSWORD=PASSWORD)
        return values


def start_server(security: str = "none", auth: bool = False, tls: TLS | None = None,
                 behaviour: Behaviour | None = None) -> SMTPServer:
    handler = Handler(behaviour or Behaviour())
    port = free_port()
    kwargs: dict[str, Any] = {"server_hostname": "localhost", "ready_timeout": 10.0}
    if security == "starttls":
        assert tls is not None
        kwargs.update(tls_context=tls.server_context, require_starttls=True)
    elif security == "ssl":
        assert tls is not None
        kwargs.update(ssl_context=tls.server_context)
    if auth:
        # aiosmtpd does not know an implicit-TLS ("ssl") connection is encrypted: it
        # would hide AUTH with auth_require_tls, and warns when AUTH is required
        # without it. So "ssl" offers AUTH without requiring it.
        kwargs.update(authenticator=handler.authenticate, auth_required=security != "ssl",
                      auth_require_tls=security == "starttls")
    controller = _CountingController(handler, hostname="127.0.0.1", port=port, **kwargs)
    controller.start()
    handler.connections = 0  # the controller's own readiness probe does not count
    handler.peak_connections = 0
    return SMTPServer(port, security, auth, handler, controller)


@pytest.fixture
def smtp_servers() -> Iterator[Callable[..., SMTPServer]]:
    """Start test SMTP servers: smtp_servers(security=..., auth=..., tls=..., behaviour=...)."""
    started: list[SMTPServer] = []

    def start(**kwargs: Any) -> SMTPServer:
        server = start_server(**kwargs)
        started.append(server)
        return server

    yield start
    for server in started:
        server.controller.stop()


# -- articles --------------------------------------------------------------------------------


def article(key: str, title: str, published: datetime, status: str = "published",
            summary: str = "A summary.", author: str = "Ann Author") -> StoredArticle:
    return StoredArticle(
        key=key, entry_id=f"urn:test:{key}", slug=key.rsplit(".", 1)[0], size=1, mtime_ns=1,
        content_hash="x", first_seen=published, last_changed=published, published=published,
        updated=published, title=title, author=author, tags=(), summary=summary, status=status)


def add_articles(store: Store, *articles: StoredArticle) -> None:
    store.save_articles(list(articles), [])


def sample_articles(count: int = 3) -> list[StoredArticle]:
    return [article(f"{i:03d}_a.txt", f"Headline number {i}", NOW - timedelta(hours=count - i),
                    summary=f"Summary of article {i}.") for i in range(count)]


def clean_environ(monkeypatch: pytest.MonkeyPatch) -> None:
    """Remove every digest setting from the environment (the CLI reads it)."""
    for name in ENV_NAMES:
        monkeypatch.delenv(name, raising=False)


def cli_project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, articles: int) -> dict[str, str]:
    """A project the in-process CLI works on: base_env set in the environment, tmp_path as
    the working folder, and a SQLite store holding `articles` sample articles."""
    monkeypatch.chdir(tmp_path)
    values = base_env(tmp_path)
    values["DATABASE_URL"] = f"sqlite:///{tmp_path / 'state.sqlite3'}"
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    store = Store.open(values["DATABASE_URL"], tmp_path)
    try:
        add_articles(store, *sample_articles(articles))
    finally:
        store.close()
    return values
