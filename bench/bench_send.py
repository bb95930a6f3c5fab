"""Benchmark: deliver one digest edition to many recipients over local SMTP.

    python bench/bench_send.py [--recipients 10000] [--database-url URL]

An aiosmtpd server runs in a separate process (so it does not share our GIL)
and accepts every message. Printed, all in the same run:

* render: building the personalised messages (tokens, headers, both parts)
  for every recipient, without sending;
* floor: the standard library's smtplib sending the same pre-built messages
  over one connection (no store, no retries: the fastest a Python client can be);
* digest: `send_digest` (outbox rows, claims, a state-store commit per
  message, RSET between messages) with the real SMTPMailer;

and digest's throughput as a ratio of the floor.
"""

from __future__ import annotations

import argparse
import os
import smtplib
import socket
import subprocess
import sys
import tempfile
import time
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digest.mail_message import MessageFactory, message_id, sender_domain
from digest.mailer import SMTPMailer
from digest.outbox import Edition, Outbox
from digest.send import personal, render_edition, send_digest
from digest.settings import load_settings
from digest.store import Store, StoredArticle
from digest.subscribers import subscribe_many

NOW = datetime(2024, 5, 6, 7, 0, tzinfo=UTC)


def serve(port: int) -> None:
    """The sink server (runs in the child process)."""
    from aiosmtpd.controller import Controller

    class Sink:
        async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
            return "250 OK"

    controller = Controller(Sink(), hostname="127.0.0.1", port=port,
                            server_hostname="localhost")
    controller.start()
    print("ready", flush=True)
    try:
        sys.stdin.read()  # until the parent closes our stdin
    finally:
        controller.stop()


def free_port() -> int:
    with closing(socket.socket()) as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def articles(count: int) -> list[StoredArticle]:
    return [StoredArticle(
        key=f"{i:03d}.txt", entry_id=f"urn:x:{i}", slug=f"story-{i}", size=1, mtime_ns=1,
        content_hash="x", first_seen=NOW, last_changed=NOW,
        published=NOW - timedelta(hours=i), updated=NOW - timedelta(hours=i),
        title=f"Story number {i}: the council votes on the budget",
        author="Ann Author", tags=(),
        summary="The council met on Tuesday to vote on the budget for next year. " * 3,
        status="published") for i in range(count)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=10_000)
    parser.add_argument("--articles", type=int, default=10)
    parser.add_argument("--database-url", help="default: a temporary SQLite file")
    parser.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.serve:
        serve(args.serve)
        return

    port = free_port()
    server = subprocess.Popen([sys.executable, __file__, "--serve", str(port)],
                              stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout is not None and server.stdout.readline().strip() == "ready"
        with tempfile.TemporaryDirectory() as tmp:
            run(args, port, Path(tmp))
    finally:
        if server.stdin:
            server.stdin.close()
        server.wait(timeout=30)


def run(args: argparse.Namespace, port: int, tmp: Path) -> None:
    url = args.database_url or f"sqlite:///{tmp / 'bench.sqlite3'}"
    settings = load_settings({
        "BASE_URL": "https://news.example.org/", "SITE_TITLE": "Example News",
        "DIGEST_FROM": "Example News <news@example.org>", "SECRET_KEY": "bench-secret",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_SECURITY": "none",
        "DATABASE_URL": url, "TEMPLATES_DIR": str(tmp / "templates"),
    }, tmp)
    store = Store.open(url, tmp)
    try:
        store.save_articles(articles(args.articles), [])
        addresses = [f"reader{i:05d}@example.org" for i in range(args.recipients)]
        subscribe_many(store, [(a, None) for a in addresses], NOW, source="import")
        n = len(addresses)

        # Render: every personalised message, as the send loop builds them.
        domain = sender_domain(settings)
        preview_edition = Outbox(store).next_items(store.load_articles().values(), NOW)
        edition = Edition(1, "benchedition0001", "sending", NOW, tuple(preview_edition), n)
        started = time.perf_counter()
        factory = MessageFactory(settings, render_edition(settings, edition), edition.uid)
        built = [factory.build(personal(settings, edition, a, None,
                                        message_id(edition.uid, a, domain), NOW))
                 for a in addresses]
        render_s = time.perf_counter() - started

        # Floor: smtplib, the same pre-built messages, one connection.
        started = time.perf_counter()
        with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost") as smtp:
            for message in built:
                smtp.sendmail(message.sender, [message.recipient], message.data)
        floor_s = time.perf_counter() - started

        # digest: the whole send (edition, outbox, claims, commits, RSET, mailer).
        started = time.perf_counter()
        report = send_digest(settings, store, lambda: SMTPMailer(settings), NOW)
        digest_s = time.perf_counter() - started
        assert report.sent == n, report
    finally:
        store.close()

    backend = url.split(":", 1)[0]
    size = sum(len(m.data) for m in built) / n
    print(f"recipients: {n}, articles: {args.articles}, message size: {size / 1024:.1f} KiB, "
          f"store: {backend}, python {sys.version.split()[0]}, cpus: {os.cpu_count()}")
    print(f"{'':<34}{'seconds':>9}{'msg/s':>9}{'vs floor':>10}")
    print(f"{'render (build all messages)':<34}{render_s:>9.2f}{n / render_s:>9.0f}"
          f"{'':>10}")
    print(f"{'floor: smtplib, pre-built':<34}{floor_s:>9.2f}{n / floor_s:>9.0f}"
          f"{1.0:>9.2f}x")
    print(f"{'digest send':<34}{digest_s:>9.2f}{n / digest_s:>9.0f}"
          f"{digest_s / floor_s:>9.2f}x")
    print(f"target: digest send within 1.5x of the floor -> "
          f"{'met' if digest_s <= 1.5 * floor_s else 'NOT met'}; "
          f"render of {n} under 2 s -> {'met' if render_s < 2 else 'NOT met'}")


if __name__ == "__main__":
    main()
