"""Load test of ``rnnkit serve``: N concurrent clients (asyncio + httpx.AsyncClient) sending
sampling requests for S seconds to a server on localhost started in a subprocess; requests/s,
latency percentiles, errors, and the server's resident memory before and after.

    rnnkit train charlm --preset quick --out runs/charlm-quick
    OMP_NUM_THREADS=1 python benchmarks/serve_load.py runs/charlm-quick --clients 200 \
        --seconds 60 --json docs/serve_load.json

Each request: POST /models/NAME/sample with ``--length`` tokens, temperature 0.8 and a seed of
its own (so no two requests are alike); a request counts as an error if it fails or the answer
is not 200.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import socket
import statistics
import subprocess
import sys
import time
from pathlib import Path

import httpx


def resident_mb(pid: int) -> float:
    """The process's resident set size in MB (psutil if installed, else /proc)."""
    try:
        import psutil

        return psutil.Process(pid).memory_info().rss / 2**20
    except ImportError:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) / 1024
    raise RuntimeError(f"cannot read the memory of process {pid}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(run: str, port: int) -> subprocess.Popen:
    cmd = [sys.executable, "-m", "rnnkit", "serve", run, "--port", str(port)]
    server = subprocess.Popen(cmd, stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 600
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise SystemExit(f"the server exited with status {server.returncode}")
        try:
            if httpx.get(f"http://127.0.0.1:{port}/health", timeout=5).status_code == 200:
                return server
        except httpx.TransportError:
            pass
        time.sleep(0.5)
    server.kill()
    raise SystemExit("the server did not answer /health within 600 s")


async def client(http, url: str, body: dict, seed: int, until: float, out: dict) -> None:
    while time.perf_counter() < until:
        start = time.perf_counter()
        try:
            r = await http.post(url, json={**body, "seed": seed})
            error = None if r.status_code == 200 else f"HTTP {r.status_code}"
        except httpx.HTTPError as e:
            error = type(e).__name__
        if error is None:
            out["latency"].append(time.perf_counter() - start)
        else:
            out["errors"][error] = out["errors"].get(error, 0) + 1
        seed += 1_000_003  # a new seed per request, none shared between clients


async def load(url: str, clients: int, seconds: float, body: dict) -> dict:
    out: dict = {"latency": [], "errors": {}}
    # idle connections dropped after 2 s, before uvicorn's 5 s keep-alive timeout closes them
    # (both at 5 s, a request can be sent on a connection as the server closes it)
    limits = httpx.Limits(
        max_connections=clients, max_keepalive_connections=clients, keepalive_expiry=2.0
    )
    async with httpx.AsyncClient(limits=limits, timeout=120) as http:
        start = time.perf_counter()
        until = start + seconds
        await asyncio.gather(*(client(http, url, body, i, until, out) for i in range(clients)))
        elapsed = time.perf_counter() - start
    latency = sorted(out["latency"])

    def pct(q: float) -> float:
        return latency[min(len(latency) - 1, int(q * len(latency)))] * 1000 if latency else 0.0

    return {
        "requests": len(latency),
        "errors": sum(out["errors"].values()),
        "error_kinds": out["errors"],
        "seconds": round(elapsed, 2),
        "requests_per_s": round(len(latency) / elapsed, 2),
        "latency_ms": {
            "p50": round(pct(0.50), 1),
            "p99": round(pct(0.99), 1),
            "mean": round(statistics.fmean(latency) * 1000, 1) if latency else 0.0,
        },
    }


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("run", help="a language-model run directory (e.g. runs/charlm-quick)")
    p.add_argument("--clients", type=int, default=200, help="concurrent clients (default 200)")
    p.add_argument("--seconds", type=float, default=60, help="how long to load (default 60)")
    p.add_argument("--length", type=int, default=20, help="tokens per sample request")
    p.add_argument("--json", default=None, help="write the figures to this JSON file")
    a = p.parse_args()
    port = free_port()
    server = start_server(a.run, port)
    try:
        name = httpx.get(f"http://127.0.0.1:{port}/models").json()[0]["name"]
        url = f"http://127.0.0.1:{port}/models/{name}/sample"
        body = {"prime": "The ", "length": a.length, "temperature": 0.8}
        before = resident_mb(server.pid)
        result = asyncio.run(load(url, a.clients, a.seconds, body))
        after = resident_mb(server.pid)
    finally:
        server.send_signal(signal.SIGINT)
        try:
            server.wait(30)
        except subprocess.TimeoutExpired:
            server.kill()
    figures = {
        "run": a.run,
        "clients": a.clients,
        "target_seconds": a.seconds,
        "length": a.length,
        "omp_num_threads": os.environ.get("OMP_NUM_THREADS"),
        **result,
        "server_rss_mb": {"before": round(before, 1), "after": round(after, 1)},
    }
    print(json.dumps(figures, indent=2))
    if a.json:
        Path(a.json).write_text(json.dumps(figures, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
