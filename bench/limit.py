"""`make bench-limit`: the in-process limit of the served model files, without HTTP.

Sentences/s of tokenize -> ONNX Runtime -> pool/normalize through the service's own task and runtime
code, at batch 1/8/32/128, in arrival (corpus) order and length-sorted, with the same thread settings as
the server. Each point runs in its own process (several ORT sessions in one process slow each other).
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))
from corpus import corpus  # noqa: E402

BATCHES = [1, 8, 32, 128]


def one(model_dir: Path, model: str, version: str, sort: bool, seconds: float) -> dict[str, float]:
    """Run one (version, order) point in this process; returns sentences/s per batch size."""
    from ml_service.registry import ModelRegistry
    from ml_service.repository import ModelRepository
    from ml_service.settings import Settings

    settings = Settings(model_cache_dir=model_dir)
    repo = ModelRepository(model_dir)
    repo.scan()
    registry = ModelRegistry(repo, settings)
    entry = repo.get(model)
    loaded = registry._load_sync(entry, entry.version(version), 0)
    task, runtime = loaded.task, loaded.runtime
    texts = corpus()
    out: dict[str, float] = {}
    for bs in BATCHES:
        prepared = task.preprocess(texts[:32])  # warm-up
        runtime.predict(task.collate(prepared))  # type: ignore[arg-type]
        done, t0, i = 0, time.perf_counter(), 0
        while time.perf_counter() - t0 < seconds:
            chunk = [texts[(i + j) % len(texts)] for j in range(bs * (8 if sort else 1))]
            i += len(chunk)
            prepared = task.preprocess(chunk)
            if sort:  # the best case: a window of 8 batches sorted by length before batching
                prepared.sort(key=lambda p: p.cost)  # type: ignore[union-attr]
            for k in range(0, len(prepared), bs):
                batch = prepared[k:k + bs]
                feeds = task.collate(batch)  # type: ignore[arg-type]
                task.postprocess(runtime.predict(feeds), feeds, batch)  # type: ignore[arg-type]
                done += len(batch)
        out[str(bs)] = done / (time.perf_counter() - t0)
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__)
    ap.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_CACHE_DIR", "models")))
    ap.add_argument("--model", default="text-embedding")
    ap.add_argument("--versions", default="1,2")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=4.0)
    ap.add_argument("--out", type=Path, default=HERE / "results" / "limit.json")
    ap.add_argument("--one", nargs=2, metavar=("VERSION", "ORDER"), help=argparse.SUPPRESS)
    args = ap.parse_args()
    if args.one:
        version, order = args.one
        print(json.dumps(one(args.model_dir, args.model, version, order == "sorted", args.seconds)))
        return
    from rich.progress import Progress

    points = [(v, o) for v in args.versions.split(",") for o in ("arrival", "sorted")]
    runs: dict[str, list[dict[str, float]]] = {f"v{v} {o}": [] for v, o in points}
    with Progress() as progress:
        bar = progress.add_task("in-process limit", total=args.rounds * len(points))
        for _ in range(args.rounds):
            for v, o in points:  # interleaved rounds, one process per point
                cmd = [sys.executable, __file__, "--model-dir", str(args.model_dir), "--model", args.model,
                       "--seconds", str(args.seconds), "--one", v, o]
                res = subprocess.run(cmd, capture_output=True, text=True, check=True)
                runs[f"v{v} {o}"].append(json.loads(res.stdout.strip().splitlines()[-1]))
                progress.advance(bar)
    table = {k: {bs: {"median": statistics.median(r[str(bs)] for r in rs),
                      "min": min(r[str(bs)] for r in rs), "max": max(r[str(bs)] for r in rs)}
                 for bs in BATCHES} for k, rs in runs.items()}
    print(f"\nin-process limit, {args.model}, sentences/s (median of {args.rounds}; min-max)")
    print("| version / order | " + " | ".join(f"bs={b}" for b in BATCHES) + " |")
    print("|---" * (len(BATCHES) + 1) + "|")
    for k, row in table.items():
        cells = [f"{row[b]['median']:.0f} ({row[b]['min']:.0f}-{row[b]['max']:.0f})" for b in BATCHES]
        print(f"| {k} | " + " | ".join(cells) + " |")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(json.dumps({"threads": os.cpu_count(), "table": table}, indent=2))
    print(f"written {args.out}")


if __name__ == "__main__":
    main()
