"""`make soak`: twice the measured capacity, open loop, for 5 minutes, on loopback.

Starts the real server (text-embedding preloaded), measures its capacity with a short closed-loop run, then
sends 8-sentence requests at twice that rate whatever the answers (open loop: a slow server does not slow the
client down). Reports: answers by status (the service must shed with 503/429, never 500), requests sent vs
answered on the client and counted by the server (/metrics) — every request gets exactly one answer —, the p50/p99
of accepted requests against the deadline, and the server's RSS at the start, its peak and at the end.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from collections import Counter
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from corpus import CORPUS, corpus  # noqa: E402
from serve import RESULTS, free_port, wrk  # noqa: E402


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def scrape(base: str) -> tuple[float, dict[float, float]]:
    """Requests the server counted on text-embedding (any status), and their duration buckets (le -> count)."""
    text = urllib.request.urlopen(base + "/metrics", timeout=10).read().decode()
    count, buckets = 0.0, {}
    for line in text.splitlines():
        if line.startswith("ml_service_requests_total{") and 'model="text-embedding"' in line:
            count += float(line.rsplit(" ", 1)[1])
        elif line.startswith("ml_service_request_duration_seconds_bucket{") and 'protocol="native"' in line \
                and 'model="text-embedding"' in line:
            le = line.split('le="', 1)[1].split('"', 1)[0]
            bound = float("inf") if le == "+Inf" else float(le)
            buckets[bound] = buckets.get(bound, 0.0) + float(line.rsplit(" ", 1)[1])
    return count, buckets


def bucket_quantile(before: dict[float, float], after: dict[float, float], q: float) -> float | None:
    """The upper bound of the bucket holding quantile q of what was observed between two scrapes."""
    bounds = sorted(after)
    counts = [after[b] - before.get(b, 0.0) for b in bounds]
    if not counts or counts[-1] <= 0:
        return None
    return next(b for b, c in zip(bounds, counts, strict=True) if c >= q * counts[-1])


async def _connection(host: str, port: int, queue: asyncio.Queue[tuple[bytes, float] | None],
                      statuses: Counter[str], latencies: list[float]) -> None:
    """One keep-alive connection answering queued requests in turn (raw HTTP/1.1: the client must cost little)."""
    reader, writer = await asyncio.open_connection(host, port)
    try:
        while (job := await queue.get()) is not None:
            request, due = job
            try:
                writer.write(request)
                status_line = await reader.readline()
                length = 0
                while (line := await reader.readline()) not in (b"\r\n", b""):
                    if line.lower().startswith(b"content-length:"):
                        length = int(line.split(b":", 1)[1])
                await reader.readexactly(length)
                status = status_line.split()[1].decode()
            except (OSError, asyncio.IncompleteReadError, IndexError):
                statuses["connection error"] += 1
                writer.close()
                reader, writer = await asyncio.open_connection(host, port)
                continue
            statuses[status] += 1
            if status == "200":
                latencies.append(time.perf_counter() - due)  # from when it was due: client queueing counts
    finally:
        writer.close()


async def open_loop(base: str, rate: float, seconds: float, texts: list[str], k: int,
                    connections: int = 512) -> dict[str, Any]:
    """Requests due at a fixed rate whatever the answers; a request waits for a free connection if all are busy
    (that wait counts in its latency)."""
    host, port = base.removeprefix("http://").split(":")
    statuses: Counter[str] = Counter()
    latencies: list[float] = []
    queue: asyncio.Queue[tuple[bytes, float] | None] = asyncio.Queue()
    workers = [asyncio.create_task(_connection(host, int(port), queue, statuses, latencies))
               for _ in range(connections)]
    sent = 0
    start = time.perf_counter()
    while (now := time.perf_counter() - start) < seconds:
        due = int(now * rate) + 1
        while sent < due:
            body = json.dumps({"model_type": "bert", "data": {
                "texts": [texts[(sent * k + j) % len(texts)] for j in range(k)]}}).encode()
            request = (b"POST /inference HTTP/1.1\r\nHost: soak\r\nContent-Type: application/json\r\n"
                       b"Content-Length: " + str(len(body)).encode() + b"\r\n\r\n" + body)
            queue.put_nowait((request, start + sent / rate))
            sent += 1
        await asyncio.sleep(0.002)
    for _ in workers:
        queue.put_nowait(None)
    await asyncio.gather(*workers)
    lat = sorted(latencies)
    return {"sent": sent, "statuses": dict(statuses), "answered": sum(statuses.values()),
            "p50_s": statistics.median(lat) if lat else None,
            "p99_s": lat[min(len(lat) - 1, int(len(lat) * 0.99))] if lat else None}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=300)
    ap.add_argument("--factor", type=float, default=2.0, help="offered load / measured capacity")
    ap.add_argument("--items", type=int, default=8, help="sentences per request")
    ap.add_argument("--timeout-s", type=float, default=10.0, help="the server's deadline (ML_SERVICE_REQUEST_TIMEOUT_S)")
    ap.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_CACHE_DIR", HERE.parent / "models")))
    ap.add_argument("--out", type=Path, default=RESULTS / "soak.json")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    port = free_port()
    exe = Path(sys.executable).with_name("ml-service")
    env = {**os.environ, "MODEL_CACHE_DIR": str(args.model_dir), "ML_SERVICE_PORT": str(port),
           "ML_SERVICE_PRELOAD": "text-embedding", "ML_SERVICE_LOG_LEVEL": "warning",
           "ML_SERVICE_REQUEST_TIMEOUT_S": str(args.timeout_s)}
    proc = subprocess.Popen([str(exe), "serve"], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(RESULTS / "soak-server.log", "wb"), start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        while True:
            try:
                if urllib.request.urlopen(base + "/health/ready", timeout=2).status == 200:
                    break
            except OSError:
                time.sleep(0.2)
        capacity = wrk(base + "/inference", "seed", args.items, 16, 10, CORPUS, "bert")["items_per_s"]
        rate = args.factor * capacity / args.items
        print(f"capacity {capacity:.0f} sentences/s; offering {rate:.1f} requests/s of {args.items} for "
              f"{args.seconds:.0f} s", flush=True)
        samples: list[float] = []
        stop = threading.Event()

        def sample() -> None:
            while not stop.wait(1.0):
                samples.append(rss_mb(proc.pid))

        time.sleep(2.0)  # the capacity run's last requests finish first
        counted_before, buckets_before = scrape(base)
        start_rss = rss_mb(proc.pid)
        sampler = threading.Thread(target=sample, daemon=True)
        sampler.start()
        result = asyncio.run(open_loop(base, rate, args.seconds, corpus(), args.items))
        stop.set()
        sampler.join()
        time.sleep(1.0)
        counted_after, buckets_after = scrape(base)
        counted = counted_after - counted_before
        server_p99 = bucket_quantile(buckets_before, buckets_after, 0.99)
        end_rss = rss_mb(proc.pid)
        report = {"capacity_sentences_per_s": capacity, "offered_requests_per_s": rate, "items": args.items,
                  "seconds": args.seconds, "deadline_s": args.timeout_s, **result,
                  "server_counted": counted, "server_p99_s_at_most": server_p99, "rss_mb": {"start": start_rss, "peak": max(samples + [start_rss]),
                                                       "end": end_rss}}
        args.out.write_text(json.dumps(report, indent=1))
        print(json.dumps(report, indent=1))
        # the server's promise: every answer within its deadline (its histogram's bucket bound at or above it)
        ok = (result["answered"] == result["sent"] == counted and "500" not in result["statuses"]
              and server_p99 is not None and server_p99 <= args.timeout_s)
        print("PASS" if ok else "FAIL", "command:", " ".join(sys.argv))
        sys.exit(0 if ok else 1)
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(30)


if __name__ == "__main__":
    main()
