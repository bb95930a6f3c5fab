"""Two (or more) confirmations of one address at the same moment queue one welcome mail.

Real threads racing on a real store (SQLite and PostgreSQL), real SMTP: the
change to subscribed is a compare-and-set, so exactly one confirmation sees it
happen and queues the welcome.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from datetime import timedelta
from pathlib import Path

import pytest

from digest.mail.smtp import SMTPMailer
from digest.mail.subscribers import add_pending, get_subscriber, subscribe, unsubscribe
from digest.mail.tokens import PURPOSE_CONFIRM, make_token
from digest.settings import load_settings
from digest.store.database import Store
from digest.web.signup import Signup
from tests.fixtures_mail import NOW, SMTPServer
from tests.fixtures_serve import SECRET_KEY, mails_to

RACERS = 8
ANN = "ann@example.org"


@pytest.mark.parametrize("before", ["pending", "unsubscribed"])
@pytest.mark.parametrize("round_", range(3))
def test_racing_confirmations_welcome_once(tmp_path: Path, store: Store, before: str,
                                           round_: int,
                                           smtp_servers: Callable[..., SMTPServer]) -> None:
    smtp = smtp_servers()
    settings = load_settings({"BASE_URL": "https://news.example.org/", "SECRET_KEY": SECRET_KEY,
                              "SUBSCRIBE_FORM": "on",
                              "DIGEST_FROM": "Example News <news@example.org>", **smtp.env()},
                             tmp_path)
    if before == "pending":
        add_pending(store, ANN, NOW)
    else:  # left, then asked again: the link issued after leaving subscribes again
        subscribe(store, ANN, NOW)
        unsubscribe(store, ANN, NOW + timedelta(minutes=1))
    token = make_token(SECRET_KEY, PURPOSE_CONFIRM, ANN, NOW + timedelta(minutes=2))
    signup = Signup(settings, store, lambda: SMTPMailer(settings))
    start = threading.Barrier(RACERS)
    answers: list[bool] = []
    errors: list[BaseException] = []

    def confirm() -> None:
        try:
            start.wait()
            answers.append(signup.confirm(token, NOW + timedelta(minutes=3))[1])
        except BaseException as exc:  # reported below
            errors.append(exc)

    threads = [threading.Thread(target=confirm) for _ in range(RACERS)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    assert not errors, errors
    assert answers == [True] * RACERS  # each one says: subscribed
    found = get_subscriber(store, ANN)
    assert found is not None and found.status == "subscribed"
    signup.start()
    try:
        assert signup.wait_idle(30)
    finally:
        signup.stop()
    welcomes = [m for m in mails_to(smtp, ANN)
                if str(m.parsed()["Subject"]).startswith("Welcome to ")]
    assert len(welcomes) == 1
