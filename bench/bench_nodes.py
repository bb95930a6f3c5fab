"""Benchmark: 1, 2 and 3 `digest run` nodes on PostgreSQL sending one edition through the delay proxy.

    python bench/bench_nodes.py --database-url postgresql://user@127.0.0.1:5432/db
                                [--recipients 4000] [--nodes 1,2,3] [--connections 4]
                                [--delay-ms 10]

For each node count N, in a fresh PostgreSQL schema: N `python -m digest run`
processes start (SMTP_CONNECTIONS=C each, a schedule that never fires) and
find the edition made just before (as the leader's scheduled send would)
within a few seconds, and share it (every node sends: claims in batches with
``FOR UPDATE SKIP LOCKED``). The sink server sits behind the delay proxy
(bench/delay_proxy.py, ``far_sink``).

Reported: the send span (first to last "sent" record), messages a second over
it and the ratio to one node; and the wall clock from the edition's creation
to the last record (it includes the nodes' start-up and their look every few
seconds). Checked: every recipient recorded sent.
The nodes are processes on this machine, sharing its CPUs.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))
sys.path.insert(0, str(Path(__file__).resolve().parent))

import sqlalchemy as sa
from bench_parallel import far_sink
from bench_send import NOW, bench_settings, fresh_store

from digest.mail.message import message_id, sender_domain
from digest.mail.outbox import Outbox
from digest.settings import ENV_NAMES
from digest.store.schema import deliveries

REPO = Path(__file__).resolve().parent.parent


def node_env(url: str, port: int, tmp: Path, connections: int) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
    env["PYTHONPATH"] = str(REPO) + os.pathsep + env.get("PYTHONPATH", "")
    env.update({
        "BASE_URL": "https://news.example.org/", "SITE_TITLE": "Example News",
        "DIGEST_FROM": "Example News <news@example.org>", "SECRET_KEY": "bench-secret",
        "SMTP_HOST": "127.0.0.1", "SMTP_PORT": str(port), "SMTP_SECURITY": "none",
        "SMTP_CONNECTIONS": str(connections), "DATABASE_URL": url,
        "TEMPLATES_DIR": str(tmp / "templates"), "ARTICLES_DIR": str(tmp / "articles"),
        "OUTPUT_DIR": str(tmp / "public"), "DIGEST_SCHEDULE": "0 0 1 1 *",
        "PUBLISH_INTERVAL": "7d", "LEADER_LEASE": "3s",
    })
    return env


def one_run(args: argparse.Namespace, port: int, tmp: Path, count: int) -> tuple[float, float]:
    n = args.recipients
    (tmp / "articles").mkdir(exist_ok=True)
    store, url, dispose = fresh_store(args, tmp, n)
    nodes: list[subprocess.Popen[bytes]] = []
    try:
        settings = bench_settings(port, url, tmp)
        domain = sender_domain(settings)
        edition, _ = Outbox(store).open_or_create(  # as the leader's scheduled send would
            store.load_articles().values(), NOW,
            message_id=lambda uid, address: message_id(uid, address, domain))
        assert edition is not None
        env = node_env(url, port, tmp, args.connections)
        created = time.perf_counter()
        nodes = [subprocess.Popen([sys.executable, "-m", "digest", "run"], cwd=tmp, env=env,
                                  stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
                 for _ in range(count)]
        while True:
            with store.reading() as conn:
                sent = conn.execute(sa.select(sa.func.count()).select_from(deliveries).where(
                    deliveries.c.edition_id == edition.id, deliveries.c.status == "sent")
                ).scalar_one()
            if sent == n:
                break
            assert all(p.poll() is None for p in nodes), "a node exited"
            assert time.perf_counter() - created < 3600, "too slow"
            time.sleep(0.2)
        wall = time.perf_counter() - created
        with store.reading() as conn:
            first, last = conn.execute(sa.select(
                sa.func.min(deliveries.c.updated_at), sa.func.max(deliveries.c.updated_at))
                .where(deliveries.c.edition_id == edition.id)).one()
        span = (datetime.fromisoformat(last) - datetime.fromisoformat(first)).total_seconds()
    finally:
        for process in nodes:
            process.terminate()
        for process in nodes:
            process.wait(timeout=60)
        store.close()
        dispose()
    return span, wall


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--recipients", type=int, default=4000)
    parser.add_argument("--articles", type=int, default=10)
    parser.add_argument("--nodes", default="1,2,3")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--delay-ms", type=float, default=10.0)
    parser.add_argument("--database-url")
    args = parser.parse_args()
    if not args.database_url or not args.database_url.startswith("postgresql"):
        parser.error("--database-url postgresql://... is required (SQLite runs one node)")

    with far_sink(args.delay_ms) as (_server_port, proxy_port):
        print(f"recipients: {args.recipients}, SMTP_CONNECTIONS per node: {args.connections}, "
              f"delay: {args.delay_ms:g} ms each way, cpus: {os.cpu_count()}")
        print("| nodes | send span | msg/s | vs 1 node | wall from start |")
        print("| --- | --- | --- | --- | --- |")
        single: float | None = None
        for count in [int(s) for s in args.nodes.split(",")]:
            with tempfile.TemporaryDirectory() as tmp_name:
                span, wall = one_run(args, proxy_port, Path(tmp_name), count)
            rate = args.recipients / span
            single = single or rate
            print(f"| {count} | {span:.2f} s | {rate:.0f} | {rate / single:.2f}x | "
                  f"{wall:.2f} s |", flush=True)


if __name__ == "__main__":
    main()
