"""Benchmark: deliver one digest edition to many recipients over local SMTP.

    python bench/bench_send.py [--recipients 10000] [--repeat 3] [--database-url URL]

An aiosmtpd server runs in a separate process (so it does not share our GIL)
and accepts every message. Measured in the same run:

* render: building the personalised messages (tokens, headers, both parts)
  for every recipient, without sending;
* floor: the standard library's smtplib sending the same pre-built messages
  over one connection (no store, no retries: the fastest a Python client can be);
* digest: `send_digest` (a new edition in a fresh store, claims, a state-store
  write per message) with the real SMTPMailer.

Timings on a shared machine drift by a factor of two within minutes, so every
digest run is bracketed by floor runs (floor, digest, floor, digest, ...,
floor) and compared with the mean of the two floors around it. Printed: each
run, and the median ratio. With --database-url (PostgreSQL), each run uses a
new schema in that database, dropped afterwards.
"""

from __future__ import annotations

import argparse
import os
import smtplib
import socket
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from contextlib import closing
from datetime import UTC, datetime, timedelta
from pathlib import Path

import sqlalchemy as sa

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from digest.mail.message import (
    MessageFactory,
    OutgoingMessage,
    message_id,
    sender_domain,
)
from digest.mail.outbox import Outbox
from digest.mail.personal import personal
from digest.mail.send import send_digest
from digest.mail.smtp import SMTPMailer
from digest.mail.subscribers import subscribe_many
from digest.mail.tailored import render_edition
from digest.model import Edition, EditionStatus
from digest.settings import Settings, load_settings
from digest.store.database import Store, StoredArticle, resolve_url

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
    parser.add_argument("--repeat", type=int, default=3, help="digest runs (default 3)")
    parser.add_argument("--database-url", help="default: a temporary SQLite file per run")
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


def fresh_store(args: argparse.Namespace, tmp: Path, n: int) -> tuple[Store, str, Callable[[], None]]:
    """An empty, migrated store with the articles and the subscribers; and its disposal."""
    if args.database_url:
        schema = f"bench_{uuid.uuid4().hex[:10]}"
        admin = sa.create_engine(resolve_url(args.database_url, tmp))
        with admin.begin() as conn:
            conn.exec_driver_sql(f"CREATE SCHEMA {schema}")
        sep = "&" if "?" in args.database_url else "?"
        url = f"{args.database_url}{sep}options=-csearch_path%3D{schema}"

        def dispose() -> None:
            with admin.begin() as conn:
                conn.exec_driver_sql(f"DROP SCHEMA {schema} CASCADE")
            admin.dispose()
    else:
        path = tmp / f"bench-{uuid.uuid4().hex[:8]}.sqlite3"
        url = f"sqlite:///{path}"

        def dispose() -> None:
            for leftover in tmp.glob(path.name + "*"):
                leftover.unlink()
    store = Store.open(url, tmp)
    store.save_articles(articles(args.articles), [])
    subscribe_many(store, [(a, None) for a in addresses(n)], NOW, source="import")
    return store, url, dispose


def addresses(n: int) -> list[str]:
    return [f"reader{i:05d}@example.org" for i in range(n)]


def floor(port: int, built: list[OutgoingMessage]) -> float:
    """smtplib, the same pre-built messages, one connection."""
    started = time.perf_counter()
    with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost") as smtp:
        for message in built:
            smtp.sendmail(message.sender, [message.recipient], message.data)
    return time.perf_counter() - started


def digest_send(args: argparse.Namespace, port: int, tmp: Path, n: int) -> float:
    """The whole send (edition, outbox, claims, writes, mailer) into a fresh store."""
    store, url, dispose = fresh_store(args, tmp, n)
    try:
        settings = bench_settings(port, url, tmp)
        started = time.perf_counter()
        report = send_digest(settings, store, lambda: SMTPMailer(settings), NOW)
        elapsed = time.perf_counter() - started
        assert report.sent == n, report
    finally:
        store.close()
        dispose()
    return elapsed


def bench_settings(port: int, url: str, tmp: Path) -> Settings:
    return load_settings({
        "BASE_URL": "https://news.example.org/", "SITE_TITLE": "Example News",
        "DIGEST_FROM": "Example News <news@example.org>", "SECRET_KEY": "bench-secret",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_SECURITY": "none",
        "DATABASE_URL": url, "TEMPLATES_DIR": str(tmp / "templates"),
    }, tmp)


def run(args: argparse.Namespace, port: int, tmp: Path) -> None:
    n = args.recipients
    # Render: every personalised message, as the send loop builds them.
    store, url, dispose = fresh_store(args, tmp, n)
    try:
        settings = bench_settings(port, url, tmp)
        domain = sender_domain(settings)
        items = Outbox(store).next_items(store.load_articles().values(), NOW)
    finally:
        store.close()
        dispose()
    edition = Edition(1, "benchedition0001", EditionStatus.SENDING, NOW, tuple(items), n)
    started = time.perf_counter()
    factory = MessageFactory(settings, render_edition(settings, edition), edition.uid)
    built = [factory.build(personal(settings, edition, a, None,
                                    message_id(edition.uid, a, domain), NOW))
             for a in addresses(n)]
    render_s = time.perf_counter() - started

    backend = "postgresql" if args.database_url else "sqlite"
    size = sum(len(m.data) for m in built) / n
    print(f"recipients: {n}, articles: {args.articles}, message size: {size / 1024:.1f} KiB, "
          f"store: {backend}, python {sys.version.split()[0]}, cpus: {os.cpu_count()}")
    print(f"render (build all {n} messages): {render_s:.2f} s "
          f"({'met' if render_s < 2 else 'NOT met'}: under 2 s)")
    print(f"{'run':<5}{'floor before':>14}{'digest':>10}{'floor after':>13}"
          f"{'digest msg/s':>14}{'vs floor':>10}")
    floors = [floor(port, built)]
    ratios = []
    for number in range(1, args.repeat + 1):
        digest_s = digest_send(args, port, tmp, n)
        floors.append(floor(port, built))
        reference = (floors[-2] + floors[-1]) / 2
        ratios.append(digest_s / reference)
        print(f"{number:<5}{floors[-2]:>13.2f}s{digest_s:>9.2f}s{floors[-1]:>12.2f}s"
              f"{n / digest_s:>14.0f}{ratios[-1]:>9.2f}x", flush=True)
    median = statistics.median(ratios)
    print(f"median digest/floor: {median:.2f}x (target: within 1.5x -> "
          f"{'met' if median <= 1.5 else 'NOT met'}); floor {n / statistics.median(floors):.0f} "
          f"msg/s median")


if __name__ == "__main__":
    main()
