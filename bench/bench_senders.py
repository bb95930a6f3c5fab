"""Benchmark: 1, 2 and 3 sender processes sharing one edition on PostgreSQL, through the delay proxy.

    python bench/bench_senders.py --database-url postgresql://user@127.0.0.1:5432/db
                                  [--recipients 2000] [--senders 1,2,3] [--connections 4]
                                  [--delay-ms 10]

Each sender is its own process running ``send_digest`` (what `digest send`
does after start-up) with SMTP_CONNECTIONS=C, on one state store; they share
the edition by claiming batches with ``FOR UPDATE SKIP LOCKED``. The edition
is made before the senders start; they start together once all have opened
the store. Reported: wall clock from "go" to the last sender's end, messages
a second, and the ratio of that throughput to one sender's. Checked: every
recipient recorded sent, and the senders' own counts add up to the recipients
(no message sent twice).

These are processes on one machine (all sharing its CPUs), standing in for
nodes; bench/bench_nodes.py runs real `digest run` nodes (leader election).
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

from bench_parallel import far_sink, start
from bench_send import NOW, bench_settings, fresh_store

from digest.mail.message import message_id, sender_domain
from digest.mail.outbox import Outbox
from digest.mail.send import send_digest
from digest.mail.smtp import SMTPMailer
from digest.store.database import Store

HERE = Path(__file__).resolve().parent


def sender(port: int, url: str, tmp: Path, connections: int) -> None:
    """One sender process: open the store, say ready, wait for go, send, print its count."""
    settings = bench_settings(port, url, tmp)
    store = Store.open(url, tmp)
    print("ready", flush=True)
    sys.stdin.readline()
    report = send_digest(settings, store, lambda: SMTPMailer(settings), NOW,
                         connections=connections)
    store.close()
    print(json.dumps({"sent": report.sent}), flush=True)


def one_run(args: argparse.Namespace, port: int, tmp: Path, senders: int) -> tuple[float, int]:
    n = args.recipients
    store, url, dispose = fresh_store(args, tmp, n)
    try:
        settings = bench_settings(port, url, tmp)
        domain = sender_domain(settings)
        edition, _ = Outbox(store).open_or_create(
            store.load_articles().values(), NOW,
            message_id=lambda uid, address: message_id(uid, address, domain))
        assert edition is not None
        processes = [start([__file__, "--sender", str(port), "--url", url, "--tmp", str(tmp),
                            "--connections", str(args.connections)]) for _ in range(senders)]
        started = time.perf_counter()
        for process in processes:
            assert process.stdin is not None
            process.stdin.write("go\n")
            process.stdin.flush()
        counts = []
        for process in processes:
            assert process.stdout is not None
            counts.append(json.loads(process.stdout.readline())["sent"])
            process.wait(timeout=60)
        elapsed = time.perf_counter() - started
        assert sum(counts) == n, f"senders sent {counts}, {n} recipients"
        assert Outbox(store).counts(edition.id)["sent"] == n
    finally:
        store.close()
        dispose()
    return elapsed, min(counts)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=2000)
    parser.add_argument("--articles", type=int, default=10)
    parser.add_argument("--senders", default="1,2,3")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--database-url")
    parser.add_argument("--sender", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--tmp", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.sender:
        sender(args.sender, args.url, Path(args.tmp), args.connections)
        return
    if not args.database_url or not args.database_url.startswith("postgresql"):
        parser.error("--database-url postgresql://... is required (SQLite has one sender)")

    with (far_sink(args.delay_ms) as (_server_port, proxy_port),
          tempfile.TemporaryDirectory() as tmp_name):
        tmp = Path(tmp_name)
        print(f"recipients: {args.recipients}, SMTP_CONNECTIONS per sender: "
              f"{args.connections}, delay: {args.delay_ms:g} ms each way")
        print("| senders | time | msg/s | vs 1 sender | fewest sent by one sender |")
        print("| --- | --- | --- | --- | --- |")
        single: float | None = None
        for count in [int(s) for s in args.senders.split(",")]:
            took, fewest = one_run(args, proxy_port, tmp, count)
            rate = args.recipients / took
            single = single or rate
            print(f"| {count} | {took:.2f} s | {rate:.0f} | {rate / single:.2f}x | "
                  f"{fewest} |", flush=True)


if __name__ == "__main__":
    main()
