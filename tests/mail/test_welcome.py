"""The welcome mail: `digest subscribers add/import --welcome`, templates, links."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path

from digest.mail.tokens import verify_token
from digest.store.database import Store
from tests.conftest import base_env, digest_cli
from tests.fixtures_mail import NOW, SMTPServer, add_articles, article, sample_articles

Start = Callable[..., SMTPServer]


def test_add_with_welcome_mails_each_new_subscriber_once(tmp_path: Path,
                                                         smtp_servers: Start) -> None:
    server = smtp_servers()
    env = {**base_env(tmp_path), **server.env(),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'state.sqlite3'}"}
    store = Store.open(env["DATABASE_URL"], tmp_path)
    try:
        add_articles(store, *sample_articles(7),
                     article("draft.txt", "A draft", NOW, status="draft"))
    finally:
        store.close()
    result = digest_cli("subscribers", "add", "--welcome", "ann@example.org",
                        "Bob <bob@example.org>", cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    assert "2 welcome mails sent" in result.stdout
    assert sorted(r.rcpt_to for r in server.received) == ["ann@example.org", "bob@example.org"]
    mail = next(r for r in server.received if r.rcpt_to == "ann@example.org").parsed()
    assert mail["Subject"] == "Welcome to Example News"
    assert mail["Auto-Submitted"] == "auto-generated"
    text = mail.get_body(("plain",))
    html = mail.get_body(("html",))
    assert text is not None and html is not None
    lines = text.get_content()
    # The 5 newest published articles, newest first; no draft.
    shown = [n for n in range(7) if f"Headline number {n} (" in lines]
    assert shown == [2, 3, 4, 5, 6]
    assert lines.index("Headline number 6") < lines.index("Headline number 2")
    assert "A draft" not in lines
    assert 'style="' in html.get_content()  # CSS inlined
    token = str(mail["List-Unsubscribe"]).strip("<>").split("token=", 1)[1]
    assert verify_token(env["SECRET_KEY"], "unsubscribe", token, datetime.now(UTC),
                        None) == "ann@example.org"
    manage = lines.split("https://news.example.org/manage?token=", 1)[1].split()[0]
    assert verify_token(env["SECRET_KEY"], "manage", manage, datetime.now(UTC),
                        None) == "ann@example.org"
    assert "/manage?token=" in html.get_content()

    # Already subscribed: no second welcome.
    result = digest_cli("subscribers", "add", "--welcome", "ann@example.org", cwd=tmp_path,
                        env=env)
    assert result.returncode == 0, result.stderr
    assert len(server.received) == 2


def test_import_with_welcome_uses_an_overridden_template(tmp_path: Path,
                                                         smtp_servers: Start) -> None:
    server = smtp_servers()
    env = {**base_env(tmp_path), **server.env(),
           "DATABASE_URL": f"sqlite:///{tmp_path / 'state.sqlite3'}"}
    templates = Path(env["TEMPLATES_DIR"])
    templates.mkdir(parents=True, exist_ok=True)
    (templates / "welcome.txt").write_text(
        "Hello {{ address }}, {{ articles | length }} articles so far.\n"
        "Leave: {{ unsubscribe_url }}\n", "utf-8")
    people = tmp_path / "people.txt"
    people.write_text("carol@example.org\n", "utf-8")
    result = digest_cli("subscribers", "import", "--welcome", str(people), cwd=tmp_path, env=env)
    assert result.returncode == 0, result.stderr
    [received] = server.received
    text = received.parsed().get_body(("plain",))
    assert text is not None
    assert text.get_content().startswith("Hello carol@example.org, 0 articles so far.\r\n")


def test_welcome_needs_the_mail_settings(tmp_path: Path) -> None:
    env = {**base_env(tmp_path), "DIGEST_FROM": "",
           "DATABASE_URL": f"sqlite:///{tmp_path / 'state.sqlite3'}"}
    result = digest_cli("subscribers", "add", "--welcome", "ann@example.org", cwd=tmp_path,
                        env=env)
    assert result.returncode == 2
    assert "DIGEST_FROM" in result.stderr
    result = digest_cli("subscribers", "list", cwd=tmp_path, env=env)
    assert result.stdout == ""  # checked before anything was subscribed
