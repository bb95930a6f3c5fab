"""A real IMAP server (Dovecot, from Debian's dovecot-imapd) for the bounce fetch tests.

``imap_mailbox`` gives each test a fresh user on one Dovecot per session,
listening on 127.0.0.1 with implicit TLS (imaps) and STARTTLS (imap), its
certificate signed by the ``tls`` fixture's CA. Without Dovecot (or without
root, which its master process needs here) the tests are skipped with a
notice; in CI they fail instead.
"""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.conftest import missing, stop_process, wait_for
from tests.fixtures_mail import TLS, free_port

_CONFIG = """\
base_dir = {d}/run
state_dir = {d}/state
log_path = {d}/dovecot.log
protocols = imap
listen = 127.0.0.1
ssl = required
ssl_cert = <{d}/cert.pem
ssl_key = <{d}/key.pem
auth_mechanisms = plain login
passdb {{
  driver = static
  args = password={password}
}}
userdb {{
  driver = static
  args = uid=65534 gid=65534 home={d}/home/%u
}}
mail_location = maildir:~/Maildir
first_valid_uid = 1
service imap-login {{
  chroot =
  inet_listener imap {{
    port = {imap}
  }}
  inet_listener imaps {{
    port = {imaps}
    ssl = yes
  }}
}}
service anvil {{
  chroot =
}}
"""


@dataclass(frozen=True)
class Dovecot:
    """Any user name logs in with `password` (a static passdb); each has its own mailbox."""

    folder: Path
    imap_port: int
    imaps_port: int
    ca_file: Path
    password: str

    def add_user(self) -> tuple[str, str]:
        return f"u{uuid.uuid4().hex[:10]}", self.password


@dataclass(frozen=True)
class ImapMailbox:
    server: Dovecot
    user: str
    password: str

    def url(self, scheme: str = "imaps", mailbox: str = "INBOX") -> str:
        port = self.server.imaps_port if scheme == "imaps" else self.server.imap_port
        return f"{scheme}://{self.user}:{self.password}@localhost:{port}/{mailbox}"


def _dovecot_binary() -> str | None:
    found = shutil.which("dovecot") or "/usr/sbin/dovecot"
    return found if os.access(found, os.X_OK) else None


@pytest.fixture(scope="session")
def dovecot(tls: TLS) -> Iterator[Dovecot]:
    binary = _dovecot_binary()
    reason = ("Dovecot is not installed (apt-get install dovecot-imapd)" if binary is None
              else "Dovecot needs root here" if os.geteuid() != 0 else None)
    if reason:
        missing(reason, "the IMAP tests are skipped")
    assert binary is not None
    folder = Path(tempfile.mkdtemp(prefix="digest-dovecot-"))  # not under pytest's 0700 tmp
    folder.chmod(0o755)
    for sub in ("run", "state", "home"):
        (folder / sub).mkdir()
    os.chown(folder / "home", 65534, 65534)
    cert = tls.ca.issue_cert("localhost", "127.0.0.1")
    cert.private_key_pem.write_to_path(str(folder / "key.pem"))
    cert.cert_chain_pems[0].write_to_path(str(folder / "cert.pem"))
    password = f"pw-{uuid.uuid4().hex}"
    imap, imaps = free_port(), free_port()
    (folder / "dovecot.conf").write_text(_CONFIG.format(d=folder, imap=imap, imaps=imaps,
                                                        password=password))
    process = subprocess.Popen([binary, "-F", "-c", str(folder / "dovecot.conf")],
                               stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)

    def listening() -> bool:
        if process.poll() is not None:
            pytest.fail(f"Dovecot exited: {process.stderr.read().decode() if process.stderr else ''}")
        try:
            with socket.create_connection(("127.0.0.1", imaps), timeout=1):
                return True
        except OSError:
            return False

    try:
        wait_for(listening, "Dovecot to listen")
        yield Dovecot(folder, imap, imaps, tls.ca_file, password)
    finally:
        stop_process(process)
        shutil.rmtree(folder, ignore_errors=True)


@pytest.fixture
def imap_mailbox(dovecot: Dovecot) -> ImapMailbox:
    """A fresh, empty IMAP mailbox (a new user name) on the session's Dovecot."""
    user, password = dovecot.add_user()
    return ImapMailbox(dovecot, user, password)
