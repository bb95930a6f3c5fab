"""The topics the sign-up and manage pages offer: read from the store at most once a minute.

Every GET of those pages asks for them; reading every article's tags each time
would let a stream of requests keep the store busy. A real store (SQLite and
PostgreSQL), a clock the test moves.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

from digest.mail.smtp import SMTPMailer
from digest.model import StoredArticle
from digest.settings import load_settings
from digest.store.database import Store
from digest.web.signup import TOPICS_FOR, Signup
from tests.fixtures_mail import NOW, add_articles, article
from tests.fixtures_serve import SECRET_KEY


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def tagged(key: str, *tags: str) -> StoredArticle:
    return dataclasses.replace(article(key, key, NOW), tags=tags)


def test_topics_are_read_once_a_minute_and_new_tags_follow(tmp_path: Path, store: Store) -> None:
    settings = load_settings({"BASE_URL": "https://news.example.org/", "SECRET_KEY": SECRET_KEY,
                              "SUBSCRIBE_FORM": "on",
                              "DIGEST_FROM": "Example News <news@example.org>"}, tmp_path)
    clock = Clock()
    signup = Signup(settings, store, lambda: SMTPMailer(settings), monotonic=clock)
    add_articles(store, tagged("a.txt", "Plain Text", "meta"))
    assert signup.topics() == ["meta", "plain-text"]

    add_articles(store, tagged("b.txt", "Python"))
    clock.now += TOPICS_FOR - 1
    assert signup.topics() == ["meta", "plain-text"]  # a burst of requests: no new read
    clock.now += 1
    assert signup.topics() == ["meta", "plain-text", "python"]  # within a minute of its publish
