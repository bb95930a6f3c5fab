"""`digest bounces fetch`: read returned messages from an IMAP mailbox over TLS.

Unseen messages of BOUNCE_IMAP_URL's mailbox are fetched one by one
(``BODY.PEEK[]``, so a crash leaves them unseen) and applied by
:func:`digest.mail.bounces.apply_message`. A message that changed a
subscriber is then deleted, or moved to the folder BOUNCE_IMAP_DONE names
(COPY, then delete); any other message is only marked seen, left for a person.
The connection is always TLS: imaps:// (implicit TLS) or imap:// with
STARTTLS, refused when the server does not offer it.
"""

from __future__ import annotations

import contextlib
import imaplib
import logging
import re
import ssl
from datetime import datetime
from typing import Any

from digest.errors import MailError
from digest.mail.bounces import ACTED, ImportSummary, apply_message, check_bounce_settings
from digest.settings import ImapMailbox, Settings
from digest.store.database import Store

log = logging.getLogger("digest.mail")
MAX_MESSAGES = 1000  # per run; the next run takes the rest
_HINT = "check BOUNCE_IMAP_URL (host, port, user name, password, mailbox) and the server"


class ImapError(MailError):
    """The IMAP mailbox of BOUNCE_IMAP_URL cannot be read."""


def fetch_bounces(settings: Settings, store: Store, now: datetime,
                  ssl_context: ssl.SSLContext | None = None) -> ImportSummary:
    bounce_address, secret = check_bounce_settings(settings)
    box = settings.bounce_imap
    if box is None:
        raise ImapError("BOUNCE_IMAP_URL is not set; it is needed to fetch bounces",
                        "set BOUNCE_IMAP_URL=imaps://user:password@imap.example.org/INBOX")
    context = ssl_context or ssl.create_default_context()
    summary = ImportSummary()
    imap = _connect(box, context, settings.smtp_timeout)
    try:
        _login(imap, box)
        _ok(imap.select(_quote(box.mailbox)), f"select {box.mailbox}")
        typ, data = imap.uid("SEARCH", "UNSEEN")
        _ok((typ, data), "search")
        uids = (data[0] or b"").split()[:MAX_MESSAGES] if data else []
        acted: list[bytes] = []
        for uid in uids:
            typ, parts = imap.uid("FETCH", uid.decode("ascii"), "(BODY.PEEK[])")
            raw = next((p[1] for p in parts if isinstance(p, tuple) and len(p) == 2), None)
            if typ != "OK" or not isinstance(raw, bytes):
                continue
            outcome = apply_message(store, f"imap:{box.mailbox}/{uid.decode('ascii')}", raw,
                                    bounce_address, secret, now)
            summary.outcomes.append(outcome)
            if outcome.result in ACTED:
                acted.append(uid)
            else:
                imap.uid("STORE", uid.decode("ascii"), "+FLAGS", "(\\Seen)")
        if acted:
            _done(imap, b",".join(acted).decode("ascii"), settings.bounce_imap_done)
        imap.close()
    except (imaplib.IMAP4.error, OSError) as exc:
        raise ImapError(f"IMAP {box.host}:{box.port}: {_describe(exc)}", _HINT) from exc
    finally:
        with contextlib.suppress(imaplib.IMAP4.error, OSError):
            imap.logout()
    return summary


def _connect(box: ImapMailbox, context: ssl.SSLContext, timeout: float) -> imaplib.IMAP4:
    try:
        if box.security == "ssl":
            return imaplib.IMAP4_SSL(box.host, box.port, ssl_context=context, timeout=timeout)
        imap = imaplib.IMAP4(box.host, box.port, timeout=timeout)
        try:
            if "STARTTLS" not in imap.capabilities:
                raise ImapError(f"the IMAP server {box.host}:{box.port} does not offer STARTTLS",
                                "use imaps:// in BOUNCE_IMAP_URL, or a server with TLS")
            imap.starttls(context)
        except BaseException:
            with contextlib.suppress(OSError, imaplib.IMAP4.error):
                imap.shutdown()
            raise
        return imap
    except ssl.SSLCertVerificationError as exc:
        raise ImapError(f"the TLS certificate of {box.host}:{box.port} is not trusted: "
                        f"{exc.verify_message}", "check the host name in BOUNCE_IMAP_URL, or "
                        "add the CA to the system's trust (SSL_CERT_FILE)") from exc
    except (imaplib.IMAP4.error, OSError) as exc:
        raise ImapError(f"cannot connect to the IMAP server {box.host}:{box.port}: "
                        f"{_describe(exc)}", _HINT) from exc


def _login(imap: imaplib.IMAP4, box: ImapMailbox) -> None:
    try:
        _ok(imap.login(box.username, box.password), "login")
    except imaplib.IMAP4.error as exc:
        raise ImapError(f"IMAP login failed for {box.username!r} at {box.host}:{box.port}: "
                        f"{_describe(exc)}", "check the user name and password in "
                        "BOUNCE_IMAP_URL (percent-encoded)") from exc


def _done(imap: imaplib.IMAP4, uids: str, done: str) -> None:
    if done.lower() != "delete":
        _ok(imap.uid("COPY", uids, _quote(done)), f"copy to {done}")
    _ok(imap.uid("STORE", uids, "+FLAGS", "(\\Deleted)"), "delete")
    _ok(imap.expunge(), "expunge")


def _ok(reply: tuple[str, Any], what: str) -> None:
    typ, data = reply
    if typ != "OK":
        text = b" ".join(d for d in data if isinstance(d, bytes)).decode("utf-8", "replace")
        raise imaplib.IMAP4.error(f"{what} failed: {text}")


def _quote(mailbox: str) -> str:
    return '"' + re.sub(r'(["\\])', r"\\\1", mailbox) + '"'


def _describe(exc: BaseException) -> str:
    return " ".join((str(exc) or type(exc).__name__).split())
