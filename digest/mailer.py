"""Mail delivery behind a small interface: :class:`Mailer`.

``send(message)`` returns when the server accepted the message, or raises:

* :class:`TemporaryFailure`: a 4xx reply or a network error; try again later
  (``connection_lost`` says whether the connection itself failed);
* :class:`PermanentFailure`: a 5xx reply for this recipient; do not retry;
* :class:`digest.errors.SMTPConfigError`: the settings are wrong
  (login refused, TLS mismatch, unknown host); stop the run.

:class:`SMTPMailer` speaks SMTP with :mod:`smtplib` over one connection,
reused across messages (RSET between them) and reopened after a drop.
The password is handed to smtplib only; it is never logged or put in an error.
"""

from __future__ import annotations

import contextlib
import logging
import smtplib
import socket
import ssl
import threading
from typing import Protocol

from digest.errors import MailError, SMTPConfigError
from digest.mail_message import OutgoingMessage
from digest.settings import Settings

log = logging.getLogger("digest.mail")

_AUTH_HINT = "check SMTP_USERNAME and SMTP_PASSWORD"
_TLS_HINT = ("check SMTP_SECURITY and SMTP_PORT: ssl is usually port 465, starttls port 587, "
             "none a local relay on port 25")


class DeliveryError(MailError):
    """The server did not take a message."""

    def __init__(self, message: str, reply: str, code: int | None = None) -> None:
        super().__init__(message)
        self.reply = reply
        self.code = code


class TemporaryFailure(DeliveryError):
    """4xx reply or network failure: the same message may succeed later."""

    def __init__(self, message: str, reply: str, code: int | None = None,
                 connection_lost: bool = False) -> None:
        super().__init__(message, reply, code)
        self.connection_lost = connection_lost


class PermanentFailure(DeliveryError):
    """5xx reply: this recipient will not take this message."""


class Mailer(Protocol):
    """Delivers one message at a time; close() ends the session."""

    def send(self, message: OutgoingMessage) -> None: ...

    def close(self) -> None: ...


class SMTPMailer:
    """A Mailer over SMTP. `ssl_context` defaults to the system's trust (or SMTP_CA_FILE)."""

    def __init__(self, settings: Settings, ssl_context: ssl.SSLContext | None = None,
                 local_hostname: str | None = None) -> None:
        self.host = settings.smtp_host
        self.port = settings.smtp_effective_port
        self.security = settings.smtp_security
        self.username = settings.smtp_username
        self._password = settings.smtp_password or ""
        self.timeout = settings.smtp_timeout
        self.local_hostname = local_hostname or "localhost"
        self._ca_file = settings.smtp_ca_file
        self._context = ssl_context
        self._smtp: smtplib.SMTP | None = None
        self._used = False

    def __repr__(self) -> str:
        return f"SMTPMailer({self.host}:{self.port}, {self.security}, user={self.username!r})"

    @property
    def where(self) -> str:
        return f"{self.host}:{self.port}"

    def send(self, message: OutgoingMessage) -> None:
        smtp = self._connection()
        try:
            if self._used:
                code, _text = smtp.rset()
                if code != 250:
                    raise smtplib.SMTPServerDisconnected(f"RSET answered {code}")
            self._used = True
            smtp.sendmail(message.sender, [message.recipient], message.data)
        except smtplib.SMTPRecipientsRefused as exc:
            code, text = next(iter(exc.recipients.values()))
            self._after_refusal(code)
            raise _by_code(code, text, f"the server refused {message.recipient}") from exc
        except smtplib.SMTPSenderRefused as exc:
            self._after_refusal(exc.smtp_code)
            reply = _reply(exc.smtp_code, exc.smtp_error)
            if exc.smtp_code == 530 or b"auth" in exc.smtp_error.lower():
                raise SMTPConfigError(f"the SMTP server {self.where} requires a login: {reply}",
                                      "set SMTP_USERNAME and SMTP_PASSWORD") from exc
            if exc.smtp_code >= 500:
                raise SMTPConfigError(f"the SMTP server {self.where} refused the sender "
                                      f"{message.sender}: {reply}",
                                      "check DIGEST_FROM: the server may only accept its own "
                                      "addresses as sender") from exc
            raise TemporaryFailure(f"the server deferred the sender: {reply}", reply,
                                   exc.smtp_code) from exc
        except smtplib.SMTPDataError as exc:
            self._after_refusal(exc.smtp_code)
            raise _by_code(exc.smtp_code, exc.smtp_error,
                           f"the server refused the message to {message.recipient}") from exc
        except smtplib.SMTPResponseException as exc:
            self._after_refusal(exc.smtp_code)
            raise _by_code(exc.smtp_code, exc.smtp_error, "the server refused") from exc
        except (smtplib.SMTPException, OSError) as exc:
            self._drop()
            reply = _describe(exc)
            raise TemporaryFailure(f"connection to {self.where} failed: {reply}", reply,
                                   connection_lost=True) from exc

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
            self._used = False
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
                                   connection_lost=True) from exc

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

    def _drop(self) -> None:
        smtp, self._smtp = self._smtp, None
        _close_quietly(smtp)


class MemoryMailer:
    """An in-memory Mailer for tests and dry runs: keeps what it was given."""

    def __init__(self) -> None:
        self.sent: list[OutgoingMessage] = []
        self.closed = False
        self._lock = threading.Lock()

    def send(self, message: OutgoingMessage) -> None:
        with self._lock:
            self.sent.append(message)

    def close(self) -> None:
        self.closed = True


def _by_code(code: int, text: bytes | str, what: str) -> DeliveryError:
    reply = _reply(code, text)
    if 400 <= code < 500:
        return TemporaryFailure(f"{what} for now: {reply}", reply, code,
                                connection_lost=code == 421)
    return PermanentFailure(f"{what}: {reply}", reply, code)


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
