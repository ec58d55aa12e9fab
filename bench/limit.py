"""`make bench-limit`: the in-process limit of the served model files, without HTTP.

Sentences/s of tokenize -> ONNX Runtime -> pool/normalize through the service's own task and runtime
code, at batch 1/8/32/128, in arrival (corpus) order and length-sorted (the whole corpus sorted by token
count: the least padding any batcher could get), with the same workers and threads as the server. Each point runs in its own process (several ORT sessions in one process slow each other).
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
import machine
from corpus import corpus

BATCHES = [1, 8, 32, 128]


def _run(task: Any, runtime: Any, batches: list[list[str]], workers: int, seconds: float) -> float:
    """Sentences/s with `workers` threads each taking the next batch, as the server's compute workers do."""
    import threading

    lock, counter = threading.Lock(), {"items": 0, "next": 0}
    t0 = time.perf_counter()

    def work() -> None:
        while time.perf_counter() - t0 < seconds:
            with lock:
                batch_texts = batches[counter["next"] % len(batches)]
                counter["next"] += 1
            batch = task.preprocess(batch_texts)  # tokenizing is part of the end-to-end cost
            feeds = task.collate(batch)
            task.postprocess(runtime.predict(feeds), feeds, batch)
            with lock:
                counter["items"] += len(batch)

    threads = [threading.Thread(target=work) for _ in range(workers)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return counter["items"] / (time.perf_counter() - t0)


def one(model_dir: Path, model: str, version: str, sort: bool, seconds: float,
        runtime_name: str | None = None, device: str = "auto") -> dict[str, float]:
    """Run one (version, order) point in this process; returns sentences/s per batch size.

    Like the server: `workers` threads (one per core by default) each take the next batch and run it
    with the server's intra-op threads, through the service's own task and runtime code."""
    from ml_service.registry import ModelRegistry
    from ml_service.repository import ModelRepository
    from ml_service.settings import Settings

    settings = Settings(model_cache_dir=model_dir, device=device)
    repo = ModelRepository(model_dir)
    repo.scan()
    registry = ModelRegistry(settings)
    entry = repo.get(model)
    mv = entry.versions[int(version)]
    if runtime_name and mv.manifest is not None:  # the same files through another runtime
        mv = dataclasses.replace(mv, manifest=mv.manifest.model_copy(update={"runtime": runtime_name}))
    loaded = registry._load_sync(entry, mv, 0)
    task, runtime = loaded.task, loaded.runtime
    if device == "cuda" and runtime.device != "cuda":
        raise SystemExit(f"asked for the GPU, but {model} v{version} runs on {runtime.device} (see the log above)")
    workers = settings.workers(on_gpu=runtime.device == "cuda")
    texts = corpus()
    out: dict[str, float] = {}
    for bs in BATCHES:
        order = texts
        if sort:  # the best case, as in peerbench: the whole corpus sorted by token count, then batched
            lengths = [p.cost for p in task.preprocess(texts)]  # type: ignore[union-attr]
            order = [t for _, t in sorted(zip(lengths, texts, strict=True), key=lambda p: p[0])]
        batches = [order[k:k + bs] for k in range(0, len(order), bs)]  # the texts of each batch
        first = task.preprocess(batches[0])
        runtime.predict(task.collate(first))  # type: ignore[arg-type]  # warm-up
        out[str(bs)] = _run(task, runtime, batches, workers, seconds)
    if not sort:  # one request alone: a single sentence at a time on one worker, as the server runs it
        lat = []
        for text in texts[:300]:
            t = time.perf_counter()
            batch = task.preprocess([text])
            feeds = task.collate(batch)  # type: ignore[arg-type]
            task.postprocess(runtime.predict(feeds), feeds, batch)  # type: ignore[arg-type]
            lat.append((time.perf_counter() - t) * 1000)
        out["single_p50_ms"] = statistics.median(lat)
    out["workers"] = workers
    out["threads"] = settings.threads
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_CACHE_DIR", "models")))
    ap.add_argument("--model", default="text-embedding")
    ap.add_argument("--versions", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "limit.json")
    ap.add_argument("--runtime", default=None, help="override the manifest's runtime (onnx, openvino)")
    ap.add_argument("--devices", default="auto", help="e.g. cpu,cuda: each point on each device, interleaved "
                    "(`make bench-gpu`)")
    ap.add_argument("--one", nargs=3, metavar=("VERSION", "ORDER", "DEVICE"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        version, order, device = args.one
        print(json.dumps(one(args.model_dir, args.model, version, order == "sorted", args.seconds, args.runtime,
                             device)))
        return
    from rich.progress import Progress

    devices = args.devices.split(",")
    points = [(v, o, d) for v in args.versions.split(",") for o in ("arrival", "sorted") for d in devices]

    def key(v: str, o: str, d: str) -> str:
        return f"v{v} {o}" + (f" {d}" if len(devices) > 1 else "")

    runs: dict[str, list[dict[str, float]]] = {key(*p): [] for p in points}
    with Progress() as progress:
        bar = progress.add_task("in-process limit", total=args.rounds * len(points))
        for _ in range(args.rounds):
            for v, o, d in points:  # interleaved rounds, one process per point
                cmd = [sys.executable, __file__, "--model-dir", str(args.model_dir), "--model", args.model,
                       "--seconds", str(args.seconds), "--one", v, o, d] + (
                    ["--runtime", args.runtime] if args.runtime else [])
                res = subprocess.run(cmd, capture_output=True, text=True)
                if res.returncode != 0:
                    raise SystemExit(f"point v{v} {o} on {d} failed:\n{res.stderr[-2000:]}")
                runs[key(v, o, d)].append(json.loads(res.stdout.strip().splitlines()[-1]))
                progress.advance(bar)
    table: dict[str, Any] = {k: {bs: {"median": statistics.median(r[str(bs)] for r in rs),
                                      "min": min(r[str(bs)] for r in rs), "max": max(r[str(bs)] for r in rs)}
                                 for bs in BATCHES} for k, rs in runs.items()}
    single = {k: statistics.median(r["single_p50_ms"] for r in rs) for k, rs in runs.items() if "arrival" in k}
    print(f"\nin-process limit, {args.model}, sentences/s (median of {args.rounds}; min-max)")
    print("| version / order | " + " | ".join(f"bs={b}" for b in BATCHES) + " |")
    print("|---" * (len(BATCHES) + 1) + "|")
    for k, row in table.items():
        cells = [f"{row[b]['median']:.0f} ({row[b]['min']:.0f}-{row[b]['max']:.0f})" for b in BATCHES]
        print(f"| {k} | " + " | ".join(cells) + " |")
    for k, ms in single.items():
        print(f"single-item latency alone, {k.replace(' arrival', '')}: p50 {ms:.2f} ms")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    host = machine.describe()
    print(machine.line(host))
    args.out.write_text(json.dumps({"machine": host, "cores": os.cpu_count(), "table": table,
                                    "single_p50_ms": single}, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
