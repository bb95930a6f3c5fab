"""Benchmark: digest over 1, 4, 10 and 20 SMTP connections against smtplib, near and far.

    python bench/bench_parallel.py [--recipients 400] [--connections 1,4,10,20]
                                   [--delay-ms 10] [--database-url URL]
                                   [--skip-far | --skip-loopback]

A sink aiosmtpd server runs in its own process; a delay proxy
(bench/delay_proxy.py, 10 ms each way) in another stands for a relay tens of
milliseconds away. For each connection count C, measured in the same run:

* floor: smtplib sending the same pre-built messages over C connections (one
  thread each, the messages dealt out in turn): no store, no retries;
* digest: ``send_digest`` with SMTP_CONNECTIONS=C (a new edition in a fresh
  store, claims, a durable "sent" record per message, group commit), i.e.
  what `digest send` does after start-up.

Each digest run is bracketed by floor runs and compared with their mean.
Both go through the proxy ("far") and straight to the server ("loopback").
"""

from __future__ import annotations

import argparse
import contextlib
import os
import smtplib
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_send import NOW, addresses, bench_settings, free_port, fresh_store

from digest.mail.message import MessageFactory, OutgoingMessage, message_id, sender_domain
from digest.mail.outbox import Outbox
from digest.mail.personal import personal
from digest.mail.send import send_digest
from digest.mail.smtp import SMTPMailer
from digest.mail.tailored import render_edition
from digest.model import Edition, EditionStatus

HERE = Path(__file__).resolve().parent


def start(args: list[str]) -> subprocess.Popen[str]:
    process = subprocess.Popen([sys.executable, *args], stdin=subprocess.PIPE,
                               stdout=subprocess.PIPE, text=True)
    assert process.stdout is not None and process.stdout.readline().strip() == "ready"
    return process


@contextlib.contextmanager
def far_sink(delay_ms: float) -> Iterator[tuple[int, int]]:
    """A sink SMTP server and a delay proxy in front of it: (server port, proxy port)."""
    server_port, proxy_port = free_port(), free_port()
    server = start([str(HERE / "bench_send.py"), "--serve", str(server_port)])
    proxy = start([str(HERE / "delay_proxy.py"), str(proxy_port), str(server_port),
                   "--delay-ms", str(delay_ms)])
    try:
        yield server_port, proxy_port
    finally:
        for process in (proxy, server):
            if process.stdin:
                process.stdin.close()
        proxy.terminate()
        proxy.wait(timeout=30)
        server.wait(timeout=30)


def floor(port: int, built: list[OutgoingMessage], connections: int) -> float:
    """smtplib over `connections` sessions at once, the messages dealt out in turn."""
    def one(part: list[OutgoingMessage]) -> None:
        with smtplib.SMTP("127.0.0.1", port, local_hostname="localhost") as smtp:
            for message in part:
                smtp.sendmail(message.sender, [message.recipient], message.data)

    threads = [threading.Thread(target=one, args=(built[i::connections],))
               for i in range(connections)]
    started = time.perf_counter()
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    return time.perf_counter() - started


def digest(args: argparse.Namespace, port: int, tmp: Path, n: int, connections: int) -> float:
    store, url, dispose = fresh_store(args, tmp, n)
    try:
        settings = bench_settings(port, url, tmp)
        started = time.perf_counter()
        report = send_digest(settings, store, lambda: SMTPMailer(settings), NOW,
                             connections=connections)
        elapsed = time.perf_counter() - started
        assert report.sent == n, report
    finally:
        store.close()
        dispose()
    return elapsed


def build(args: argparse.Namespace, port: int, tmp: Path, n: int) -> list[OutgoingMessage]:
    store, url, dispose = fresh_store(args, tmp, n)
    try:
        settings = bench_settings(port, url, tmp)
        items = Outbox(store).next_items(store.load_articles().values(), NOW)
    finally:
        store.close()
        dispose()
    edition = Edition(1, "benchedition0001", EditionStatus.SENDING, NOW, tuple(items), n)
    factory = MessageFactory(settings, render_edition(settings, edition), edition.uid)
    domain = sender_domain(settings)
    return [factory.build(personal(settings, edition, a, None,
                                   message_id(edition.uid, a, domain), NOW))
            for a in addresses(n)]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=400)
    parser.add_argument("--articles", type=int, default=10)
    parser.add_argument("--connections", default="1,4,10,20")
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--database-url", help="default: a temporary SQLite file per run")
    parser.add_argument("--skip-loopback", action="store_true")
    parser.add_argument("--skip-far", action="store_true")
    args = parser.parse_args()
    counts = [int(c) for c in args.connections.split(",")]
    n = args.recipients

    with (far_sink(args.delay_ms) as (server_port, proxy_port),
          tempfile.TemporaryDirectory() as tmp_name):
        tmp = Path(tmp_name)
        built = build(args, server_port, tmp, n)
        backend = "postgresql" if args.database_url else "sqlite"
        print(f"recipients: {n}, store: {backend}, delay: {args.delay_ms:g} ms each way, "
              f"python {sys.version.split()[0]}, cpus: {os.cpu_count()}")
        print("| path | connections | smtplib | digest | digest msg/s | digest/smtplib |")
        print("| --- | --- | --- | --- | --- | --- |")
        paths = ([] if args.skip_far else [("far", proxy_port)]) + ([] if args.skip_loopback
                                         else [("loopback", server_port)])
        for name, port in paths:
            for c in counts:
                before = floor(port, built, c)
                took = digest(args, port, tmp, n, c)
                after = floor(port, built, c)
                reference = (before + after) / 2
                print(f"| {name} | {c} | {reference:.2f} s | {took:.2f} s | "
                      f"{n / took:.0f} | {took / reference:.2f}x |", flush=True)


if __name__ == "__main__":
    main()
