"""SMTPMailer against real SMTP servers (aiosmtpd): TLS, AUTH, replies, drops."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import pytest

from digest.errors import SMTPConfigError
from digest.mail.message import OutgoingMessage
from digest.mail.smtp import OutcomeUnknown, PermanentFailure, SMTPMailer, TemporaryFailure
from tests.conftest import make_settings
from tests.fixtures_mail import PASSWORD, TLS, Behaviour, SMTPServer, free_port

Start = Callable[..., SMTPServer]


def message(to: str = "ann@example.org", n: int = 1) -> OutgoingMessage:
    data = (f"From: news@example.org\r\nTo: {to}\r\nSubject: test {n}\r\n"
            f"Message-ID: <m{n}@example.org>\r\n\r\nbody {n}\r\n.leading dot\r\n").encode()
    return OutgoingMessage("news@example.org", to, f"<m{n}@example.org>", data)


def mailer(tmp_path: Path, server: SMTPServer, tls: TLS | None = None,
           **overrides: str) -> SMTPMailer:
    env = server.env()
    env.update(overrides)
    settings = make_settings(tmp_path, **env)
    return SMTPMailer(settings, ssl_context=tls.client_context() if tls else None)


@pytest.mark.parametrize("security", ["starttls", "ssl"])
def test_tls_and_auth_one_connection_reused(tmp_path: Path, smtp_servers: Start,
                                                   tls: TLS, security: str) -> None:
    server = smtp_servers(security=security, auth=True, tls=tls)
    m = mailer(tmp_path, server, tls)
    try:
        for n in range(3):
            m.send(message(f"r{n}@example.org", n))
    finally:
        m.close()
    assert [r.rcpt_to for r in server.received] == [f"r{n}@example.org" for n in range(3)]
    assert server.handler.connections == 1
    # A completed transaction resets the session (RFC 5321): no RSET between messages.
    assert server.handler.commands.count("RSET") == 0
    assert server.handler.auth_attempts == [("digest-user", PASSWORD)]
    assert b"\r\n.leading dot\r\n" in server.received[0].data  # dot-stuffing undone


def test_ca_file_setting_is_trusted(tmp_path: Path, smtp_servers: Start, tls: TLS) -> None:
    server = smtp_servers(security="starttls", auth=True, tls=tls)
    m = mailer(tmp_path, server, None, SMTP_CA_FILE=str(tls.ca_file))
    try:
        m.send(message())
    finally:
        m.close()
    assert len(server.received) == 1


def test_untrusted_certificate_names_the_settings(tmp_path: Path, smtp_servers: Start,
                                                  tls: TLS) -> None:
    server = smtp_servers(security="starttls", auth=True, tls=tls)
    m = mailer(tmp_path, server, None)
    with pytest.raises(SMTPConfigError) as caught:
        m.send(message())
    assert "SMTP_CA_FILE" in (caught.value.hint or "")
    assert "SMTP_HOST" in (caught.value.hint or "")
    m.close()


def test_ssl_against_plain_server_is_a_tls_mismatch(tmp_path: Path, smtp_servers: Start,
                                                    tls: TLS) -> None:
    server = smtp_servers(security="none")
    m = mailer(tmp_path, server, tls, SMTP_SECURITY="ssl", SMTP_HOST="localhost")
    with pytest.raises(SMTPConfigError) as caught:
        m.send(message())
    assert "SMTP_SECURITY" in (caught.value.hint or "")
    assert "SMTP_PORT" in (caught.value.hint or "")
    m.close()


def test_starttls_against_server_without_it(tmp_path: Path, smtp_servers: Start,
                                            tls: TLS) -> None:
    server = smtp_servers(security="none")
    m = mailer(tmp_path, server, tls, SMTP_SECURITY="starttls")
    with pytest.raises(SMTPConfigError, match="does not offer STARTTLS") as caught:
        m.send(message())
    assert "SMTP_SECURITY" in (caught.value.hint or "")
    m.close()


def test_wrong_password_stops_with_a_hint_and_no_password(tmp_path: Path, smtp_servers: Start,
                                                          tls: TLS) -> None:
    server = smtp_servers(security="starttls", auth=True, tls=tls)
    m = mailer(tmp_path, server, tls, SMTP_PASSWORD="wrong-password-xyz")
    with pytest.raises(SMTPConfigError) as caught:
        m.send(message())
    text = f"{caught.value.message} {caught.value.hint} {caught.value!r} {m!r}"
    assert "SMTP_USERNAME" in text and "SMTP_PASSWORD" in text
    assert "wrong-password-xyz" not in text
    assert server.received == []
    m.close()


def test_login_required_but_not_configured(tmp_path: Path, smtp_servers: Start,
                                           tls: TLS) -> None:
    server = smtp_servers(security="starttls", auth=True, tls=tls)
    m = mailer(tmp_path, server, tls, SMTP_USERNAME="", SMTP_PASSWORD="")
    with pytest.raises(SMTPConfigError) as caught:
        m.send(message())
    assert "SMTP_USERNAME" in (caught.value.hint or "")
    m.close()


def test_replies_map_to_failures(tmp_path: Path, smtp_servers: Start) -> None:
    server = smtp_servers(behaviour=Behaviour(
        rcpt_replies={"later@example.org": ["451 4.3.0 try again later"]},
        reject_always={"nobody@example.org": "550 5.1.1 no such user"}))
    m = mailer(tmp_path, server)
    try:
        with pytest.raises(PermanentFailure) as permanent:
            m.send(message("nobody@example.org"))
        assert permanent.value.reply == "550 5.1.1 no such user"
        with pytest.raises(TemporaryFailure) as temporary:
            m.send(message("later@example.org"))
        assert temporary.value.code == 451 and not temporary.value.connection_lost
        m.send(message("later@example.org"))  # the same connection still works
        m.send(message("ann@example.org"))
    finally:
        m.close()
    assert [r.rcpt_to for r in server.received] == ["later@example.org", "ann@example.org"]
    assert server.handler.connections == 1
    # Each refused transaction is followed by RSET; the accepted ones are not.
    assert [c for c in server.handler.commands if c != "EHLO"] == [
        "RCPT", "RSET", "RCPT", "RSET", "RCPT", "DATA", "RCPT", "DATA"]


def test_data_reply_5xx_and_4xx(tmp_path: Path, smtp_servers: Start) -> None:
    server = smtp_servers(behaviour=Behaviour(
        data_replies=["554 5.6.0 message refused", "452 4.3.1 insufficient storage"]))
    m = mailer(tmp_path, server)
    try:
        with pytest.raises(PermanentFailure, match="554"):
            m.send(message())
        with pytest.raises(TemporaryFailure, match="452"):
            m.send(message())
        m.send(message())
    finally:
        m.close()
    assert len(server.received) == 1


def test_meanwhile_runs_before_the_server_accepts(tmp_path: Path,
                                                  smtp_servers: Start) -> None:
    server = smtp_servers()
    m = mailer(tmp_path, server)
    seen: list[int] = []
    try:
        m.send(message("ann@example.org", 1))
        m.send(message("bob@example.org", 2), meanwhile=lambda: seen.append(len(server.received)))
    finally:
        m.close()
    assert seen == [1]  # called once, while the second message was not yet accepted
    assert len(server.received) == 2


def test_meanwhile_failing_abandons_the_message(tmp_path: Path, smtp_servers: Start) -> None:
    server = smtp_servers()
    m = mailer(tmp_path, server)

    def broken() -> None:
        raise RuntimeError("the store is down")

    try:
        with pytest.raises(RuntimeError, match="store is down"):
            m.send(message("ann@example.org", 1), meanwhile=broken)
        m.send(message("bob@example.org", 2))  # on a new connection
    finally:
        m.close()
    assert [r.rcpt_to for r in server.received] == ["bob@example.org"]
    assert server.handler.connections == 2


def test_unsendable_recipient_is_a_permanent_failure(tmp_path: Path,
                                                     smtp_servers: Start) -> None:
    server = smtp_servers()
    m = mailer(tmp_path, server)
    try:
        with pytest.raises(PermanentFailure):
            m.send(message("ann@example.org>\r\nRCPT TO:<eve@example.org", 1))
    finally:
        m.close()
    assert server.received == [] and "RCPT" not in server.handler.commands


def test_dropped_connection_is_reopened(tmp_path: Path, smtp_servers: Start) -> None:
    server = smtp_servers(behaviour=Behaviour(drop_on_data=1))
    m = mailer(tmp_path, server)
    try:
        with pytest.raises(OutcomeUnknown):  # dropped after the data: maybe delivered
            m.send(message())
        m.send(message())
    finally:
        m.close()
    assert len(server.received) == 1
    assert server.handler.connections == 2


def test_421_closes_and_reconnects(tmp_path: Path, smtp_servers: Start) -> None:
    server = smtp_servers(behaviour=Behaviour(
        rcpt_replies={"ann@example.org": ["421 4.7.0 too busy, closing"]}))
    m = mailer(tmp_path, server)
    try:
        with pytest.raises(TemporaryFailure) as caught:
            m.send(message())
        assert caught.value.connection_lost
        m.send(message())
    finally:
        m.close()
    assert len(server.received) == 1
    assert server.handler.connections == 2


def test_nothing_listening(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, SMTP_PORT=str(free_port()), SMTP_TIMEOUT="2s")
    m = SMTPMailer(settings)
    with pytest.raises(TemporaryFailure) as caught:
        m.send(message())
    assert caught.value.connection_lost
    m.close()


def test_unknown_host(tmp_path: Path) -> None:
    settings = make_settings(tmp_path, SMTP_HOST="no-such-host.invalid", SMTP_TIMEOUT="2s")
    m = SMTPMailer(settings)
    with pytest.raises(SMTPConfigError, match="SMTP_HOST"):
        m.send(message())
    m.close()
