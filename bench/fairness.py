"""Fairness: one-sentence requests while a client sends 2,048-input embedding requests back to back.

For each system: wrk sends one sentence per request at 4 connections for `--duration` s, first alone, then while
one client posts 2,048 sentences to /v1/embeddings in a loop. The one-sentence p50/p95/p99 with the big client
running, against without it, is what fairness buys; the big client's sentences/s shows it is still served.
Systems alternate per round (A B, B A). Compare a revision with `--systems ml-service,ml-service@<rev>`.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from corpus import CORPUS, corpus  # noqa: E402
from serve import RESULTS, body_for, free_port, post, systems, wrk  # noqa: E402


def big_client(url: str, texts: list[str], stop: threading.Event, done: list[float]) -> None:
    body = json.dumps({"model": "text-embedding", "input": texts}).encode()
    while not stop.is_set():
        t = time.perf_counter()
        req = urllib.request.Request(url + "/v1/embeddings", data=body, headers={"Content-Type": "application/json"})
        with urllib.request.urlopen(req, timeout=120) as r:
            r.read()
        done.append(time.perf_counter() - t)


def run(name: str, args: argparse.Namespace) -> dict[str, Any]:
    port = free_port()
    system = systems(args.model_dir, port, [name])[name]
    env = {**os.environ, **(system.env or {})}
    proc = subprocess.Popen(["bash", "-c", system.cmd], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(RESULTS / f"fairness-{name}.log", "wb"), start_new_session=True)
    base = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 120
        while True:
            try:
                if post(base + "/inference", body_for(system, ["warm up"]), timeout=5) == 200:
                    break
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.2)
        texts = corpus()
        big = [texts[i % len(texts)] for i in range(2048)]
        wrk(base + "/inference", "seed", 1, 4, 3, CORPUS, "bert")  # warm-up
        alone = wrk(base + "/inference", "seed", 1, 4, args.duration, CORPUS, "bert")
        stop, done = threading.Event(), []
        t = threading.Thread(target=big_client, args=(base, big, stop, done), daemon=True)
        t.start()
        time.sleep(1.0)
        t0 = time.perf_counter()
        loaded = wrk(base + "/inference", "seed", 1, 4, args.duration, CORPUS, "bert")
        elapsed = time.perf_counter() - t0
        stop.set()
        t.join(120)
        return {"alone": alone, "with_big": loaded, "big_requests": len(done),
                "big_sentences_per_s": len(done) * 2048 / elapsed if done else 0.0,
                "big_p50_s": statistics.median(done) if done else None}
    finally:
        os.killpg(proc.pid, signal.SIGTERM)
        proc.wait(20)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default="ml-service")
    ap.add_argument("--rounds", type=int, default=2)
    ap.add_argument("--duration", type=int, default=15)
    ap.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_CACHE_DIR", HERE.parent / "models")))
    ap.add_argument("--out", type=Path, default=RESULTS / "fairness.json")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    names = args.systems.split(",")
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    for r in range(args.rounds):
        for n in (names if r % 2 == 0 else list(reversed(names))):
            print(f"round {r} {n}", flush=True)
            results[n].append(run(n, args))
            args.out.write_text(json.dumps(results, indent=1))
    lines = ["| system | 1-sentence alone p50 / p95 / p99 ms | with a 2,048-input client p50 / p95 / p99 ms | "
             "1-sentence req/s alone / with | big client sentences/s |", "|---|---|---|---|---|"]
    for n, runs in results.items():
        def q(key: str, p: str) -> float:
            return statistics.median(r[key][p] for r in runs)
        lines.append(f"| {n} | {q('alone', 'p50_ms'):.1f} / {q('alone', 'p95_ms'):.0f} / {q('alone', 'p99_ms'):.0f} | "
                     f"{q('with_big', 'p50_ms'):.1f} / {q('with_big', 'p95_ms'):.0f} / {q('with_big', 'p99_ms'):.0f} | "
                     f"{q('alone', 'items_per_s'):.0f} / {q('with_big', 'items_per_s'):.0f} | "
                     f"{statistics.median(r['big_sentences_per_s'] for r in runs):.0f} |")
    summary = "\n".join(lines)
    print(summary)
    args.out.with_suffix(".md").write_text(summary + "\n")
    print("command:", " ".join(sys.argv))


if __name__ == "__main__":
    main()
