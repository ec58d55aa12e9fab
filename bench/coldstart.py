"""`make bench-cold`: ml-service's cold start, spawn to `/health/ready` with all four models preloaded, measured
many times, the systems interleaved (A B, B A, ...) so the VM's drift hits them alike.

Two figures per start: when the port first answers (the imports and the app are done) and when `/health/ready`
answers 200 (every preloaded model live). `ml-service` starts with the repository's load profiles when it has
them (`.load-profiles.json`, written by the first start that measures the loads), which is what a restart is;
`--fresh` deletes them before each start of it, which is what the first start after new files is. Systems are
named as in bench/serve.py: `ml-service`, `ml-service@REV`, `ml-service+NAME=VALUE`.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import machine
from serve import RESULTS, free_port, systems

PROFILES = ".load-profiles.json"


def start_once(cmd: str, env: dict[str, str], port: int, timeout: float = 120) -> tuple[float, float]:
    """Spawn one server; (seconds to the port's first answer, seconds to /health/ready 200); then stop it."""
    t0 = time.perf_counter()
    proc = subprocess.Popen(["bash", "-c", cmd], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                            start_new_session=True)
    listening = None
    try:
        while time.perf_counter() - t0 < timeout:
            if proc.poll() is not None:
                raise RuntimeError(f"the server exited ({proc.returncode}): {cmd}")
            try:
                with urllib.request.urlopen(f"http://127.0.0.1:{port}/health/ready", timeout=5) as r:
                    if r.status == 200:
                        ready = time.perf_counter() - t0
                        return (listening if listening is not None else ready), ready
            except urllib.error.HTTPError:  # 503: up, not ready yet
                if listening is None:
                    listening = time.perf_counter() - t0
            except OSError:
                pass
            time.sleep(0.01)
        raise RuntimeError(f"not ready within {timeout} s: {cmd}")
    finally:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default="ml-service")
    ap.add_argument("--starts", type=int, default=10, help="starts per system")
    ap.add_argument("--fresh", action="store_true", help="delete the load profiles before each ml-service start")
    ap.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_CACHE_DIR", HERE.parent / "models")))
    ap.add_argument("--out", type=Path, default=RESULTS / "coldstart.json")
    args = ap.parse_args()
    names = args.systems.split(",")
    port = free_port()
    table = systems(args.model_dir, port, names)
    unknown = set(names) - set(table)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}; choose from {sorted(table)}")
    chosen = [table[n] for n in names]
    print(machine.line(), flush=True)
    results: dict[str, list[tuple[float, float]]] = {s.name: [] for s in chosen}
    for i in range(args.starts):
        for system in chosen if i % 2 == 0 else list(reversed(chosen)):
            if args.fresh:
                (args.model_dir / PROFILES).unlink(missing_ok=True)
            env = {**os.environ, **(system.env or {})}
            results[system.name].append(start_once(system.cmd, env, port))
    summary: dict[str, Any] = {}
    for name, runs in results.items():
        up, ready = sorted(r[0] for r in runs), sorted(r[1] for r in runs)
        summary[name] = {"listening_median_s": statistics.median(up), "ready_median_s": statistics.median(ready),
                         "ready_min_s": ready[0], "ready_max_s": ready[-1], "starts": runs}
        print(f"{name}: ready median {statistics.median(ready):.2f} s ({ready[0]:.2f}-{ready[-1]:.2f}), port up "
              f"{statistics.median(up):.2f} s, {len(runs)} starts")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine.describe(), "fresh": args.fresh, "systems": summary},
                                   indent=1))
    print(f"results: {args.out}\ncommand: bench/coldstart.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
