"""`make bench` / `make bench-peers`: servers under wrk, side by side, with the in-process limit.

Each system is started fresh (cold start = spawn to the first 200 on a real request, models preloaded),
warmed up, then driven by wrk (closed loop, one connection per simulated client) through the scenarios:
one sentence per request at c=1/16/64, 32 sentences per request at c=4, and (ml-service only) image
classification at c=8. The RSS of the server's process tree is sampled every 0.25 s. Rounds alternate
the system order (A B, B A, ...) and the summary reports medians with min-max. No cache helps: every
request is computed (ml-service has no result cache at all).
"""

from __future__ import annotations

import argparse
import base64
import dataclasses
import json
import os
import shlex
import signal
import socket
import statistics
import subprocess
import sys
import threading
import time
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
REPO = HERE.parent
sys.path.insert(0, str(HERE))
import machine
from corpus import CORPUS, corpus

RESULTS = HERE / "results"
VENVS = HERE / ".venvs"
TEXT_SCENARIOS = [("s1_c1", 1, 1), ("s1_c16", 1, 16), ("s1_c64", 1, 64), ("s32_c4", 32, 4)]
IMAGE_SCENARIO = ("img_c8", 1, 8)


@dataclass
class System:
    name: str
    cmd: str
    path: str
    schema: str  # seed | inputs | openai
    model: str
    image: bool = False  # also serves the image scenario
    env: dict[str, str] | None = None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


WORKTREES = HERE / ".worktrees"


def worktree(rev: str) -> Path:
    """A detached git worktree of a revision, under bench/.worktrees (made once)."""
    sha = subprocess.run(["git", "-C", str(REPO), "rev-parse", "--short", rev], capture_output=True, text=True,
                         check=True).stdout.strip()
    tree = WORKTREES / sha
    if not tree.exists():
        subprocess.run(["git", "-C", str(REPO), "worktree", "add", "--detach", str(tree), sha], check=True,
                       capture_output=True)
    return tree


def at_revision(rev: str, model_dir: Path, port: int) -> System:
    """ml-service as of a git revision (an A/B run: `--systems ml-service,ml-service@HEAD~1`), run from a
    worktree of that revision with this venv's packages."""
    tree = worktree(rev)
    cmd = (f"PYTHONPATH={tree / 'ml-service' / 'src'} exec {sys.executable} -m ml_service.cli serve "
           f"--host 127.0.0.1 --port {port} --preload '*'")
    return System(f"ml-service@{rev}", cmd, "/inference", "seed", "bert", image=True,
                  env={"MODEL_CACHE_DIR": str(model_dir), "ML_SERVICE_LOG_LEVEL": "warning"})


def systems(model_dir: Path, port: int, names: list[str] | None = None) -> dict[str, System]:
    py = sys.executable
    exe = Path(py).with_name("ml-service")
    peers = VENVS / "peers" / "bin"
    inf = VENVS / "infinity" / "bin"
    revisions = {n: at_revision(n.split("@", 1)[1], model_dir, port) for n in names or [] if "@" in n}
    table = revisions | {
        "ml-service": System("ml-service", f"exec {exe} serve --host 127.0.0.1 --port {port} --preload '*'",
                             "/inference", "seed", "bert", image=True,
                             env={"MODEL_CACHE_DIR": str(model_dir), "ML_SERVICE_LOG_LEVEL": "warning"}),
        "ml-service-openai": System("ml-service-openai",
                                    f"exec {exe} serve --host 127.0.0.1 --port {port} --preload text-embedding",
                                    "/v1/embeddings", "openai", "text-embedding",
                                    env={"MODEL_CACHE_DIR": str(model_dir), "ML_SERVICE_LOG_LEVEL": "warning"}),
        "naive": System("naive", f"exec {peers}/uvicorn --app-dir {HERE}/peers naive_server:app --host 127.0.0.1 "
                        f"--port {port} --workers 1 --log-level warning", "/inference", "inputs", ""),
        "litserve": System("litserve", f"exec {peers}/python {HERE}/peers/litserve_server.py --port {port}",
                           "/predict", "inputs", ""),
        # infinity-emb 0.0.78 + optimum-onnx need the ONNX file at the top of the model folder and cwd there
        "infinity": System("infinity", f"cd {VENVS}/infinity-model && exec {inf}/infinity_emb v2 --model-id . "
                           f"--served-model-name minilm --engine optimum --device cpu --batch-size 32 "
                           f"--host 127.0.0.1 --port {port} --log-level warning", "/embeddings", "openai", "minilm"),
    }
    # `ml-service+NAME=VALUE+...`: a system with settings changed (an A/B of a setting in one interleaved run)
    for n in names or []:
        base, *sets = n.split("+")
        if sets and base in table:
            extra = dict(kv.split("=", 1) for kv in sets)
            table[n] = dataclasses.replace(table[base], name=n, env={**(table[base].env or {}), **extra})
    return table


def tree_rss(pid: int) -> int:
    """RSS in bytes of a process and all its descendants."""
    children: dict[int, list[int]] = {}
    for d in os.listdir("/proc"):
        if d.isdigit():
            try:
                with open(f"/proc/{d}/stat") as f:
                    ppid = int(f.read().rsplit(")", 1)[1].split()[1])
                children.setdefault(ppid, []).append(int(d))
            except (OSError, ValueError, IndexError):
                continue
    total, todo = 0, [pid]
    while todo:
        p = todo.pop()
        todo += children.get(p, [])
        try:
            with open(f"/proc/{p}/statm") as f:
                total += int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")
        except (OSError, ValueError, IndexError):
            continue
    return total


class RssSampler(threading.Thread):
    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.peak, self.stop = pid, 0, threading.Event()

    def run(self) -> None:
        while not self.stop.wait(0.25):
            self.peak = max(self.peak, tree_rss(self.pid))


def body_for(system: System, texts: list[str]) -> bytes:
    if system.schema == "openai":
        return json.dumps({"input": texts, "model": system.model}).encode()
    if system.schema == "inputs":
        return json.dumps({"inputs": texts}).encode()
    return json.dumps({"model_type": system.model, "data": {"texts": texts}}).encode()


def post(url: str, body: bytes, timeout: float = 10) -> int:
    req = urllib.request.Request(url, data=body, headers={"Content-Type": "application/json"})
    with urllib.request.urlopen(req, timeout=timeout) as r:
        r.read()
        return int(r.status)


def image_corpus() -> Path:
    """Real photos shipped by packages, base64 one per line (the image scenario's bodies)."""
    from ml_service.modelbuild.checks import photo_bytes

    path = RESULTS / "images.txt"
    if not path.exists():
        RESULTS.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join(base64.b64encode(b).decode() for b in photo_bytes().values()) + "\n")
    return path


def wrk(url: str, schema: str, k: int, conns: int, seconds: int, corpus_file: Path, model: str) -> dict[str, Any]:
    cmd = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", "--timeout", "30s", "-s", str(HERE / "post.lua"), url,
           "--", schema, str(k), str(corpus_file), model]
    out = subprocess.run(cmd, capture_output=True, text=True, check=True).stdout
    line = next(ln for ln in out.splitlines() if ln.startswith("WRKJSON"))
    d = json.loads(line[8:])
    secs = d["duration_us"] / 1e6
    return {"items_per_s": d["requests"] * k / secs, "requests": d["requests"],
            "p50_ms": d["lat_p50_us"] / 1000, "p95_ms": d["lat_p95_us"] / 1000, "p99_ms": d["lat_p99_us"] / 1000,
            "errors": d["err_connect"] + d["err_read"] + d["err_write"] + d["err_status"] + d["err_timeout"]}


def run_system(system: System, port: int, args: argparse.Namespace, progress: Any) -> dict[str, Any]:
    env = {**os.environ, **(system.env or {}), "HF_HUB_OFFLINE": "1"}
    base = f"http://127.0.0.1:{port}"
    t0 = time.perf_counter()
    proc = subprocess.Popen(["bash", "-c", system.cmd], env=env, stdout=subprocess.DEVNULL,
                            stderr=open(RESULTS / f"{system.name}.log", "wb"), start_new_session=True)
    probe = body_for(system, ["Wipe down the kitchen counters"])
    cold = None
    try:
        while time.perf_counter() - t0 < 180:
            if proc.poll() is not None:
                raise RuntimeError(f"{system.name} exited; see {RESULTS / (system.name + '.log')}")
            try:
                if post(base + system.path, probe, timeout=5) == 200:
                    cold = time.perf_counter() - t0
                    break
            except OSError:
                time.sleep(0.1)
        if cold is None:
            raise RuntimeError(f"{system.name} did not answer within 180 s")
        time.sleep(1.0)
        idle = tree_rss(proc.pid)
        sampler = RssSampler(proc.pid)
        sampler.start()
        wrk(base + system.path, system.schema, 1, 16, args.warmup, CORPUS, system.model)
        res: dict[str, Any] = {"cold_start_s": cold, "idle_rss_mb": idle / 2**20, "scenarios": {}}
        wanted = set(args.scenarios.split(",")) if args.scenarios else None
        scen = [s for s in TEXT_SCENARIOS if wanted is None or s[0] in wanted]
        scen += [IMAGE_SCENARIO] if system.image and not args.no_image else []
        for name, k, c in scen:
            progress(f"{system.name} {name}")
            if name.startswith("img"):
                res["scenarios"][name] = wrk(base + system.path, "image", k, c, args.duration, image_corpus(), "cnn")
            else:
                res["scenarios"][name] = wrk(base + system.path, system.schema, k, c, args.duration, CORPUS,
                                             system.model)
        sampler.stop.set()
        res["peak_rss_mb"] = max(sampler.peak, idle) / 2**20
        return res
    finally:
        try:
            os.killpg(proc.pid, signal.SIGTERM)
            proc.wait(20)
        except (ProcessLookupError, subprocess.TimeoutExpired):
            os.killpg(proc.pid, signal.SIGKILL)


def limit(model_dir: Path) -> tuple[dict[str, Any], float]:
    """The in-process limit of the int8 text-embedding (one quick round, same thread settings)."""
    out = RESULTS / "limit_in_bench.json"
    subprocess.run([sys.executable, str(HERE / "limit.py"), "--model-dir", str(model_dir), "--versions", "2",
                    "--rounds", "1", "--seconds", "3", "--out", str(out)], check=True, capture_output=True)
    data = json.loads(out.read_text())
    return data["table"], float(data["single_p50_ms"]["v2 arrival"])


def summarize(results: dict[str, list[dict[str, Any]]], lim: dict[str, Any] | None, ref: str | None,
              single_ms: float | None = None) -> str:
    def med(vals: list[float]) -> tuple[float, float, float]:
        return statistics.median(vals), min(vals), max(vals)

    lines = []
    scen_names = [s[0] for s in TEXT_SCENARIOS] + [IMAGE_SCENARIO[0]]
    header = "| system | " + " | ".join(scen_names) + " | cold start s | idle RSS MB | peak RSS MB |"
    lines += [header, "|---" * (len(scen_names) + 4) + "|"]
    for name, rounds in results.items():
        cells = []
        for s in scen_names:
            runs = [r["scenarios"][s] for r in rounds if s in r["scenarios"]]  # noqa: B023
            if not runs:
                cells.append("-")
                continue
            t, lo, hi = med([r["items_per_s"] for r in runs])
            p50, p95, p99 = (statistics.median(r[f"p{q}_ms"] for r in runs) for q in (50, 95, 99))
            err = sum(r["errors"] for r in runs)
            cells.append(f"{t:.0f} ({lo:.0f}-{hi:.0f}); p50 {p50:.1f} / p95 {p95:.0f} / p99 {p99:.0f} ms; "
                         f"{err} errors")
        cs = statistics.median(r["cold_start_s"] for r in rounds)
        idle = statistics.median(r["idle_rss_mb"] for r in rounds)
        peak = max(r["peak_rss_mb"] for r in rounds)
        lines.append(f"| {name} | " + " | ".join(cells) + f" | {cs:.1f} | {idle:.0f} | {peak:.0f} |")
    if ref and ref in results and len(results) > 1:
        lines += ["", f"Throughput ratio to {ref} (median):", ""]
        measured = [s for s in scen_names[:4] if all(s in r["scenarios"] for r in results[ref])]
        base = {s: statistics.median(r["scenarios"][s]["items_per_s"] for r in results[ref]) for s in measured}
        for name, rounds in results.items():
            if name == ref:
                continue
            ratios = [f"{s} {base[s] / statistics.median(r['scenarios'][s]['items_per_s'] for r in rounds):.2f}x"
                      for s in measured]
            lines.append(f"- {ref} / {name}: " + ", ".join(ratios))
    if lim and "ml-service" in results and not any(s not in r["scenarios"] for s in ("s1_c64", "s32_c4", "s1_c1")
                                                   for r in results["ml-service"]):
        best = max(max(row[b]["median"] for b in row) for row in lim.values())
        arrival = max(lim["v2 arrival"][b]["median"] for b in lim["v2 arrival"])
        c64 = statistics.median(r["scenarios"]["s1_c64"]["items_per_s"] for r in results["ml-service"])
        s32 = statistics.median(r["scenarios"]["s32_c4"]["items_per_s"] for r in results["ml-service"])
        c1 = statistics.median(r["scenarios"]["s1_c1"]["p50_ms"] for r in results["ml-service"])
        lines += ["", f"In-process limit (same run, int8, same workers and threads): best {best:.0f} sent/s "
                      f"(whole corpus length-sorted), {arrival:.0f} in arrival order; one sentence alone: "
                      f"p50 {single_ms:.2f} ms.",
                  f"ml-service s1_c64 = {c64 / best:.0%} of the best limit; s32_c4 = {s32 / best:.0%}; "
                  f"s1_c1 p50 {c1:.2f} ms = in-process single item + {c1 - (single_ms or 0):.2f} ms."]
    return "\n".join(lines)


def plot(results: dict[str, list[dict[str, Any]]], path: Path) -> None:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return
    plotted = [(c, f"s1_c{c}") for c in (1, 16, 64)]
    plotted = [(c, k) for c, k in plotted if all(k in r["scenarios"] for rs in results.values() for r in rs)]
    if len(plotted) < 2:  # --scenarios left too few one-sentence points for a curve
        return
    conc, keys = [c for c, _ in plotted], [k for _, k in plotted]
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(11, 4))
    for name, rounds in results.items():
        thr = [statistics.median(r["scenarios"][k]["items_per_s"] for r in rounds) for k in keys]
        p50 = [statistics.median(r["scenarios"][k]["p50_ms"] for r in rounds) for k in keys]
        p99 = [statistics.median(r["scenarios"][k]["p99_ms"] for r in rounds) for k in keys]
        a1.plot(conc, thr, marker="o", label=name)
        line = a2.plot(conc, p50, marker="o", label=f"{name} p50")[0]
        a2.plot(conc, p99, marker="x", linestyle="--", color=line.get_color(), label=f"{name} p99")
    a1.set(xscale="log", xlabel="concurrent clients (1 sentence/request)", ylabel="sentences/s",
           title="throughput")
    a2.set(xscale="log", yscale="log", xlabel="concurrent clients", ylabel="latency ms", title="p50 / p99")
    a1.legend(fontsize=8)
    a2.legend(fontsize=6)
    fig.tight_layout()
    fig.savefig(path, dpi=110)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--systems", default="ml-service")
    ap.add_argument("--rounds", type=int, default=1)
    ap.add_argument("--duration", type=int, default=15, help="seconds per scenario")
    ap.add_argument("--warmup", type=int, default=5)
    ap.add_argument("--model-dir", type=Path, default=Path(os.environ.get("MODEL_CACHE_DIR", REPO / "models")))
    ap.add_argument("--no-limit", action="store_true", help="skip the in-process limit")
    ap.add_argument("--no-image", action="store_true")
    ap.add_argument("--scenarios", default="", help="only these text scenarios, e.g. s1_c64,s32_c4")
    ap.add_argument("--ref", default="ml-service", help="system the ratios are computed against")
    ap.add_argument("--out", type=Path, default=RESULTS / "serve.json")
    args = ap.parse_args()
    RESULTS.mkdir(parents=True, exist_ok=True)
    corpus()
    from rich.console import Console
    from rich.progress import Progress

    console = Console()
    host = machine.describe()
    console.print(f"load average before: {os.getloadavg()[0]:.2f} (should be near 0); {machine.line(host)}")
    names = args.systems.split(",")
    table = {n: s for n, s in systems(args.model_dir, 0, names).items()}
    unknown = set(names) - set(table)
    if unknown:
        raise SystemExit(f"unknown systems {sorted(unknown)}; choose from {sorted(table)}")
    results: dict[str, list[dict[str, Any]]] = {n: [] for n in names}
    lim, single_ms = None, None
    with Progress(console=console) as progress:
        bar = progress.add_task("bench", total=args.rounds * len(names) + (0 if args.no_limit else 1))
        if not args.no_limit:
            progress.update(bar, description="in-process limit")
            lim, single_ms = limit(args.model_dir)
            progress.advance(bar)
        for r in range(args.rounds):
            order = names if r % 2 == 0 else list(reversed(names))
            for n in order:
                port = free_port()
                sysm = systems(args.model_dir, port, names)[n]
                res = run_system(sysm, port, args, lambda d: progress.update(bar, description=d))
                res["round"] = r
                results[n].append(res)
                progress.advance(bar)
                args.out.write_text(json.dumps({"machine": host, "results": results, "limit": lim,
                                                "single_ms": single_ms, "args": vars(args)},
                                               indent=1, default=str))
    summary = summarize(results, lim, args.ref, single_ms)
    console.print(summary)
    (args.out.with_suffix(".md")).write_text(summary + "\n")
    plot(results, args.out.with_suffix(".png"))
    console.print(f"results: {args.out}, {args.out.with_suffix('.md')}, {args.out.with_suffix('.png')}")
    console.print(f"command: {' '.join(shlex.quote(a) for a in sys.argv)}")


if __name__ == "__main__":
    main()
