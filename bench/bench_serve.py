"""Benchmark `digest serve` against nginx on the same files, in the same run.

Both servers get one worker process, listen on 127.0.0.1 only, and serve a
freshly built output folder laid out as the publisher leaves it (``public``
-> ``.public.generations/1``). wrk measures requests/second for:

* a conditional GET of the feed answered 304 (If-None-Match with the
  server's own ETag);
* a full GET of the feed (no Accept-Encoding, 200 with the whole body);
* a full GET with ``Accept-Encoding: gzip`` (nginx compresses per request
  with ``gzip on``; digest sends its precompressed copy).

Access logging is off for both unless --access-log is given (then both log
each request to a file). With ``taskset`` available, the servers run on CPU 0
and wrk on CPU 1, so the load generator does not steal the server's core.

Needs wrk and nginx (Debian: ``apt-get install -y wrk nginx``). Usage::

    python bench/bench_serve.py [--duration 5] [--rounds 3] [--paragraphs 4]

Everything started here is stopped before the script exits.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import re
import shutil
import signal
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

import httpx

ROOT = Path(__file__).resolve().parents[1]
HOST = "127.0.0.1"


@dataclass(frozen=True)
class Server:
    name: str
    url: str
    process: subprocess.Popen[bytes]


@dataclass(frozen=True)
class Scenario:
    name: str
    path: str
    headers: tuple[str, ...]
    status: int


PARAGRAPH = (
    "&lt;p&gt;The council voted on Tuesday to approve the plan after a long debate about "
    "costs, the timetable and what residents of the district had asked for during the "
    "consultation. Work on the first section is expected to start in the autumn, and the "
    "river path will stay open while the embankment is rebuilt.&lt;/p&gt;\n"
)


def atom_feed(entries: int, paragraphs: int) -> bytes:
    """A plausible Atom feed: `entries` entries, each with `paragraphs` of HTML content."""
    parts = [
        '<?xml version="1.0" encoding="utf-8"?>\n'
        '<?xml-stylesheet href="feed.xsl" type="text/xsl"?>\n'
        '<feed xmlns="http://www.w3.org/2005/Atom" xml:lang="en">\n'
        "  <title>Bench News</title>\n  <id>tag:bench.example,2024:feed</id>\n"
        "  <updated>2024-05-01T07:00:00+00:00</updated>\n"
        '  <link href="http://127.0.0.1/feed.atom" rel="self"/>\n'
    ]
    for n in range(entries):
        content = f'    <content type="html">{PARAGRAPH * paragraphs}</content>\n'
        parts.append(
            "  <entry>\n"
            f"    <title>Council approves plan number {n} for the river district</title>\n"
            f"    <id>tag:bench.example,2024:articles/{n:03d}</id>\n"
            f'    <link href="http://127.0.0.1/articles/{n:03d}.html"/>\n'
            f"    <updated>2024-04-{1 + n % 28:02d}T08:00:00+00:00</updated>\n"
            "    <summary>The council voted on Tuesday to approve the plan after a long "
            f"debate about costs and the timetable, item {n}.</summary>\n"
            f"{content if paragraphs else ''}"
            "  </entry>\n"
        )
    parts.append("</feed>\n")
    return "".join(parts).encode()


def build_site(base: Path, entries: int, paragraphs: int) -> bytes:
    generation = base / ".public.generations" / "1"
    generation.mkdir(parents=True)
    feed = atom_feed(entries, paragraphs)
    (generation / "feed.atom").write_bytes(feed)
    (generation / "index.html").write_bytes(b"<!doctype html><title>Bench</title><h1>Bench</h1>\n")
    (base / "public").symlink_to(".public.generations/1")
    return feed


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((HOST, 0))
        port: int = probe.getsockname()[1]
        return port


def pinned(cpu: int, command: Sequence[str]) -> list[str]:
    """`command` pinned to one CPU when taskset exists and the machine has two or more."""
    if shutil.which("taskset") and (os.cpu_count() or 1) >= 2:
        return ["taskset", "-c", str(cpu), *command]
    return list(command)


def start_nginx(base: Path, port: int, access_log: bool) -> Server:
    nginx = shutil.which("nginx") or "/usr/sbin/nginx"
    temp = base / "nginx"
    temp.mkdir()
    log = f"access_log {temp}/access.log;" if access_log else "access_log off;"
    conf = temp / "nginx.conf"
    conf.write_text(
        f"""
worker_processes 1;
pid {temp}/nginx.pid;
error_log {temp}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    types {{
        application/atom+xml atom;
        text/html html;
    }}
    default_type application/octet-stream;
    {log}
    sendfile on;
    tcp_nopush on;
    keepalive_requests 1000000;
    gzip on;
    gzip_types application/atom+xml;
    gzip_vary on;
    client_body_temp_path {temp}/body;
    proxy_temp_path {temp}/proxy;
    fastcgi_temp_path {temp}/fastcgi;
    uwsgi_temp_path {temp}/uwsgi;
    scgi_temp_path {temp}/scgi;
    server {{
        listen {HOST}:{port};
        root {base}/public;
    }}
}}
"""
    )
    command = [nginx, "-p", str(temp), "-e", f"{temp}/error.log", "-c", str(conf),
               "-g", "daemon off; user root;" if os.geteuid() == 0 else "daemon off;"]
    process = subprocess.Popen(pinned(0, command), stdout=subprocess.DEVNULL,
                               stderr=subprocess.DEVNULL)
    return Server("nginx", f"http://{HOST}:{port}", process)


def start_digest(base: Path, port: int, access_log: bool) -> Server:
    logging_setup = (
        f"logging.basicConfig(level=logging.INFO, filename={str(base / 'digest.log')!r})"
        if access_log
        else "logging.basicConfig(level=logging.WARNING)"
    )
    program = (
        "import logging\n"
        "from pathlib import Path\n"
        "from digest.web.server import serve\n"
        "from digest.settings import load_settings\n"
        f"{logging_setup}\n"
        f"serve(load_settings({{'OUTPUT_DIR': 'public', 'SERVE_HOST': {HOST!r}, "
        f"'SERVE_PORT': '{port}'}}, Path.cwd()))\n"
    )
    env = dict(os.environ, PYTHONPATH=str(ROOT))
    process = subprocess.Popen(pinned(0, [sys.executable, "-c", program]), cwd=base, env=env,
                               stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    return Server("digest", f"http://{HOST}:{port}", process)


def wait_until_up(server: Server, feed: bytes) -> str:
    """Wait for the server, check it serves the feed and 304s; return its ETag."""
    deadline = time.monotonic() + 20
    with httpx.Client(base_url=server.url, timeout=5) as client:
        while True:
            try:
                response = client.get("/feed.atom", headers={"Accept-Encoding": "identity"})
                break
            except httpx.TransportError:
                if server.process.poll() is not None or time.monotonic() > deadline:
                    raise SystemExit(f"{server.name} did not start") from None
                time.sleep(0.1)
        if response.status_code != 200 or response.content != feed:
            raise SystemExit(f"{server.name} served the feed wrongly: {response.status_code}")
        etag = response.headers["etag"]
        check = client.get("/feed.atom", headers={"If-None-Match": etag})
        if check.status_code != 304:
            raise SystemExit(f"{server.name} did not answer 304: {check.status_code}")
        return etag


def process_tree(pid: int) -> list[int]:
    """`pid` and its descendants (nginx's workers), from /proc."""
    pids = [pid]
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        return pids
    for child in children:
        pids += process_tree(int(child))
    return pids


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a process tree so far."""
    ticks = 0
    for member in process_tree(pid):
        try:
            fields = Path(f"/proc/{member}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        ticks += int(fields[11]) + int(fields[12])
    return ticks / os.sysconf("SC_CLK_TCK")


@dataclass(frozen=True)
class Measurement:
    rate: float
    cpu_us: float  # server CPU microseconds per request
    problems: str


def measure(server: Server, url: str, headers: Sequence[str], seconds: int,
            connections: int) -> Measurement:
    before = cpu_seconds(server.process.pid)
    rate, requests, problems = wrk(url, headers, seconds, connections)
    used = cpu_seconds(server.process.pid) - before
    return Measurement(rate, used / max(requests, 1) * 1e6, problems)


def wrk(
    url: str, headers: Sequence[str], seconds: int, connections: int
) -> tuple[float, int, str]:
    """Requests/second and request count reported by wrk (one thread, on CPU 1), and errors."""
    command = ["wrk", "-t1", f"-c{connections}", f"-d{seconds}s"]
    for header in headers:
        command += ["-H", header]
    result = subprocess.run(pinned(1, [*command, url]), capture_output=True, text=True,
                            timeout=seconds + 30, check=True)
    rate = re.search(r"Requests/sec:\s+([\d.]+)", result.stdout)
    count = re.search(r"(\d+) requests in", result.stdout)
    if not rate or not count:
        raise SystemExit(f"cannot read wrk output:\n{result.stdout}{result.stderr}")
    problems = [line.strip() for line in result.stdout.splitlines()
                if line.strip().startswith(("Socket errors", "Non-2xx"))]
    return float(rate.group(1)), int(count.group(1)), "; ".join(problems)


@contextlib.contextmanager
def running(servers: list[Server]) -> Iterator[None]:
    try:
        yield
    finally:
        for server in servers:
            if server.process.poll() is None:
                server.process.send_signal(signal.SIGTERM)
        for server in servers:
            try:
                server.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.process.kill()
                server.process.wait()


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--duration", type=int, default=5, help="seconds per wrk run")
    parser.add_argument("--warmup", type=int, default=1, help="seconds of warm-up per run")
    parser.add_argument("--rounds", type=int, default=3,
                        help="rounds; each measures both servers back to back")
    parser.add_argument("--connections", type=int, default=50, help="wrk connections")
    parser.add_argument("--entries", type=int, default=50, help="entries in the feed")
    parser.add_argument("--paragraphs", type=int, default=4,
                        help="paragraphs of HTML content per entry (0: summaries only)")
    parser.add_argument("--access-log", action="store_true", help="both servers log requests")
    args = parser.parse_args(argv)
    for tool in ("wrk", "nginx"):
        if not shutil.which(tool) and not Path(f"/usr/sbin/{tool}").exists():
            print(f"{tool} is not installed: apt-get install -y wrk nginx", file=sys.stderr)
            return 2
    scenarios = [
        Scenario("conditional GET -> 304", "/feed.atom", ("If-None-Match: {etag}",), 304),
        Scenario("full GET -> 200", "/feed.atom", (), 200),
        Scenario("full GET gzip -> 200", "/feed.atom", ("Accept-Encoding: gzip",), 200),
    ]
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        base = Path(tmp)
        base.chmod(0o755)
        feed = build_site(base, args.entries, args.paragraphs)
        servers = [
            start_nginx(base, free_port(), args.access_log),
            start_digest(base, free_port(), args.access_log),
        ]
        with running(servers):
            etags = {server.name: wait_until_up(server, feed) for server in servers}
            print(f"feed.atom: {len(feed):,} bytes; wrk -t1 -c{args.connections} "
                  f"-d{args.duration}s x {args.rounds} rounds; one worker each; access log "
                  f"{'on' if args.access_log else 'off'}; servers on CPU 0, wrk on CPU 1: "
                  f"{'yes' if pinned(0, []) else 'no (no taskset)'}; "
                  f"load average before: {os.getloadavg()[0]:.2f}", flush=True)
            results: dict[tuple[str, str], list[Measurement]] = {}
            for round_number in range(args.rounds):
                for scenario in scenarios:
                    # Alternate who goes first, so drift in machine load hits both alike.
                    order = servers if round_number % 2 == 0 else servers[::-1]
                    for server in order:
                        headers = [h.format(etag=etags[server.name]) for h in scenario.headers]
                        url = server.url + scenario.path
                        if args.warmup > 0:
                            wrk(url, headers, args.warmup, args.connections)
                        result = measure(server, url, headers, args.duration, args.connections)
                        if result.problems:
                            print(f"  {server.name}, {scenario.name}: {result.problems}",
                                  file=sys.stderr)
                        results.setdefault((scenario.name, server.name), []).append(result)
    print_table(scenarios, results)
    print(f"load average after: {os.getloadavg()[0]:.2f} (other work on the machine skews "
          "req/s; compare the CPU columns then)")
    return 0


def print_table(
    scenarios: Sequence[Scenario], results: dict[tuple[str, str], list[Measurement]]
) -> None:
    """Medians of req/s and server CPU per request, and the per-round req/s ratios.

    The CPU column (from /proc) is steadier than req/s on a machine shared
    with other work: nginx CPU / digest CPU is the ratio a quiet machine gives.
    """
    width = max(len(s.name) for s in scenarios)
    print(f"{'scenario':<{width}}  {'nginx req/s':>11}  {'digest req/s':>12}  {'ratio':>5}  "
          f"{'per round':<16}  {'CPU us/req nginx':>16}  {'digest':>6}  {'ratio':>5}")
    for scenario in scenarios:
        nginx = results[(scenario.name, "nginx")]
        digest = results[(scenario.name, "digest")]
        ratios = [d.rate / n.rate for d, n in zip(digest, nginx, strict=True)]
        per_round = " ".join(f"{r:.0%}" for r in ratios)
        nginx_cpu = statistics.median(m.cpu_us for m in nginx)
        digest_cpu = statistics.median(m.cpu_us for m in digest)
        print(f"{scenario.name:<{width}}  {statistics.median(m.rate for m in nginx):>11,.0f}  "
              f"{statistics.median(m.rate for m in digest):>12,.0f}  "
              f"{statistics.median(ratios):>5.0%}  {per_round:<16}  "
              f"{nginx_cpu:>16.1f}  {digest_cpu:>6.1f}  {nginx_cpu / digest_cpu:>5.0%}")


if __name__ == "__main__":
    raise SystemExit(main())
