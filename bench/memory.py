"""`make bench-memory`: what each model costs, as `/models` reports it and as the process grows, and idle RSS.

Part one: `ml-service serve` with nothing preloaded and every load measured (`ML_SERVICE_LOAD_PROFILES=false`);
each model's default version loaded in turn with `POST /models/{name}/load`, the process's RSS read before and
after. A model whose default version is a head on an encoder loads that encoder too; its row counts both.
Part two: idle RSS with every model preloaded (`--preload '*'`), a few seconds after `/health/ready`, as a
restart (load profiles kept) does it. Prints a markdown table and writes the figures as JSON.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

import machine
from serve import RESULTS, free_port

ORDER = ("intent-classifier", "item-classifier", "text-embedding", "task-category")


def rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as f:
        return next(int(line.split()[1]) for line in f if line.startswith("VmRSS")) / 1024


def call(url: str, method: str = "GET") -> Any:
    req = urllib.request.Request(url, method=method, data=b"" if method == "POST" else None)
    with urllib.request.urlopen(req, timeout=120) as r:
        return json.loads(r.read())


class Server:
    """`ml-service serve` on a free port, up until /health/ready answers 200."""

    def __init__(self, model_dir: Path, preload: str, env: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        exe = Path(sys.executable).with_name("ml-service")
        full = {**os.environ, "MODEL_CACHE_DIR": str(model_dir), "ML_SERVICE_LOG_LEVEL": "warning",
                "ML_SERVICE_REPOSITORY_POLL_S": "0", **env}
        self.proc = subprocess.Popen([str(exe), "serve", "--host", "127.0.0.1", "--port", str(self.port),
                                      "--preload", preload], env=full, stdout=subprocess.DEVNULL,
                                     stderr=subprocess.DEVNULL)
        deadline = time.monotonic() + 120
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"ml-service exited ({self.proc.returncode})")
            try:
                with urllib.request.urlopen(f"{self.url}/health/ready", timeout=5) as r:
                    if r.status == 200:
                        return
            except OSError:
                pass
            time.sleep(0.05)
        raise RuntimeError("ml-service was not ready within 120 s")

    def stop(self) -> None:
        self.proc.terminate()
        self.proc.wait(20)


def loaded(models: list[dict[str, Any]]) -> dict[str, dict[str, Any]]:
    return {f"{m['name']}:{v['version']}": v for m in models for v in m["version_details"]
            if v["memory_mb"] is not None}


def per_model(model_dir: Path) -> tuple[float, list[dict[str, Any]]]:
    server = Server(model_dir, "", {"ML_SERVICE_LOAD_PROFILES": "false"})
    rows = []
    try:
        base = rss_mb(server.proc.pid)
        for name in ORDER:
            before_models = loaded(call(f"{server.url}/models")["models"])
            before = rss_mb(server.proc.pid)
            call(f"{server.url}/models/{name}/load", "POST")
            grew = rss_mb(server.proc.pid) - before
            new = {k: v for k, v in loaded(call(f"{server.url}/models")["models"]).items() if k not in before_models}
            rows.append({"model": name, "versions": sorted(new), "grew_mb": round(grew, 1),
                         "memory_mb": round(sum(v["memory_mb"] for v in new.values()), 1),
                         "peak_memory_mb": round(sum(v["peak_memory_mb"] for v in new.values()), 1)})
    finally:
        server.stop()
    return base, rows


def idle_all(model_dir: Path, settle_s: float) -> float:
    server = Server(model_dir, "*", {})
    try:
        time.sleep(settle_s)
        return rss_mb(server.proc.pid)
    finally:
        server.stop()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_CACHE_DIR", HERE.parent / "models")))
    ap.add_argument("--rounds", type=int, default=2, help="times each part runs (figures per round)")
    ap.add_argument("--settle", type=float, default=3.0, help="seconds idle after ready before RSS is read")
    ap.add_argument("--out", type=Path, default=RESULTS / "memory.json")
    args = ap.parse_args()
    print(machine.line(), flush=True)
    rounds = []
    for _ in range(args.rounds):
        base, rows = per_model(args.model_dir)
        rounds.append({"process_before_models_mb": round(base, 1), "models": rows,
                       "idle_all_preloaded_mb": round(idle_all(args.model_dir, args.settle), 1)})
    print("| model (default version; what its load loaded) | `memory_mb` (resident) | `peak_memory_mb` (budget) "
          "| the process grew by |")
    print("|---|---|---|---|")
    for i, name in enumerate(ORDER):
        cells = [rounds[r]["models"][i] for r in range(len(rounds))]
        print(f"| {name} ({', '.join(cells[0]['versions'])}) | "
              + " | ".join(" / ".join(f"{c[k]:.1f}" for c in cells) for k in ("memory_mb", "peak_memory_mb", "grew_mb"))
              + " |")
    print("process before any model: " + " / ".join(f"{r['process_before_models_mb']:.0f}" for r in rounds)
          + " MB; idle with all preloaded: " + " / ".join(f"{r['idle_all_preloaded_mb']:.0f}" for r in rounds) + " MB")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"machine": machine.describe(), "rounds": rounds}, indent=1))
    print(f"results: {args.out}\ncommand: bench/memory.py {' '.join(sys.argv[1:])}")


if __name__ == "__main__":
    main()
