"""`ml-service models import SOURCE --name NAME`: a checkpoint on local disk becomes the next version(s) of a model.

Detect and refuse (import_detect.py), build with the model build's own steps (import_text.py, import_image.py)
in a temporary directory, measure, write the card and model.toml, check with the server's own validation, and
publish with `models add`'s atomic function; `dry_run` writes the model directory elsewhere instead. A refusal
(ImportRefused) leaves nothing behind."""

from __future__ import annotations

import json
import os
import shutil
import tempfile
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from ml_service.modelbuild.common import offline_env, write_manifest
from ml_service.modelbuild.import_detect import Built, ImportOptions, ImportRefused, Plan, detect, sha256

__all__ = ["ImportOptions", "ImportRefused", "ImportResult", "import_model"]
Progress = Callable[[str], None]


@dataclass
class ImportResult:
    """What an import made: version number -> precision, the default, the card, and where it went."""

    name: str
    versions: dict[int, str]
    default: int
    card: dict[str, Any]
    published: bool
    model_dir: Path
    seconds: float
    notes: list[str] = field(default_factory=list)


def import_model(source: Path, name: str, root: Path, opts: ImportOptions | None = None,
                 dry_run: Path | None = None, progress: Progress | None = None) -> ImportResult:
    """Import `source` as the next version(s) of `root/name` (or into `dry_run/name`, publishing nothing)."""
    t0 = time.perf_counter()
    say = progress or (lambda _msg: None)
    plan = detect(source, opts or ImportOptions())
    existing = _check_target(root, name, plan)
    if dry_run is not None and (dry_run / name).exists():
        raise ImportRefused(f"{dry_run / name} exists; give --dry-run an empty directory")
    from ml_service.publish import version_numbers

    first = max(version_numbers(root / name), default=0) + 1
    offline_env()
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # transformers' "Loading weights" bars
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    with tempfile.TemporaryDirectory(prefix="ml-service-import-") as tmp:
        work = Path(tmp)
        stage = work / "stage" / name
        stage.mkdir(parents=True)
        built = _build(plan, work, stage, first, say)
        say("measuring latency at batch 1 and 16")
        default = max(built.versions)
        card = _card(plan, built, stage, default)
        card["import_seconds"] = round(time.perf_counter() - t0, 1)
        top, tables, arrays = built.manifest
        if existing is None:
            write_manifest(stage / "model.toml", top, tables | {"card": _card_strings(card)}, arrays)
            if plan.labels:
                (stage / "labels.txt").write_text("\n".join(plan.labels) + "\n", encoding="utf-8")
        else:  # a new version of a model: checked with its model.toml and model-level files, which stay as they are
            for f in existing.iterdir():
                if f.is_file():
                    shutil.copy2(f, stage / f.name)
        for number in built.versions:
            (stage / str(number) / "card.json").write_text(json.dumps(card, indent=2) + "\n", encoding="utf-8")
        say("checking the model as the server would (load, warm-up, labels)")
        _validate(stage)
        if dry_run is not None:
            dry_run.mkdir(parents=True, exist_ok=True)
            shutil.copytree(stage, dry_run / name)
            return ImportResult(name, built.versions, default, card, False, dry_run / name,
                                time.perf_counter() - t0, built.notes)
        _publish(root, name, stage, sorted(built.versions), new_model=existing is None)
    return ImportResult(name, built.versions, default, card, True, root / name, time.perf_counter() - t0,
                        built.notes)


def _check_target(root: Path, name: str, plan: Plan) -> Path | None:
    """Refuse a name that is invalid or another model's alias, or an existing model of another task; returns the
    existing model directory, if any."""
    import re

    from ml_service.errors import ModelNotFound
    from ml_service.manifest import NAME_PATTERN, load_manifest
    from ml_service.repository import ModelRepository

    if not re.fullmatch(NAME_PATTERN, name):
        raise ImportRefused(f"{name!r} is not a valid model name (letters, digits, '.', '_', '-'; 64 at most)")
    repo = ModelRepository(root)
    if root.is_dir():
        repo.scan()
    try:
        holder = repo.canonical_name(name)
    except ModelNotFound:
        holder = name
    if holder != name:
        raise ImportRefused(f"{name!r} is an alias of model {holder!r} in {root}; choose another name")
    model_dir = root / name
    if not (model_dir / "model.toml").is_file():
        if model_dir.exists() and any(model_dir.iterdir()):
            raise ImportRefused(f"{model_dir} exists but holds no model.toml; remove it or choose another name")
        return None
    try:
        manifest = load_manifest(model_dir / "model.toml")
    except Exception as exc:
        raise ImportRefused(f"model {name!r} exists and its model.toml is invalid ({exc}); fix it first") from None
    if manifest.task != plan.task:
        raise ImportRefused(f"model {name!r} exists with task {manifest.task!r}, the source is {plan.task!r}; "
                            "import it under another name")
    if isinstance(manifest.version_policy, list):
        raise ImportRefused(f"model {name!r} serves only versions {manifest.version_policy} (version_policy): a "
                            "new version would not serve; set version_policy to \"latest\" or \"all\" first")
    return model_dir


def _build(plan: Plan, work: Path, stage: Path, first: int, say: Progress) -> Built:
    if plan.kind in ("text-classifier", "text-embedding"):
        from ml_service.modelbuild.import_text import build_text

        return build_text(plan, work, stage, first, say)
    from ml_service.modelbuild.import_image import build_image, build_onnx

    return (build_onnx if plan.kind == "onnx" else build_image)(plan, work, stage, first, say)


def latency_ms(path: Path, feeds: Callable[[int], dict[str, np.ndarray]]) -> dict[str, float]:
    """Median `session.run` time at batch 1 (10 runs) and 16 (3 runs), one intra-op thread, after a warm-up."""
    import onnxruntime as ort

    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    sess = ort.InferenceSession(str(path), opts, providers=["CPUExecutionProvider"])
    out = {}
    for batch, runs in ((1, 10), (16, 3)):
        x = feeds(batch)
        sess.run(None, x)
        times = []
        for _ in range(runs):
            t = time.perf_counter()
            sess.run(None, x)
            times.append((time.perf_counter() - t) * 1000)
        out[f"batch_{batch}"] = round(float(np.median(times)), 2)
    return out


def _card(plan: Plan, built: Built, stage: Path, default: int) -> dict[str, Any]:
    versions = {}
    for number, precision in sorted(built.versions.items()):
        f = stage / str(number) / "model.onnx"
        versions[str(number)] = {"precision": precision, "size_mb": round(f.stat().st_size / 1e6, 1),
                                 "latency_ms": latency_ms(f, built.feeds)}
    return {
        "source_path": str(plan.source.resolve()),
        "source_kind": plan.kind,
        "weights_sha256": sha256(plan.weights),
        "architecture": plan.architecture,
        "task": plan.task,
        "text": {"pooling": plan.pooling, "normalize": plan.normalize, "max_tokens": plan.max_tokens}
        if plan.kind.startswith("text") else None,
        "parity": {k: (round(v, 7) if isinstance(v, float) else v) for k, v in built.parity.items()},
        "versions": versions,
        "default_version": default,
        "labels": plan.labels,
        "notes": built.notes,
    }


def _card_strings(card: dict[str, Any]) -> dict[str, str]:
    """The model.toml card (strings, shown on /models) of the full card every version holds in card.json."""
    p = card["parity"]
    parity = (f"fp32 vs the source on {p['samples']} samples: min cosine {p['fp32_min_cosine']:.6f}"
              if "fp32_min_cosine" in p else p.get("note", ""))
    if "fp32_top1_agreement" in p:
        parity += f", same top label {p['fp32_top1_agreement']:.0%}"
    if "int8_mean_cosine" in p:
        parity += (f"; int8: mean cosine {p['int8_mean_cosine']:.4f} (min {p['int8_min_cosine']:.4f})"
                   + (f", same top label {p['int8_top1_agreement']:.0%}" if "int8_top1_agreement" in p else "")
                   + f", batch-invariant min cosine {p['int8_batch_invariance_min_cosine']:.6f}"
                   + ("" if p.get("int8_published") else " (not published)"))
    v = card["versions"]
    labels = card["labels"]
    return {
        "source": f"imported from {card['source_path']} ({card['source_kind']})",
        "license": "as the source checkpoint's",
        "purpose": f"{card['task']}" + (f" into {len(labels)} labels" if labels else ""),
        "accuracy": parity,
        "architecture": card["architecture"],
        "weights_sha256": card["weights_sha256"],
        "sizes": "; ".join(f"v{n} {d['precision']} {d['size_mb']} MB" for n, d in v.items()),
        "latency": "; ".join(f"v{n} batch 1 {d['latency_ms']['batch_1']} ms, batch 16 {d['latency_ms']['batch_16']} "
                             "ms" for n, d in v.items()),
        "labels": ", ".join(labels[:20]) + (f", ... ({len(labels)} in all)" if len(labels) > 20 else ""),
        "default_version": str(card["default_version"]),
    }


def _validate(stage: Path) -> None:
    """The server's own checks (`models validate`) on every staged version; refused if any fails."""
    from ml_service.publish import validate_models

    found = validate_models(stage, every_version=True).get(stage.name)
    if found is None or found.problems:
        problems = "; ".join(found.problems) if found else "no model directory"
        raise ImportRefused(f"the server would not serve the imported model: {problems}")


def _publish(root: Path, name: str, stage: Path, numbers: list[int], new_model: bool) -> None:
    """Each version with `models add`'s atomic publish (a new model's model.toml and labels come with its first)."""
    from ml_service.publish import publish_version

    for number in numbers:
        path = stage if new_model and number == numbers[0] == 1 else stage / str(number)
        try:
            publish_version(root, name, path, number)
        except FileExistsError as exc:
            raise ImportRefused(f"{exc} (published meanwhile by someone else); nothing more was published") from None
