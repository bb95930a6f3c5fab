"""Memory of `digest serve` under a header flood: N connections each sending a huge header.

Publishes the sample articles into a temporary folder, starts
``python -m digest serve`` from SOURCE (default: this checkout) on a free
port, reads the server's RSS, lets each connection send up to --megabytes
of one header value (stopping when the server closes it), and reads the RSS
again (and the peak, VmHWM). Linux only (/proc).

    .venv/bin/python bench/serve_header_flood.py
    .venv/bin/python bench/serve_header_flood.py --source /tmp/old-checkout
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from digest.settings import ENV_NAMES

REPO = Path(__file__).resolve().parent.parent


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def status(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    raise RuntimeError(f"no {key} for {pid}")


def wait_up(port: int, process: subprocess.Popen[bytes]) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise SystemExit("digest serve exited")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=1) as sock:
                sock.sendall(b"GET /feed.json HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n")
                if sock.recv(12).startswith(b"HTTP/1.1 200"):
                    return
        except OSError:
            time.sleep(0.1)
    raise SystemExit("digest serve did not answer")


def flood(port: int, megabytes: int, seconds: float, sent: list[int]) -> None:
    total = 0
    chunk = b"a" * 65536
    deadline = time.monotonic() + seconds
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        try:
            sock.sendall(b"GET / HTTP/1.1\r\nHost: x\r\nX-Flood: ")
            while total < megabytes * 1024 * 1024 and time.monotonic() < deadline:
                sock.sendall(chunk)
                total += len(chunk)
        except OSError:
            pass
    sent.append(total)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--source", type=Path, default=REPO, help="checkout to run digest from")
    parser.add_argument("--connections", type=int, default=4)
    parser.add_argument("--megabytes", type=int, default=100)
    parser.add_argument("--seconds", type=float, default=120, help="limit per connection")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        base = Path(tmp)
        shutil.copytree(REPO / "articles", base / "articles")
        port = free_port()
        env = {k: v for k, v in os.environ.items() if k not in ENV_NAMES}
        env.update(PYTHONPATH=str(args.source), BASE_URL=f"http://127.0.0.1:{port}/",
                   SITE_TITLE="Flood", DATABASE_URL="sqlite:///state.sqlite3",
                   SECRET_KEY=secrets.token_urlsafe(32), SERVE_PORT=str(port))
        subprocess.run([sys.executable, "-m", "digest", "publish"], cwd=base, env=env,
                       check=True, capture_output=True)
        with subprocess.Popen([sys.executable, "-m", "digest", "serve"], cwd=base, env=env,
                              stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL) as server:
            try:
                wait_up(port, server)
                before = status(server.pid, "VmRSS")
                sent: list[int] = []
                started = time.monotonic()
                threads = [threading.Thread(target=flood,
                                            args=(port, args.megabytes, args.seconds, sent))
                           for _ in range(args.connections)]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                took = time.monotonic() - started
                time.sleep(0.5)
                after, peak = status(server.pid, "VmRSS"), status(server.pid, "VmHWM")
                print(f"source {args.source}")
                print(f"{args.connections} connections x up to {args.megabytes} MB of header: "
                      f"sent {[round(n / 2**20, 2) for n in sent]} MB in {took:.1f} s")
                print(f"server RSS before {before / 1024:.1f} MB, after {after / 1024:.1f} MB, "
                      f"peak {peak / 1024:.1f} MB")
            finally:
                server.send_signal(signal.SIGTERM)
                try:
                    server.wait(timeout=15)
                except subprocess.TimeoutExpired:
                    server.kill()


if __name__ == "__main__":
    main()
