"""Mail delivery behind a small interface: :class:`Mailer`.

``send(message)`` returns when the server accepted the message, or raises:

* :class:`TemporaryFailure`: a 4xx reply or a network error; try again later
  (``connection_lost`` says whether the connection itself failed);
* :class:`PermanentFailure`: a 5xx reply for this recipient; do not retry;
* :class:`OutcomeUnknown`: the whole message was sent but the reply to its end
  of data was lost (no reply within ``end_of_data_timeout``, or the connection
  dropped): the server may have accepted it, so do not retry it at once;
* :class:`digest.errors.SMTPConfigError`: the settings are wrong
  (login refused, TLS mismatch, unknown host); stop the run.

``send(message, meanwhile)`` also takes a callable that runs while the server
reads the message, before the end of data is sent: the send loop records
the *previous* message as sent there, so the state store's write overlaps
the SMTP round trips, and yet no message is accepted before the one before
it is recorded.

:class:`SMTPMailer` speaks SMTP with :mod:`smtplib` over one connection,
reused across messages and reopened after a drop. A transaction that did not
end with the server's acceptance is followed by RSET before the next one; a
completed transaction needs none (RFC 5321, 4.1.1.4: the end of data resets
the state). The password is handed to smtplib only; it is never logged or put
in an error.
"""

from __future__ import annotations

import contextlib
import logging
import re
import smtplib
import socket
import ssl
import threading
from collections.abc import Callable
from typing import Protocol

from digest.addresses import is_normal_address
from digest.errors import MailError, SMTPConfigError
from digest.mail.message import OutgoingMessage
from digest.settings import Settings

log = logging.getLogger("digest.mail")

_AUTH_HINT = "check SMTP_USERNAME and SMTP_PASSWORD"
_TLS_HINT = ("check SMTP_SECURITY and SMTP_PORT: ssl is usually port 465, starttls port 587, "
             "none a local relay on port 25")


class DeliveryError(MailError):
    """The server did not take a message. Each kind carries a hint on what to do."""

    default_hint: str | None = None

    def __init__(self, message: str, reply: str, code: int | None = None) -> None:
        super().__init__(message, self.default_hint)
        self.reply = reply
        self.code = code
        # The reply is about the recipient (to RCPT, or to the data with an RFC 3463
        # addressing or mailbox status, X.1.Y or X.2.Y): a bounce, counted against it.
        self.about_recipient = False


class TemporaryFailure(DeliveryError):
    """4xx reply or network failure: the same message may succeed later."""

    default_hint = ("a temporary failure: the next `digest send` tries again; "
                    "if it persists, check SMTP_HOST and the server's log")

    def __init__(self, message: str, reply: str, code: int | None = None,
                 connection_lost: bool = False, unreached: bool = False) -> None:
        super().__init__(message, reply, code)
        self.connection_lost = connection_lost or unreached
        # No session with the server at all (connect, greeting, TLS, login): the relay's
        # trouble, not this message's; such attempts do not count toward giving it up.
        self.unreached = unreached
        # The server refuses another session from us: send over fewer connections.
        self.too_many_connections = too_many_connections(reply)


class PermanentFailure(DeliveryError):
    """5xx reply: this recipient will not take this message."""

    default_hint = "the server refused this recipient: check the address (it is not retried)"


class OutcomeUnknown(DeliveryError):
    """The reply to the end of data was lost: the message may or may not have been accepted."""

    default_hint = ("the server may have the message: a `digest send` 30 minutes later or more "
                    "sends it once more, with the same Message-ID")


_TOO_MANY = re.compile(r"too many (?:[a-z]+ ){0,2}(?:connections|sessions)", re.IGNORECASE)


def too_many_connections(reply: str) -> bool:
    """A 4xx reply (421, 452, 4.7.0 ...) saying we hold too many connections to the server."""
    return reply[:1] == "4" and _TOO_MANY.search(reply) is not None


# RFC 5321, 4.5.3.2.6: a client should wait 10 minutes for the reply to the end of data.
END_OF_DATA_TIMEOUT = 600.0


Meanwhile = Callable[[], None]


class Mailer(Protocol):
    """Delivers one message at a time; close() ends the session.

    `meanwhile`, when given, must be called at most once, and before the
    server can accept `message` (so: always, when send returns normally).
    It may be skipped when sending fails before that point; an exception
    from it fails the send with that exception, the message not accepted.
    """

    def send(self, message: OutgoingMessage, meanwhile: Meanwhile | None = None) -> None: ...

    def close(self) -> None: ...


class SMTPMailer:
    """A Mailer over SMTP. `ssl_context` defaults to the system's trust (or SMTP_CA_FILE)."""

    def __init__(self, settings: Settings, ssl_context: ssl.SSLContext | None = None,
                 local_hostname: str | None = None,
                 end_of_data_timeout: float = END_OF_DATA_TIMEOUT) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_effective_port
        self.security = settings.smtp_security
        self.username = settings.smtp_username
        self._password = settings.smtp_password or ""
        self.timeout = settings.smtp_timeout
        # SMTP_TIMEOUT is for connecting and the other commands, never shorter.
        self.end_of_data_timeout = max(end_of_data_timeout, self.timeout)
        self.local_hostname = local_hostname or "localhost"
        self._ca_file = settings.smtp_ca_file
        self._context = ssl_context
        self._smtp: smtplib.SMTP | None = None
        self._dirty = False  # a transaction was begun and not completed: RSET first
        self._size = False  # the server takes the SIZE parameter

    def __repr__(self) -> str:
        return f"SMTPMailer({self.host}:{self.port}, {self.security}, user={self.username!r})"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def send(self, message: OutgoingMessage, meanwhile: Meanwhile | None = None) -> None:
        sender, recipient = message.sender, message.recipient
        if not is_normal_address(sender):
            raise SMTPConfigError(f"the sender {sender!r} cannot be sent over SMTP",
                                  "check DIGEST_FROM: a plain ASCII address is needed")
        if not is_normal_address(recipient):
            refused = PermanentFailure(f"{recipient!r} cannot be sent over SMTP",
                                       "550 not a plain ASCII address (checked by digest)")
            refused.about_recipient = True
            raise refused
        smtp = self._connection()
        try:
            if self._dirty:
                code, _text = smtp.rset()
                if code != 250:
                    raise smtplib.SMTPServerDisconnected(f"RSET answered {code}")
            self._dirty = True
            self._transaction(smtp, message, meanwhile)
            self._dirty = False
        except _Refused as exc:
            self._after_refusal(exc.code)
            raise self._refusal(exc, message) from None
        except _Lost as exc:
            self._drop()
            raise OutcomeUnknown(
                f"the message to {recipient} was sent, but {self.where} gave no reply to its "
                f"end of data ({exc.reason}): it may or may not have been accepted",
                f"no reply after the data: {exc.reason}") from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            reply = _describe(exc)
            raise TemporaryFailure(f"connection to {self.where} failed: {reply}", reply,
                                   connection_lost=True) from exc

    def _transaction(self, smtp: smtplib.SMTP, message: OutgoingMessage,
                     meanwhile: Meanwhile | None) -> None:
        """MAIL, RCPT, DATA; `meanwhile` runs before the final "." is sent."""
        data = message.data.replace(b"\n.", b"\n..")  # dot-stuffing, as smtplib does it
        if data.startswith(b"."):
            data = b"." + data
        if not data.endswith(b"\r\n"):
            data += b"\r\n"
        size = f" SIZE={len(message.data)}" if self._size else ""
        smtp.putcmd("mail", f"FROM:<{message.sender}>{size}")
        _expect(smtp, "mail", 250)
        smtp.putcmd("rcpt", f"TO:<{message.recipient}>")
        _expect(smtp, "rcpt", 250, 251)
        smtp.putcmd("data")
        _expect(smtp, "data", 354)
        smtp.send(data)
        if meanwhile is not None:
            try:
                meanwhile()
            except BaseException:
                # The server is reading message data: no command can abort it, so
                # close the connection, which discards the message.
                self._drop()
                raise
        smtp.send(b".\r\n")
        # From here the server may have stored the message: a lost reply is no refusal.
        try:
            if smtp.sock is not None:
                smtp.sock.settimeout(self.end_of_data_timeout)
            _expect(smtp, "end of data", 250)
            if smtp.sock is not None:
                smtp.sock.settimeout(self.timeout)
        except (smtplib.SMTPServerDisconnected, OSError) as exc:
            raise _Lost(_describe(exc)) from exc

    def _refusal(self, exc: _Refused, message: OutgoingMessage) -> MailError:
        reply = _reply(exc.code, exc.text)
        if exc.stage == "mail":
            if exc.code == 530 or b"auth" in exc.text.lower():
                return SMTPConfigError(f"the SMTP server {self.where} requires a login: {reply}",
                                       "set SMTP_USERNAME and SMTP_PASSWORD")
            if exc.code >= 500:
                return SMTPConfigError(f"the SMTP server {self.where} refused the sender "
                                       f"{message.sender}: {reply}",
                                       "check DIGEST_FROM: the server may only accept its own "
                                       "addresses as sender")
            return TemporaryFailure(f"the server deferred the sender: {reply}", reply,
                                    exc.code, connection_lost=exc.code == 421)
        if exc.stage == "rcpt":
            return _by_code(exc.code, exc.text, f"the server refused {message.recipient}", True)
        return _by_code(exc.code, exc.text,
                        f"the server refused the message to {message.recipient}",
                        _MAILBOX_STATUS.match(_reply(exc.code, exc.text)) is not None)

    def close(self) -> None:
        smtp, self._smtp = self._smtp, None
        if smtp is None:
            return
        try:
            smtp.quit()
        except (smtplib.SMTPException, OSError):
            pass
        finally:
            smtp.close()

    # -- connection ------------------------------------------------------------------

    def _connection(self) -> smtplib.SMTP:
        if self._smtp is None:
            self._smtp = self._connect()
            self._dirty = False
            self._size = self._smtp.does_esmtp and self._smtp.has_extn("size")
        return self._smtp

    def _connect(self) -> smtplib.SMTP:
        log.debug("connecting to %s (%s)", self.where, self.security)
        smtp: smtplib.SMTP | None = None
        try:
            if self.security == "ssl":
                smtp = smtplib.SMTP_SSL(self.host, self.port, local_hostname=self.local_hostname,
                                        timeout=self.timeout, context=self._ssl_context())
            else:
                smtp = smtplib.SMTP(self.host, self.port, local_hostname=self.local_hostname,
                                    timeout=self.timeout)
            smtp.ehlo()
            if self.security == "starttls":
                if not smtp.has_extn("starttls"):
                    raise SMTPConfigError(f"the SMTP server {self.where} does not offer STARTTLS",
                                          _TLS_HINT)
                smtp.starttls(context=self._ssl_context())
                smtp.ehlo()
            if self.username:
                self._login(smtp)
            if smtp.sock is not None:
                # Commands and data are written without waiting for the Nagle timer.
                with contextlib.suppress(OSError):
                    smtp.sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            return smtp
        except SMTPConfigError:
            _close_quietly(smtp)
            raise
        except ssl.SSLCertVerificationError as exc:
            _close_quietly(smtp)
            raise SMTPConfigError(
                f"the TLS certificate of {self.where} is not trusted: {exc.verify_message}",
                "check that SMTP_HOST is the name on the server's certificate, or set "
                "SMTP_CA_FILE to the CA that signed it") from exc
        except ssl.SSLError as exc:
            _close_quietly(smtp)
            raise SMTPConfigError(f"TLS with {self.where} failed: {exc.reason or exc}",
                                  _TLS_HINT) from exc
        except socket.gaierror as exc:
            _close_quietly(smtp)
            raise SMTPConfigError(f"SMTP_HOST={self.host!r}: unknown host ({exc.strerror})",
                                  "check SMTP_HOST") from exc
        except (smtplib.SMTPException, OSError) as exc:
            _close_quietly(smtp)
            reply = _describe(exc)
            hint = "" if self.security == "ssl" else f" ({_TLS_HINT})"
            raise TemporaryFailure(f"cannot connect to the SMTP server {self.where}: {reply}"
                                   f"{hint if isinstance(exc, TimeoutError) else ''}", reply,
                                   unreached=True) from exc

    def _login(self, smtp: smtplib.SMTP) -> None:
        try:
            smtp.login(self.username or "", self._password)
        except smtplib.SMTPAuthenticationError as exc:
            reply = _reply(exc.smtp_code, exc.smtp_error)
            raise SMTPConfigError(f"the SMTP server {self.where} refused the login of "
                                  f"SMTP_USERNAME={self.username!r}: {reply}", _AUTH_HINT) from exc
        except smtplib.SMTPNotSupportedError as exc:
            extra = "" if self.security != "none" else " (many servers offer it only over TLS)"
            raise SMTPConfigError(f"the SMTP server {self.where} does not offer AUTH{extra}",
                                  "leave SMTP_USERNAME empty for a server without login, or "
                                  "set SMTP_SECURITY=starttls or ssl") from exc
        except smtplib.SMTPException as exc:
            if isinstance(exc, smtplib.SMTPServerDisconnected):
                raise
            raise SMTPConfigError(f"login to {self.where} failed: {_describe(exc)}",
                                  _AUTH_HINT) from exc

    def _ssl_context(self) -> ssl.SSLContext:
        if self._context is None:
            try:
                self._context = ssl.create_default_context(
                    cafile=str(self._ca_file) if self._ca_file else None)
            except (OSError, ssl.SSLError) as exc:
                raise SMTPConfigError(f"SMTP_CA_FILE={self._ca_file}: cannot load ({exc})",
                                      "point SMTP_CA_FILE to a PEM file of CA certificates"
                                      ) from exc
        return self._context

    def _after_refusal(self, code: int) -> None:
        if code == 421 or self._smtp is None or self._smtp.sock is None:
            self._drop()  # 421: the server closes the connection
        # Otherwise the connection stays, _dirty set: RSET before the next message.

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        _close_quietly(smtp)


class MemoryMailer:
    """An in-memory Mailer for tests and dry runs: keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []
        self.closed = False
        self._lock = threading.Lock()

    def send(self, message: OutgoingMessage, meanwhile: Meanwhile | None = None) -> None:
        if meanwhile is not None:
            meanwhile()
        with self._lock:
            self.sent.append(message)

    def close(self) -> None:
        self.closed = True


class _Refused(Exception):
    """A reply that ends the transaction (internal; send() maps it to a DeliveryError)."""

    def __init__(self, stage: str, code: int, text: bytes) -> None:
        super().__init__(stage, code)
        self.stage = stage
        self.code = code
        self.text = text


class _Lost(Exception):
    """No reply to the end of data (internal; send() maps it to OutcomeUnknown)."""

    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def _expect(smtp: smtplib.SMTP, stage: str, *codes: int) -> None:
    """Read a reply; raise _Refused unless its code is one of `codes`."""
    code, text = smtp.getreply()
    if code in codes:
        return
    if not 200 <= code < 600:
        raise smtplib.SMTPServerDisconnected(f"unreadable reply to {stage}: {_reply(code, text)}")
    raise _Refused(stage, code, text)


# A reply whose RFC 3463 enhanced status is about the address or the mailbox.
_MAILBOX_STATUS = re.compile(r"^[45]\d\d [45]\.[12]\.\d{1,3}\b")


def _by_code(code: int, text: bytes | str, what: str, about_recipient: bool) -> DeliveryError:
    reply = _reply(code, text)
    error: DeliveryError
    if 400 <= code < 500:
        error = TemporaryFailure(f"{what} for now: {reply}", reply, code,
                                 connection_lost=code == 421)
    else:
        error = PermanentFailure(f"{what}: {reply}", reply, code)
    error.about_recipient = about_recipient and code != 421
    return error


def _reply(code: int, text: bytes | str) -> str:
    if isinstance(text, bytes):
        text = text.decode("utf-8", "replace")
    return f"{code} {' '.join(text.split())}"


def _describe(exc: BaseException) -> str:
    if isinstance(exc, smtplib.SMTPResponseException):
        return _reply(exc.smtp_code, exc.smtp_error)
    text = str(exc) or type(exc).__name__
    return " ".join(text.split())


def _close_quietly(smtp: smtplib.SMTP | None) -> None:
    if smtp is not None:
        with contextlib.suppress(OSError):
            smtp.close()
